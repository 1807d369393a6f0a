"""The policy-gradient loss pieces, as pure functions (token-level, masked)."""

from __future__ import annotations

from torch import Tensor

from rlbench_med.runners.local.policy import masked_mean


def clipped_surrogate(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_low: float,
                      clip_high: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped objective as a loss, token-mean over ``mask`` (all ``[B, T]``).

    ``r = exp(logp - old_logp)``; loss ``= -mean_t min(r A, clip(r, 1 - clip_low, 1 + clip_high) A)``.
    Returns (loss, fraction of masked tokens whose ratio lies outside the clip range).
    """
    ratio = (logp - old_logp).exp()
    surrogate = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages
    outside = ((ratio < 1.0 - clip_low) | (ratio > 1.0 + clip_high)).to(mask.dtype)
    return -masked_mean(surrogate.minimum(clipped), mask), masked_mean(outside, mask).detach()


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(pi || ref): ``exp(ref - logp) - (ref - logp) - 1`` (>= 0)."""
    delta = ref_logp - logp
    return delta.exp() - delta - 1.0
