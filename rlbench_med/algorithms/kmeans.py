"""Deterministic weighted K-means with the elbow rule, batched over domains (for DRPO).

DRPO clusters the reward vectors of the questions of each domain, refitting K-means for every
k = 1..K_cap and picking k by the elbow rule. Reward vectors repeat a lot (rewards take few
distinct values), so the points here are the *distinct* vectors, each weighted by how many
questions share it; all domains are fitted at once.

Initialisation is deterministic and incremental: k = 1 is the weighted mean; the centres for
k + 1 are the converged centres for k plus, of ``N_CANDIDATES`` points spread over the ranking
by weighted squared distance to their nearest centre (the farthest included), the one whose
addition lowers the inertia most; Lloyd iterations then run until no assignment changes. The
points of all domains are processed together (a point is only compared with its own domain's
centres), so the Python-level loops run over k and Lloyd iterations, never over domains or
questions. :func:`sklearn_elbow_kmeans` is the published procedure (scikit-learn
``KMeans(n_init="auto", random_state=0)`` refit for every k), kept as the reference for tests
and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=1)
def _blas_pools() -> ThreadpoolController:
    """The process's BLAS pools, looked up once (the lookup takes milliseconds, a limit microseconds)."""
    return ThreadpoolController()


#: Lloyd iterations per k at most (each usually converges in a few).
MAX_ITER = 100
#: Points tried as the new centre when going from k - 1 to k clusters.
N_CANDIDATES = 16


def elbow_k(inertia: np.ndarray, k_cap: np.ndarray, tol: float) -> np.ndarray:
    """Pick k per row by the elbow rule.

    ``inertia`` is ``[D, K]`` with ``inertia[d, k-1] = I_d(k)`` (entries past ``k_cap[d]`` are
    ignored). With drops d_k = I(k) - I(k+1), k is the smallest k >= 2 with
    d_k < tol * d_{k-1} (k <= K_cap - 1); if there is none, K_cap; K_cap = 1 gives 1.
    """
    inertia = np.atleast_2d(np.asarray(inertia, dtype=np.float64))
    k_cap = np.asarray(k_cap).reshape(-1)
    chosen = k_cap.astype(np.int64).copy()
    n_k = inertia.shape[1]
    if n_k < 3:
        return np.maximum(chosen, 1)
    drops = inertia[:, :-1] - inertia[:, 1:]  # drops[:, j] = d_{j+1}
    ks = np.arange(2, n_k)  # candidate k, needs d_k and d_{k-1}
    hit = drops[:, ks - 1] < tol * drops[:, ks - 2]
    hit &= ks[None, :] <= (k_cap[:, None] - 1)
    any_hit = hit.any(axis=1)
    chosen[any_hit] = ks[hit[any_hit].argmax(axis=1)]
    return np.maximum(chosen, 1)


@dataclass(frozen=True)
class ElbowResult:
    """Clustering of each domain's points at the k chosen by the elbow rule.

    Attributes:
        labels: ``[P]`` cluster index in ``0..k[d]-1`` of every point, at its domain's chosen k.
        k: ``[D]`` chosen number of clusters.
        k_cap: ``[D]`` min(k_max, number of distinct points).
        inertia: ``[D, K]`` weighted inertia I(k) for k = 1..K (NaN where not computed: past
            ``k_cap``, or after every domain's elbow was decided).
    """

    labels: np.ndarray
    k: np.ndarray
    k_cap: np.ndarray
    inertia: np.ndarray


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``rows`` ``[M, n]`` (lexicographic order) and the inverse index ``[M]``.

    Same result as ``np.unique(rows, axis=0, return_inverse=True)``, via one ``lexsort``.
    """
    m = rows.shape[0]
    if m == 0:
        return rows[:0], np.zeros(0, dtype=np.int64)
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    new = np.empty(m, dtype=bool)
    new[0] = True
    np.any(ordered[1:] != ordered[:-1], axis=1, out=new[1:])
    inverse = np.empty(m, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def _lloyd(x_aug: np.ndarray, wx_flat: np.ndarray, penalty: np.ndarray, c_aug: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Lloyd iterations for several domains at once, until no assignment changes.

    ``c_aug`` ``[C, n + 1]`` holds every domain's centres (rows) and their squared norms (last
    column); it is updated in place. ``x_aug . c_aug = |x - c|^2 - |x|^2`` ranks the centres of a
    point, ``penalty`` ``[P, C]`` is +inf on other domains' centres, so one product and one argmin
    assign all points. ``wx_flat`` is ``[w x, w]`` per point, flattened, so one ``bincount``
    yields every cluster's weighted sum and mass. Returns the labels (rows of ``c_aug``).
    """
    cols, width = c_aug.shape
    dim = width - 1
    offsets = np.arange(width)
    centres = c_aug[:, :dim]
    for _ in range(MAX_ITER):
        new_labels = (x_aug @ c_aug.T + penalty).argmin(axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        agg = np.bincount((labels[:, None] * width + offsets).ravel(), wx_flat, cols * width).reshape(cols, width)
        mass = agg[:, dim:]
        # An emptied cluster keeps its centre (only possible past K_cap, where it is unused).
        np.divide(agg[:, :dim], mass, out=centres, where=mass > 0)
        c_aug[:, dim] = np.einsum("cn,cn->c", centres, centres)
    return labels


def batched_kmeans_elbow(
    points: np.ndarray, weights: np.ndarray, slot: np.ndarray, n_domains: int, k_max: int, tol: float
) -> ElbowResult:
    """:func:`weighted_kmeans_elbow` with BLAS held to one thread.

    The matrix products here are small; a multi-threaded BLAS gains nothing on them and slows
    down by several times when the cores are shared with other work.
    """
    with _blas_pools().limit(limits=1, user_api="blas"):
        return weighted_kmeans_elbow(points, weights, slot, n_domains, k_max, tol)


def weighted_kmeans_elbow(
    points: np.ndarray, weights: np.ndarray, slot: np.ndarray, n_domains: int, k_max: int, tol: float
) -> ElbowResult:
    """Weighted K-means for k = 1, 2, ... on every domain at once, then the elbow rule.

    Args:
        points: ``[P, n]`` the distinct points of all domains, grouped by domain (contiguous).
        weights: ``[P]`` multiplicity of each point (> 0).
        slot: ``[P]`` domain index in ``0..n_domains-1`` of each point, non-decreasing.
        n_domains: number of domains D.
        k_max: largest k tried.
        tol: elbow tolerance.

    The inertia of a fit is sum_u w_u |x_u - c_{label(u)}|^2. A domain leaves the sweep once its
    elbow is decided (that needs I(k + 1) only) or k reaches K_cap, so the chosen k and labels
    equal those of a full sweep over k = 1..K_cap while the work shrinks to the open domains.
    """
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    slot = np.asarray(slot, dtype=np.int64)
    n_pts, dim = points.shape
    per_dom = np.bincount(slot, minlength=n_domains)
    k_cap = np.minimum(k_max, per_dom).astype(np.int64)
    k_top = int(k_cap.max()) if n_domains else 0
    inertia = np.full((n_domains, max(k_top, 1)), np.nan)
    chosen = np.maximum(k_cap, 1)
    labels = np.zeros(n_pts, dtype=np.int64)  # cluster within the domain, at the domain's chosen k
    if n_pts == 0:
        return ElbowResult(labels=labels, k=chosen, k_cap=k_cap, inertia=inertia)

    x_aug = np.concatenate([-2.0 * points, np.ones((n_pts, 1))], axis=1)
    wx_aug = np.concatenate([weights[:, None] * points, weights[:, None]], axis=1)
    agg = np.stack([np.bincount(slot, wx_aug[:, j], n_domains) for j in range(dim + 1)], axis=1)
    mean = agg[:, :dim] / np.maximum(agg[:, dim:], 1e-300)
    residual = points - mean[slot]
    fit = np.einsum("pn,pn->p", residual, residual)  # squared distance to the own centre
    inertia[:, 0] = np.bincount(slot, weights * fit, n_domains)
    open_ = k_cap >= 2  # domains whose k is not decided yet
    if not open_.any():
        return ElbowResult(labels=labels, k=chosen, k_cap=k_cap, inertia=inertia)

    # Work arrays cover the points of the open domains only; they shrink when a domain closes.
    active = np.flatnonzero(open_)
    idx = np.flatnonzero(open_[slot])
    sub_slot = np.searchsorted(active, slot[idx])
    sq_norms = np.einsum("pn,pn->p", points, points)
    sub_points, sub_x, sub_w, sub_fit, sub_sq = points[idx], x_aug[idx], weights[idx], fit[idx], sq_norms[idx]
    sub_wx = wx_aug[idx]
    sub_local = np.zeros(idx.shape[0], dtype=np.int64)
    c_aug = np.concatenate([mean[active], np.einsum("dn,dn->d", mean[active], mean[active])[:, None]], axis=1)
    rebuild = True
    for k in range(2, k_top + 1):
        n_sub = active.shape[0]
        if rebuild:
            sub_count = np.bincount(sub_slot, minlength=n_sub)
            sub_start = np.cumsum(sub_count) - sub_count
            width = int(sub_count.max())
            # Padded [n_sub, width] table of contributions; padding stays at -1 and sorts first.
            score = np.full((n_sub, width), -1.0)
            score_at = (sub_slot, np.arange(idx.shape[0]) - sub_start[sub_slot])
            # Ranks (descending) spread over each domain's points, as columns of the ascending sort.
            cand_cols = width - 1 - (np.arange(N_CANDIDATES)[None, :] * sub_count[:, None]) // N_CANDIDATES
            cand_shift = sub_start[:, None]  # position in the padded row -> point index
            dom_rows = np.arange(n_sub)[:, None]
            cand_bins = (sub_slot[:, None] * N_CANDIDATES + np.arange(N_CANDIDATES)).ravel()
            own_cols = (sub_slot[:, None] * N_CANDIDATES + np.arange(N_CANDIDATES))  # [P, m] in [P, n_sub * m]
            point_rows = np.arange(idx.shape[0])[:, None]
            sub_wx_flat = sub_wx.ravel()
            base_penalty = np.where(sub_slot[:, None] == np.arange(n_sub)[None, :], 0.0, np.inf)
            kcap_active = k_cap[active]
            rebuild = False
        # Start k from the converged k - 1 centres plus the candidate point that lowers the
        # inertia most; candidates are spread over the ranking by contribution to the inertia.
        contribution = sub_w * sub_fit
        score[score_at] = contribution
        ranked = np.argsort(score, axis=1, kind="stable")
        cand_pts = sub_points[(ranked[dom_rows, cand_cols] + cand_shift).ravel()]  # [n_sub * m, n]
        cand_aug = np.concatenate([cand_pts, np.einsum("cn,cn->c", cand_pts, cand_pts)[:, None]], axis=1)
        dist = (sub_x @ cand_aug.T)[point_rows, own_cols] + sub_sq[:, None]  # |x - candidate|^2, own domain
        gain = np.maximum(contribution[:, None] - sub_w[:, None] * dist, 0.0)
        best = np.bincount(cand_bins, gain.ravel(), n_sub * N_CANDIDATES).reshape(n_sub, N_CANDIDATES).argmax(axis=1)
        new_rows = cand_aug[np.arange(n_sub) * N_CANDIDATES + best]
        c_aug = np.concatenate([c_aug.reshape(n_sub, k - 1, dim + 1), new_rows[:, None, :]], axis=1).reshape(-1, dim + 1)
        flat = _lloyd(sub_x, sub_wx_flat, np.repeat(base_penalty, k, axis=1), c_aug, sub_slot * k + sub_local)
        previous = sub_local
        sub_local = flat - sub_slot * k
        residual = sub_points - c_aug[flat, :dim]
        sub_fit = np.einsum("pn,pn->p", residual, residual)  # exact: identical points give exactly 0
        inertia[active, k - 1] = np.bincount(sub_slot, sub_w * sub_fit, n_sub)
        closing = k >= kcap_active  # K_cap reached without an elbow: K_cap's labels
        done = closing
        if k >= 3:
            recent = inertia[active, k - 3 : k]
            drops = recent[:, :-1] - recent[:, 1:]  # d_{k-2}, d_{k-1}
            elbow = drops[:, 1] < tol * drops[:, 0]  # elbow at k - 1 (k <= K_cap holds here)
            if elbow.any():
                chosen[active[elbow]] = k - 1
                at = elbow[sub_slot]
                labels[idx[at]] = previous[at]
                closing = closing & ~elbow
                done = closing | elbow
        if done.any():
            if closing.any():
                at = closing[sub_slot]
                labels[idx[at]] = sub_local[at]
            if done.all():
                break
            keep = ~done[sub_slot]
            c_aug = c_aug.reshape(n_sub, k, dim + 1)[~done].reshape(-1, dim + 1)
            active = active[~done]
            idx, sub_points, sub_x, sub_w, sub_fit = idx[keep], sub_points[keep], sub_x[keep], sub_w[keep], sub_fit[keep]
            sub_wx, sub_local, sub_sq = sub_wx[keep], sub_local[keep], sub_sq[keep]
            sub_slot = np.searchsorted(active, slot[idx])
            rebuild = True
    return ElbowResult(labels=labels, k=chosen, k_cap=k_cap, inertia=inertia)


def sklearn_elbow_kmeans(points: np.ndarray, k_max: int, tol: float) -> tuple[np.ndarray, int, np.ndarray]:
    """Reference: scikit-learn ``KMeans(n_init="auto", random_state=0)`` refit for k = 1..K_cap.

    ``points`` is ``[N, n]`` (one row per question, repeats included). Returns the labels
    ``[N]`` at the elbow k, that k, and the inertias ``[K_cap]``.
    """
    from sklearn.cluster import KMeans  # imported here: only the reference path needs it

    points = np.asarray(points, dtype=np.float64)
    if points.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), 1, np.zeros(0)
    k_cap = min(k_max, int(np.unique(points, axis=0).shape[0]))
    if k_cap <= 1:
        return np.zeros(points.shape[0], dtype=np.int64), 1, np.array([float(((points - points.mean(0)) ** 2).sum())])
    fits = [KMeans(n_clusters=k, n_init="auto", random_state=0).fit(points) for k in range(1, k_cap + 1)]
    inertia = np.array([f.inertia_ for f in fits])
    k = int(elbow_k(inertia[None, :], np.array([k_cap]), tol)[0])
    return fits[k - 1].labels_.astype(np.int64), k, inertia
