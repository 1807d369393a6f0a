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


def _lloyd(x_aug: np.ndarray, wx_cols: np.ndarray, penalty: np.ndarray | None, c_aug: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Lloyd iterations for several domains at once, until no assignment changes.

    ``c_aug`` ``[C, n + 1]`` holds every domain's centres (rows) and their squared norms (last
    column); it is updated in place. ``x_aug . c_aug = |x - c|^2 - |x|^2`` ranks the centres of a
    point, ``penalty`` ``[P, C]`` is +inf on other domains' centres (None with one domain), so one
    product and one argmin assign all points. ``wx_cols`` is ``[w x, w]`` column by column,
    flattened (``[(n + 1) * P]``), so one ``bincount`` yields every cluster's weighted sums and
    mass. Returns the labels (rows of ``c_aug``).
    """
    cols, width = c_aug.shape
    dim = width - 1
    column_bins = (np.arange(width) * cols)[:, None]  # bin of (column j, cluster c) = j * C + c
    centres_t = c_aug[:, :dim].T
    for _ in range(MAX_ITER):
        scores = x_aug @ c_aug.T
        if penalty is not None:
            scores += penalty
        new_labels = scores.argmin(axis=1)
        if new_labels.tobytes() == labels.tobytes():  # the cheapest equality test at this size
            break
        labels = new_labels
        agg = np.bincount((labels + column_bins).ravel(), wx_cols, width * cols).reshape(width, cols)
        mass = agg[dim]
        # An emptied cluster keeps its centre.
        np.divide(agg[:dim], mass, out=centres_t, where=mass > 0)
        c_aug[:, dim] = np.einsum("cn,cn->c", c_aug[:, :dim], c_aug[:, :dim])
    return labels


class _Open:
    """The points of the domains whose k is not decided yet, with the index tables over them.

    Rebuilt (smaller) whenever domains close, so every array op of the sweep touches only the
    open domains' points. ``rows`` are positions in the full point arrays.
    """

    def __init__(self, active: np.ndarray, rows: np.ndarray, slot: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        self.active, self.rows = active, rows
        n_open = active.shape[0]
        self.slot = np.searchsorted(active, slot[rows])  # open-domain index of every row
        self.points_aug = arrays["points_aug"][rows]  # [x, |x|^2]
        self.x_aug = arrays["x_aug"][rows]  # [-2 x, 1]
        self.weights = arrays["weights"][rows]
        self.wx_cols = arrays["wx_aug"][rows].T.ravel()  # [w x, w], column by column
        count = np.bincount(self.slot, minlength=n_open)
        start = np.cumsum(count) - count
        # Candidates for a new centre: ranks (descending by contribution to the inertia) spread
        # over each domain's points, as positions in the rows sorted by (domain, contribution).
        ranks = (np.arange(N_CANDIDATES)[None, :] * count[:, None]) // N_CANDIDATES
        self.candidate_pos = (start[:, None] + count[:, None] - 1 - ranks).ravel()
        own = self.slot[:, None] == np.arange(n_open)[None, :]  # [rows, open domains]
        self.penalty = np.where(own, 0.0, np.inf) if n_open > 1 else None
        # x_aug . candidate_aug + this = |x - candidate|^2 on own-domain candidates, +inf elsewhere.
        sq = self.points_aug[:, -1]
        self.candidate_offset = np.where(np.repeat(own, N_CANDIDATES, axis=1), sq[:, None], np.inf)
        self.first_candidate = np.arange(n_open) * N_CANDIDATES

    def keep(self, still_open: np.ndarray, slot: np.ndarray, arrays: dict[str, np.ndarray]) -> tuple[_Open, np.ndarray]:
        """The tables for the domains with ``still_open`` (over the current open domains), and
        the mask of the current rows that stay."""
        stay = still_open[self.slot]
        return _Open(self.active[still_open], self.rows[stay], slot, arrays), stay


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

    width = dim + 1
    sq_norms = np.einsum("pn,pn->p", points, points)
    wx_aug = np.concatenate([weights[:, None] * points, weights[:, None]], axis=1)
    bins = np.add.outer(slot * width, np.arange(width)).ravel()
    agg = np.bincount(bins, wx_aug.ravel(), n_domains * width).reshape(n_domains, width)
    mean = agg[:, :dim] / np.maximum(agg[:, dim:], 1e-300)
    residual = points - mean[slot]
    fit = np.einsum("pn,pn->p", residual, residual)  # squared distance to the own centre
    inertia[:, 0] = np.bincount(slot, weights * fit, n_domains)
    open_ = k_cap >= 2  # domains whose k is not decided yet
    if not open_.any():
        return ElbowResult(labels=labels, k=chosen, k_cap=k_cap, inertia=inertia)

    arrays = {
        "points_aug": np.concatenate([points, sq_norms[:, None]], axis=1),
        "x_aug": np.concatenate([-2.0 * points, np.ones((n_pts, 1))], axis=1),
        "weights": weights,
        "wx_aug": wx_aug,
    }
    active = np.flatnonzero(open_)
    sub = _Open(active, np.flatnonzero(open_[slot]), slot, arrays)
    sub_fit = fit[sub.rows]
    sub_local = np.zeros(sub.rows.shape[0], dtype=np.int64)
    c_aug = np.concatenate([mean[active], np.einsum("dn,dn->d", mean[active], mean[active])[:, None]], axis=1)
    live = np.ones(active.shape[0], dtype=bool)  # open domains still deciding their k
    for k in range(2, k_top + 1):
        n_sub = sub.active.shape[0]
        # Start k from the converged k - 1 centres plus the candidate point that lowers the
        # inertia most; candidates are spread over the ranking by contribution to the inertia.
        contribution = sub.weights * sub_fit
        candidates = np.lexsort((contribution, sub.slot))[sub.candidate_pos]
        cand_aug = sub.points_aug[candidates]  # [n_sub * m, n + 1]
        loss = sub.x_aug @ cand_aug.T  # -> w |x - candidate|^2 (+inf off the own domain)
        loss += sub.candidate_offset
        loss *= sub.weights[:, None]
        gain = np.subtract(contribution[:, None], loss, out=loss)
        np.maximum(gain, 0.0, out=gain)
        best = gain.sum(axis=0).reshape(n_sub, N_CANDIDATES).argmax(axis=1)
        new_rows = cand_aug[sub.first_candidate + best]
        c_aug = np.concatenate([c_aug.reshape(n_sub, k - 1, width), new_rows[:, None, :]], axis=1).reshape(-1, width)
        penalty = None if sub.penalty is None else np.repeat(sub.penalty, k, axis=1)
        flat = _lloyd(sub.x_aug, sub.wx_cols, penalty, c_aug, sub.slot * k + sub_local)
        previous = sub_local
        sub_local = flat - sub.slot * k
        residual = sub.points_aug[:, :dim] - c_aug[flat, :dim]
        sub_fit = np.einsum("pn,pn->p", residual, residual)  # exact: identical points give exactly 0
        fitted = np.bincount(sub.slot, sub.weights * sub_fit, n_sub)
        inertia[sub.active[live], k - 1] = fitted[live]
        closing = live & (k >= k_cap[sub.active])  # K_cap reached without an elbow: K_cap's labels
        done = closing
        if k >= 3:
            recent = inertia[sub.active, k - 3 : k]
            drops = recent[:, :-1] - recent[:, 1:]  # d_{k-2}, d_{k-1}
            elbow = live & (drops[:, 1] < tol * drops[:, 0])  # elbow at k - 1 (k <= K_cap holds here)
            if elbow.any():
                chosen[sub.active[elbow]] = k - 1
                at = elbow[sub.slot]
                labels[sub.rows[at]] = previous[at]
                closing = closing & ~elbow
                done = closing | elbow
        if done.any():
            if closing.any():
                at = closing[sub.slot]
                labels[sub.rows[at]] = sub_local[at]
            live = live & ~done
            if not live.any():
                break
            # Closed domains ride along (their results are no longer read) until they hold half
            # of the rows; then the tables shrink to the open domains.
            if np.count_nonzero(live[sub.slot]) * 2 <= sub.slot.shape[0]:
                c_aug = c_aug.reshape(n_sub, k, width)[live].reshape(-1, width)
                sub, stay = sub.keep(live, slot, arrays)
                sub_fit, sub_local = sub_fit[stay], sub_local[stay]
                live = np.ones(sub.active.shape[0], dtype=bool)
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
