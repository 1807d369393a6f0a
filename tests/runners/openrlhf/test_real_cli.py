"""Our launch flags against OpenRLHF 0.11.2's real ``train_ppo_ray`` command line (parser and ``__main__`` checks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlbench_med.algorithms import list_estimators, make_estimator
from rlbench_med.runners.base import Job
from rlbench_med.runners.openrlhf import RUNNER, OpenRLHFConfig
from rlbench_med.runners.openrlhf.flags import LaunchPaths, openrlhf_flags, owned_flag_sources
from rlbench_med.runners.openrlhf.guard import (
    BYPASS,
    SNAPSHOT,
    bypassing,
    check_user_flags,
    flag_table_from_source,
    parse_flags,
    parser_from_source,
)
from rlbench_med.runners.openrlhf.runner import context
from rlbench_med.runners.openrlhf.startup import gpus_needed
from rlbench_med.typed_config import ConfigError
from tests.runners.openrlhf.conftest import openrlhf_main_args, require_openrlhf_stack


@pytest.fixture(scope="module")
def source() -> Path:
    require_openrlhf_stack()
    import openrlhf.cli

    return Path(openrlhf.cli.__file__).with_name("train_ppo_ray.py")


def job(estimator: str, tmp_path: Path, **config: object) -> Job:
    return Job(suite="climb_vision", algo=estimator, estimator=estimator, seed=5,
               config=OpenRLHFConfig(**config), data_dir=tmp_path / "data", out_dir=tmp_path / "out")


def test_the_flag_snapshot_is_openrlhfs_own_table(source):
    import json

    def stable(table: list[dict]) -> list[dict]:  # the wandb run name default is the launch time
        return [{**e, "default": None} if e["dest"] == "logger.wandb.run_name" else e for e in table]

    real = stable(flag_table_from_source(source))
    assert len(real) > 150
    assert stable(json.loads(SNAPSHOT.read_text())) == json.loads(json.dumps(real))


@pytest.mark.parametrize("estimator", list_estimators())
def test_openrlhfs_main_accepts_every_estimators_plan(estimator, tmp_path, monkeypatch, source):
    text = estimator == "ppo"  # OpenRLHF has no critic for VLMs
    j = job(estimator, tmp_path, model="/models/m", vlm=not text, kl_mode="loss",
            openrlhf_args=("--ds.adam_offload",))
    RUNNER.check(j)
    argv = openrlhf_flags(context(j))
    args = openrlhf_main_args(argv, monkeypatch)  # the real parser, then every check of its __main__
    critic = "values" in make_estimator(estimator).requires
    assert args.algo.advantage.estimator == ("gae" if critic else "reinforce")
    assert (args.critic.model_name_or_path == "/models/m") == critic  # __main__ builds a critic only for gae
    assert args.train.seed == 5 and args.rollout.n_samples_per_prompt == 8 and args.ds.adam_offload
    assert args.reward.remote_url == [str(Path(__file__).resolve().parents[3] / "rlbench_med/runners/openrlhf/reward.py")]
    assert args.data.max_images_per_prompt == (0 if text else 1)
    assert not args.train.async_enable and bypassing(args) == []
    # the snapshot parser reads the same flags the same way (it sizes the GPU check before a launch)
    ours = parse_flags(argv)
    real = parser_from_source(source).parse_args(argv)
    skip = "logger.wandb.run_name"  # its default is the launch time
    assert {k: v for k, v in vars(real).items() if k != skip} == {k: _get(ours, k) for k in vars(real) if k != skip}
    assert gpus_needed(ours) == gpus_needed(args) == (8, "actor, reference and vLLM engines colocated on 8")


def _get(namespace: object, dest: str) -> object:
    for part in dest.split("."):
        namespace = getattr(namespace, part)
    return namespace


@pytest.mark.parametrize(
    ("flag", "said"),
    [
        ("--train.async_e", "--train.async_enable (as OpenRLHF resolves the abbreviation) is refused: it switches"),
        ("--train.agent_func=a.py", "--train.agent_func_path (as OpenRLHF resolves the abbreviation) is refused"),
        ("--eval.temp=0.3", "--eval.temperature (as OpenRLHF resolves the abbreviation) would be ignored"),
        ("--eval.dataset=x.jsonl", "--eval.dataset would be ignored: OpenRLHF's evaluation"),
        ("--ckpt.best_m=acc", "--ckpt.best_metric_key (as OpenRLHF resolves the abbreviation) would be ignored"),
        ("--algo.advantage.gam=0.9", "--algo.advantage.gamma (as OpenRLHF resolves the abbreviation) would be ignored"),
        ("--rollout.batch=4", "--rollout.batch_size (as OpenRLHF resolves the abbreviation) is set by the runner "
                              "from rollout_batch_size"),
        ("--rollout.temp=0.7", "is set by the runner from temperature"),
    ],
)
def test_user_flags_are_resolved_like_openrlhf_before_the_guard(flag, said, source):
    with pytest.raises(ConfigError, match="openrlhf_args: ") as caught:
        check_user_flags([flag], owned_flag_sources())
    assert said in str(caught.value)
    # and OpenRLHF's own parser does resolve the spelling to that flag
    name = flag.split("=")[0]
    real = parser_from_source(source)
    resolved = real._parse_optional(name)
    actions = resolved if isinstance(resolved, list) else [resolved]
    assert any(a[0] is not None and a[0].option_strings[0] in str(caught.value) for a in actions)


def test_allowed_abbreviations_pass_and_unknown_flags_name_openrlhfs_error(source):
    check_user_flags(["--ds.adam_off", "--ds.zpg=2", "--algo.dynamic_filtering_enable"], owned_flag_sources())
    with pytest.raises(ConfigError, match="unrecognized arguments: --no.such"):
        check_user_flags(["--no.such"], owned_flag_sources())
    with pytest.raises(ConfigError, match="ambiguous option: --train.a"):
        check_user_flags(["--train.a"], owned_flag_sources())


def test_the_runner_check_uses_the_guard(tmp_path, source):
    with pytest.raises(ConfigError, match="--train.async_enable"):
        RUNNER.check(job("grpo", tmp_path, openrlhf_args=("--train.async",)))


def test_openrlhfs_main_rejects_a_bypass_the_launch_would_catch(tmp_path, monkeypatch, source):
    j = job("grpo", tmp_path, model="/m", vlm=False)
    argv = openrlhf_flags(context(j)) + ["--train.async_enable", "--train.colocate_all"]
    with pytest.raises(AssertionError, match="Async RLHF is not supported with --vllm.enable_sleep"):
        openrlhf_main_args(argv, monkeypatch)
    argv = [a for a in openrlhf_flags(context(job("grpo", tmp_path, model="/m", vlm=False, colocate=False)))]
    args = openrlhf_main_args(argv + ["--train.async_enable"], monkeypatch)
    assert bypassing(args) == ["--train.async_enable"] and set(BYPASS) >= {"train.async_enable"}
    assert LaunchPaths.for_job(j).spec.name == "run_spec.json"
