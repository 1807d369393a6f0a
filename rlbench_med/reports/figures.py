"""Report figures (matplotlib, Agg backend): pure functions of results, comparisons and curves.

Each function returns a ``Figure`` or ``None`` when its inputs are absent; ``save`` writes PNGs.
Every figure puts domains in the order of every table (:func:`domain_order`), labels both axes,
keeps its legend outside the data, and stays within :data:`MAX_WIDTH_IN` inches (at ``DPI``, a
1400-px page). Learning curves draw the raw points faint and a moving average over them
(:func:`smooth`) solid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rlbench_med.reports.stats import Comparison  # noqa: E402
from rlbench_med.suites.catalogue import order_domains  # noqa: E402

Curves = Mapping[tuple[str, int], Mapping[str, Sequence[tuple[int, float]]]]
DPI = 110
#: Widest figure, legend included: 12 in at 110 dpi is 1320 px, inside a 1400-px page.
MAX_WIDTH_IN = 12.0
#: Points a learning curve needs before it is smoothed; the window is about a tenth of them.
SMOOTH_MIN_POINTS = 10


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def domain_order(domains: Iterable[str]) -> list[str]:
    """The tables' domain order (``suites.catalogue.order_domains``), ``overall`` last."""
    present = list(dict.fromkeys(domains))
    return [*order_domains(d for d in present if d != "overall"), *(["overall"] if "overall" in present else [])]


def smooth(values: np.ndarray) -> np.ndarray:
    """Centred moving average over ``w = max(1, n // 10)`` points on each side (fewer at the ends);
    ``values`` unchanged below :data:`SMOOTH_MIN_POINTS` points. NaNs are skipped."""
    n = len(values)
    if n < SMOOTH_MIN_POINTS:
        return values
    w = max(1, n // 10)
    out = np.empty(n)
    for i in range(n):
        window = values[max(0, i - w): i + w + 1]
        out[i] = np.nanmean(window) if np.isfinite(window).any() else np.nan
    return out


def _legend_outside(fig: Figure, ax: Any) -> None:
    """One legend to the right of the axes, never over the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8, frameon=False)


def difference_bars(
    comparisons: Mapping[str, Sequence[Comparison]], metrics: Sequence[str] = ("f1_strict", "f1")
) -> Figure | None:
    """Per-domain differences on ``metrics``, one bar per compared pair (labelled ``algo − its
    baseline``, e.g. ``drpo@text − grpo@text``), 95% CI whiskers (paper Fig. 2a)."""
    metrics = list(dict.fromkeys(m for m in metrics if any(c.metric == m for cs in comparisons.values() for c in cs)))
    pairs = {f"{cs[0].algo} − {cs[0].baseline}": cs for cs in comparisons.values() if cs}
    if not pairs or not metrics:
        return None
    domains = domain_order(c.domain for cs in pairs.values() for c in cs)
    width_in = min(MAX_WIDTH_IN - 2.5, max(5.0, 0.35 * len(domains) * len(pairs) + 1.5))
    fig, axes = plt.subplots(len(metrics), 1, figsize=(width_in, 2.8 * len(metrics)), squeeze=False, sharex=True)
    width = 0.8 / len(pairs)
    x = np.arange(len(domains))
    for ax, metric in zip(axes[:, 0], metrics):
        for i, (label, cs) in enumerate(pairs.items()):
            by = {c.domain: c for c in cs if c.metric == metric}
            diff = np.array([by[d].diff if d in by else np.nan for d in domains])
            lo = np.array([by[d].diff - by[d].low if d in by else 0 for d in domains])
            hi = np.array([by[d].high - by[d].diff if d in by else 0 for d in domains])
            ax.bar(x + (i - (len(pairs) - 1) / 2) * width, diff, width, yerr=[lo, hi], capsize=2, label=label)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, domains, rotation=30, ha="right")
        ax.set_ylabel(f"Δ {metric}")
    axes[-1, 0].set_xlabel("domain")
    axes[0, 0].set_title("Per-domain difference, algorithm − its baseline (95% CI)", fontsize=10)
    fig.tight_layout()
    _legend_outside(fig, axes[0, 0])
    return fig


def performance_profiles(runs: Mapping[str, Mapping[str, Sequence[float]]], metric: str = "primary metric"
                         ) -> Figure | None:
    """Performance profiles (rliable): for each algorithm, the fraction of its runs scoring above ``tau``
    (averaged over suites) against ``tau`` in [0, 1], with stratified-bootstrap 95% bands
    (:func:`~rlbench_med.reports.across_suites.run_score_distribution`). ``runs``: algo -> suite -> per-seed values."""
    from rlbench_med.reports.across_suites import run_score_distribution

    if not runs:
        return None
    taus = np.linspace(0.0, 1.0, 101)
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for i, (algo, per_suite) in enumerate(runs.items()):
        point, low, high = run_score_distribution(per_suite, taus)
        ax.plot(taus, point, color=f"C{i % 10}", label=algo)
        ax.fill_between(taus, low, high, color=f"C{i % 10}", alpha=0.2, linewidth=0)
    ax.set_xlabel(f"threshold tau on the suite's {metric}")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Performance profiles over suites and seeds (95% stratified-bootstrap bands)", fontsize=10)
    fig.tight_layout()
    _legend_outside(fig, ax)
    return fig


def _mean_curve(curves: Curves, algo: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Steps and the mean over seeds at each step (a seed without the step is left out there)."""
    series = [dict(per[key]) for (a, _), per in curves.items() if a == algo and key in per and per[key]]
    if not series:
        return None
    steps = sorted(set().union(*[s.keys() for s in series]))
    mean = [np.nanmean([s.get(t, np.nan) for s in series]) for t in steps]
    return np.array(steps), np.array(mean)


def learning_curves(curves: Curves, kind: str, algos: Sequence[str]) -> Figure | None:
    """Per-domain curves, mean over seeds: ``kind`` ``"reward"`` (``train/<d>/reward_mean``) or a metric
    name (the validation split's ``val/<d>/<metric>``). Raw points faint, their moving average
    (:func:`smooth`) solid."""
    prefix, suffix = ("train", "reward_mean") if kind == "reward" else ("val", kind)
    pattern = re.compile(rf"^{prefix}/([^/]+)/{re.escape(suffix)}$")
    domains = domain_order(m.group(1) for per in curves.values() for key in per if (m := pattern.match(key)))
    if not domains:
        return None
    cols = min(4, len(domains))
    rows = (len(domains) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False, sharex=True)
    colors = {algo: f"C{i % 10}" for i, algo in enumerate(algos)}
    smoothed_any = False
    for idx, domain in enumerate(domains):
        ax = axes[idx // cols, idx % cols]
        key = f"{prefix}/{domain}/{suffix}"
        for algo in algos:
            curve = _mean_curve(curves, algo, key)
            if curve is None:
                continue
            steps, values = curve
            smoothed = smooth(values)
            if smoothed is not values:
                smoothed_any = True
                ax.plot(steps, values, ".", color=colors[algo], alpha=0.25, markersize=3)
            ax.plot(steps, smoothed, color=colors[algo], marker="." if len(steps) < SMOOTH_MIN_POINTS else None,
                    label=algo)
        ax.set_title(domain, fontsize=9)
        ax.tick_params(labelsize=7)
    for idx in range(len(domains), rows * cols):
        axes[idx // cols, idx % cols].axis("off")
    what = "training reward (mean)" if kind == "reward" else f"validation {kind}"
    fig.suptitle(f"{what[0].upper()}{what[1:]} by step, {_over_seeds(curves, algos)}"
                 + ("\n(faint: each step; line: moving average)" if smoothed_any else ""), fontsize=10)
    fig.supxlabel("RL step", fontsize=8)
    fig.supylabel(what, fontsize=8)
    with_lines = [ax for ax in axes.flat if ax.get_legend_handles_labels()[0]]
    if not with_lines:  # only untrained runs (base) logged these keys: e.g. every trained job failed
        plt.close(fig)
        return None
    fig.tight_layout()
    _legend_outside(fig, with_lines[0])
    return fig


def _over_seeds(curves: Curves, algos: Sequence[str]) -> str:
    """"mean over N seeds" (the most any algorithm has), or "one seed"."""
    n = max((sum(a == algo for a, _ in curves) for algo in algos), default=0)
    return f"mean over {n} seeds" if n > 1 else "one seed"


#: Training diagnostics of the local runner drawn by :func:`training_diagnostics` (key, panel title).
DIAGNOSTICS = (
    ("train/reward_mean", "training reward"),
    ("train/zero_spread_frac", "groups with no reward spread"),
    ("train/entropy", "policy entropy (nats/token)"),
    ("train/kl", "KL to the base (k3)"),
    ("train/grad_norm", "gradient norm (before clipping)"),
    ("train/clip_frac", "clipped ratio fraction"),
)


def training_diagnostics(curves: Curves, algos: Sequence[str]) -> Figure | None:
    """What tells whether RL can learn, by step, mean over seeds: reward, zero-spread groups,
    entropy, KL to the base, gradient norm and clip fraction (the keys of :data:`DIAGNOSTICS` present)."""
    present = [(k, t) for k, t in DIAGNOSTICS if any(per.get(k) for per in curves.values())]
    if not present:
        return None
    cols = min(3, len(present))
    rows = (len(present) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False, sharex=True)
    colors = {algo: f"C{i % 10}" for i, algo in enumerate(algos)}
    for idx, (key, title) in enumerate(present):
        ax = axes[idx // cols, idx % cols]
        for algo in algos:
            curve = _mean_curve(curves, algo, key)
            if curve is not None:
                ax.plot(curve[0], smooth(curve[1]), color=colors[algo], label=algo)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
    for idx in range(len(present), rows * cols):
        axes[idx // cols, idx % cols].axis("off")
    fig.suptitle(f"Training diagnostics by step, {_over_seeds(curves, algos)} (moving average)", fontsize=10)
    fig.supxlabel("RL step", fontsize=8)
    fig.tight_layout()
    handles = next((ax for ax in axes.flat if ax.get_legend_handles_labels()[0]), None)
    if handles is not None:
        _legend_outside(fig, handles)
    return fig


def advantage_time(curves: Curves, algos: Sequence[str]) -> Figure | None:
    """Advantage computation time per step (ms) by algorithm: mean over steps, ± std over seeds (paper Fig. 3c)."""
    means, stds, names = [], [], []
    for algo in algos:
        per_seed = [1000 * np.mean([v for _, v in per["time/advantage_s"]])
                    for (a, _), per in curves.items() if a == algo and per.get("time/advantage_s")]
        if per_seed:
            names.append(algo)
            means.append(float(np.mean(per_seed)))
            stds.append(float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0)
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH_IN, max(4, 0.9 * len(names) + 2)), 3))
    ax.bar(names, means, yerr=stds, capsize=3, color="tab:blue")
    ax.set_xlabel("algorithm")
    ax.set_ylabel("advantage time per step (ms)")
    ax.set_title("Advantage estimation cost")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def runtime_scaling(rows: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Runtime suite: ``advantage_ms`` vs batch size (domain ``batch=<B>``) and history length
    (domain ``history=<H>``), one line per estimator, mean over seeds."""
    data: dict[str, dict[str, dict[int, list[float]]]] = {"batch": {}, "history": {}}
    for r in rows:
        m = re.match(r"^(batch|history)=(\d+)$", str(r["domain"]))
        if r["metric"] != "advantage_ms" or not m:
            continue
        data[m.group(1)].setdefault(str(r["algo"]), {}).setdefault(int(m.group(2)), []).append(float(r["value"]))
    panels = [k for k in ("batch", "history") if data[k]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for algo, points in data[panel].items():
            xs = sorted(points)
            ax.plot(xs, [np.mean(points[x]) for x in xs], marker="o", label=algo)
        if panel == "batch":
            ax.set_xscale("log", base=2)
        else:
            ax.set_xscale("symlog", linthresh=1)  # history 0 (a fresh estimator) stays on the axis
        ax.set_yscale("log")
        ax.set_xlabel("rollouts per batch" if panel == "batch" else "history length (previous steps seen)")
        ax.set_ylabel("advantage time (ms)")
        ax.set_title(f"Advantage time vs {'batch size' if panel == 'batch' else 'history length'}", fontsize=10)
    fig.tight_layout()
    _legend_outside(fig, axes[0, 0])
    return fig
