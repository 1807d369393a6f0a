"""Figures: the tables' domain order, labelled axes, legends beside the data, smoothed curves, page width."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rlbench_med.reports import figures as F
from rlbench_med.reports.stats import Comparison
from rlbench_med.suites.catalogue import order_domains

DOMAINS = ["pathology", "ct", "cxr", "overall", "mri"]  # deliberately out of order


def test_smooth_is_a_centred_moving_average_over_a_tenth_of_the_points() -> None:
    values = np.arange(20, dtype=float) ** 2
    out = F.smooth(values)
    w = 2  # 20 points: two on each side
    for i in range(20):
        window = [values[j] for j in range(i - w, i + w + 1) if 0 <= j < 20]
        assert out[i] == pytest.approx(sum(window) / len(window))
    short = np.array([1.0, 5.0, 2.0])
    assert F.smooth(short) is short  # too few points to smooth


def _curves() -> dict:
    curves = {}
    for algo in ("drpo", "grpo"):
        for seed in (0, 1):
            per = {}
            for d in DOMAINS:
                per[f"train/{d}/reward_mean"] = [(s, 0.1 * s + seed) for s in range(1, 31)]
                per[f"val/{d}/f1_strict"] = [(s, 0.5) for s in (0, 10, 20, 30)]
            curves[(algo, seed)] = per
    return curves


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_learning_curves_share_the_domain_order_label_their_axes_and_show_raw_points(tmp_path: Path) -> None:
    fig = F.learning_curves(_curves(), "reward", ["drpo", "grpo"])
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    expected = [*order_domains(d for d in DOMAINS if d != "overall"), "overall"]
    assert titled == expected
    assert fig._supxlabel.get_text() == "RL step" and fig._supylabel.get_text() == "training reward (mean)"
    ax = fig.axes[0]
    faint = [line for line in ax.lines if line.get_alpha() is not None and line.get_alpha() < 0.5]
    solid = [line for line in ax.lines if line.get_label() in ("drpo", "grpo")]
    assert len(faint) == 2 and len(solid) == 2
    raw = faint[0].get_ydata()
    assert np.allclose(solid[0].get_ydata(), F.smooth(np.asarray(raw)))  # the line is the raw points smoothed
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert not any(_overlaps(legend, a.get_window_extent()) for a in fig.axes if a.axison)
    path = F.save(fig, tmp_path / "curves.png")
    assert Image.open(path).size[0] <= 1400


def test_difference_bars_label_each_pair_and_keep_the_legend_off_the_bars(tmp_path: Path) -> None:
    def c(algo, base, d, diff):
        return Comparison(algo, base, d, "f1_strict", diff, diff - 0.05, diff + 0.05, 0.5, 2, "paired-t")

    comparisons = {
        f"{a} − {b}": [c(a, b, d, 0.01 * i) for i, d in enumerate(DOMAINS)]
        for a, b in (("drpo", "grpo"), ("drpo@text", "grpo@text"), ("drpo@ecg+text", "grpo@ecg+text"))
    }
    fig = F.difference_bars(comparisons, ("f1_strict",))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [*order_domains(d for d in DOMAINS if d != "overall"), "overall"]
    assert ax.get_ylabel() == "Δ f1_strict" and ax.get_xlabel() == "domain"
    fig.canvas.draw()
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == list(comparisons)
    assert not _overlaps(legend.get_window_extent(), ax.get_window_extent())
    path = F.save(fig, tmp_path / "diff.png")
    assert Image.open(path).size[0] <= 1400


def test_learning_curves_of_untrained_runs_only_are_no_figure() -> None:
    # every trained job failed: only base logged (step 0) evaluation curves
    curves = {("base", 0): {"val/cxr/f1_strict": [(0, 0.4)], "train/cxr/reward_mean": [(0, 0.1)]}, ("grpo", 0): {}}
    assert F.learning_curves(curves, "f1_strict", ["grpo"]) is None
    assert F.learning_curves(curves, "reward", []) is None
