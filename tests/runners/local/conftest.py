"""Shared fixtures: a tiny data directory, a private cache dir and a tiny-config job factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from rlbench_med.runners.base import Job
from rlbench_med.runners.config import LocalConfig
from tests.runners.local.tiny_data import write_tiny_data

TINY = dict(steps=4, prompts_per_step=4, n_rollouts=3, eval_every=2, checkpoint_every=2, sft_steps=10,
            sft_batch_size=8, d_model=32, n_layers=1, n_heads=2, eval_inputs=("full",), progress=False,
            device="cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_data(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def make_job(tiny_root: Path, tmp_path: Path) -> Callable[..., Job]:
    def make(algo: str = "grpo", seed: int = 0, out: Path | None = None, **overrides: Any) -> Job:
        config = LocalConfig(**{**TINY, **overrides})
        return Job(suite="tiny", algo=algo, estimator=algo, seed=seed, config=config, data_dir=tiny_root,
                   out_dir=out or tmp_path / "out")

    return make
