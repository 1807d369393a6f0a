"""Shared fixtures: hand-built samples (with a mask PNG) and OpenRLHF's real ``Experience`` class."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlbench_med.suites.data import Sample

CLASSES = {
    "cxr": ("Normal", "Pneumonia", "Effusion"),
    "dermoscopy": ("Nevus", "Melanoma"),
    "fundus": ("DR", "No DR"),
}
DOMAINS = tuple(CLASSES)


def openrlhf_experience() -> type:
    """OpenRLHF's ``Experience`` (``pip install --no-deps openrlhf==0.11.2`` + pylatexenc).

    Skips when it is missing on a developer machine; in CI (``CI`` set) a missing install fails,
    so the adapter tests cannot be skipped silently there.
    """
    try:
        from openrlhf.trainer.ppo_utils import Experience
    except ImportError as exc:
        if os.environ.get("CI"):
            raise AssertionError(f"CI must install OpenRLHF's CPU pieces (.ci/run): {exc}") from exc
        pytest.skip(f"openrlhf not importable: {exc}")
    return Experience


@pytest.fixture
def experience_cls() -> type:
    return openrlhf_experience()


def make_samples(root: Path, n: int = 6, seed: int = 0) -> list[Sample]:
    """``n`` samples cycling over three domains; every third has a mask PNG, every third a box."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        domain = DOMAINS[i % 3]
        classes = CLASSES[domain]
        image = root / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(image)
        mask_path = None
        bbox = None
        if i % 3 == 1:
            mask = np.zeros((32, 48), dtype=np.uint8)
            mask[8:20, 10:30] = 255
            mask_path = root / f"mask{i}.png"
            Image.fromarray(mask).save(mask_path)
        elif i % 3 == 2:
            bbox = (4.0, 4.0, 20.0, 16.0)
        out.append(
            Sample(
                uid=f"train:{i + 1}",
                problem=f"<image>\nCase {i}: what is the diagnosis?",
                labels=(classes[int(rng.integers(len(classes)))],),
                domain=domain,
                dataset=f"{domain.upper()}-DS",
                task=f"{domain.upper()}-DS",
                classes=classes,
                images=(image,),
                segmentation_path=mask_path,
                bbox=bbox,
                image_size=(48, 32),
            )
        )
    return out


@pytest.fixture
def samples(tmp_path: Path) -> list[Sample]:
    return make_samples(tmp_path)


def require_openrlhf_stack() -> None:
    """OpenRLHF's real trainer code: openrlhf 0.11.2 with vllm, ray, deepspeed (``scripts/openrlhf/install_cpu_stack.sh``).

    Skips with the install hint on a developer machine without it; in CI (``CI`` set) it fails.
    """
    try:
        import openrlhf.cli.train_ppo_ray  # noqa: F401  (imports vLLM, DeepSpeed and flash_attn's helpers)
    except ImportError as exc:
        hint = f"OpenRLHF's CPU stack is missing ({exc}): bash scripts/openrlhf/install_cpu_stack.sh"
        if os.environ.get("CI"):
            raise AssertionError(f"CI must install it (.ci/run): {hint}") from exc
        pytest.skip(hint)


@contextmanager
def local_ray(**resources: object) -> Iterator[None]:
    """A local Ray instance in this process with ``resources`` (``num_cpus=``, ``num_gpus=``), shut down after.

    ``ray.init`` installs its own SIGTERM handler and ``ray.shutdown`` leaves it; the handler found
    before is put back, so later tests (the CLI's signal handling) see this process's own.
    """
    import ray

    previous = signal.getsignal(signal.SIGTERM)
    ray.init(include_dashboard=False, log_to_driver=False, **resources)
    try:
        yield
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, previous)


class _Validated(Exception):
    def __init__(self, parsed: object) -> None:
        super().__init__("validated")
        self.parsed = parsed


def openrlhf_main_args(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> object:
    """Run OpenRLHF's real ``train_ppo_ray`` ``__main__`` (parser, then every check) on ``argv``.

    Stops where ``train()`` would start Ray work: its ``get_strategy(args)`` call; returns the
    validated, hierarchical args. Its assertions and parser errors propagate.
    """
    import runpy
    import sys

    import openrlhf.utils
    import ray

    def capture(args: object) -> None:
        raise _Validated(args)

    with monkeypatch.context() as patch:
        patch.setattr(openrlhf.utils, "get_strategy", capture)
        patch.setattr(ray, "is_initialized", lambda: True)
        patch.setattr(sys, "argv", ["train_ppo_ray", *argv])
        with pytest.raises(_Validated) as caught:
            runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")
    return caught.value.parsed
