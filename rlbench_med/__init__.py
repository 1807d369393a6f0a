"""rlbench-med: compare RL advantage estimators for clinical multimodal diagnosis.

``run_sweep`` and ``load_results`` (:mod:`rlbench_med.api`) run a sweep and read its results as
pandas DataFrames from Python; they are imported on first use, so ``import rlbench_med`` stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_results", "run_sweep"]


def __getattr__(name: str) -> Any:
    if name in ("run_sweep", "load_results"):
        from rlbench_med import api

        return getattr(api, name)
    raise AttributeError(f"module 'rlbench_med' has no attribute {name!r}")
