"""``benchmarks/openrlhf_gpu_check.py`` (run by hand on a GPU machine) runs end to end on the CPU,
and lays rollouts out as OpenRLHF 0.11.2's real code does."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.runners.openrlhf.conftest import require_openrlhf_stack

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "openrlhf_gpu_check.py"


@pytest.fixture
def script(monkeypatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("openrlhf_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_script_runs_on_cpu(script, tmp_path):
    out = tmp_path / "report.json"
    assert script.main(["--device", "cpu", "--steps", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["reward"]["ok"] and report["reward"]["max_abs_diff_vs_local_reward"] < 1e-6
    assert all(entry["ok"] and entry["advantages_off_mask_zero"] for entry in report["hook"].values()), report["hook"]
    assert report["step"]["ok"], report["step"]
    step = report["step"]["steps"][0]
    assert step["params_changed"] == step["params_total"] and step["loss_finite"]
    assert step["advantage_abs_mean"] > 0 and step["advantages_off_mask_zero"] and report["not_run"]
    assert len(step["prompt_tokens"]) > 1  # responses start at different columns


def test_rollout_layout_and_log_probs_are_openrlhfs(script, tmp_path):
    """The script's layout equals OpenRLHF's ``_process_response_into_experience`` + ``concat_experiences``,
    and its log probs equal OpenRLHF's ``Actor.forward`` on the same model."""
    require_openrlhf_stack()
    from openrlhf.models import Actor
    from openrlhf.trainer.ppo_utils import Experience
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from transformers import AutoModelForCausalLM, Qwen2Config

    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14, 15]]
    responses = [[20, 21, 22, 23], [24], [25, 26, 27, 28, 29, 30, 31]]
    pad = 3
    singles = [
        # _process_response_into_experience reads only its arguments (self is unused)
        SamplesGenerator._process_response_into_experience(
            None, {"observation_tokens": p + r, "action_ranges": [(len(p), len(p) + len(r))], "reward": 0.0,
                   "rollout_log_probs": None, "prompt": "", "label": ""}, max_len=64)
        for p, r in zip(prompts, responses)
    ]
    theirs = Experience.concat_experiences(singles, pad)
    sequences, attention, action = script.openrlhf_rollouts(prompts, responses, pad)
    assert torch.equal(sequences, theirs.sequences)
    assert torch.equal(attention, theirs.attention_mask)
    assert torch.equal(action, theirs.action_mask)

    config = Qwen2Config(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    actor = Actor(str(tmp_path), attn_implementation="eager", param_dtype="bf16")
    actor.model.float().eval()  # OpenRLHF loads in bf16; float32 for an exact comparison
    with torch.no_grad():
        mine = script.action_logprobs(actor.model, sequences, attention, action)
        real = actor(sequences, action, attention)
    assert mine.shape == real.shape == action.shape
    assert torch.allclose(mine, real, atol=1e-6)
    assert bool((mine[action == 0] == 0).all()) and bool((mine[action != 0] < 0).all())
