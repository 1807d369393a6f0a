"""The tune's search space, trials and record (runners/sweep/tuning.py), without training."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from rlbench_med.runners.base import RUNNERS
from rlbench_med.runners.local import RUNNER as LOCAL
from rlbench_med.runners.local.runner import TUNABLE
from rlbench_med.runners.sweep.tuning import (
    DEFAULT_DIMENSIONS,
    TUNE_SEED_OFFSET,
    Dimension,
    TuneRecord,
    draw_trials,
    parse_space,
    read_record,
    tune_seeds,
    write_record,
)
from rlbench_med.typed_config import ConfigError


def test_a_named_setting_takes_its_default_range_and_a_range_keeps_its_scale() -> None:
    lr, kl, temp, n = parse_space("lr,kl_coef=0.01:0.5,temperature=0.8:1.2,n_rollouts=4|16", LOCAL)
    assert lr == DEFAULT_DIMENSIONS["lr"] == Dimension("lr", "log", 1e-4, 1e-2)
    assert (kl.kind, kl.low, kl.high) == ("log", 0.01, 0.5)  # kl_coef's default scale is log
    assert (temp.kind, temp.low, temp.high) == ("linear", 0.8, 1.2)
    assert (n.kind, n.values) == ("choice", (4, 16)) and all(type(v) is int for v in n.values)
    (lin,) = parse_space("lr=0.001:0.01:linear", LOCAL)
    assert lin.kind == "linear"
    (steps_like,) = parse_space("prompts_per_step=8:64", LOCAL)
    assert steps_like.integer and steps_like.kind == "linear"


@pytest.mark.parametrize(("space", "message"), [
    ("steps", "steps is not tunable: it changes the shared base, the evaluation, the reward or the number of steps"),
    ("sft_lr", "sft_lr is not tunable"),
    ("lr_rate", "'lr_rate' is not a setting of the local runner; tunable: .*kl_coef"),
    ("lr=0:0.1", "a log scale needs LOW > 0"),
    ("lr=0.1:0.01", "LOW must be below HIGH"),
    ("lr=0.1", "expected lr=LOW:HIGH"),
    ("lr,lr", "lr given twice"),
    ("kl_mode=loss:reward", "'loss:reward' is not one of 'loss', 'reward'"),
    ("temperature=a:b", "expected a number"),
    (",", "name at least one setting"),
])
def test_a_bad_space_is_refused_naming_the_item(space: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_space(space, LOCAL)


def test_every_tunable_field_leaves_the_shared_base_alone_and_has_a_default_range() -> None:
    from rlbench_med.runners.local.sft import _NOT_BASE

    assert TUNABLE <= _NOT_BASE  # none of them changes the SFT base every estimator starts from
    assert not TUNABLE & {"steps", "eval_every", "eval_max_samples", "reward", "reward_weights", "sft_steps"}
    assert TUNABLE <= set(DEFAULT_DIMENSIONS)
    for name in TUNABLE:  # each default range gives valid configs at both ends
        d = DEFAULT_DIMENSIONS[name]
        for value in (d.values if d.kind == "choice" else (d.low, d.high)):
            dataclasses.replace(LOCAL.config_cls(), **{name: value})


def test_trial_0_is_the_shared_setting_and_the_draws_repeat_with_the_seed() -> None:
    space = parse_space("lr,n_rollouts", LOCAL)
    trials = draw_trials(space, 5, seed=3)
    assert [t.index for t in trials] == [0, 1, 2, 3, 4] and trials[0].setting == {}
    assert [t.label for t in trials][:2] == ["trial0", "trial1"]
    assert trials == draw_trials(space, 5, seed=3)
    assert trials[1:] != draw_trials(space, 5, seed=4)[1:]
    assert draw_trials(space, 3, seed=3) == trials[:3]  # a smaller budget is a prefix of a larger one
    for t in trials[1:]:
        assert 1e-4 <= t.setting["lr"] <= 1e-2 and t.setting["n_rollouts"] in (4, 8, 16)
        assert t.setting["lr"] == float(f"{t.setting['lr']:.3g}")  # 3 significant digits


def test_a_log_dimension_is_uniform_in_the_log_and_a_linear_one_in_the_value() -> None:
    log_draws = [t.setting["lr"] for t in draw_trials(parse_space("lr=0.0001:1", LOCAL), 400, seed=0)[1:]]
    lin_draws = [t.setting["temperature"] for t in draw_trials(parse_space("temperature=0.5:1.5", LOCAL), 400,
                                                              seed=0)[1:]]
    # Kolmogorov-Smirnov against the intended distributions (rounding to 3 digits moves a value by < 0.05%)
    assert stats.kstest(np.log10(log_draws), stats.uniform(loc=-4, scale=4).cdf).pvalue > 0.01
    assert stats.kstest(lin_draws, stats.uniform(loc=0.5, scale=1.0).cdf).pvalue > 0.01
    assert stats.kstest(np.log10(lin_draws), stats.uniform(loc=np.log10(0.5), scale=np.log10(3)).cdf).pvalue < 0.01


def test_integer_ranges_include_both_ends() -> None:
    draws = {t.setting["prompts_per_step"] for t in draw_trials(parse_space("prompts_per_step=2:4", LOCAL), 200, 0)[1:]}
    assert draws == {2, 3, 4}


@pytest.mark.parametrize("budget", [0, 501])
def test_a_budget_outside_1_to_500_is_refused(budget: int) -> None:
    with pytest.raises(ConfigError, match="--budget"):
        draw_trials(parse_space("lr", LOCAL), budget, 0)


def test_tuning_seeds_are_not_the_final_runs() -> None:
    assert tune_seeds((0, 1, 2, 3)) == (1000, 1001, 1002, 1003) and TUNE_SEED_OFFSET == 1000


def _record(**kw) -> TuneRecord:
    base = dict(suite="fake_suite", profile="quick", runner="fake", primary_metric="f1_strict", budget=2,
                search_seed=0, space=[Dimension("lr", "log", 0.001, 0.1).as_dict()], seeds=[1000], algos=["grpo"],
                trials=[{"trial": 0, "label": "trial0", "setting": {}},
                        {"trial": 1, "label": "trial1", "setting": {"lr": 0.01}}],
                config={"steps": 3, "lr": 0.1}, data_settings={}, overrides={"steps": 3})
    base.update(kw)
    return TuneRecord(**base)


def test_the_record_and_tuned_files_read_back(tmp_path: Path) -> None:
    import yaml

    from rlbench_med.runners.sweep.experiment import read_experiment

    record = _record(chosen={"grpo": {"trial": 1, "setting": {"lr": 0.01}, "score": 0.5}})
    write_record(record, tmp_path)
    back = read_record(tmp_path)
    assert back == record and back.chosen["grpo"]["file"] == "tuned/grpo.yaml"
    # the tuned file is what --config reads: the tune's own keys and the chosen setting
    assert read_experiment(tmp_path / "tuned" / "grpo.yaml").settings == {"steps": 3, "lr": 0.01}
    assert "trial 1 of 2" in (tmp_path / "tuned" / "grpo.yaml").read_text().splitlines()[0]
    assert yaml.safe_load((tmp_path / "tuned" / "grpo.yaml").read_text()) == {"steps": 3, "lr": 0.01}


@pytest.mark.parametrize(("content", "message"), [
    (None, "no tune.json there; give the output folder of `rlbench-med tune`"),
    ("{", "not valid JSON"),
    (json.dumps({"format": 99}), "not a tune record of format 1"),
    (json.dumps({"format": 1, "suite": "x"}), "lacks"),
])
def test_a_missing_or_damaged_record_is_refused_in_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "tune.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_record(tmp_path)


def test_a_tune_that_chose_nothing_is_refused(tmp_path: Path) -> None:
    write_record(_record(), tmp_path)
    with pytest.raises(ConfigError, match="chose no setting"):
        read_record(tmp_path)


def test_the_local_runner_declares_what_tune_needs() -> None:
    assert LOCAL.validation_only and LOCAL.tunable == TUNABLE
    assert not RUNNERS.get("openrlhf").validation_only  # its jobs always score the test split
    assert math.isclose(DEFAULT_DIMENSIONS["kl_coef"].high, 0.3)


def test_the_readme_names_every_default_range() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("**The space.**"):text.index("**The test split is untouched")]
    for d in DEFAULT_DIMENSIONS.values():
        shown = ("`{}`".format(d.name), *(str(v) for v in d.values))
        assert all(part in section for part in shown), d.name
    assert "`lr` log-uniform on [1e-4, 1e-2]" in section and "`kl_coef` log-uniform on [1e-3, 0.3]" in section
