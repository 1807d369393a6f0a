"""Classes a trained policy gives up, against hand-counted recalls."""

from __future__ import annotations

import json
from pathlib import Path

from rlbench_med.reports.classes import class_recall, given_up


def records(domain: str, answers: list[tuple[str, str]]) -> list[dict]:
    return [{"domain": domain, "labels": [t], "predicted": [p]} for t, p in answers]


def answered(truth: str, right: int, n: int, other: str) -> list[tuple[str, str]]:
    return [(truth, truth)] * right + [(truth, other)] * (n - right)


def test_class_recall_counts_single_label_records_answered_with_their_class_alone() -> None:
    recs = records("ihm48", [("Yes", "Yes"), ("Yes", "No"), ("No", "No")])
    recs += [{"domain": "ihm48", "labels": ["Yes"], "predicted": ["Yes", "No"]}]  # hedged: not a hit
    recs += [{"domain": "cxr", "labels": ["a", "b"], "predicted": ["a", "b"]}]  # multi-label: not counted
    assert class_recall(recs) == {("ihm48", "Yes"): (1, 3), ("ihm48", "No"): (1, 1)}


def test_a_class_is_given_up_where_a_seeds_recall_is_half_of_bases_or_less() -> None:
    # base: "Yes" 12 of 20 (0.60), "No" 70 of 80, "rare" 5 of 10 (too few records to judge)
    base = records("ihm48", answered("Yes", 12, 20, "No") + answered("No", 70, 80, "Yes") + answered("rare", 5, 10, "No"))
    runs = {
        ("base", 0): base,
        # seed 0: "Yes" 6 of 20 = 0.30 = 0.5 x 0.60 (given up); seed 1: 7 of 20 = 0.35 (kept); "rare" 0 of 10
        ("grpo", 0): records("ihm48", answered("Yes", 6, 20, "No") + answered("No", 80, 80, "Yes")
                             + answered("rare", 0, 10, "No")),
        ("grpo", 1): records("ihm48", answered("Yes", 7, 20, "No") + answered("No", 80, 80, "Yes")),
        ("rloo", 0): base,
    }
    [hit] = given_up(runs, {"grpo": "base", "rloo": "base", "drpo@text": "base@text"})
    assert (hit.algo, hit.domain, hit.label, hit.support, hit.seeds) == ("grpo", "ihm48", "Yes", 20, 2)
    assert hit.base_recall == 0.6 and hit.recalls == ((0, 0.3),)
    assert hit.line() == '`grpo`: ihm48 "Yes" (20 records): recall 0.60 at `base`, 0.30 (seed 0); 1 of 2 seeds'


def test_the_report_lists_the_classes_given_up_or_says_none(tmp_path: Path) -> None:
    from rlbench_med.reports.report import make_report
    from rlbench_med.runners.sweep import ResultsWriter
    from rlbench_med.runners.sweep.results import add_to_predictions_index
    from rlbench_med.suites import compute_metrics

    def write(folder: Path, runs: dict) -> None:
        (folder / "predictions").mkdir(parents=True)
        rows, files = [], {}
        for (algo, seed), answers in runs.items():
            recs = [{"uid": f"{i:03d}", "domain": "ihm48", "dataset": "MIMIC-IV", "labels": [t], "predicted": [p]}
                    for i, (t, p) in enumerate(answers)]
            path = folder / "predictions" / f"{algo}-seed{seed}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in recs))
            files[(algo, seed)] = path
            rows += [dict(suite="mimic_fusion", algo=algo, seed=seed, **r) for r in compute_metrics(recs)]
        add_to_predictions_index(folder, files)
        ResultsWriter(folder / "results.csv", rows).flush()

    start = answered("Yes", 15, 25, "No") + answered("No", 60, 75, "Yes")
    majority = answered("Yes", 5, 25, "No") + answered("No", 75, 75, "Yes")  # more right answers, "Yes" given up
    write(tmp_path / "a", {("base", 0): start, ("grpo", 0): majority, ("grpo", 1): start})
    md = make_report(tmp_path / "a", n_boot=50).markdown.read_text()
    assert "## Classes given up" in md
    assert '- `grpo`: ihm48 "Yes" (25 records): recall 0.60 at `base`, 0.20 (seed 0); 1 of 2 seeds' in md
    write(tmp_path / "b", {("base", 0): start, ("grpo", 0): start, ("grpo", 1): start})
    md = make_report(tmp_path / "b", n_boot=50).markdown.read_text()
    assert "None: no trained policy gave up a class by this rule." in md
