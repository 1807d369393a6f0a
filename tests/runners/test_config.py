"""Config-time checks shared by the runners' configs (reward weights)."""

from __future__ import annotations

import pytest

from rlbench_med.runners.config import LocalConfig, parse_reward_weights
from rlbench_med.runners.openrlhf.config import OpenRLHFConfig
from rlbench_med.typed_config import ConfigError


@pytest.mark.parametrize("spec", ["nan,0,0,0", "0,0,0,0", "inf,1,1,1", "0.6,0.2,0.1"])
def test_invalid_reward_weights_fail_at_config_time(spec: str) -> None:
    with pytest.raises(ConfigError, match="reward_weights"):
        parse_reward_weights(spec)
    with pytest.raises(ConfigError, match="reward_weights"):
        LocalConfig(reward_weights=spec)
    with pytest.raises(ConfigError, match="reward_weights"):
        OpenRLHFConfig(reward_weights=spec)


def test_reward_weights_accept_every_separator() -> None:
    assert parse_reward_weights(" release ") == "release"
    for spec in ("0.2,0.6,0.1,0.1", "0.2;0.6;0.1;0.1", "0.2:0.6;0.1,0.1", " 0.2 , 0.6 ,, 0.1 , 0.1 ,"):
        assert parse_reward_weights(spec) == (0.2, 0.6, 0.1, 0.1)
