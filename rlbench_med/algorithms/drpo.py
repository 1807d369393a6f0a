"""DRPO, Domain-aware Relative Policy Optimization (QoQ-Med, arXiv 2506.00711, Sec. 3.3 and App. B).

M is the reward magnitude: the largest |R| the statistics of step 3 are taken over (the batch,
or ``drpo_release``'s history), 1 if every such reward is 0. Every eps is the published one in
units of M: eps M for quantities in reward units, eps u for those in the units of s, u = 1 / M^2
(1 / M without clustering, where T_c = 1). For rollout i of question q in domain g:

1. A^_i = GRPO advantage (R_i - mean_q) / (std_q + eps M_q), M_q = max_{j in q} |R_j| (see
   :mod:`rlbench_med.algorithms.grpo`).
2. Each question's reward vector v_q (its n rollout rewards, in batch order) is clustered per
   domain with K-means; k by the elbow rule (see :mod:`rlbench_med.algorithms.kmeans`).
3. T_g = max(sqrt(N_g) mu_g, eps M) and T_c = max(sqrt(N_c) mu_c, eps M), with N the number of
   questions and mu the mean reward of the domain / cluster; s_i = A^_i / (T_g T_c), so rarer
   and harder (lower-reward) domains and clusters get more weight.
4. KL-aware damping (optional): KL_i = sum_t clamp(exp(ref - old) - (ref - old) - 1, -c, c) over
   response tokens, z_i = |s_i| KL_i, tau = max(q-quantile of z, eps u),
   s_i <- s_i tau / (z_i + tau).
5. A_i = s_i / (std of s over the batch + eps u), broadcast to the response tokens.

Scale: rewards c * R (c > 0) give the same advantages for every finite float32 R, since s
scales as 1 / c^2 (1 / c without clustering) and every eps term with it; with rewards of
magnitude 1 the numbers are the published ones. (The published eps is absolute, so there T_g
and T_c sit at their floor for rewards below about 1e-6, and step 5 shrinks A toward 0 for
rewards above about 1e2.) Statistics are float64, which holds s for any float32 rewards (about
1e-77 .. 1e103). The diagnostics ``drpo/<g>/T_g`` and ``drpo/kl_tau`` scale with c and u.

Diagnostics per domain g present in the batch: ``drpo/<g>/k`` (chosen k), ``drpo/<g>/T_g`` and
``drpo/<g>/scale`` = sum |A_i| / sum |A^_i| over g's rollouts (0 when all A^_i are 0); with
damping also ``drpo/kl_tau``.

Presets: ``drpo`` (all of it), ``drpo_nokl`` (no damping), ``drpo_domain_only`` (no clustering,
T_c = 1; no damping) and ``drpo_release``, the published code's semantics: the statistics of
step 3 come from each domain's accumulated *history* of question vectors across steps (this
estimator is stateful), N_g is the history size, and the domain mean is
mu_g = sum_c (mu_c / N_c) / sum_c (1 / N_c) over the domain's clusters. Unlike the published
code, T_c is floored there too (the published code divides by zero when a cluster's mean
reward is 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from rlbench_med.algorithms.base import AdvantageInputs, AdvantageOutput, Estimator, InputError, register_estimator
from rlbench_med.algorithms.group_stats import EPS, GroupStats, broadcast_to_tokens
from rlbench_med.algorithms.grpo import grpo_scores
from rlbench_med.algorithms.kmeans import sklearn_elbow_kmeans, unique_rows, weighted_kmeans_elbow


@dataclass(frozen=True)
class DRPOConfig:
    """Options of DRPO and its presets."""

    k_max: int = 10
    """Largest number of clusters tried per domain (1: one cluster per domain, so T_c = T_g)."""
    tol: float = 0.1
    """Elbow rule: k is the first k >= 2 whose inertia drop is below tol x the previous drop."""
    eps: float = EPS
    """In units of the reward magnitude M: floor of T_g and T_c (eps M), added to the group std
    (eps x the group's max |R|), floor of tau and added to the final batch std (eps u, u = 1 / M^2
    or 1 / M without clusters; see the module docstring)."""
    clusters: bool = True
    """Cluster questions within each domain (false: T_c = 1, the domain-only ablation; with history
    the domain mean is then the plain mean reward of the history)."""
    kl_damping: bool = True
    """Damp rollouts with large |s| x KL(old || ref); needs old_logprobs and ref_logprobs."""
    kl_quantile: float = 0.75
    """tau is this quantile of z = |s| x KL over the batch."""
    kl_clamp: float = 10.0
    """Per-token k3 KL estimates are clamped to [-kl_clamp, kl_clamp] (k3 >= 0, so only the top acts)."""
    history: bool = False
    """Statistics over each domain's accumulated question history (the published code; stateful)."""
    history_window: int | None = None
    """With history: keep only the last this-many steps (None keeps every step)."""
    kmeans: Literal["fast", "sklearn"] = "fast"
    """Clustering backend: the deterministic compiled K-means, or scikit-learn refit per k (reference)."""

    def __post_init__(self) -> None:
        if self.k_max < 1:
            raise ValueError(f"k_max must be >= 1, got {self.k_max}")
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0, got {self.tol}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if not 0.0 < self.kl_quantile <= 1.0:
            raise ValueError(f"kl_quantile must be in (0, 1], got {self.kl_quantile}")
        if not self.kl_clamp > 0:
            raise ValueError(f"kl_clamp must be > 0, got {self.kl_clamp}")
        if self.history_window is not None:
            if not self.history:
                raise ValueError("history_window only applies with history=true (drpo_release); drop it or set history=true")
            if self.history_window < 1:
                raise ValueError(f"history_window must be >= 1 step (or none), got {self.history_window}")


def question_vectors(
    rewards: Tensor, stats: GroupStats, domains: Tensor, domain_names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Reward vector and domain of every question.

    Returns ``vectors`` ``[G, n]`` float64 (row q: the rewards of group ``stats.ids[q]`` in batch
    order) and ``q_domain`` ``[G]`` (index into ``domain_names``). Raises :class:`InputError` if
    a group spans two domains or the groups of one domain differ in size.
    """
    index, counts = stats.index.numpy(), stats.counts.numpy()
    b, g = index.shape[0], counts.shape[0]
    order = np.argsort(index, kind="stable")
    sorted_group = index[order]
    start = np.cumsum(counts) - counts
    n = int(counts.max())
    vectors = np.zeros((g, n))
    vectors[sorted_group, np.arange(b) - start[sorted_group]] = rewards.detach().to(torch.float64).numpy()[order]
    sorted_domains = domains.numpy()[order].astype(np.int64, copy=False)
    q_domain = sorted_domains[start]
    spans = sorted_domains != q_domain[sorted_group]
    if spans.any():
        bad = int(stats.ids[int(sorted_group[np.argmax(spans)])])
        raise InputError(f"group {bad} has rollouts in two domains; every rollout of a prompt must carry the prompt's domain")
    if counts.min() != n:  # groups of several sizes: each domain's must agree
        n_dom = len(domain_names)
        lo = np.full(n_dom, n, dtype=np.int64)
        hi = np.zeros(n_dom, dtype=np.int64)
        np.minimum.at(lo, q_domain, counts)
        np.maximum.at(hi, q_domain, counts)
        uneven = np.flatnonzero((lo != hi) & (hi > 0))
        if uneven.size:
            d = int(uneven[0])
            raise InputError(
                f"domain {domain_names[d]!r} has groups of {int(lo[d])} and of {int(hi[d])} rollouts; DRPO compares "
                f"per-question reward vectors, so every prompt of a domain needs the same n_rollouts"
            )
    return vectors, q_domain


def cluster_rows(
    rows: np.ndarray, row_domain: np.ndarray, weights: np.ndarray, k_max: int, tol: float, backend: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster the reward vectors of each domain separately.

    Args:
        rows: ``[M, n]`` reward vectors (repeats allowed).
        row_domain: ``[M]`` domain id of each row.
        weights: ``[M]`` number of questions each row stands for.
    Returns:
        ``labels`` ``[M]``: a cluster id unique across domains (domain id * k_max + cluster),
        ``present`` ``[D]``: the domain ids that have rows, ``k`` ``[D]``: the chosen k of each.
    """
    m = rows.shape[0]
    if m == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if backend == "sklearn":
        present = np.unique(row_domain)
        labels = np.empty(m, dtype=np.int64)
        ks = np.empty(present.shape[0], dtype=np.int64)
        for slot, d in enumerate(present):
            idx = np.nonzero(row_domain == d)[0]
            reps = np.rint(weights[idx]).astype(np.int64)
            expanded = np.repeat(rows[idx], reps, axis=0)
            lab, k, _ = sklearn_elbow_kmeans(expanded, k_max, tol)
            labels[idx] = d * k_max + lab[np.cumsum(reps) - reps]
            ks[slot] = k
        return labels, present, ks
    key = np.concatenate([row_domain[:, None].astype(np.float64), rows], axis=1)
    uniq, inverse = unique_rows(key)
    u_weight = np.bincount(inverse, weights=weights, minlength=uniq.shape[0])
    u_domain = uniq[:, 0].astype(np.int64)  # non-decreasing: the domain is the first sort key
    first = np.empty(u_domain.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(u_domain[1:], u_domain[:-1], out=first[1:])
    present, slot = u_domain[first], np.cumsum(first) - 1
    fit = weighted_kmeans_elbow(uniq[:, 1:], u_weight, slot, present.shape[0], k_max, tol)
    u_label = present[slot] * k_max + fit.labels
    return u_label[inverse], present, fit.k


def linear_quantile(x: np.ndarray, q: float) -> float:
    """``np.quantile(x, q)`` (linear interpolation) of a non-empty 1-D array, via a partial sort."""
    h = (x.shape[0] - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, x.shape[0] - 1)
    part = np.partition(x, (lo, hi))
    a, b, t = float(part[lo]), float(part[hi]), h - lo
    # numpy's interpolation, term for term: from the nearer end, so t = 0 and t = 1 are exact.
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


def reward_magnitude(rewards: np.ndarray) -> float:
    """M = max |R| over ``rewards``, or 1 when they are all 0 (every advantage is then 0, and M
    only has to be positive)."""
    top = float(np.abs(rewards).max()) if rewards.size else 0.0
    return top if top > 0 else 1.0


def _k3(x: float) -> float:
    """The k3 KL estimate of one token, exp(x) - x - 1, in float64 (inf where exp overflows)."""
    return math.expm1(x) - x if x < 700.0 else math.inf


@dataclass(frozen=True)
class _Scales:
    """Per-domain and per-cluster temperatures (indexed by domain id / cluster id), and the reward
    magnitude M they were computed at (their floor is eps M)."""

    t_domain: np.ndarray
    t_cluster: np.ndarray | None
    k: dict[int, int]
    magnitude: float

    @property
    def s_unit(self) -> float:
        """u, the unit of s = A^ / (T_g T_c): 1 / M per temperature (T_c = 1 without clusters)."""
        return self.magnitude ** -(1 if self.t_cluster is None else 2)


@register_estimator("drpo")
class DRPO(Estimator):
    """DRPO with clustering and KL-aware damping (statistics of the current batch)."""

    Config = DRPOConfig
    description = "DRPO: GRPO advantages rescaled by domain and K-means cluster rarity/difficulty, KL-damped"
    min_group_size = 2

    def __init__(self, config: DRPOConfig | None = None, *, name: str | None = None) -> None:
        super().__init__(config, name=name)
        self._reset_history()

    @property
    def requires(self) -> frozenset[str]:
        return frozenset({"old_logprobs", "ref_logprobs"}) if self.config.kl_damping else frozenset()

    # -- the estimator --------------------------------------------------------------------------
    def compute(self, inputs: AdvantageInputs) -> AdvantageOutput:
        cfg = self.config
        mask = inputs.mask
        if inputs.rewards.shape[0] == 0:
            return AdvantageOutput(advantages=torch.zeros_like(mask), returns=torch.zeros_like(mask))
        a_hat, stats = grpo_scores(inputs.rewards, inputs.group_ids, std_norm=True, eps=cfg.eps, groups=inputs.groups)
        vectors, q_domain = question_vectors(inputs.rewards, stats, inputs.domains, inputs.domain_names)
        q_count = stats.counts.numpy()
        if cfg.history:
            q_domain, scales, q_cluster = self._history_scales(vectors, q_domain, q_count, inputs.domain_names)
            names = self._domain_names
        else:
            scales, q_cluster = self._batch_scales(vectors, q_domain, stats.mean.numpy(), q_count, len(inputs.domain_names))
            names = list(inputs.domain_names)
        s_eps = cfg.eps * scales.s_unit

        # Per-rollout arithmetic on [B] arrays runs in numpy (lower per-call overhead than torch).
        rollout_q = stats.index.numpy()
        rollout_dom = q_domain[rollout_q]
        a_hat_np = a_hat.numpy()
        temp = scales.t_domain[rollout_dom]
        if scales.t_cluster is not None:
            temp = temp * scales.t_cluster[q_cluster[rollout_q]]
        s = a_hat_np / temp
        diagnostics: dict[str, float] = {}
        out = torch.empty_like(mask)  # the advantages; scratch space of the KL before that
        if cfg.kl_damping:
            z = np.abs(s) * self._sequence_kl(inputs, out)
            tau = max(linear_quantile(z, cfg.kl_quantile), s_eps)
            s = s * (tau / (z + tau))
            diagnostics["drpo/kl_tau"] = tau
        std = float(s.std(ddof=1)) if s.shape[0] > 1 else 0.0
        adv = s / (std + s_eps)
        broadcast_to_tokens(torch.from_numpy(adv), mask, out=out)

        # scale: how much DRPO multiplies the domain's GRPO advantages, sum |A| / sum |A^|.
        n_ids = len(names)
        per_dom = np.bincount(rollout_dom, minlength=n_ids)
        abs_out = np.bincount(rollout_dom, weights=np.abs(adv), minlength=n_ids)
        abs_in = np.bincount(rollout_dom, weights=np.abs(a_hat_np), minlength=n_ids)
        scale = np.divide(abs_out, abs_in, out=np.zeros(n_ids), where=abs_in > 0)
        for d in np.flatnonzero(per_dom).tolist():
            name = names[d]
            if d in scales.k:
                diagnostics[f"drpo/{name}/k"] = float(scales.k[d])
            diagnostics[f"drpo/{name}/T_g"] = float(scales.t_domain[d])
            diagnostics[f"drpo/{name}/scale"] = float(scale[d])
        return AdvantageOutput(advantages=out, returns=out, diagnostics=diagnostics)

    def _sequence_kl(self, inputs: AdvantageInputs, scratch: Tensor) -> np.ndarray:
        """``[B]`` sum over response tokens of the clamped k3 estimate of KL(old || ref), float64.

        ``scratch`` is a ``[B, T]`` buffer of the mask's dtype that it may overwrite.
        """
        assert inputs.old_logprobs is not None and inputs.ref_logprobs is not None
        clamp = self.config.kl_clamp
        if scratch.numel() == 0:
            return np.zeros(scratch.shape[0])
        # ref - old, zeroed off the mask (where k3 = expm1(0) - 0 = 0 exactly), in one buffer.
        ref, old = inputs.ref_logprobs, inputs.old_logprobs
        diff = torch.sub(ref, old, out=scratch) if torch.can_cast(torch.result_type(ref, old), scratch.dtype) else ref - old
        diff.mul_(inputs.mask)
        lo, hi = (float(v) for v in torch.aminmax(diff))
        if math.isfinite(lo) and math.isfinite(hi) and max(_k3(lo), _k3(hi)) < clamp:
            # k3(x) = expm1(x) - x is convex with its minimum 0 at 0, so no token reaches the
            # clamp and the row sums split: sum k3 = sum expm1(diff) - sum diff.
            plain = diff.sum(dim=1, dtype=torch.float64)
            kl = diff.expm1_().sum(dim=1, dtype=torch.float64).sub_(plain)
        else:
            # A token at the clamp, a difference past the input dtype's range, or non-finite
            # padding (allowed off the mask). k3(x) >= c once |x| >= c + 1 (e^x - x - 1 >= -x - 1
            # below 0, >= x^2 / 2 above), so bounding x there changes no clamped value and keeps
            # exp and the subtraction finite; the inputs are finite on the mask (AdvantageInputs).
            zero = torch.zeros((), dtype=torch.float64)
            diff = torch.where(inputs.on_response, ref.double() - old.double(), zero).clamp_(-clamp - 1, clamp + 1)
            kl = torch.expm1(diff).sub_(diff).clamp_(max=clamp).sum(dim=1)
        return kl.numpy()

    def _cluster(self, rows: np.ndarray, row_domain: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
        cfg = self.config
        labels, present, ks = cluster_rows(rows, row_domain, weights, cfg.k_max, cfg.tol, cfg.kmeans)
        return labels, {int(d): int(k) for d, k in zip(present.tolist(), ks.tolist())}

    def _batch_scales(
        self, vectors: np.ndarray, q_domain: np.ndarray, q_mean: np.ndarray, q_count: np.ndarray, n_ids: int
    ) -> tuple[_Scales, np.ndarray]:
        """Temperatures from the questions of this batch: N_g, mu_g over the domain's rollouts."""
        magnitude = reward_magnitude(vectors)
        floor = self.config.eps * magnitude
        n_g = np.bincount(q_domain, minlength=n_ids).astype(np.float64)
        dom_reward = np.bincount(q_domain, weights=q_mean * q_count, minlength=n_ids)
        mu_g = dom_reward / np.maximum(np.bincount(q_domain, weights=q_count, minlength=n_ids), 1)
        t_domain = np.maximum(np.sqrt(n_g) * mu_g, floor)
        if not self.config.clusters:
            return _Scales(t_domain=t_domain, t_cluster=None, k={}, magnitude=magnitude), np.zeros_like(q_domain)
        labels, ks = self._cluster(vectors, q_domain, np.ones(q_domain.shape[0]))
        t_cluster = self._cluster_temperatures(labels, np.ones(q_domain.shape[0]), q_mean, n_ids, floor)[0]
        return _Scales(t_domain=t_domain, t_cluster=t_cluster, k=ks, magnitude=magnitude), labels

    def _cluster_temperatures(
        self, labels: np.ndarray, weights: np.ndarray, row_mean: np.ndarray, n_ids: int, floor: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """T_c = max(sqrt(N_c) mu_c, floor) per cluster id, with N_c and mu_c."""
        size = n_ids * self.config.k_max
        n_c = np.bincount(labels, weights=weights, minlength=size)
        mu_c = np.bincount(labels, weights=weights * row_mean, minlength=size) / np.maximum(n_c, 1e-300)
        return np.maximum(np.sqrt(n_c) * mu_c, floor), n_c, mu_c

    # -- drpo_release: history across steps ------------------------------------------------------
    def _reset_history(self) -> None:
        self._step = 0
        self._domain_names: list[str] = []
        self._rows = torch.zeros(0, 0, dtype=torch.float64)
        self._row_domains = torch.zeros(0, dtype=torch.int64)
        self._weights = torch.zeros(0, dtype=torch.float64)
        self._row_steps = torch.zeros(0, dtype=torch.int64)

    def _history_scales(
        self,
        vectors: np.ndarray,
        q_domain: np.ndarray,
        q_count: np.ndarray,
        domain_names: tuple[str, ...],
    ) -> tuple[np.ndarray, _Scales, np.ndarray]:
        """Add this batch's questions to the history, then compute temperatures from the history.

        Returns the questions' domains as history domain ids, the scales and the questions' clusters.
        """
        cfg = self.config
        ids = np.empty(len(domain_names), dtype=np.int64)
        for i, name in enumerate(domain_names):
            if name not in self._domain_names:
                self._domain_names.append(name)
            ids[i] = self._domain_names.index(name)
        q_domain = ids[q_domain]
        n = vectors.shape[1]
        if q_count.min() != n:  # shorter groups would be zero-padded vectors in the history
            raise InputError(
                f"{self.name} keeps a history of reward vectors of one length, but this batch has groups of "
                f"{int(q_count.min())} and of {n} rollouts; give every prompt the same n_rollouts"
            )
        if self._rows.shape[0] and self._rows.shape[1] != n:
            raise InputError(
                f"{self.name} history holds reward vectors of {self._rows.shape[1]} rollouts but this batch has "
                f"groups of {n}; keep n_rollouts fixed across steps (or start a new estimator)"
            )
        self._step += 1
        keep = slice(None)
        if cfg.history_window is not None:
            keep_mask = self._row_steps > self._step - cfg.history_window
            keep = torch.nonzero(keep_mask).reshape(-1)  # type: ignore[assignment]
        old_rows = self._rows[keep].numpy().reshape(-1, n)
        old_dom = self._row_domains[keep].numpy()
        old_w = self._weights[keep].numpy()
        old_steps = self._row_steps[keep].numpy()
        g = vectors.shape[0]
        rows = np.concatenate([old_rows, vectors])
        row_dom = np.concatenate([old_dom, q_domain])
        weights = np.concatenate([old_w, np.ones(g)])
        n_ids = len(self._domain_names)
        n_g = np.bincount(row_dom, weights=weights, minlength=n_ids)
        magnitude = reward_magnitude(rows)
        floor = cfg.eps * magnitude

        if cfg.clusters:
            labels, ks = self._cluster(rows, row_dom, weights)
            row_mean = rows.mean(axis=1)
            t_c, n_c, mu_c = self._cluster_temperatures(labels, weights, row_mean, n_ids, floor)
            occupied = n_c > 0
            inv_n = np.where(occupied, 1.0 / np.maximum(n_c, 1e-300), 0.0)
            mu_g = (mu_c * inv_n).reshape(n_ids, cfg.k_max).sum(1) / np.maximum(inv_n.reshape(n_ids, cfg.k_max).sum(1), 1e-300)
            q_cluster = labels[-g:]
        else:
            t_c, ks, q_cluster = None, {}, np.zeros(g, dtype=np.int64)
            mu_g = np.bincount(row_dom, weights=weights * rows.mean(axis=1), minlength=n_ids) / np.maximum(n_g, 1e-300)
        t_domain = np.maximum(np.sqrt(n_g) * mu_g, floor)

        self._store_history(rows, row_dom, weights, np.concatenate([old_steps, np.full(g, self._step)]))
        return q_domain, _Scales(t_domain=t_domain, t_cluster=t_c, k=ks, magnitude=magnitude), q_cluster

    def _store_history(self, rows: np.ndarray, row_dom: np.ndarray, weights: np.ndarray, steps: np.ndarray) -> None:
        """Keep the history compact: identical (step, domain, vector) rows are merged with summed weights.

        Without a window the step does not matter, so every identical (domain, vector) is merged.
        """
        step_key = steps if self.config.history_window is not None else np.zeros_like(steps)
        key = np.concatenate([step_key[:, None].astype(np.float64), row_dom[:, None].astype(np.float64), rows], axis=1)
        uniq, inverse = unique_rows(key)
        merged_w = np.bincount(inverse, weights=weights, minlength=uniq.shape[0])
        self._rows = torch.from_numpy(np.ascontiguousarray(uniq[:, 2:]))
        self._row_domains = torch.from_numpy(uniq[:, 1].astype(np.int64))
        self._weights = torch.from_numpy(merged_w)
        if self.config.history_window is None:
            self._row_steps = torch.full((uniq.shape[0],), self._step, dtype=torch.int64)
        else:
            self._row_steps = torch.from_numpy(uniq[:, 0].astype(np.int64))

    def state_dict(self) -> dict[str, Any]:
        """The question history (``history=true``); empty for the per-batch presets."""
        if not self.config.history:
            return {}
        return {
            "step": self._step,
            "domain_names": list(self._domain_names),
            "rows": self._rows.clone(),
            "row_domains": self._row_domains.clone(),
            "weights": self._weights.clone(),
            "row_steps": self._row_steps.clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not self.config.history:
            super().load_state_dict(state)
            return
        expected = {"step", "domain_names", "rows", "row_domains", "weights", "row_steps"}
        if set(state) != expected:
            raise ValueError(f"{self.name} state must have keys {sorted(expected)}, got {sorted(state)}")
        m = state["rows"].shape[0]
        for key in ("row_domains", "weights", "row_steps"):
            if tuple(state[key].shape) != (m,):
                raise ValueError(
                    f"{self.name} state {key!r} must have {m} entries (one per history row), got {tuple(state[key].shape)}"
                )
        if m and int(state["row_domains"].max()) >= len(state["domain_names"]):
            raise ValueError(f"{self.name} state 'row_domains' refers to a domain beyond 'domain_names'")
        self._step = int(state["step"])
        self._domain_names = [str(n) for n in state["domain_names"]]
        self._rows = state["rows"].to(torch.float64).clone()
        self._row_domains = state["row_domains"].to(torch.int64).clone()
        self._weights = state["weights"].to(torch.float64).clone()
        self._row_steps = state["row_steps"].to(torch.int64).clone()


@register_estimator("drpo_nokl")
class DRPONoKL(DRPO):
    """DRPO without the KL-aware damping."""

    @dataclass(frozen=True)
    class Config(DRPOConfig):
        kl_damping: bool = False
        """Damp rollouts with large |s| x KL(old || ref); off in this preset."""

    description = "DRPO without KL damping (domain + cluster rescaling only; no logprobs needed)"


@register_estimator("drpo_domain_only")
class DRPODomainOnly(DRPO):
    """DRPO with the domain temperature only: no clustering (T_c = 1), no damping."""

    @dataclass(frozen=True)
    class Config(DRPOConfig):
        clusters: bool = False
        """Cluster questions within each domain; off in this preset (T_c = 1)."""
        kl_damping: bool = False
        """Damp rollouts with large |s| x KL(old || ref); off in this preset."""

    description = "DRPO ablation: domain temperature only (no clusters, no KL damping)"


@register_estimator("drpo_release")
class DRPORelease(DRPO):
    """DRPO with the published code's semantics: statistics over the accumulated question history."""

    @dataclass(frozen=True)
    class Config(DRPOConfig):
        history: bool = True
        """Statistics over each domain's accumulated question history; on in this preset."""
        kl_damping: bool = False
        """Damp rollouts with large |s| x KL(old || ref); off in this preset."""

    description = "DRPO as in the published code: domain/cluster statistics over the accumulated question history (stateful)"
