"""The local runner: PyTorch on the CPU (or one GPU), the builtin multimodal policy or a local HF LM.

``RUNNER`` is what ``rlbench_med.runners.base.RUNNERS`` resolves ``"local"`` to.
"""

from rlbench_med.runners.base import RunnerSpec
from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local.runner import TUNABLE, check, identity, plan, prepare, run, threads

RUNNER = RunnerSpec(
    name="local",
    description="PyTorch on CPU or one GPU: modality encoders + small transformer policy (or hf:/dir), shared SFT base",
    config_cls=LocalConfig,
    check=check,
    prepare=prepare,
    run=run,
    plan=plan,
    evaluates_base=True,
    identity=identity,
    threads=threads,
    validation_only=True,
    tunable=TUNABLE,
)

__all__ = ["RUNNER", "LocalConfig"]
