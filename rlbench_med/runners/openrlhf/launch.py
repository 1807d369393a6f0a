"""The Ray driver of one job: ``python -m rlbench_med.runners.openrlhf.launch --rlbench.spec FILE <OpenRLHF flags>``.

It joins (or starts) Ray, puts our trainer class in the place where OpenRLHF 0.11.2's
``train_ppo_ray.train`` looks up ``PPOTrainer`` (``openrlhf.trainer.ppo_trainer.PPOTrainer``,
imported inside ``train`` at call time, in this driver process), then runs OpenRLHF's own
command line (``openrlhf.cli.train_ppo_ray`` as ``__main__``) on the remaining flags, so its
argument parsing, checks, placement groups, vLLM engines and DeepSpeed actors are untouched.

The trainer actor is pinned to this node: it writes the metrics and predictions files the runner
reads here. On a multi-node cluster run this on a node of the cluster (the head node) with
``ray_address=auto``; prompts, images and the output folder must be on a filesystem every node sees.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Sequence

from rlbench_med.runners.openrlhf.flags import SPEC_FLAG
from rlbench_med.runners.openrlhf.runspec import RunSpec


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


def main(argv: Sequence[str] | None = None) -> None:
    spec_path, openrlhf_argv = split_argv(sys.argv[1:] if argv is None else argv)
    spec = RunSpec.read(spec_path)

    import openrlhf.trainer.ppo_trainer as ppo_trainer_module
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from rlbench_med.runners.openrlhf.trainer import make_trainer_class

    # The same environment OpenRLHF's train() gives Ray when it starts Ray itself.
    env = {
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"),
        "NCCL_DEBUG": os.environ.get("NCCL_DEBUG", "WARN"),
        "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": os.environ.get("RAY_ENABLE_ZERO_COPY_TORCH_TENSORS", "1"),
    }
    ray.init(address=spec.ray_address or None, runtime_env={"env_vars": env})
    node_id = ray.get_runtime_context().get_node_id()
    trainer_actor = ray.remote(make_trainer_class(spec)).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    )
    ppo_trainer_module.PPOTrainer = trainer_actor  # looked up by train_ppo_ray.train() at call time

    sys.argv = ["openrlhf.cli.train_ppo_ray", *openrlhf_argv]
    runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
