"""Our trainer's loop (``trainer.make_trainer_class``) with stand-ins for OpenRLHF's GPU-only pieces.

``BasePPOTrainer``, ``RemoteExperienceMaker``, ``SamplesGenerator``, the vLLM engines and the
tokenizer need GPUs (they import vLLM/DeepSpeed), so they are replaced by small fakes with the same
call signatures as OpenRLHF 0.11.2. Real are: ``Experience`` and its concatenation, OpenRLHF's
``apply_length_penalties`` and ``preprocess_data`` (loaded from its source file), our hook, reward
function, estimators and metrics. The fakes check what the trainer hands them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch

from rlbench_med.runners.openrlhf.data import export_prompts, read_prompts
from rlbench_med.runners.openrlhf.hook import BASELINE_INFO_KEY
from rlbench_med.runners.openrlhf.reward import reward_func
from rlbench_med.runners.openrlhf.runspec import RunSpec
from rlbench_med.suites.metrics import compute_metrics
from tests.runners.openrlhf.conftest import DOMAINS, openrlhf_experience

N = 2  # rollouts per prompt


class Tokenizer:
    """Characters as token ids; the chat template joins the messages."""

    pad_token_id = 0

    def apply_chat_template(self, chat, tokenize=False, add_generation_prompt=True):
        text = "".join(f"<|{m['role']}|>{m['content'] if isinstance(m['content'], str) else 'IMG'}" for m in chat)
        return text + "<|assistant|>"

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids, skip_special_tokens=True) -> str:
        return "".join(chr(i) for i in ids)


class Engine:
    """A vLLM engine actor: greedy answers are right for even-numbered samples, wrong for odd ones."""

    def __init__(self, calls: list) -> None:
        self.calls = calls
        self.generate_responses = NS(remote=self._generate)

    def _generate(self, prompt, label, sampling_params, max_length, hf_tokenizer, num_samples, images):
        self.calls.append(sampling_params)
        meta = json.loads(label)
        right = int(meta["uid"].split(":")[1]) % 2 == 0
        text = "\\boxed{" + (meta["answer"][0] if right else meta["classes"][-1]) + "}"
        p, r = hf_tokenizer.encode(prompt), hf_tokenizer.encode(text)
        reward = float(reward_func([prompt + text], [prompt], [label])["rewards"][0])
        return [{"observation_tokens": p + r, "action_ranges": [(len(p), len(p) + len(r))], "reward": reward}]


@pytest.fixture
def trainer_module(monkeypatch, tmp_path):
    """Install the fakes as the OpenRLHF/vLLM modules the trainer imports; yield the trainer module."""
    experience = openrlhf_experience()
    import openrlhf
    from openrlhf.trainer.ppo_utils import length_penalty

    src = Path(openrlhf.__file__).parent / "datasets" / "prompts_dataset.py"
    spec = importlib.util.spec_from_file_location("openrlhf_prompts_dataset_source", src)
    prompts_dataset = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prompts_dataset)

    state = NS(saved=[], engine_calls=[], checkpoint={"episode": 0, "global_step": 0, "total_consumed_prompts": 0,
                                                       "data_loader_state_dict": {}}, batches=[])

    class RemoteExperienceMaker:
        def __init__(self, actor, critic, reward, initial, kl_ctl, strategy, tokenizer, **kwargs):
            self.kl_ctl, self.args, self.tokenizer = kl_ctl, strategy.args, tokenizer

        def make_experience_batch(self, rollout_samples):
            for i, s in enumerate(rollout_samples):
                s.index = [i]
            # micro-batches of 3, as split_rollout_samples does with micro_batch_size=3
            exps = [experience.concat_experiences(rollout_samples[i : i + 3], 0) for i in range(0, len(rollout_samples), 3)]
            g = torch.Generator().manual_seed(len(state.batches))
            for e in exps:
                e.action_log_probs = -torch.rand(e.action_mask.shape, generator=g)
                e.base_action_log_probs = e.action_log_probs + 0.1
                e.kl = torch.zeros(e.action_mask.shape)
            state.batches.append(exps)
            return self.compute_advantages_and_returns(exps)

    class BasePPOTrainer:
        def __init__(self, strategy, actor, critic, reward, ref, vllm_engines, tokenizer):
            self.strategy, self.args, self.vllm_engines, self.tokenizer = strategy, strategy.args, vllm_engines, tokenizer
            self.kl_ctl = NS(value=0.01)
            self.wandb_logger = self.tensorboard_logger = None

        def init_checkpoint_states(self):
            return dict(state.checkpoint)

        def restore_best_checkpoint_state(self, states):
            pass

        def broadcast_to_vllm(self):
            pass

        def train_step(self, rollout_samples, global_step):
            exps = self.experience_maker.make_experience_batch(rollout_samples)
            assert all(e.advantages is not None and e.advantages.shape == e.action_mask.shape for e in exps)
            return {"policy_loss": 0.5, "reward/accuracy": 0.25, "timing/ppo_train": 1.0}, global_step + 1

        def save_logs_and_checkpoints(self, global_step, logs, client_states):
            state.saved.append((global_step, client_states))

    class SamplesGenerator:
        def __init__(self, strategy, prompts_dataloader, eval_dataloader, tokenizer, vllm_engines):
            self.steps = 0
            self.items = read_prompts(Path(strategy.args.data.prompt_dataset))

        def generate_samples(self, **kwargs):
            self.steps += 1
            tok = Tokenizer()
            samples = []
            for item in self.items[(self.steps - 1) * 2 : self.steps * 2]:
                prompt = tok.apply_chat_template([dict(m) for m in item.messages])
                for j in range(N):
                    text = "\\boxed{" + (item.label.answer[0] if j == 0 else item.label.classes[-1]) + "}"
                    r = reward_func([prompt + text], [prompt], [item.label.to_json()])["rewards"]
                    a = len(text)
                    samples.append(experience(
                        sequences=torch.zeros(1, a + 4, dtype=torch.long), attention_mask=torch.ones(1, a + 4),
                        action_mask=torch.ones(1, a, dtype=torch.bool), rewards=r, prompts=[prompt],
                        labels=[item.label.to_json()], images=[None], info={"reward": r},
                        response_length=torch.tensor([a]), truncated=torch.tensor([False]),
                    ))
            return samples, None, 2, self.steps == 2

    class Loader:
        def state_dict(self):
            return {"pos": 1}

        def load_state_dict(self, value):
            state.loader_restored = value

    def stub(name: str, **attrs: object) -> None:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)

    stub("vllm", SamplingParams=lambda **kw: NS(**kw))
    stub("openrlhf.datasets.prompts_dataset", preprocess_data=prompts_dataset.preprocess_data)
    stub("openrlhf.trainer.ppo_trainer", BasePPOTrainer=BasePPOTrainer,
         prepare_datasets=lambda strategy, tokenizer: (Loader(), None, 2))
    stub("openrlhf.trainer.ppo_utils.experience_maker", RemoteExperienceMaker=RemoteExperienceMaker)
    stub("openrlhf.trainer.ppo_utils.samples_generator", SamplesGenerator=SamplesGenerator)
    stub("openrlhf.trainer.ppo_utils.length_penalty", apply_length_penalties=length_penalty.apply_length_penalties)
    stub("openrlhf.trainer.ray.vllm_engine", batch_vllm_engine_call=lambda *a, **k: None)
    stub("openrlhf.utils.utils", get_tokenizer=lambda *a, **k: Tokenizer())
    import ray

    monkeypatch.setattr(ray, "get", lambda refs: refs)
    from rlbench_med.runners.openrlhf import trainer

    return trainer, state


def same_state(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return a == b


def make(trainer_module, tmp_path, samples, estimator: str, eval_every: int = 0):
    trainer, state = trainer_module
    train = tmp_path / "train.jsonl"
    test = tmp_path / "test.jsonl"
    export_prompts(samples[:4], train, vlm=False)
    export_prompts(samples, test, vlm=False)
    spec = RunSpec(estimator=estimator, n_samples_per_prompt=N, domain_names=DOMAINS, group_by="domain",
                   kl_mode="loss", kl_coef=0.01, metrics_path=str(tmp_path / "metrics.jsonl"),
                   predictions_path=str(tmp_path / "pred" / "p.jsonl"), eval_prompts=str(test),
                   eval_every=eval_every, max_new_tokens=32, max_len=512)
    args = NS(rollout=NS(n_samples_per_prompt=N, max_new_tokens=32), eval=NS(steps=-1), ckpt=NS(save_steps=-1, path="ck"),
              data=NS(disable_fast_tokenizer=False, prompt_dataset=str(train), max_len=512),
              vllm=NS(enable_sleep=False), train=NS(num_episodes=1), reward=NS(overlong_buffer_len=None,
                                                                              stop_properly_penalty_coef=None))
    engines = [Engine(state.engine_calls)]
    cls = trainer.make_trainer_class(spec)
    return cls("model", NS(args=args), None, None, None, None, engines), spec


def test_fit_runs_the_registry_estimator_logs_metrics_saves_state_and_evaluates(trainer_module, tmp_path, samples):
    t, spec = make(trainer_module, tmp_path, samples, "drpo_release", eval_every=1)
    t.fit()
    _, state = trainer_module
    lines = [json.loads(x) for x in Path(spec.metrics_path).read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 2]
    first = lines[0]["metrics"]
    assert {"train/reward_mean", "time/advantage_s", "train/accuracy_reward", "openrlhf/policy_loss",
            "time/ppo_train_s", "time/step_s", "train/kl"} <= set(first)
    assert any(k.startswith("adv/drpo/") for k in first) and any(k.startswith("eval/") for k in first)
    # estimator state travels with every checkpoint's client states
    assert [s for s, _ in state.saved] == [1, 2]
    saved = state.saved[-1][1]["rlbench_estimator_state"]
    assert saved and same_state(saved, t.estimator.state_dict())
    # final greedy evaluation: one record per test prompt, temperature 0, metrics in the last line
    records = [json.loads(x) for x in Path(spec.predictions_path).read_text().splitlines()]
    assert [r["uid"] for r in records] == [s.uid for s in samples]
    assert all(p.temperature == 0.0 and p.max_tokens == 32 for p in state.engine_calls)
    final = {f"eval/{r['domain']}/{r['metric']}": r["value"] for r in compute_metrics(records)}
    assert lines[-1]["metrics"] == pytest.approx(final)


def test_remax_gets_the_greedy_reward_of_its_prompt_as_baseline(trainer_module, tmp_path, samples):
    t, _ = make(trainer_module, tmp_path, samples, "remax")
    t.fit()
    _, state = trainer_module
    exps = state.batches[0]
    labels = [lab for e in exps for lab in e.labels]
    baselines = torch.cat([e.info[BASELINE_INFO_KEY] for e in exps])
    for label, b in zip(labels, baselines.tolist()):
        right = int(json.loads(label)["uid"].split(":")[1]) % 2 == 0
        assert (b > 0.5) == right  # the greedy answer is right exactly for even-numbered samples
    for e in exps:
        expected = (e.rewards - e.info[BASELINE_INFO_KEY])[:, None] * e.action_mask
        assert torch.allclose(e.advantages, expected, atol=1e-6)


def test_resume_restores_the_estimator_state(trainer_module, tmp_path, samples):
    t, _ = make(trainer_module, tmp_path, samples, "drpo_release")
    t.fit()
    _, state = trainer_module
    saved = state.saved[0][1]
    state.checkpoint = {**saved, "global_step": 1}
    resumed, _ = make(trainer_module, tmp_path / "again", samples, "drpo_release")
    seen = {}
    resumed.estimator.load_state_dict = lambda s: seen.setdefault("state", s)
    resumed.fit()
    assert seen["state"] is saved["rlbench_estimator_state"] and state.loader_restored == {"pos": 1}
    state.checkpoint = {"episode": 0, "global_step": 3, "total_consumed_prompts": 0, "data_loader_state_dict": {}}
    again, _ = make(trainer_module, tmp_path / "third", samples, "grpo")
    with pytest.raises(RuntimeError, match="no estimator state"):
        again.fit()
