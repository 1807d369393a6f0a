"""The OpenRLHF runner: OpenRLHF 0.11.2's Ray PPO trainer (vLLM rollouts, DeepSpeed ZeRO) on GPUs (or on the CPU),
with the advantage step done by the registry estimator and rewards by the suite's reward code.

``RUNNER`` is what ``rlbench_med.runners.base.RUNNERS`` resolves ``"openrlhf"`` to. This package
imports without OpenRLHF, Ray's trainer pieces or vLLM (they are imported inside functions), so
``--dry-run`` plans and the CPU tests work on any machine. Files:

- ``config.py``: :class:`OpenRLHFConfig`, every knob; ``flags.py``: the config -> OpenRLHF flag table;
- ``data.py``: suite samples -> OpenRLHF prompt JSONL (and back); ``reward.py``: ``reward_func``;
- ``hook.py``: ``Experience`` batches -> ``AdvantageInputs`` -> estimator -> advantages/returns;
- ``trainer.py``: our Ray trainer on ``BasePPOTrainer``; ``launch.py``: the Ray driver entry point;
- ``runner.py``: ``check``/``preflight``/``prepare``/``run``/``plan`` for the sweep;
- ``cpu.py``: ``device=cpu``, the same pipeline without GPUs (the patches it needs, named);
- ``tiny_model.py``: a tiny random Qwen2 chat model for the tests and the GPU check.
"""

from rlbench_med.runners.base import RunnerSpec
from rlbench_med.runners.openrlhf.config import OpenRLHFConfig
from rlbench_med.runners.openrlhf.runner import check, plan, preflight, prepare, run

RUNNER = RunnerSpec(
    name="openrlhf",
    description="OpenRLHF 0.11.2 on Ray (vLLM rollouts, DeepSpeed ZeRO) with the registry's advantage step; GPU clusters, or device=cpu for tiny models",
    config_cls=OpenRLHFConfig,
    check=check,
    prepare=prepare,
    run=run,
    plan=plan,
    preflight=preflight,
)

__all__ = ["RUNNER", "OpenRLHFConfig"]
