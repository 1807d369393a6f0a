"""Float64 loop versions of the estimators, written from their documented formulas (test oracles).

Plain Python and NumPy over explicit loops, sharing no code with ``rlbench_med.algorithms``: each
function takes :class:`Plain` (the inputs as float64 arrays) and returns ``(advantages,
returns)``, both ``[B, T]`` float64 and zero off the mask. The eps terms follow the estimators'
docstrings: relative to the magnitude (largest |value|) of the data each statistic is taken over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlbench_med.algorithms import AdvantageInputs

EPS = 1e-6
WHITEN_EPS = 1e-8


@dataclass(frozen=True)
class Plain:
    """:class:`AdvantageInputs` as float64 NumPy arrays and Python lists."""

    rewards: np.ndarray
    mask: np.ndarray
    groups: list[int]
    domains: list[int]
    token_rewards: np.ndarray | None
    values: np.ndarray | None
    baseline_rewards: np.ndarray | None
    old_logprobs: np.ndarray | None
    ref_logprobs: np.ndarray | None

    @classmethod
    def of(cls, inputs: AdvantageInputs) -> Plain:
        def arr(x: object) -> np.ndarray | None:
            return None if x is None else np.array(x.tolist(), dtype=np.float64)  # type: ignore[attr-defined]

        return cls(
            rewards=arr(inputs.rewards),  # type: ignore[arg-type]
            mask=np.array(inputs.response_mask.tolist()) != 0,
            groups=inputs.group_ids.tolist(),
            domains=inputs.domains.tolist(),
            token_rewards=arr(inputs.token_rewards),
            values=arr(inputs.values),
            baseline_rewards=arr(inputs.baseline_rewards),
            old_logprobs=arr(inputs.old_logprobs),
            ref_logprobs=arr(inputs.ref_logprobs),
        )

    def members(self) -> dict[int, list[int]]:
        """Group id -> rollout indices."""
        out: dict[int, list[int]] = {}
        for i, g in enumerate(self.groups):
            out.setdefault(g, []).append(i)
        return out


def _std(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def _on_tokens(per_rollout: list[float], mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape)
    for i, v in enumerate(per_rollout):
        for t in range(mask.shape[1]):
            if mask[i, t]:
                out[i, t] = v
    return out


def _same(adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return adv, adv


def grpo_per_rollout(b: Plain, std_norm: bool = True) -> list[float]:
    """(R_i - mean_q) / (std_q + eps max_q |R|) (0 for 0 / 0); without std_norm R_i - mean_q."""
    out = [0.0] * len(b.groups)
    for idx in b.members().values():
        xs = [float(b.rewards[i]) for i in idx]
        mean = sum(xs) / len(xs)
        den = _std(xs) + EPS * max(abs(x) for x in xs)
        for i, x in zip(idx, xs):
            if not std_norm:
                out[i] = x - mean
            else:
                out[i] = (x - mean) / den if den > 0 else 0.0
    return out


def grpo(b: Plain, std_norm: bool = True) -> tuple[np.ndarray, np.ndarray]:
    return _same(_on_tokens(grpo_per_rollout(b, std_norm), b.mask))


def rloo(b: Plain) -> tuple[np.ndarray, np.ndarray]:
    """R_i - mean of the other rollouts of the group."""
    out = [0.0] * len(b.groups)
    for idx in b.members().values():
        for i in idx:
            others = [float(b.rewards[j]) for j in idx if j != i]
            out[i] = float(b.rewards[i]) - sum(others) / len(others)
    return _same(_on_tokens(out, b.mask))


def remax(b: Plain) -> tuple[np.ndarray, np.ndarray]:
    assert b.baseline_rewards is not None
    return _same(_on_tokens([float(r - g) for r, g in zip(b.rewards, b.baseline_rewards)], b.mask))


def whiten(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(x - mean) / sqrt(var + 1e-8 max|x|^2) over the masked tokens (var unbiased, 0 below 2 tokens)."""
    on = [float(x[i, t]) for i in range(x.shape[0]) for t in range(x.shape[1]) if mask[i, t]]
    if not on:
        return np.zeros(x.shape)
    mean = sum(on) / len(on)
    var = _std(on) ** 2
    den = math.sqrt(var + WHITEN_EPS * max(abs(v) for v in on) ** 2)
    out = np.zeros(x.shape)
    for i in range(x.shape[0]):
        for t in range(x.shape[1]):
            if mask[i, t] and den > 0:
                out[i, t] = (float(x[i, t]) - mean) / den
    return out


def token_rewards(b: Plain) -> np.ndarray:
    """``token_rewards`` on the mask, else R_i on the last response token."""
    r = np.zeros(b.mask.shape)
    for i in range(r.shape[0]):
        on = [t for t in range(r.shape[1]) if b.mask[i, t]]
        if b.token_rewards is not None:
            for t in on:
                r[i, t] = b.token_rewards[i, t]
        elif on:
            r[i, on[-1]] = b.rewards[i]
    return r


def discounted(r: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1} along each row, on the mask."""
    out = np.zeros(r.shape)
    for i in range(r.shape[0]):
        running = 0.0
        for t in reversed(range(r.shape[1])):
            running = r[i, t] + gamma * running
            out[i, t] = running if mask[i, t] else 0.0
    return out


def reinforce_pp(b: Plain, gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    returns = discounted(token_rewards(b), b.mask, gamma)
    return whiten(returns, b.mask), returns


def reinforce_pp_baseline(b: Plain) -> tuple[np.ndarray, np.ndarray]:
    scores = _on_tokens(grpo_per_rollout(b, std_norm=False), b.mask)
    return whiten(scores, b.mask), scores


def ppo(b: Plain, gamma: float = 1.0, lam: float = 1.0, whitened: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """GAE: delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lam A_{t+1}; returns A + V."""
    assert b.values is not None
    r = token_rewards(b)
    adv, returns = np.zeros(r.shape), np.zeros(r.shape)
    for i in range(r.shape[0]):
        running, next_value = 0.0, 0.0
        for t in reversed(range(r.shape[1])):
            v = float(b.values[i, t]) if b.mask[i, t] else 0.0
            running = float(r[i, t]) + gamma * next_value - v + gamma * lam * running
            next_value = v
            if b.mask[i, t]:
                adv[i, t], returns[i, t] = running, running + v
    return (whiten(adv, b.mask) if whitened else adv), returns


def drpo_without_clusters(
    b: Plain, *, one_cluster_per_domain: bool, kl: bool, quantile: float = 0.75, clamp: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """DRPO of one batch when there is no clustering to do.

    ``one_cluster_per_domain`` (``k_max=1``): the domain is its only cluster, so T_c = T_g and
    s = A^ / T_g^2; otherwise (``drpo_domain_only``) T_c = 1 and s = A^ / T_g. M = max |R| (1 if
    all are 0); T_g = max(sqrt(N_g) mu_g, eps M); the eps of s is eps u, u = 1 / M per temperature.
    """
    a_hat = grpo_per_rollout(b)
    magnitude = max(abs(float(r)) for r in b.rewards) or 1.0
    temps = 2 if one_cluster_per_domain else 1
    u = magnitude**-temps
    members = b.members()
    t_domain: dict[int, float] = {}
    for d in set(b.domains):
        questions = [idx for idx in members.values() if b.domains[idx[0]] == d]
        rewards = [float(b.rewards[i]) for idx in questions for i in idx]
        t_domain[d] = max(math.sqrt(len(questions)) * sum(rewards) / len(rewards), EPS * magnitude)
    s = [a / t_domain[d] ** temps for a, d in zip(a_hat, b.domains)]
    if kl:
        assert b.old_logprobs is not None and b.ref_logprobs is not None
        kls = []
        for i in range(len(s)):
            total = 0.0
            for t in range(b.mask.shape[1]):
                if b.mask[i, t]:
                    x = float(b.ref_logprobs[i, t] - b.old_logprobs[i, t])
                    total += min(math.exp(x) - x - 1, clamp)
            kls.append(total)
        z = [abs(v) * k for v, k in zip(s, kls)]
        tau = max(float(np.quantile(z, quantile)), EPS * u)
        s = [v * tau / (zi + tau) for v, zi in zip(s, z)]
    den = _std(s) + EPS * u
    return _same(_on_tokens([v / den for v in s], b.mask))
