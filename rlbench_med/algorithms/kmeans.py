"""Deterministic weighted K-means with the elbow rule, per domain (for DRPO).

DRPO clusters the reward vectors of the questions of each domain, refitting K-means for every
k = 1..K_cap and picking k by the elbow rule. Reward vectors repeat a lot (rewards take few
distinct values), so the points here are the *distinct* vectors, each weighted by how many
questions share it.

Initialisation is deterministic and incremental: k = 1 is the weighted mean; the centres for
k + 1 are the converged centres for k plus, of ``N_CANDIDATES`` points spread over the ranking
by weighted squared distance to their nearest centre (the farthest included), the one whose
addition lowers the inertia most; Lloyd iterations then run until no assignment changes (ties
go to the lower centre index; an emptied cluster keeps its centre). A domain stops as soon as
its elbow is decided. The loops are compiled with numba on first use (cached on disk), since
the work is many tiny steps that array libraries would spend on call overhead.
:func:`sklearn_elbow_kmeans` is the published procedure (scikit-learn
``KMeans(n_init="auto", random_state=0)`` refit for every k), kept as the reference for tests
and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

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
            ``k_cap``, or past k + 1 once the domain's elbow k was decided).
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


def _elbow_kmeans_loops(
    points: np.ndarray,
    weights: np.ndarray,
    starts: np.ndarray,
    k_max: int,
    tol: float,
    n_candidates: int,
    max_iter: int,
    labels: np.ndarray,
    chosen: np.ndarray,
    inertia: np.ndarray,
) -> None:
    """The K-means sweep of every domain; writes ``labels``, ``chosen`` and ``inertia``.

    Domain d owns rows ``starts[d]:starts[d + 1]`` of ``points``; ``inertia`` arrives as NaN.
    Plain Python that numba compiles (:func:`_compiled_kernel`); it also runs as it is, slowly.
    """
    dim = points.shape[1]
    for d in range(starts.shape[0] - 1):
        lo, m = starts[d], starts[d + 1] - starts[d]
        chosen[d] = 1
        if m == 0:
            continue
        x = points[lo : lo + m]
        w = weights[lo : lo + m]
        k_cap = min(k_max, m)
        centres = np.zeros((k_cap, dim))
        label = np.zeros(m, dtype=np.int64)  # k = 1: every point in cluster 0
        previous = np.zeros(m, dtype=np.int64)
        fit = np.empty(m)  # squared distance of each point to its centre
        contribution = np.empty(m)
        sums = np.empty((k_cap, dim))
        mass = np.empty(k_cap)
        for k in range(1, k_cap + 1):
            if k > 1:
                # New centre: of the candidates spread over the ranking by contribution (from the
                # top), the one whose addition lowers the inertia most (first one on ties).
                for i in range(m):
                    contribution[i] = w[i] * fit[i]
                order = np.argsort(contribution, kind="mergesort")
                best, best_gain = 0, -1.0
                for j in range(n_candidates):
                    cand = order[m - 1 - (j * m) // n_candidates]
                    gain = 0.0
                    for i in range(m):
                        dd = 0.0
                        for t in range(dim):
                            diff = x[i, t] - x[cand, t]
                            dd += diff * diff
                        saved = contribution[i] - w[i] * dd
                        if saved > 0.0:
                            gain += saved
                    if gain > best_gain:
                        best, best_gain = cand, gain
                for t in range(dim):
                    centres[k - 1, t] = x[best, t]
                previous[:] = label
            for _ in range(max_iter):
                # Centres: the weighted means of their points (k = 1: the domain mean; the new
                # centre has no points yet and keeps its place, as does an emptied cluster).
                sums[:k] = 0.0
                mass[:k] = 0.0
                for i in range(m):
                    c = label[i]
                    mass[c] += w[i]
                    for t in range(dim):
                        sums[c, t] += w[i] * x[i, t]
                for c in range(k):
                    if mass[c] > 0.0:
                        for t in range(dim):
                            centres[c, t] = sums[c, t] / mass[c]
                # Each point to its nearest centre (ties: the lower index), until none moves.
                changed = False
                for i in range(m):
                    nearest, nearest_dd = 0, np.inf
                    for c in range(k):
                        dd = 0.0
                        for t in range(dim):
                            diff = x[i, t] - centres[c, t]
                            dd += diff * diff
                        if dd < nearest_dd:
                            nearest, nearest_dd = c, dd
                    if nearest != label[i]:
                        label[i] = nearest
                        changed = True
                if not changed:
                    break
            current = 0.0
            for i in range(m):
                dd = 0.0
                for t in range(dim):
                    diff = x[i, t] - centres[label[i], t]
                    dd += diff * diff
                fit[i] = dd  # exact: a point on its centre gives exactly 0
                current += w[i] * dd
            inertia[d, k - 1] = current
            if k >= 3 and inertia[d, k - 2] - inertia[d, k - 1] < tol * (inertia[d, k - 3] - inertia[d, k - 2]):
                chosen[d] = k - 1  # the elbow: the drop to k is small next to the drop to k - 1
                labels[lo : lo + m] = previous
                break
        else:
            chosen[d] = k_cap
            labels[lo : lo + m] = label


@cache
def _compiled_kernel() -> Callable[..., None]:
    """:func:`_elbow_kmeans_loops` compiled by numba (imported and compiled on first use only)."""
    from numba import njit  # imported here: `import rlbench_med` stays fast

    return njit(cache=True, nogil=True)(_elbow_kmeans_loops)


def weighted_kmeans_elbow(
    points: np.ndarray, weights: np.ndarray, slot: np.ndarray, n_domains: int, k_max: int, tol: float
) -> ElbowResult:
    """Weighted K-means for k = 1, 2, ... on every domain, then the elbow rule.

    Args:
        points: ``[P, n]`` the distinct points of all domains, grouped by domain (contiguous).
        weights: ``[P]`` multiplicity of each point (> 0).
        slot: ``[P]`` domain index in ``0..n_domains-1`` of each point, non-decreasing.
        n_domains: number of domains D.
        k_max: largest k tried.
        tol: elbow tolerance.

    The inertia of a fit is sum_u w_u |x_u - c_{label(u)}|^2. A domain stops once its elbow is
    decided (that needs I(k + 1) only) or k reaches K_cap, so the chosen k and labels equal those
    of a full sweep over k = 1..K_cap.
    """
    points = np.ascontiguousarray(points, dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    slot = np.asarray(slot, dtype=np.int64)
    per_dom = np.bincount(slot, minlength=n_domains)
    k_cap = np.minimum(k_max, per_dom).astype(np.int64)
    inertia = np.full((n_domains, max(int(k_cap.max()) if n_domains else 0, 1)), np.nan)
    labels = np.zeros(points.shape[0], dtype=np.int64)  # cluster within the domain, at the chosen k
    chosen = np.ones(n_domains, dtype=np.int64)
    if points.shape[0]:
        starts = np.concatenate([[0], np.cumsum(per_dom)]).astype(np.int64)
        _compiled_kernel()(points, weights, starts, int(k_max), float(tol), N_CANDIDATES, MAX_ITER, labels, chosen, inertia)
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
