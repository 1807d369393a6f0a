"""Config-time checks shared by the runners' configs (reward function, weights, IoU reduction)."""

from __future__ import annotations

import pytest

from rlbench_med.runners.config import LocalConfig, check_reward_settings
from rlbench_med.runners.openrlhf.config import OpenRLHFConfig
from rlbench_med.suites.rewards import RewardWeights
from rlbench_med.typed_config import ConfigError


@pytest.mark.parametrize("spec", ["nan,0,0,0", "0,0,0,0", "inf,1,1,1", "0.6,0.2,0.1"])
def test_invalid_reward_weights_fail_at_config_time(spec: str) -> None:
    with pytest.raises(ConfigError, match="reward_weights"):
        check_reward_settings("paper", spec, "max")
    with pytest.raises(ConfigError, match="reward_weights"):
        LocalConfig(reward_weights=spec)
    with pytest.raises(ConfigError, match="reward_weights"):
        OpenRLHFConfig(reward_weights=spec)


def test_reward_weights_accept_every_separator() -> None:
    for spec in ("0.2,0.6,0.1,0.1", "0.2;0.6;0.1;0.1", "0.2:0.6;0.1,0.1", " 0.2 , 0.6 ,, 0.1 , 0.1 ,"):
        assert RewardWeights.parse(spec) == RewardWeights(0.2, 0.6, 0.1, 0.1)
        check_reward_settings("release", spec, "max")


def test_auto_weights_are_each_rewards_own_and_paper_is_the_papers() -> None:
    assert RewardWeights.parse("auto", "paper") == RewardWeights(0.6, 0.2, 0.1, 0.1)
    assert RewardWeights.parse("auto", "release") == RewardWeights(0.5, 0.3, 0.1, 0.1)
    assert RewardWeights.parse("paper", "release") == RewardWeights(0.6, 0.2, 0.1, 0.1)
    assert (LocalConfig().reward, LocalConfig().reward_weights) == ("paper", "auto")


def test_retired_release_weights_say_what_to_use() -> None:
    for config in (LocalConfig, OpenRLHFConfig):
        with pytest.raises(ConfigError, match=r"reward_weights: .*use reward=release .* reward_weights=0.5,0.3,0.1,0.1"):
            config(reward_weights="release")


def test_unknown_reward_and_misplaced_iou_reduce_name_the_field() -> None:
    for config in (LocalConfig, OpenRLHFConfig):
        with pytest.raises(ConfigError, match="reward: 'grader' is not a reward function.*Use one of paper, release"):
            config(reward="grader")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="iou_reduce: applies to reward=paper"):
            config(reward="release", iou_reduce="mean")
        assert config(reward="release").reward == "release"


def test_the_local_runner_scores_with_the_configured_reward() -> None:
    from rlbench_med.runners.local.train import make_reward_fn
    from rlbench_med.suites.rewards import ReleaseReward, RewardFunction

    release = make_reward_fn(LocalConfig(reward="release"))
    assert isinstance(release, ReleaseReward) and release.weights == RewardWeights(0.5, 0.3, 0.1, 0.1)
    paper = make_reward_fn(LocalConfig(reward_weights="0.5,0.3,0.1,0.1", iou_reduce="mean"))
    assert isinstance(paper, RewardFunction) and paper.iou_reduce == "mean"
    assert paper.weights == RewardWeights(0.5, 0.3, 0.1, 0.1)
