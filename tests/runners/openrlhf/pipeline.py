"""OpenRLHF 0.11.2's real Ray pipeline on the CPU (``device=cpu``), built in the test process.

:func:`cpu_ray` starts a local Ray with logical GPUs and the CPU patches of
:mod:`rlbench_med.runners.openrlhf.cpu` in every worker (what the launch does); :func:`build_groups`
then starts what ``train_ppo_ray.train()`` starts: one vLLM ``RolloutRayActor`` (vLLM's CPU build)
through ``create_vllm_engines``, and ``RayActorGroup``\\ s of ``PolicyModelActor`` (DeepSpeed, CPU
accelerator) and ``ReferenceModelActor``. :func:`engine_logprobs` and :func:`actor_logprobs` read
the log probs of one fixed response from the engine and from the actor, so tests can check that
the rollouts come from the weights the actor trains.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@contextmanager
def cpu_ray(num_gpus: int) -> Iterator[None]:
    """A local Ray with ``num_gpus`` logical GPUs, the CPU environment and patches in every worker and here."""
    import ray

    from rlbench_med.runners.openrlhf import cpu

    saved = dict(os.environ)
    previous = signal.getsignal(signal.SIGTERM)
    os.environ.update(cpu.environment())
    cpu.install()  # our trainer runs in this process in the trainer tests
    ray.init(num_gpus=num_gpus, num_cpus=num_gpus + 1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": cpu.environment(), "worker_process_setup_hook": f"{cpu.__name__}.install"})
    try:
        yield
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, previous)
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Groups:
    """What ``train()`` hands ``PPOTrainer``: the engines and the model groups, plus the strategy.

    ``ckpt`` is the actors' ``--ckpt.path``: they save and load there, whatever a trainer's own args say.
    """

    strategy: Any
    engines: list[Any]
    actor: Any
    ref: Any | None
    ckpt: Path


def build_groups(args: Any, model: str, max_steps: int) -> Groups:
    """Start the engine and the model groups as ``train_ppo_ray.train()`` does for ``colocate=false``."""
    import ray
    from openrlhf.trainer.ray import create_vllm_engines
    from openrlhf.trainer.ray.launcher import RayActorGroup, ReferenceModelActor
    from openrlhf.trainer.ray.ppo_actor import PolicyModelActor
    from openrlhf.utils import get_strategy

    strategy = get_strategy(args)
    engines = create_vllm_engines(
        args.vllm.num_engines, args.vllm.tensor_parallel_size, model, args.train.seed,
        args.train.full_determinism_enable, args.vllm.enable_prefix_caching, args.vllm.enforce_eager,
        args.data.max_len, None, args.vllm.gpu_memory_utilization, args.vllm.enable_sleep, None,
        remote_rm_url=args.reward.remote_url,
    )
    actor = RayActorGroup(args.actor.num_nodes, args.actor.num_gpus_per_node, PolicyModelActor)
    ref = None
    if args.algo.kl.init_coef > 0:
        ref = RayActorGroup(args.ref.num_nodes, args.ref.num_gpus_per_node, ReferenceModelActor)
    refs = actor.async_init_model_from_pretrained(strategy, model, max_steps, engines)
    if ref is not None:
        refs += ref.async_init_model_from_pretrained(strategy, model)
    ray.get(refs)
    return Groups(strategy=strategy, engines=engines, actor=actor, ref=ref, ckpt=Path(args.ckpt.path))


def engine_logprobs(engine: Any, ids: Sequence[int], start: int) -> torch.Tensor:
    """vLLM's log prob of each token ``ids[start:]`` given the tokens before it (its ``prompt_logprobs``)."""
    import ray
    from vllm import SamplingParams

    out = ray.get(engine.generate.remote(list(ids), SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)))
    return torch.tensor([out.prompt_logprobs[i][ids[i]].logprob for i in range(start, len(ids))])


def actor_logprobs(group: Any, ids: Sequence[int], start: int) -> torch.Tensor:
    """``PolicyModelActor.forward``'s log probs of ``ids[start:]`` (OpenRLHF's action-mask layout)."""
    import ray

    sequences = torch.tensor([list(ids)])
    action_mask = torch.zeros(1, len(ids) - 1, dtype=torch.bool)
    action_mask[0, start - 1 :] = True  # column c of the action mask scores token c + 1
    attention = torch.ones_like(sequences)
    # one list entry per micro-batch, as the experience maker calls it
    [[out]] = ray.get(group.async_run_method_batch("forward", sequences=[sequences], action_mask=[action_mask],
                                                   attention_mask=[attention]))
    return out[0][start - 1 :].float()
