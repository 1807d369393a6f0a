"""A tune with the local runner on tiny data: no test record is answered or scored while tuning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlbench_med.runners import sweep
from rlbench_med.runners.local import train
from rlbench_med.runners.sweep.tuning import read_record, tune_plan
from rlbench_med.suites import metrics
from tests.runners.local.conftest import TINY

SETTINGS = {k: ",".join(v) if isinstance(v, tuple) else str(v) for k, v in TINY.items()}


def test_tuning_answers_and_scores_validation_records_only(tiny_root: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from rlbench_med.reports.tuning import finish_tune

    test_uids = {json.loads(line)["id"] for line in (tiny_root / "test.jsonl").read_text().splitlines() if line}
    answered: list[str] = []
    scored: list[str] = []
    evaluate, from_records = train.evaluate, metrics.DatasetTruth.from_records.__func__

    def spy_evaluate(agent, model, split, *args, **kwargs):
        answered.extend(s.uid for s in split.samples)
        return evaluate(agent, model, split, *args, **kwargs)

    def spy_from_records(cls, domain, dataset, records, multi_label=None):
        scored.extend(str(r.get("uid")) for r in records)
        return from_records(cls, domain, dataset, records, multi_label)

    monkeypatch.setattr(train, "evaluate", spy_evaluate)
    monkeypatch.setattr(metrics.DatasetTruth, "from_records", classmethod(spy_from_records))
    request = sweep.SweepRequest(suite="climb_vision", algos=("grpo",), seeds=(1000,), data=str(tiny_root),
                                 out=tmp_path / "t", overrides={**SETTINGS, "workers": "1"})  # the spies see this process
    tune = tune_plan(request, budget=2, space="lr", search_seed=0)
    assert [(j.algo, j.seed, j.score_test) for j in tune.plan.jobs] == [
        ("base", 0, False), ("grpo[trial0]", 1000, False), ("grpo[trial1]", 1000, False)]
    outcome = sweep.run_sweep(tune.plan, report=lambda outcome: finish_tune(tune.plan.out_dir, tune.record)[1])
    assert outcome.ok
    assert answered and scored and not (set(answered) | set(scored)) & test_uids
    assert {u.split("-")[0] for u in answered} == {"validation"}
    out = tmp_path / "t"
    assert not (out / "results.csv").exists() and not list((out / "predictions").glob("*.jsonl"))
    assert set(read_record(out).chosen) == {"grpo"}
    rows = sweep.read_results(out / "validation.csv")
    assert {r["algo"] for r in rows} >= {"base", "grpo[trial0]", "grpo[trial1]", "floor:all"}
