"""Report figures (matplotlib, Agg backend): pure functions of results, comparisons and curves.

Each function returns a ``Figure`` or ``None`` when its inputs are absent; ``save`` writes PNGs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rlbench_med.reports.stats import Comparison  # noqa: E402

Curves = Mapping[tuple[str, int], Mapping[str, Sequence[tuple[int, float]]]]


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def difference_bars(
    comparisons: Mapping[str, Sequence[Comparison]], baseline: str, metrics: Sequence[str] = ("f1_strict", "f1")
) -> Figure | None:
    """Per-domain difference vs the baseline on ``metrics``, one bar per algorithm, 95% CI whiskers (paper Fig. 2a)."""
    metrics = list(dict.fromkeys(m for m in metrics if any(c.metric == m for cs in comparisons.values() for c in cs)))
    if not comparisons or not metrics:
        return None
    domains: list[str] = []
    for cs in comparisons.values():
        for c in cs:
            if c.domain not in domains:
                domains.append(c.domain)
    domains = [d for d in domains if d != "overall"] + (["overall"] if "overall" in domains else [])
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6, 1.1 * len(domains) + 2), 2.8 * len(metrics)), squeeze=False)
    width = 0.8 / len(comparisons)
    x = np.arange(len(domains))
    for ax, metric in zip(axes[:, 0], metrics):
        for i, (algo, cs) in enumerate(comparisons.items()):
            by = {c.domain: c for c in cs if c.metric == metric}
            diff = np.array([by[d].diff if d in by else np.nan for d in domains])
            lo = np.array([by[d].diff - by[d].low if d in by else 0 for d in domains])
            hi = np.array([by[d].high - by[d].diff if d in by else 0 for d in domains])
            ax.bar(x + (i - (len(comparisons) - 1) / 2) * width, diff, width, yerr=[lo, hi], capsize=2, label=algo)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, domains, rotation=30, ha="right")
        ax.set_ylabel(f"Δ {metric} vs {baseline}")
    axes[0, 0].set_title(f"Per-domain difference vs {baseline} (95% CI)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _mean_curve(curves: Curves, algo: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    series = [dict(per[key]) for (a, _), per in curves.items() if a == algo and key in per and per[key]]
    if not series:
        return None
    steps = sorted(set().union(*[s.keys() for s in series]))
    mean = [np.nanmean([s.get(t, np.nan) for s in series]) for t in steps]
    return np.array(steps), np.array(mean)


def learning_curves(curves: Curves, kind: str, algos: Sequence[str]) -> Figure | None:
    """Per-domain curves, mean over seeds: ``kind`` ``"f1"`` (held-out ``eval/<d>/f1``) or ``"reward"``
    (``train/<d>/reward_mean``)."""
    pattern = re.compile(r"^eval/([^/]+)/f1$") if kind == "f1" else re.compile(r"^train/([^/]+)/reward_mean$")
    domains: list[str] = []
    for per in curves.values():
        for key in per:
            m = pattern.match(key)
            if m and m.group(1) not in domains:
                domains.append(m.group(1))
    if not domains:
        return None
    domains = [d for d in domains if d != "overall"] + (["overall"] if "overall" in domains else [])
    cols = min(4, len(domains))
    rows = (len(domains) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False, sharex=True)
    for idx, domain in enumerate(domains):
        ax = axes[idx // cols, idx % cols]
        key = f"eval/{domain}/f1" if kind == "f1" else f"train/{domain}/reward_mean"
        for algo in algos:
            curve = _mean_curve(curves, algo, key)
            if curve is not None:
                ax.plot(*curve, marker="." if len(curve[0]) < 20 else None, label=algo)
        ax.set_title(domain, fontsize=9)
        ax.tick_params(labelsize=7)
    for idx in range(len(domains), rows * cols):
        axes[idx // cols, idx % cols].axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Held-out macro-F1 by step" if kind == "f1" else "Training reward by step", fontsize=10)
    fig.supxlabel("step", fontsize=8)
    fig.tight_layout()
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
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) + 2), 3))
    ax.bar(names, means, yerr=stds, capsize=3, color="tab:blue")
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
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig
