"""Builders of small advantage batches for the estimator tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlbench_med.algorithms import AdvantageInputs


def batch(
    groups: Sequence[Sequence[float]],
    *,
    domains: Sequence[int] | None = None,
    domain_names: tuple[str, ...] = ("a",),
    t_len: int = 3,
    lengths: Sequence[int] | None = None,
    **optional: torch.Tensor,
) -> AdvantageInputs:
    """Rollouts listed prompt by prompt: ``groups[q]`` are the rewards of prompt q's rollouts.

    ``domains[q]`` is prompt q's domain index (default 0); ``lengths[i]`` the response length of
    rollout i (default ``t_len``). Extra keyword tensors are passed through (values, ...).
    """
    rewards = [r for g in groups for r in g]
    group_ids = [q for q, g in enumerate(groups) for _ in g]
    dom = [(domains[q] if domains is not None else 0) for q, g in enumerate(groups) for _ in g]
    b = len(rewards)
    lens = lengths if lengths is not None else [t_len] * b
    mask = (torch.arange(t_len)[None, :] < torch.tensor(list(lens), dtype=torch.int64).reshape(b, 1)).float()
    return AdvantageInputs(
        rewards=torch.tensor(rewards, dtype=torch.float32).reshape(b),
        response_mask=mask.reshape(b, t_len),
        group_ids=torch.tensor(group_ids, dtype=torch.int64).reshape(b),
        domains=torch.tensor(dom, dtype=torch.int64).reshape(b),
        domain_names=domain_names,
        **optional,
    )


def full_inputs(inputs: AdvantageInputs, seed: int = 0) -> AdvantageInputs:
    """``inputs`` with every optional input filled with seeded random values."""
    gen = torch.Generator().manual_seed(seed)
    b, t = inputs.response_mask.shape
    old = -torch.rand(b, t, generator=gen) * 2
    return AdvantageInputs(
        rewards=inputs.rewards,
        response_mask=inputs.response_mask,
        group_ids=inputs.group_ids,
        domains=inputs.domains,
        domain_names=inputs.domain_names,
        token_rewards=None,
        values=torch.randn(b, t, generator=gen),
        baseline_rewards=torch.rand(b, generator=gen),
        old_logprobs=old,
        ref_logprobs=old + 0.3 * torch.randn(b, t, generator=gen),
    )


def random_batch(prompts: int, n: int, n_domains: int, t_len: int, seed: int, levels: int = 3) -> AdvantageInputs:
    """Random rewards in {0, 1/(levels-1), ..., 1}, random domains and lengths, every optional input."""
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, levels, (prompts, n), generator=gen).float() / (levels - 1)
    dom = torch.randint(0, n_domains, (prompts,), generator=gen)
    lengths = torch.randint(1, t_len + 1, (prompts * n,), generator=gen)
    base = batch(
        rewards.tolist(),
        domains=dom.tolist(),
        domain_names=tuple(f"d{i}" for i in range(n_domains)),
        t_len=t_len,
        lengths=lengths.tolist(),
    )
    return full_inputs(base, seed)
