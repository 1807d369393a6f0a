"""Dry-run plans and the launch command, checked against OpenRLHF 0.11.2's own argument parser."""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from rlbench_med.algorithms import list_estimators, make_estimator
from rlbench_med.runners.base import RUNNERS, Job
from rlbench_med.runners.openrlhf import RUNNER, OpenRLHFConfig
from rlbench_med.runners.openrlhf.flags import (
    FLAG_RULES,
    LAUNCH_MODULE,
    SPEC_FLAG,
    LaunchContext,
    LaunchPaths,
    flag_table_markdown,
    openrlhf_flags,
)
from rlbench_med.runners.openrlhf.launch import split_argv
from rlbench_med.typed_config import ConfigError
from tests.runners.openrlhf.conftest import openrlhf_experience

README = Path(__file__).resolve().parents[3] / "README.md"


def job(estimator: str, tmp_path: Path, **config: object) -> Job:
    return Job(suite="climb_vision", algo=estimator, estimator=estimator, seed=3,
               config=OpenRLHFConfig(**config), data_dir=tmp_path / "data", out_dir=tmp_path / "out")


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


@pytest.fixture
def openrlhf_parser(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser built by ``openrlhf/cli/train_ppo_ray.py``'s ``__main__`` block, captured at parse_args.

    The GPU-only modules it imports at the top (vLLM engines, DeepSpeed actors) are replaced by
    empty stand-ins; the parser definitions themselves run unchanged.
    """
    openrlhf_experience()  # skip (locally) or fail (CI) without the no-deps install
    import openrlhf.cli

    names = {
        "openrlhf.trainer.ray": ["create_vllm_engines"],
        "openrlhf.trainer.ray.launcher": ["RayActorGroup", "ReferenceModelActor", "RewardModelActor"],
        "openrlhf.trainer.ray.ppo_actor": ["PolicyModelActor"],
        "openrlhf.trainer.ray.ppo_critic": ["CriticModelActor"],
    }
    for module, attrs in names.items():
        stub = types.ModuleType(module)
        for attr in attrs:
            setattr(stub, attr, object())
        monkeypatch.setitem(sys.modules, module, stub)

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    script = Path(openrlhf.cli.__file__).with_name("train_ppo_ray.py")
    with pytest.raises(_Parsed) as caught:
        runpy.run_path(str(script), run_name="__main__")
    monkeypatch.undo()
    return caught.value.parser


@pytest.mark.parametrize("estimator", list_estimators())
def test_dry_run_plan_names_ray_openrlhf_and_the_estimator(estimator, tmp_path):
    text_model = estimator == "ppo"  # a critic needs a text-only model
    j = job(estimator, tmp_path, model="/models/qwen", vlm=not text_model)
    RUNNER.check(j)
    lines = RUNNER.plan(j)
    plan = "\n".join(lines)
    assert "Ray" in plan and "OpenRLHF 0.11.2" in plan and f"estimator {estimator!r}" in plan
    command = lines[-1].split("command: ", 1)[1].split()
    assert command[:3] == [sys.executable, "-m", LAUNCH_MODULE]
    assert command[3:5] == [SPEC_FLAG, str(LaunchPaths.for_job(j).spec)]
    if "baseline_rewards" in make_estimator(estimator).requires:
        assert "greedy vLLM response per prompt (n=1, temperature 0)" in plan
    want = "gae" if "values" in make_estimator(estimator).requires else "reinforce"
    assert command[command.index("--algo.advantage.estimator") + 1] == want
    assert ("--critic.model_name_or_path" in command) == (want == "gae")


def test_plan_works_without_a_model(tmp_path):
    j = job("drpo", tmp_path)
    RUNNER.check(j)
    assert "<unset: --set model=/path/to/model>" in "\n".join(RUNNER.plan(j))


def test_registry_resolves_the_runner():
    assert RUNNERS.get("openrlhf") is RUNNER and RUNNER.config_cls is OpenRLHFConfig


def test_openrlhfs_parser_accepts_the_command_and_reads_our_values(openrlhf_parser, tmp_path):
    from openrlhf.utils.config import hierarchize

    cfg = dict(model="/models/qwen-vl", vlm=True, n_samples_per_prompt=6, rollout_batch_size=32,
               train_batch_size=64, lr=2e-6, clip_low=0.2, clip_high=0.3, kl_coef=0.01, num_nodes=2,
               gpus_per_node=4, vllm_num_engines=8, max_samples=500, openrlhf_args=("--ds.adam_offload",))
    j = job("drpo:k_max=3", tmp_path, **cfg)
    argv = split_argv(RUNNER.plan(j)[-1].split("command: ", 1)[1].split()[3:])[1]
    args = hierarchize(openrlhf_parser.parse_args(argv))
    assert args.actor.model_name_or_path == "/models/qwen-vl"
    assert args.rollout.n_samples_per_prompt == 6 and args.rollout.batch_size == 32
    assert args.train.batch_size == 64 and args.train.seed == 3
    assert args.actor.adam.lr == 2e-6 and list(args.actor.eps_clip_low_high) == [0.2, 0.3]
    assert args.algo.kl.init_coef == 0.01 and args.algo.kl.use_loss and args.algo.kl.estimator == "k3"
    assert args.algo.advantage.estimator == "reinforce" and args.critic.model_name_or_path is None
    assert args.actor.num_nodes == 2 and args.actor.num_gpus_per_node == 4 and args.ref.num_nodes == 2
    assert args.vllm.num_engines == 8 and args.train.colocate_all and args.vllm.enable_sleep
    assert args.data.label_key == "label" and args.data.input_key == "input" and args.data.apply_chat_template
    assert args.data.image_key == "images" and args.data.max_images_per_prompt == 1
    assert args.actor.freeze_visual_encoder and args.data.max_samples == 500
    assert args.reward.remote_url.endswith("rlbench_med/runners/openrlhf/reward.py")
    assert args.ds.adam_offload and args.ckpt.save_steps == 50 and not args.ckpt.load_enable


def test_every_flag_of_the_table_exists_in_openrlhf(openrlhf_parser):
    known = {opt for action in openrlhf_parser._actions for opt in action.option_strings}
    assert {rule.flag for rule in FLAG_RULES} <= known


def test_text_model_and_reward_mode_flags(tmp_path):
    cfg = OpenRLHFConfig(model="/m", vlm=False, kl_mode="reward", checkpoint_every=0, colocate=False)
    argv = openrlhf_flags(LaunchContext(cfg, 0, critic=True, vlm=False, paths=LaunchPaths.for_job(job("ppo", tmp_path)),
                                        resume=True))
    for absent in ("--data.image_key", "--actor.freeze_visual_encoder", "--algo.kl.use_loss", "--train.colocate_all"):
        assert absent not in argv
    assert argv[argv.index("--algo.kl.estimator") + 1] == "k1"
    assert argv[argv.index("--ckpt.save_steps") + 1] == "-1"
    assert "--ckpt.load_enable" in argv and argv[argv.index("--critic.model_name_or_path") + 1] == "/m"


def test_checks_refuse_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="no critic for vision-language models"):
        RUNNER.check(job("ppo", tmp_path, model="/m", vlm=True))
    with pytest.raises(ConfigError, match="kl_mode=loss"):
        RUNNER.check(job("drpo", tmp_path, kl_mode="reward"))
    with pytest.raises(ConfigError, match="kl_coef > 0"):
        RUNNER.check(job("drpo", tmp_path, kl_coef=0.0))
    RUNNER.check(job("drpo_nokl", tmp_path, kl_coef=0.0))
    with pytest.raises(ConfigError, match="n_samples_per_prompt >= 2"):
        RUNNER.check(job("grpo", tmp_path, n_samples_per_prompt=1, rollout_batch_size=128))
    with pytest.raises(ConfigError, match="--runner local"):
        RUNNER.check(job("sft", tmp_path))
    with pytest.raises(ConfigError, match="set by the runner"):
        RUNNER.check(job("grpo", tmp_path, openrlhf_args=("--rollout.batch_size=4",)))


def test_vlm_is_detected_from_config_json(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2_5_vl", "vision_config": {}}')
    assert OpenRLHFConfig(model=str(model)).detect_vlm() is True
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    assert OpenRLHFConfig(model=str(model)).detect_vlm() is False
    RUNNER.check(job("ppo", tmp_path, model=str(model)))


def test_config_invariants_say_what_to_change():
    with pytest.raises(ConfigError, match="colocate=true"):
        OpenRLHFConfig(vllm_num_engines=2)
    with pytest.raises(ConfigError, match="multiple of train_batch_size"):
        OpenRLHFConfig(rollout_batch_size=10, n_samples_per_prompt=3)
    with pytest.raises(ConfigError, match="below max_len"):
        OpenRLHFConfig(max_new_tokens=4096)
    with pytest.raises(ConfigError, match="accuracy_reward: applies to reward=paper"):
        OpenRLHFConfig(reward="release", accuracy_reward="exact")
    with pytest.raises(ConfigError, match="accuracy_reward: 'strict' is not one of 'set_f1', 'exact'"):
        OpenRLHFConfig(accuracy_reward="strict")  # type: ignore[arg-type]
    assert replace(OpenRLHFConfig(), kl_mode="reward").kl_estimator_name == "k1"


def test_readme_flag_table_is_the_generated_one():
    assert flag_table_markdown() in README.read_text(encoding="utf-8")


def test_device_cpu_needs_separate_devices_and_launches_eager_with_a_gloo_sync(tmp_path):
    with pytest.raises(ConfigError, match="device=cpu: vLLM's CPU build has no sleep mode.*set colocate=false"):
        OpenRLHFConfig(device="cpu")
    cpu = openrlhf_flags(LaunchContext(OpenRLHFConfig(device="cpu", colocate=False, model="/m"), 0, False, False,
                                       LaunchPaths.for_job(job("grpo", tmp_path))))
    assert "--vllm.enforce_eager" in cpu and cpu[cpu.index("--vllm.sync_backend") + 1] == "gloo"
    cuda = openrlhf_flags(LaunchContext(OpenRLHFConfig(model="/m"), 0, False, False,
                                        LaunchPaths.for_job(job("grpo", tmp_path))))
    assert "--vllm.enforce_eager" not in cuda and "--vllm.sync_backend" not in cuda  # OpenRLHF's defaults on GPUs


def test_the_cpu_patches_do_nothing_unless_the_launch_asked_for_them(monkeypatch):
    import torch

    from rlbench_med.runners.openrlhf import cpu

    monkeypatch.delenv(cpu.DEVICE_ENV, raising=False)
    before = (torch.cuda.set_device, torch.cuda.current_device, torch.cuda.synchronize, torch.cuda.current_stream)
    cpu.install()
    cpu.vllm_plugin()
    assert (torch.cuda.set_device, torch.cuda.current_device, torch.cuda.synchronize, torch.cuda.current_stream) == before
    assert cpu.environment()[cpu.DEVICE_ENV] == "cpu" and cpu.environment()["DS_ACCELERATOR"] == "cpu"


def test_the_tiny_model_refuses_a_head_size_vllms_cpu_attention_lacks(tmp_path):
    from rlbench_med.runners.openrlhf.tiny_model import HEAD_SIZE, write_tiny_chat_model

    with pytest.raises(ValueError, match=f"hidden_size must be a multiple of {HEAD_SIZE}"):
        write_tiny_chat_model(tmp_path / "m", hidden_size=48)
    assert not (tmp_path / "m").exists()
    config = json.loads((write_tiny_chat_model(tmp_path / "ok", hidden_size=64) / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == HEAD_SIZE == 32


def test_the_readmes_cpu_run_is_the_one_ci_makes():
    import re

    from tests.runners.openrlhf.test_real_run import CPU_SETTINGS

    text = README.read_text(encoding="utf-8")
    block = text[text.index("rlbench-med run --suite climb_vision --algos grpo --seeds 0 --runner openrlhf"):]
    block = block[: block.index("```")]
    sets = dict(item.split("=", 1) for item in re.findall(r"--set (\S+)", block))
    assert sets.pop("model") == "/path/to/tiny-model" and sets == CPU_SETTINGS


def test_a_plugin_reward_is_refused_at_plan_time() -> None:
    from rlbench_med.runners.base import Job
    from rlbench_med.runners.openrlhf import RUNNER
    from rlbench_med.runners.openrlhf.config import OpenRLHFConfig
    from rlbench_med.suites.rewards import register_reward
    from rlbench_med.typed_config import ConfigError

    register_reward("mine")(lambda record, response: {})
    job = Job(suite="climb_vision", algo="grpo", estimator="grpo", seed=0, config=OpenRLHFConfig(reward="mine"),
              data_dir=Path("."), out_dir=Path("."))
    with pytest.raises(ConfigError, match="reward: 'mine' is a plugin reward; OpenRLHF calls the reward inside its vLLM"):
        RUNNER.check(job)


def test_chat_template_false_is_refused_with_the_reason() -> None:
    from rlbench_med.runners.base import Job
    from rlbench_med.runners.openrlhf import RUNNER
    from rlbench_med.runners.openrlhf.config import OpenRLHFConfig
    from rlbench_med.typed_config import ConfigError

    job = Job(suite="climb_vision", algo="grpo", estimator="grpo", seed=0, config=OpenRLHFConfig(chat_template=False),
              data_dir=Path("."), out_dir=Path("."))
    with pytest.raises(ConfigError, match="OpenRLHF applies the tokenizer's chat template to every prompt"):
        RUNNER.check(job)
