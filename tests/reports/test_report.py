"""The results table and the report files, against hand-computed numbers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlbench_med.reports.report import make_report
from rlbench_med.reports.results import ResultsError, build_table, load_results
from rlbench_med.reports.stats import ComparisonError
from rlbench_med.runners.sweep import ResultsWriter
from tests.reports.test_stats import make_records


def row(algo, seed, domain, metric, value, suite="climb_vision", n=10):
    return dict(suite=suite, algo=algo, seed=seed, domain=domain, metric=metric, value=value, n=n)


def test_table_is_mean_and_sample_std_over_seeds_with_best_marked() -> None:
    rows = [row("drpo", s, "cxr", "f1", v) for s, v in enumerate([0.2, 0.4, 0.9])]
    rows += [row("grpo", s, "cxr", "f1", v) for s, v in enumerate([0.1, 0.3])]
    rows += [row("drpo", 0, "overall", "f1", 0.5), row("grpo", 0, "overall", "f1", 0.6)]
    table = build_table(rows)
    cell = table.cell("drpo", "cxr", "f1")
    # mean (0.2+0.4+0.9)/3 = 0.5; sample variance ((-0.3)^2 + (-0.1)^2 + 0.4^2) / 2 = 0.13
    assert (cell.mean, cell.std, cell.n_seeds) == pytest.approx((0.5, 0.13**0.5, 3))
    assert table.cell("grpo", "cxr", "f1").mean == pytest.approx(0.2)
    assert table.best("cxr", "f1") == {"drpo"} and table.best("overall", "f1") == {"grpo"}
    assert table.domains == ["cxr", "overall"]
    assert cell.format() == "0.500 ± 0.361"


def test_results_csv_with_wrong_columns_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("suite,algo,seed,domain,metric,value\n")
    with pytest.raises(ResultsError, match="columns"):
        load_results(tmp_path / "results.csv")


def write_run(out: Path, qualities: dict[str, float], seeds=(0, 1), suite="climb_vision") -> None:
    from rlbench_med.suites import compute_metrics

    rows = []
    (out / "predictions").mkdir(parents=True)
    for algo, q in qualities.items():
        for s in seeds:
            recs = make_records(100 * s + int(q * 10), q, n=30, datasets=(("cxr", "MIMIC-CXR"), ("ct", "X")))
            (out / "predictions" / f"{algo}-seed{s}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            rows += [row(algo, s, r["domain"], r["metric"], r["value"], suite, r["n"]) for r in compute_metrics(recs)]
    ResultsWriter(out / "results.csv", rows).flush()


def test_report_files_hold_the_table_paper_numbers_and_marked_comparison(tmp_path: Path) -> None:
    write_run(tmp_path, {"drpo": 0.95, "grpo": 0.4}, seeds=range(5))
    report = make_report(tmp_path, n_boot=300)
    md = report.markdown.read_text()
    html = report.html.read_text()
    overall = report.table.cell("drpo", "overall", "f1_strict")
    assert f"**{overall.format(compact=True)}**" in md  # significantly best overall f1_strict in bold
    f1 = report.table.cell("drpo", "overall", "f1")
    assert f"**{f1.format(compact=True)}**" not in md  # f1 is exploratory: no test, so no bold
    assert "arXiv 2506.00711" in md and "the paper's numbers" in md
    # the paper's DRPO CXR Acc / F1 (Table 2), domains as rows like every table
    assert "| Domain | drpo Acc | drpo F1 |" in md and "| cxr | 0.687 | 0.115 |" in md
    comp = report.comparison("drpo", "grpo")
    assert comp[("overall", "f1_strict")].significant and comp[("overall", "f1_strict")].family == "primary"
    assert not comp[("overall", "f1")].significant and comp[("overall", "f1")].family == "exploratory"
    assert re.search(r"\| overall \| \+\d\.\d{3} \[\+\d\.\d{3}, \+\d\.\d{3}\] \*", md)
    assert "data:image/png;base64," in html and "<img" in html
    assert not re.search(r"src=['\"](?!data:)", html)  # self-contained: no external files
    assert (tmp_path / "figures" / "difference_vs_baseline.png").exists()


def test_missing_baseline_is_said_in_the_report(tmp_path: Path) -> None:
    write_run(tmp_path, {"drpo": 0.9, "rloo": 0.5})
    report = make_report(tmp_path, n_boot=50)
    assert not report.comparisons
    assert "baseline 'grpo' is not in this run" in report.markdown.read_text()


def test_hedging_is_warned_and_floor_wins_are_marked(tmp_path: Path) -> None:
    from rlbench_med.runners.sweep.results import add_to_predictions_index
    from rlbench_med.suites import compute_metrics
    from rlbench_med.suites.floors import floor_rows, random_draws

    classes = ["x", "y", "z"]
    truth = [classes[i % 3] for i in range(60)]
    runs = {
        # the hedger names two labels, one right, on every record: f1 up, f1_strict and exact down
        "hedger": [[t, classes[(classes.index(t) + 1) % 3]] for t in truth],
        # right on 24 of 60 records, else the next class: per class TP 8, FN 12, FP 12 -> F1 = 16 / 40 = 0.4
        "grpo": [[t] if i % 5 in (0, 1) else [classes[(classes.index(t) + 1) % 3]] for i, t in enumerate(truth)],
        "floor:all": [list(classes) for _ in truth],
    }
    (tmp_path / "predictions").mkdir()
    rows, files = [], {}
    for algo, preds in runs.items():
        recs = [{"uid": f"{i:02d}", "domain": "fundus", "dataset": "F", "labels": [t], "predicted": p}
                for i, (t, p) in enumerate(zip(truth, preds))]
        path = tmp_path / "predictions" / f"{algo.replace(':', '_')}-seed0.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        files[(algo, 0)] = path
        if algo == "floor:all":
            rows += floor_rows("climb_vision", {"floor:all": [recs], "floor:random": random_draws(recs)})
        else:
            rows += [row(algo, 0, r["domain"], r["metric"], r["value"], n=r["n"]) for r in compute_metrics(recs)]
    add_to_predictions_index(tmp_path, files)
    ResultsWriter(tmp_path / "results.csv", rows).flush()
    report = make_report(tmp_path, baseline="grpo", n_boot=200)
    table = report.table
    assert table.cell("hedger", "overall", "f1").mean > table.cell("grpo", "overall", "f1").mean
    assert table.cell("hedger", "overall", "labels").mean == 2.0
    assert len(report.hedging) == 1 and report.hedging[0].startswith("hedger vs grpo: its f1 gain")
    assert "2.00 labels per answer against 1.00 (the truth has 1.00)" in report.hedging[0]
    # a gain the evaluation cannot tell from noise (its f1 interval reaches 0) is not warned about
    from dataclasses import replace

    from rlbench_med.reports.report import hedging_warnings

    noisy = [replace(c, low=-0.01) if (c.algo, c.baseline, c.metric) == ("hedger", "grpo", "f1") else c
             for c in report.comparisons]
    assert any(c.low > 0 for c in report.comparisons if (c.algo, c.baseline, c.metric) == ("hedger", "grpo", "f1"))
    assert hedging_warnings(table, [("hedger", "grpo")], report.truth_labels, noisy) == []
    # floor:all's f1 (0.5 here: per class TP 20, FP 40) beats grpo's 0.4, so that cell is marked; a random
    # class (f1_strict about 1/3) does not beat grpo's f1_strict 0.4
    assert table.cell("grpo", "overall", "f1").mean == pytest.approx(0.4)
    assert ("grpo", "overall", "f1") in report.floor_beats and ("grpo", "overall", "f1_strict") not in report.floor_beats
    md = report.markdown.read_text()
    assert "warning" not in md.lower() or "hedger vs grpo" in md
    assert "One training seed: each cell is one run's value" in md and "mean ± std" not in md.lower().split("##")[1]
    assert "| fundus | 60 |" in md
    comps = (tmp_path / "comparisons.csv").read_text().splitlines()
    assert comps[0] == ("algo,baseline,domain,metric,diff,ci_low,ci_high,p_value,n_seeds,method,significant,"
                        "family,p_adjusted")
    assert any(line.startswith("hedger,grpo,overall,f1_strict,") and ",1,bootstrap-samples," in line for line in comps)


def test_the_paper_has_numbers_for_its_reward_weights_but_not_for_the_exact_reward_variant() -> None:
    from rlbench_med.reports.paper import paper_numbers
    from rlbench_med.suites import get_suite

    variants = get_suite("ablation_rewards").variants
    weighted = paper_numbers("ablation_rewards", "drpo[acc0.6_iou0.2]", variants)
    assert weighted and all(0 <= v <= 1 for v in weighted.values())
    assert paper_numbers("ablation_rewards", "drpo[acc0.6_iou0.2_exact]", variants) == {}


def test_detectable_effect_has_80_percent_power_by_simulation() -> None:
    import numpy as np
    from scipy import stats as sps

    from rlbench_med.reports.report import detectable_effects
    from rlbench_med.reports.stats import BOOTSTRAP, PAIRED_T, Comparison, Estimate

    # One seed's difference has sd 0.1 and no evaluation noise: the test is a paired t over 4 seeds.
    est = Estimate(0.0, 0.05, 3.0, 4, PAIRED_T, seed_var=0.01)
    paired = Comparison("drpo", "grpo", "overall", "f1_strict", 0.0, -0.1, 0.1, 1.0, 4, PAIRED_T, estimate=est)
    [effect] = detectable_effects([paired], "f1_strict")
    rng = np.random.default_rng(0)
    d = rng.normal(effect.mde, 0.1, size=(40000, 4))
    t = d.mean(1) / (d.std(1, ddof=1) / 2)
    power = np.mean(np.abs(t) > sps.t.ppf(0.975, 3))
    assert power == pytest.approx(0.8, abs=0.01)
    # One seed: bootstrap replicates of sd 0.05 -> (1.96 + 0.84) x 0.05 = 0.140
    single = Comparison("drpo", "grpo", "overall", "f1_strict", 0.0, -0.098, 0.098, 1.0, 1, BOOTSTRAP,
                        estimate=Estimate(0.0, 0.05, float("inf"), 1, BOOTSTRAP, boot=np.zeros(10)))
    assert detectable_effects([single], "f1_strict")[0].mde == pytest.approx((1.959964 + 0.841621) * 0.05, rel=1e-4)
    # comparisons with base or a floor are not about two algorithms: no MDE line
    assert detectable_effects([Comparison("drpo", "base", "overall", "f1_strict", 0, -1, 1, 1, 4, PAIRED_T,
                                          estimate=est)], "f1_strict") == []


def test_learned_lines_say_learned_did_not_learn_or_inconclusive_from_the_reference_tests() -> None:
    from rlbench_med.reports.render import learned_lines
    from rlbench_med.reports.report import Report
    from rlbench_med.reports.stats import PAIRED_T, Comparison, Estimate
    from rlbench_med.reports.testing import REFERENCE, holm_family
    from rlbench_med.suites.power import standard_error

    rows = [row(a, s, "overall", "f1_strict", v) for a, s, v in
            [("drpo", 0, 0.5), ("drpo", 1, 0.52), ("grpo", 0, 0.31), ("grpo", 1, 0.29), ("rloo", 0, 0.46),
             ("rloo", 1, 0.44), ("base", 0, 0.45), ("floor:random", 0, 0.3), ("floor:majority", 0, 0.2)]]

    def cell(algo, baseline, diff, seed_var, seeds=2):
        se, df, _ = (float(x) for x in standard_error(seed_var, 0.0001, 0.0001, seeds))
        est = Estimate(diff, se, df, seeds, PAIRED_T, seed_var, 0.0001, 0.0001)
        return Comparison(algo, baseline, "overall", "f1_strict", diff, 0, 0, 0, seeds, PAIRED_T, estimate=est)

    cells = [cell("drpo", "base", 0.06, 0.0002), cell("drpo", "floor:random", 0.21, 0.0002),
             cell("grpo", "base", -0.15, 0.0002), cell("grpo", "floor:random", 0.0, 0.0002),
             cell("rloo", "base", 0.06, 0.004, seeds=4), cell("rloo", "floor:random", 0.15, 0.0002, seeds=4)]
    comps = holm_family(cells, REFERENCE, "greater")
    report = Report("climb_vision", "", "grpo", "f1_strict", Path("."), build_table(rows), {}, None, comps,
                    best_floor="floor:random")
    drpo, grpo, rloo = learned_lines(report)
    assert comps[0].significant and comps[1].significant
    assert drpo.endswith("**learned (better than base); above the best floor (floor:random)**")
    assert grpo.endswith("**did not learn (below base); not above the best floor (floor:random)**")
    # not significant, and its interval still allows a gain of the test's MDE: not a negative result
    assert "**inconclusive whether it learned with 4 seeds (about" in rloo and "would detect +0.060)" in rloo


def test_the_method_note_says_evaluation_noise_only_for_one_seed_comparisons() -> None:
    from rlbench_med.reports.render import method_note
    from rlbench_med.reports.report import Report
    from rlbench_med.reports.stats import BOOTSTRAP, PAIRED_T, Comparison

    rows = [row(a, s, "overall", "f1_strict", 0.5) for a, s in (("drpo", 0), ("drpo", 1), ("rloo", 0), ("grpo", 0),
                                                                   ("grpo", 1))]
    comps = [Comparison("drpo", "grpo", "overall", "f1_strict", 0.0, -0.1, 0.1, 1.0, 2, PAIRED_T),
             Comparison("rloo", "grpo", "overall", "f1_strict", 0.0, -0.1, 0.1, 1.0, 1, BOOTSTRAP)]
    report = Report("climb_vision", "", "grpo", "f1_strict", Path("."), build_table(rows), {}, None, comps)
    both = method_note(report, [("drpo", "grpo"), ("rloo", "grpo")])
    assert "Satterthwaite" in both and "comparisons with one seed" in both and "evaluation noise only" in both
    alone = method_note(report, [("rloo", "grpo")])
    assert "evaluation noise only" in alone and "Satterthwaite" not in alone


def test_a_truncated_predictions_file_is_named_with_its_line(tmp_path: Path) -> None:
    write_run(tmp_path, {"drpo": 0.9, "grpo": 0.5}, seeds=(0,))
    path = tmp_path / "predictions" / "drpo-seed0.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 25])  # cut short, as by a full disk
    with pytest.raises(ComparisonError, match=f"^{path}:60: not valid JSON \\(Unterminated string starting at\\); "
                                              "the predictions file is damaged: restore it"):
        make_report(tmp_path, n_boot=50)


def test_the_report_lists_failed_jobs_with_their_reasons(tmp_path: Path) -> None:
    write_run(tmp_path, {"grpo": 0.5}, seeds=(0,))
    (tmp_path / "failed.csv").write_text("suite,algo,seed,error\n"
                                         "climb_vision,drpo,0,EstimatorFailed: estimator 'drpo' failed at step 3: x\n")
    report = make_report(tmp_path, n_boot=50)
    assert report.failed == [("drpo", 0, "EstimatorFailed: estimator 'drpo' failed at step 3: x")]
    md, page = report.markdown.read_text(), report.html.read_text()
    assert "## Failed jobs" in md and "- `drpo` seed 0: EstimatorFailed: estimator 'drpo' failed at step 3: x" in md
    assert ("<h2>Failed jobs</h2>" in page
            and "<li><code>drpo</code> seed 0: EstimatorFailed: estimator &#x27;drpo&#x27; failed at step 3: x</li>" in page)


def test_a_report_says_why_when_no_job_finished(tmp_path: Path) -> None:
    (tmp_path / "failed.csv").write_text("suite,algo,seed,error\nclimb_ecg,grpo,1,RuntimeError: boom\n")
    report = make_report(tmp_path, rows=[], n_boot=50)
    md = report.markdown.read_text()
    assert md.startswith("# rlbench-med report: climb_ecg\n")
    assert "## Failed jobs" in md and "- `grpo` seed 1: RuntimeError: boom" in md
