"""The Ray driver of one job: ``python -m rlbench_med.runners.openrlhf.launch --rlbench.spec FILE <OpenRLHF flags>``.

It joins (or starts) Ray, puts our trainer class in the place where OpenRLHF 0.11.2's
``train_ppo_ray.train`` looks up ``PPOTrainer`` (``openrlhf.trainer.ppo_trainer.PPOTrainer``,
imported inside ``train`` at call time, in this driver process), then runs OpenRLHF's own
command line (``openrlhf.cli.train_ppo_ray`` as ``__main__``) on the remaining flags, so its
argument parsing, checks, placement groups, vLLM engines and DeepSpeed actors are untouched.

Between OpenRLHF's argument checks and its first Ray wait (its call of ``get_strategy``) the
launch refuses flags that bypass our trainer and a Ray cluster without the GPUs the flags need,
and bounds every startup wait (:mod:`~rlbench_med.runners.openrlhf.startup`). Any error ends the
launch with the traceback and then one line starting with ``rlbench-med launch error:``, which
the runner reports.

With ``device=cpu`` in the run spec the launch starts its local Ray with logical GPUs (as many as
the flags ask for) and applies :mod:`~rlbench_med.runners.openrlhf.cpu`'s patches here and, through
Ray's ``worker_process_setup_hook``, in every Ray worker.

The trainer actor is pinned to this node: it writes the metrics and predictions files the runner
reads here. On a multi-node cluster run this on a node of the cluster (the head node) with
``ray_address=auto``; prompts, images and the output folder must be on a filesystem every node sees.
"""

from __future__ import annotations

import os
import runpy
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from rlbench_med.runners.openrlhf.flags import SPEC_FLAG
from rlbench_med.runners.openrlhf.guard import bypassing
from rlbench_med.runners.openrlhf.runspec import RunSpec
from rlbench_med.runners.openrlhf.startup import BoundedWaits, LaunchError, error_line, require_gpus


def split_argv(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``(spec path, OpenRLHF flags)`` from the command line; the spec flag may sit anywhere."""
    rest: list[str] = []
    spec: str | None = None
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == SPEC_FLAG:
            if i + 1 >= len(items):
                raise SystemExit(f"{SPEC_FLAG} needs a file argument")
            spec = items[i + 1]
            i += 2
            continue
        if item.startswith(SPEC_FLAG + "="):
            spec = item.split("=", 1)[1]
        else:
            rest.append(item)
        i += 1
    if spec is None:
        raise SystemExit(f"missing {SPEC_FLAG} FILE (the run spec the rlbench runner writes)")
    return spec, rest


class _Method:
    """A method of the trainer's actor handle whose ``.remote()`` also tells the waits what it started."""

    def __init__(self, method: Any, on_call: Callable[[Any], None]) -> None:
        self._method = method
        self._on_call = on_call

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        ref = self._method.remote(*args, **kwargs)
        self._on_call(ref)
        return ref


class _TrainerHandle:
    """The trainer actor's handle as ``train()`` uses it: ``get_max_steps`` is a bounded startup wait
    (the actor starting, reading the tokenizer and the prompts), ``fit`` ends the startup phase."""

    def __init__(self, handle: Any, waits: BoundedWaits) -> None:
        self._handle = handle
        self._waits = waits

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._handle, name)
        if name == "fit":
            return _Method(method, lambda ref: self._waits.training_started())
        if name == "get_max_steps":
            return _Method(method, lambda ref: self._waits.labels.__setitem__(
                ref, "the rlbench trainer actor to start (tokenizer, prompt dataset)"))
        return method


class _TrainerClass:
    """Stands where ``train()`` looks up ``PPOTrainer``; ``.remote()`` starts our trainer actor."""

    def __init__(self, actor_class: Any, waits: BoundedWaits) -> None:
        self._actor_class = actor_class
        self._waits = waits

    def remote(self, *args: Any, **kwargs: Any) -> _TrainerHandle:
        return _TrainerHandle(self._actor_class.remote(*args, **kwargs), self._waits)


def launch(spec: RunSpec, openrlhf_argv: Sequence[str]) -> None:
    """Join (or start) Ray, put our trainer and the startup checks in place, run OpenRLHF's command line."""
    import ray

    # The same environment OpenRLHF's train() gives Ray when it starts Ray itself.
    env = {
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"),
        "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN"),
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": os.environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"),
    }
    runtime_env: dict[str, Any] = {"env_vars": env}
    resources: dict[str, Any] = {}
    if spec.device == "cpu":
        from rlbench_med.runners.openrlhf import cpu
        from rlbench_med.runners.openrlhf.guard import parse_flags
        from rlbench_med.runners.openrlhf.startup import gpus_needed

        os.environ.update(cpu.environment())
        env.update(cpu.environment())
        runtime_env["worker_process_setup_hook"] = f"{cpu.__name__}.install"
        cpu.install()
        if not spec.ray_address:  # logical GPUs: Ray places OpenRLHF's actors as on a GPU node
            needed, _ = gpus_needed(parse_flags(openrlhf_argv))
            resources = {"num_gpus": needed, "num_cpus": needed + 1, "include_dashboard": False}
    ray.init(address=spec.ray_address or None, runtime_env=runtime_env, **resources)
    where = f"at {spec.ray_address}" if spec.ray_address else f"started by this launch on {socket.gethostname()}"

    import openrlhf.trainer.ppo_trainer as ppo_trainer_module
    import openrlhf.utils as openrlhf_utils
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from rlbench_med.runners.openrlhf.trainer import make_trainer_class

    waits = BoundedWaits(spec.startup_timeout_s)
    get_strategy = openrlhf_utils.get_strategy

    def checked_get_strategy(args: Any) -> Any:
        # train() calls this first, after __main__ has parsed and validated every flag and
        # before its first placement group: the place to refuse a launch that would hang.
        found = bypassing(args)
        if found:
            raise LaunchError(f"{', '.join(found)} would bypass the rlbench trainer; launch through the runner")
        require_gpus(args, float(ray.cluster_resources().get("GPU", 0.0)), where)
        waits.install()
        return get_strategy(args)

    openrlhf_utils.get_strategy = checked_get_strategy  # train_ppo_ray imports it from here when it runs
    node_id = ray.get_runtime_context().get_node_id()
    trainer_actor = ray.remote(make_trainer_class(spec)).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    )
    ppo_trainer_module.PPOTrainer = _TrainerClass(trainer_actor, waits)  # looked up by train() at call time

    sys.argv = ["openrlhf.cli.train_ppo_ray", *openrlhf_argv]
    runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=True)


def main(argv: Sequence[str] | None = None) -> None:
    spec_path, openrlhf_argv = split_argv(sys.argv[1:] if argv is None else argv)
    spec = RunSpec.read(spec_path)
    try:
        launch(spec, openrlhf_argv)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the reporting boundary: full traceback to the log, then one line for the runner
        traceback.print_exc()
        print(error_line(exc), file=sys.stderr, flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
