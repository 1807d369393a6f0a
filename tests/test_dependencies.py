"""Every third-party import of the package is declared in pyproject.toml, core or in the extra that needs it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Imported only by the openrlhf runner, inside functions: the `openrlhf` extra (OpenRLHF pins them).
OPENRLHF_STACK = {"openrlhf", "vllm", "deepspeed", "flash_attn"}


def _declared() -> dict[str, set[str]]:
    """``{normalised distribution: {"core" or extra names}}`` of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out: dict[str, set[str]] = {}
    for where, items in [("core", project["dependencies"]), *project["optional-dependencies"].items()]:
        for item in items:
            name = re.split(r"[\s\[<>=!~;]", item, maxsplit=1)[0]
            out.setdefault(name.lower().replace("_", "-"), set()).add(where)
    return out


def _imports() -> dict[str, set[Path]]:
    """Top-level module names imported anywhere in rlbench_med (functions included), with their files."""
    found: dict[str, set[Path]] = {}
    for path in (ROOT / "rlbench_med").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.relative_to(ROOT))
    return found


def test_every_third_party_import_is_declared() -> None:
    declared = _declared()
    distributions = packages_distributions()
    missing = []
    for module, files in sorted(_imports().items()):
        if module in sys.stdlib_module_names or module == "rlbench_med" or module in OPENRLHF_STACK:
            continue
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        if not names & set(declared):
            missing.append(f"{module} (imported by {', '.join(map(str, sorted(files)))}; distributions {names})")
    assert not missing, "undeclared imports: " + "; ".join(missing)


def test_ray_and_opencv_are_extras_and_tqdm_is_gone() -> None:
    declared = _declared()
    assert declared["ray"] == {"ray"} and declared["opencv-python-headless"] == {"video"}
    assert "tqdm" not in declared and "tqdm" not in _imports()
    assert {"scipy", "sqlalchemy", "flask", "mlflow"} <= {d for d, where in declared.items() if "core" in where}


def test_a_missing_extra_is_named_with_the_install_command(monkeypatch, tmp_path) -> None:
    import importlib.util

    import pytest

    from rlbench_med.runners.sweep.planner import check_ray
    from rlbench_med.suites.media import MediaError, read_video_frames
    from rlbench_med.typed_config import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"--executor ray needs Ray: pip install 'rlbench-med\[ray\]'"):
        check_ray()
    monkeypatch.setitem(sys.modules, "cv2", None)  # what an environment without OpenCV imports
    with pytest.raises(MediaError, match=r"reading videos needs OpenCV: pip install 'rlbench-med\[video\]'"):
        read_video_frames(tmp_path / "v.mp4", 2)
