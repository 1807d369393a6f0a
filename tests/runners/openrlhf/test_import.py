"""The package imports, plans and builds flags with OpenRLHF, vLLM, DeepSpeed and Ray all unavailable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

BLOCKED = ("openrlhf", "vllm", "deepspeed", "flash_attn", "ray")

SCRIPT = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {BLOCKED!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked for this test")
            return None

    sys.meta_path.insert(0, Block())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    from pathlib import Path
    from rlbench_med.runners.base import RUNNERS, Job
    import rlbench_med.runners.openrlhf.trainer, rlbench_med.runners.openrlhf.launch  # lazy: import fine

    spec = RUNNERS.get("openrlhf")
    job = Job(suite="climb_vision", algo="drpo", estimator="drpo", seed=0, config=spec.config_cls(),
              data_dir=Path("data"), out_dir=Path("out"))
    spec.check(job)
    plan = spec.plan(job)
    assert "Ray" in plan[0] and "OpenRLHF" in plan[0] and "'drpo'" in plan[0], plan
    loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("OK")
    """
)


def test_package_imports_and_plans_without_openrlhf_vllm_deepspeed_or_ray():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("OK")


def test_a_blocked_import_really_fails():
    probe = SCRIPT.split("from pathlib import Path")[0] + "import openrlhf\n"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "blocked for this test" in done.stderr
