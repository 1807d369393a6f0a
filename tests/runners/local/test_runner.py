from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable

import pytest
import torch

from rlbench_med.algorithms import list_estimators, make_estimator
from rlbench_med.runners.base import Job, MemoryTracker
from rlbench_med.runners.local import RUNNER
from rlbench_med.runners.local.checkpoint import latest_readable_checkpoint
from rlbench_med.runners.local.inputs import encode_data
from rlbench_med.runners.local.rollout import BuiltinAgent
from rlbench_med.runners.local.sft import base_key, base_path
from rlbench_med.runners.local.train import StopRequested, run_job
from rlbench_med.suites.rewards import parse_answer
from rlbench_med.typed_config import ConfigError
from tests.runners.local.tiny_hf import write_tiny_hf_model

MakeJob = Callable[..., Job]


def _run(job: Job) -> tuple[list[dict], MemoryTracker]:
    tracker = MemoryTracker()
    result = RUNNER.run(job, tracker, False)
    return result.rows, tracker


def _train_metrics(tracker: MemoryTracker) -> list[tuple[int, dict]]:
    return [(s, {k: v for k, v in m.items() if not k.startswith("time/") and "rollouts_per_s" not in k})
            for s, m in tracker.metrics]


def test_same_seed_gives_identical_numbers(make_job: MakeJob, tmp_path: Path) -> None:
    rows_a, tr_a = _run(make_job(out=tmp_path / "a"))
    rows_b, tr_b = _run(make_job(out=tmp_path / "b"))
    assert rows_a == rows_b
    assert _train_metrics(tr_a) == _train_metrics(tr_b)
    _, tr_c = _run(make_job(seed=1, out=tmp_path / "c"))
    assert tr_c.history("train/reward_mean") != tr_a.history("train/reward_mean")


def test_a_job_trains_with_its_cpu_threads_and_restores_the_count(
    make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Multi-threaded float reductions vary run to run; reproducible numbers need cpu_threads=1.
    seen: list[int] = []
    monkeypatch.setattr("rlbench_med.runners.local.train.run_job",
                        lambda job, tracker, resume: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        job = make_job()
        RUNNER.run(job, MemoryTracker(), False)
        RUNNER.run(dataclasses.replace(job, config=dataclasses.replace(job.config, cpu_threads=2)), MemoryTracker(), False)
        assert seen == [1, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_resume_ends_with_the_metrics_of_an_uninterrupted_run(make_job: MakeJob, tmp_path: Path) -> None:
    # drpo_release keeps a history across steps, so its estimator state must survive the restart too.
    full_rows, full_tr = _run(make_job("drpo_release", out=tmp_path / "full"))
    job = make_job("drpo_release", out=tmp_path / "killed")
    killed = MemoryTracker()
    with pytest.raises(StopRequested):
        run_job(job, killed, False, stop_after=3)
    assert latest_readable_checkpoint(tmp_path / "killed" / "checkpoints" / job.slug)[0].name == "step2.pt"
    resumed = MemoryTracker()
    result = RUNNER.run(job, resumed, True)
    assert result.rows == full_rows
    assert _train_metrics(resumed) == [(s, m) for s, m in _train_metrics(full_tr) if s > 2]
    changed = dataclasses.replace(job, config=dataclasses.replace(job.config, lr=0.5))
    with pytest.raises(ConfigError, match="another config"):
        RUNNER.run(changed, MemoryTracker(), True)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_checkpoint_is_named_and_the_previous_one_used(
    make_job: MakeJob, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full_rows, _ = _run(make_job(steps=6, out=tmp_path / "full"))
    job = make_job(steps=6, out=tmp_path / "killed")
    with pytest.raises(StopRequested):
        run_job(job, MemoryTracker(), False, stop_after=5)
    ckpt = tmp_path / "killed" / "checkpoints" / job.slug
    _truncate(ckpt / "step4.pt")
    assert f"grpo seed 0 resumes from step 2 ({ckpt / 'step2.pt'})" in RUNNER.plan(job)
    resumed = MemoryTracker()
    with caplog.at_level(logging.WARNING):
        result = RUNNER.run(job, resumed, True)
    assert f"checkpoint {ckpt / 'step4.pt'} is unreadable" in caplog.text and "previous checkpoint" in caplog.text
    assert result.rows == full_rows
    assert [s for s, m in resumed.metrics if "train/reward_mean" in m] == [3, 4, 5, 6]
    # no readable checkpoint at all (the resumed run wrote step4.pt again): the job starts from step 0, saying so
    for path in ckpt.glob("step*.pt"):
        _truncate(path)
    caplog.clear()
    fresh = MemoryTracker()
    with caplog.at_level(logging.WARNING):
        assert RUNNER.run(job, fresh, True).rows == full_rows
    assert f"no readable checkpoint in {ckpt}; training from step 0" in caplog.text
    assert [s for s, m in fresh.metrics if "train/reward_mean" in m] == [1, 2, 3, 4, 5, 6]


def test_a_truncated_cached_base_is_named_and_trained_again(
    make_job: MakeJob, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("RLBENCH_MED_CACHE", str(tmp_path / "cache"))
    job = make_job(steps=1, eval_every=0, checkpoint_every=0, out=tmp_path / "a")
    assert "base: SFT 10 steps on 20% of train, to be trained (then cached, shared)" in RUNNER.plan(job)[1]
    rows, _ = _run(job)
    base = base_path(base_key(job.data_dir, job.config, 0.0, "cpu"))
    assert RUNNER.plan(job)[1].endswith(f"cached ({base})")
    _truncate(base)
    with caplog.at_level(logging.WARNING):
        again, _ = _run(dataclasses.replace(job, out_dir=tmp_path / "b"))
    assert f"cached SFT base {base} is unreadable" in caplog.text and "training it again" in caplog.text
    assert again == rows
    assert torch.load(base, weights_only=True)["model"]  # the base was written again, whole


def test_the_runner_logs_only_what_the_sweep_cannot_know(make_job: MakeJob, tmp_path: Path) -> None:
    # algo, seed and the config are the sweep's params (logged once per child run); the runner adds the base.
    _, tracker = _run(make_job(steps=1, eval_every=0, checkpoint_every=0, out=tmp_path))
    assert set(tracker.params) == {"base"} and tracker.params["base"].endswith("base.pt")


def test_checkpoints_load_with_weights_only(make_job: MakeJob, tmp_path: Path) -> None:
    job = make_job("ppo", out=tmp_path / "ck")
    _run(job)
    state = torch.load(tmp_path / "ck" / "checkpoints" / job.slug / "step2.pt", weights_only=True)
    assert state["step"] == 2
    assert {"model", "optimizer", "critic", "critic_optimizer", "estimator", "rng"} <= set(state)
    assert set(state["rng"]) == {"generator", "torch", "numpy", "python"}


@pytest.mark.parametrize("name", list_estimators())
def test_every_estimator_trains_a_couple_of_steps(make_job: MakeJob, name: str, tmp_path: Path) -> None:
    job = make_job(name, steps=2, eval_every=0, checkpoint_every=0, out=tmp_path)
    RUNNER.check(job)
    rows, tracker = _run(job)
    assert {r["algo"] for r in rows} == {name}
    assert {("overall", "f1"), ("overall", "acc"), ("overall", "iou")} <= {(r["domain"], r["metric"]) for r in rows}
    steps = [s for s, m in tracker.metrics if "train/reward_mean" in m]
    assert steps == [1, 2]
    assert all(torch.isfinite(torch.tensor(m["train/reward_mean"])) for _, m in tracker.metrics if "train/reward_mean" in m)


def test_sft_baseline_and_prediction_files(make_job: MakeJob, tmp_path: Path) -> None:
    job = make_job("sft", steps=2, eval_inputs=("full", "text"), out=tmp_path)
    tracker = MemoryTracker()
    result = RUNNER.run(job, tracker, False)
    assert tracker.history("eval_inputs/text/overall/f1")[0][0] == 2
    # curves on the validation split: the base at step 0, the final policy at step 2; the test split once, at the end
    assert [s for s, _ in tracker.history("val/overall/f1")] == [0, 2]
    assert [s for s, _ in tracker.history("eval/overall/f1")] == [2]
    assert tracker.history("val/overall/f1")[1][1] != tracker.history("eval/overall/f1")[0][1]
    validation = [json.loads(x) for x in result.validation["sft"].read_text().splitlines()]
    assert result.validation["sft"] == tmp_path / "predictions" / "validation" / "sft-seed0.jsonl"
    assert {r["uid"] for r in validation} == {f"validation-{i}" for i in range(12)}
    assert set(result.predictions) == {"sft", "sft@text"}
    assert result.predictions["sft"].name == "sft-seed0.jsonl"
    assert result.predictions["sft@text"].name == "sft-seed0@text.jsonl"
    lines = [json.loads(x) for x in result.predictions["sft"].read_text().splitlines()]
    assert len(lines) == 24
    assert {"domain", "dataset", "labels", "predicted", "response"} <= set(lines[0])
    # The built-in policy's response is the canonical text of its answer: its labels in \boxed{}.
    assert all(("\\boxed{" + ", ".join(x["predicted"]) + "}") in x["response"] for x in lines)
    assert len(tracker.history("eval/overall/acc_release")) == 1
    assert {(r["algo"], r["domain"]) for r in result.rows if r["metric"] == "acc_release"} >= {("sft", "overall")}
    assert {r["algo"] for r in result.rows} == {"sft", "sft@text"}
    assert all(set(r) == {"suite", "algo", "seed", "domain", "metric", "value", "n"} for r in result.rows)


def test_bad_configs_fail_in_check_with_one_line(make_job: MakeJob, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="n_rollouts >= 2") as info:
        RUNNER.check(make_job("grpo", n_rollouts=1))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="(?i)did you mean"):
        RUNNER.check(make_job("grpoo"))
    with pytest.raises(ConfigError, match="k_maxx"):
        RUNNER.check(dataclasses.replace(make_job("drpo"), estimator="drpo:k_maxx=3"))
    with pytest.raises(ConfigError, match="config.json"):
        RUNNER.check(make_job("grpo", policy=f"hf:{tmp_path / 'nothing'}"))
    model_dir = write_tiny_hf_model(tmp_path / "tiny_hf")
    with pytest.raises(ConfigError, match="requires 'values'"):
        RUNNER.check(make_job("ppo", policy=f"hf:{model_dir}"))


def test_base_key_depends_on_grad_clip(make_job: MakeJob) -> None:
    # The base is trained with grad_clip, so a base trained with another value must not be reused.
    clipped, unclipped = make_job(grad_clip=1.0), make_job(grad_clip=0.0)
    key = base_key(clipped.data_dir, clipped.config, 0.0, "cpu")
    assert key != base_key(unclipped.data_dir, unclipped.config, 0.0, "cpu")
    assert key == base_key(clipped.data_dir, make_job("ppo", steps=9, lr=0.5).config, 0.0, "cpu")
    # The SFT base does not see the reward, so every reward shares it.
    assert key == base_key(clipped.data_dir, make_job(reward="release").config, 0.0, "cpu")


def test_cached_generation_matches_full_recompute(tiny_root: Path, make_job: MakeJob) -> None:
    config = make_job().config
    agent = BuiltinAgent(config, encode_data(tiny_root, config), torch.device("cpu"))
    torch.manual_seed(0)
    model = agent.new_model().eval()
    split = agent.encoded.train
    idx = torch.arange(12)
    ro = agent.sample(model, split, idx, None, 1, 1.0, True, None)
    prefix, prefix_mask = model.prefix(ro.prompts)
    with torch.no_grad():
        # Greedy decoding re-run token by token without the KV cache.
        tokens = ro.tokens.clone()
        for t in range(tokens.shape[1]):
            hidden = model.hidden(prefix, prefix_mask, tokens[:, : t + 1])[:, t]
            logits = model.lm_head(hidden).masked_fill(~ro.extra["allowed"][:, t], float("-inf"))
            on = ro.mask[:, t] > 0
            assert torch.equal(logits.argmax(-1)[on], ro.tokens[on, t])
        logp = agent.logprobs(model, ro)
    assert bool((logp <= 0).all()) and bool((logp[ro.mask == 0] == 0).all())


def test_hf_policy_runs_with_a_tiny_local_model(make_job: MakeJob, tmp_path: Path) -> None:
    model_dir = write_tiny_hf_model(tmp_path / "tiny_hf")
    job = make_job("grpo", policy=f"hf:{model_dir}", steps=2, prompts_per_step=2, n_rollouts=2, sft_steps=2,
                   sft_batch_size=2, max_new_tokens=12, eval_every=0, checkpoint_every=0, eval_max_samples=4,
                   out=tmp_path)
    RUNNER.check(job)
    tracker = MemoryTracker()
    result = RUNNER.run(job, tracker, False)
    assert {r["domain"] for r in result.rows} >= {"overall"}
    assert len(tracker.history("train/reward_mean")) == 2
    # A text policy's predictions keep the raw decoded text; the parsed labels come from it.
    lines = [json.loads(x) for x in result.predictions["grpo"].read_text().splitlines()]
    assert len(lines) == 4 and all(isinstance(x["response"], str) for x in lines)
    assert all(list(parse_answer(x["response"]).labels) == x["predicted"] for x in lines)
    assert make_estimator("grpo").min_group_size == 2


@pytest.mark.parametrize(
    "knobs",
    [
        {"reasoning_tokens": 2, "kl_mode": "reward", "group_by": "dataset", "epochs": 2, "minibatches": 3},
        {"backbone": "llama", "kl_coef": 0.0, "grad_clip": 0.0, "modality_dropout": 0.5},
        {"reward": "release", "reasoning_tokens": 2},
    ],
)
def test_optional_knobs_train(make_job: MakeJob, tmp_path: Path, knobs: dict) -> None:
    job = make_job("drpo", steps=2, eval_every=0, checkpoint_every=0, out=tmp_path, **knobs)
    rows, tracker = _run(job)
    assert any(r["domain"] == "overall" for r in rows)
    step = {k: v for s, m in tracker.metrics if s == 2 for k, v in m.items()}
    assert set(step) >= {"train/reward_mean", "train/kl", "time/advantage_s", "time/step_s"}
    if knobs.get("group_by") == "dataset":
        assert any(k.startswith("adv/drpo/CMMD") or "/CMMD/" in k for k in step), sorted(step)


def test_encoder_lr_scale_freezes_the_encoders_at_zero_and_scales_their_learning_rate(make_job: MakeJob) -> None:
    from rlbench_med.runners.local.policy import PolicyModel
    from rlbench_med.runners.local.sft import load_or_train_base
    from rlbench_med.runners.local.train import LocalTrainer, make_agent, policy_param_groups

    job = make_job(encoder_lr_scale=0.0, lr=0.05)
    agent = make_agent(job.config, job.data_dir, torch.device("cpu"))
    base, _, _ = load_or_train_base(agent, job.config, job.data_dir, agent.encoded.train, 0.0, "cpu")
    trainer = LocalTrainer(job, base, agent, 0.0)
    for _ in range(2):
        trainer.rl_step()
    after = trainer.policy.state_dict()
    encoder = {k for k in after if k.split(".")[0] in PolicyModel.ENCODERS}
    assert encoder and all(torch.equal(after[k], base[k]) for k in encoder)
    assert any(not torch.equal(after[k], base[k]) for k in set(after) - encoder)
    groups = policy_param_groups(trainer.policy, dataclasses.replace(job.config, encoder_lr_scale=0.25))
    assert [len(g["params"]) for g in groups] == [len(list(trainer.policy.parameters())) - len(encoder), len(encoder)]
    assert groups[1]["lr"] == pytest.approx(0.05 * 0.25) and "lr" not in groups[0]


def _bad_output(kind: str) -> Callable:
    """``compute`` of an estimator that breaks the contract in one way (``kind``)."""
    from rlbench_med.algorithms import AdvantageOutput

    def compute(self, inputs):
        self.calls = getattr(self, "calls", 0) + 1
        mask = inputs.mask
        good = inputs.rewards[:, None].double() * mask
        if kind == "column":  # [B, 1]: would broadcast over every token
            return AdvantageOutput(advantages=inputs.rewards[:, None].double(), returns=good)
        if kind == "rows":
            return AdvantageOutput(advantages=good[:-1], returns=good)
        if kind == "int64":  # would truncate every advantage
            return AdvantageOutput(advantages=good.long(), returns=good)
        if kind == "nan":
            return AdvantageOutput(advantages=good, returns=good * float("nan"))
        if kind == "none":
            return None
        if kind == "diagnostic":
            return AdvantageOutput(advantages=good, returns=good, diagnostics={"spread": "wide"})
        if kind == "raise_at_3" and self.calls == 3:
            raise RuntimeError("boom in compute")
        if kind == "exit":
            raise SystemExit(3)
        return AdvantageOutput(advantages=good, returns=good)

    return compute


@pytest.mark.parametrize(
    "kind, message",
    [
        ("column", "at step 1: advantages has shape \\(12, 1\\); expected \\(12, \\d+\\), the shape of response_mask "
                   "\\[B, T\\]"),
        ("rows", "at step 1: advantages has shape \\(11, \\d+\\); expected \\(12, \\d+\\)"),
        ("int64", "at step 1: advantages has dtype torch.int64; expected a float tensor"),
        ("nan", "at step 1: returns\\[0, 0\\] is nan on a response token"),
        ("none", "at step 1: returned NoneType, not an AdvantageOutput"),
        ("diagnostic", "at step 1: diagnostic 'spread' is 'wide', not a number"),
        ("raise_at_3", "failed at step 3: RuntimeError: boom in compute"),
        ("exit", "failed at step 1: sys.exit\\(3\\)"),
    ],
)
def test_an_estimator_output_the_runner_cannot_train_on_fails_the_job_naming_it(
    kind: str, message: str, make_job: MakeJob
) -> None:
    from rlbench_med.algorithms import Estimator, register_estimator
    from rlbench_med.runners.local.train import EstimatorFailed

    name = f"bad_{kind}"
    register_estimator(name)(type(name, (Estimator,), {"description": kind, "compute": _bad_output(kind)}))
    job = make_job(algo=name, steps=4, prompts_per_step=4, n_rollouts=3)  # B = 12 rollouts a step
    with pytest.raises(EstimatorFailed, match=f"^estimator '{name}' {message}"):
        _run(job)


def _count_logprob_forwards(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record every policy/reference log-prob forward (whether it builds a graph)."""
    calls: list[bool] = []
    original = BuiltinAgent.logprobs

    def counting(self, model, ro, temperature=1.0):
        calls.append(torch.is_grad_enabled())
        return original(self, model, ro, temperature)

    monkeypatch.setattr(BuiltinAgent, "logprobs", counting)
    return calls


@pytest.mark.parametrize("algo", ["grpo", "drpo", "ppo"])
def test_one_update_a_step_takes_the_old_logprobs_from_its_own_forward(
    make_job: MakeJob, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, algo: str
) -> None:
    # drpo damps by the KL of the old log-probs; ppo trains a critic beside the policy.
    job = make_job(algo, steps=3, eval_every=0, checkpoint_every=0, out=tmp_path / "one")
    calls = _count_logprob_forwards(monkeypatch)
    rows, tracker = _run(job)
    # Per step: the update's forward (with its graph) and the reference's; no gradient-free copy of the first.
    assert calls == [True, False] * 3
    # The same numbers as the two-forward path: the removed forward computed what the update's computes.
    monkeypatch.setattr(BuiltinAgent, "train_mode_is_eval_mode", False)
    calls.clear()
    rows_two, tracker_two = _run(dataclasses.replace(job, out_dir=tmp_path / "two"))
    assert calls == [False, False, True] * 3
    assert rows == rows_two
    assert _train_metrics(tracker) == _train_metrics(tracker_two)


def test_several_updates_a_step_keep_a_forward_for_the_old_logprobs(
    make_job: MakeJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_logprob_forwards(monkeypatch)
    _run(make_job("grpo", steps=2, epochs=2, eval_every=0, checkpoint_every=0))
    assert calls == [False, False, True, True] * 2


def test_generation_runs_the_prefix_once_per_prompt_and_samples_what_a_repeated_prefix_samples(
    tiny_root: Path, make_job: MakeJob
) -> None:
    from transformers import DynamicCache

    from rlbench_med.runners.local.policy import _cache_kwarg

    config = make_job().config
    agent = BuiltinAgent(config, encode_data(tiny_root, config), torch.device("cpu"))
    torch.manual_seed(0)
    model = agent.new_model().eval()
    prompts = agent.encoded.train.prompts.index(torch.arange(5))
    rows: list[int] = []
    hook = model.backbone.register_forward_pre_hook(lambda m, args, kw: rows.append(kw["inputs_embeds"].shape[0]),
                                                    with_kwargs=True)
    tokens, allowed, mask = model.generate(prompts, agent.grammar, repeats=3, generator=torch.Generator().manual_seed(7))
    hook.remove()
    assert rows[0] == 5 and set(rows[1:]) == {15}
    # The former loop: the prefix repeated for every answer, every answer's tokens drawn after it.
    with torch.no_grad():
        prefix, prefix_mask = model.prefix(prompts)
        inputs, att = prefix.repeat_interleave(3, 0), prefix_mask.repeat_interleave(3, 0)
        task, grounded = prompts.task.repeat_interleave(3, 0), prompts.grounded.repeat_interleave(3, 0)
        state, cache, generator, expected = agent.grammar.start(15), DynamicCache(), torch.Generator().manual_seed(7), []
        for _ in range(tokens.shape[1]):
            hidden = model.backbone(inputs_embeds=inputs, attention_mask=att, use_cache=True,
                                    **{_cache_kwarg(model.backbone): cache}).last_hidden_state[:, -1]
            logits = model.lm_head(hidden).masked_fill(~agent.grammar.allowed(state, task, grounded), float("-inf"))
            token = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
            expected.append(token)
            state = agent.grammar.advance(state, token, grounded)
            inputs = model.backbone.get_input_embeddings()(token)[:, None]
            att = torch.cat([att, torch.ones(15, 1, dtype=att.dtype)], 1)
    assert torch.equal(tokens, torch.stack(expected, 1))
    assert bool(state.done.all())


@pytest.mark.parametrize("reasoning", [0, 2])
def test_teacher_answers_are_the_labels_encoded_one_by_one_and_replayed(
    tiny_root: Path, make_job: MakeJob, reasoning: int
) -> None:
    config = make_job(reasoning_tokens=reasoning).config
    agent = BuiltinAgent(config, encode_data(tiny_root, config), torch.device("cpu"))
    split, vocab = agent.encoded.train, agent.vocab
    for seed in range(3):
        idx = torch.randint(len(split), (7,), generator=torch.Generator().manual_seed(seed))
        ro, loss_mask = agent.teacher(split, idx, None, torch.Generator().manual_seed(seed))
        # Independently: each sample's answer encoded, padded to the batch's longest, the grammar replayed.
        draws = torch.randint(vocab.reasoning_vocab, (7, reasoning), generator=torch.Generator().manual_seed(seed))
        rows = []
        for i, k in enumerate(idx.tolist()):
            sample, box = split.samples[k], split.boxes[k]
            bins = vocab.box_to_bins(box, sample.image_size) if box is not None else None
            rows.append(vocab.encode(vocab.task_index(sample.task), sample.labels, bins, draws[i].tolist()))
        width = max(map(len, rows))
        tokens = torch.tensor([row + [0] * (width - len(row)) for row in rows])
        supervised = torch.tensor([[0.0] * reasoning + [1.0] * (len(row) - reasoning) + [0.0] * (width - len(row))
                                   for row in rows])
        allowed, mask = agent.grammar.replay(tokens, split.prompts.task[idx], split.prompts.grounded[idx])
        assert torch.equal(ro.tokens, tokens)
        assert torch.equal(ro.extra["allowed"], allowed) and torch.equal(ro.mask, mask)
        assert torch.equal(loss_mask, supervised * mask)


def test_a_split_is_encoded_for_supervision_once(tiny_root: Path, make_job: MakeJob,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from rlbench_med.runners.local.vocab import AnswerVocab

    config = make_job().config
    agent = BuiltinAgent(config, encode_data(tiny_root, config), torch.device("cpu"))
    calls: list[int] = []
    encode = AnswerVocab.encode
    monkeypatch.setattr(AnswerVocab, "encode", lambda self, *a: calls.append(1) or encode(self, *a))
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        agent.teacher(agent.encoded.train, torch.randint(len(agent.encoded.train), (8,), generator=generator), None,
                      generator)
    assert len(calls) == len(agent.encoded.train)  # every sample once, on the first step


def test_a_job_trains_on_a_plugin_reward(make_job: MakeJob, tmp_path: Path) -> None:
    from rlbench_med.suites.rewards import register_reward

    calls = []

    @register_reward("constant", weights=(0.0, 0.0, 1.0, 0.0))
    def constant(record, response):
        calls.append(record.uid)
        return {"format": 0.75}

    _, tracker = _run(make_job(reward="constant", steps=2, eval_every=0, checkpoint_every=0, out=tmp_path))
    # every rollout scores 1 x 0.75, whatever it answered (4 prompts x 3 rollouts per step)
    assert [v for _, v in tracker.history("train/reward_mean")] == [0.75, 0.75]
    assert len(calls) == 2 * 4 * 3


def _tiny_chat_model(path: Path) -> Path:
    """The tiny HF model with a chat template (an instruct model's shape)."""
    from transformers import AutoTokenizer

    write_tiny_hf_model(path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tok.save_pretrained(path)
    return path


def test_an_hf_policy_reads_the_chat_template_as_the_openrlhf_runner_renders_it(tiny_root: Path, tmp_path: Path) -> None:
    from rlbench_med.runners.config import LocalConfig
    from rlbench_med.runners.local.hf_policy import HFAgent, encode_text_data, text_prompt
    from rlbench_med.runners.openrlhf.data import sample_messages

    model = _tiny_chat_model(tmp_path / "chat")
    encoded = encode_text_data(tiny_root, LocalConfig())
    sample = encoded.train.samples[0]
    agent = HFAgent(LocalConfig(policy=f"hf:{model}"), encoded, torch.device("cpu"))
    # what OpenRLHF renders from the exported chat (--data.apply_chat_template), decoded
    rendered = agent.tokenizer.apply_chat_template(sample_messages(sample, vlm=False), tokenize=False,
                                                   add_generation_prompt=True)
    assert agent.tokenizer.decode(agent.prompt_ids(sample)) == rendered
    assert rendered.startswith("<|user|>") and rendered.endswith("<|assistant|>") and "<image>" not in rendered
    raw = HFAgent(LocalConfig(policy=f"hf:{model}", chat_template=False), encoded, torch.device("cpu"))
    assert raw.tokenizer.decode(raw.prompt_ids(sample)) == text_prompt(sample) + "\n"


def test_generation_stops_at_an_eos_of_the_generation_config(tiny_root: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, GenerationConfig

    from rlbench_med.runners.config import LocalConfig
    from rlbench_med.runners.local.hf_policy import HFAgent, encode_text_data

    path = write_tiny_hf_model(tmp_path / "m")
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: greedy decoding picks token 0 at every step
    model.save_pretrained(path)
    config = LocalConfig(policy=f"hf:{path}", max_new_tokens=5)
    encoded = encode_text_data(tiny_root, config)
    idx = torch.arange(2)

    def generated(agent: HFAgent) -> torch.Tensor:
        return agent.sample(model, encoded.test, idx, None, 1, 1.0, True, None).mask.sum(1)

    assert generated(HFAgent(config, encoded, torch.device("cpu"))).tolist() == [5, 5]  # token 0 is no EOS
    eos = model.config.eos_token_id
    GenerationConfig(eos_token_id=[0, eos]).save_pretrained(path)
    agent = HFAgent(config, encoded, torch.device("cpu"))
    assert agent.eos_ids == [0, eos] and generated(agent).tolist() == [1, 1]


def test_the_final_policy_is_saved_and_an_hf_one_loads_with_from_pretrained(make_job: MakeJob, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = write_tiny_hf_model(tmp_path / "tiny_hf")
    job = make_job("grpo", policy=f"hf:{model_dir}", steps=2, prompts_per_step=2, n_rollouts=2, sft_steps=2,
                   sft_batch_size=2, max_new_tokens=8, eval_every=0, checkpoint_every=0, eval_max_samples=2,
                   out=tmp_path / "hf")
    _run(job)
    final = tmp_path / "hf" / "checkpoints" / job.slug / "final"
    loaded = AutoModelForCausalLM.from_pretrained(final, local_files_only=True)
    start = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    assert AutoTokenizer.from_pretrained(final).get_vocab() == AutoTokenizer.from_pretrained(model_dir).get_vocab()
    assert any(not torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), start.state_dict().values()))

    builtin = make_job("grpo", steps=2, eval_every=0, checkpoint_every=0, out=tmp_path / "b")
    _run(builtin)
    saved = torch.load(tmp_path / "b" / "checkpoints" / builtin.slug / "final.pt", weights_only=True)
    agent = BuiltinAgent(builtin.config, encode_data(builtin.data_dir, builtin.config), torch.device("cpu"))
    agent.new_model().load_state_dict(saved["model"])  # strict: every weight of the policy is there
    assert saved["config"]["steps"] == 2
    off = make_job("grpo", steps=1, eval_every=0, checkpoint_every=0, save_final=False, out=tmp_path / "off")
    _run(off)
    assert not (tmp_path / "off" / "checkpoints").exists()


def test_an_hf_model_id_is_found_in_the_local_cache_offline(make_job: MakeJob, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from rlbench_med.runners.config import local_model_dir

    hub = tmp_path / "hub"
    snapshot = write_tiny_hf_model(hub / "models--acme--tiny" / "snapshots" / "0123abcd")
    (hub / "models--acme--tiny" / "refs").mkdir()
    (hub / "models--acme--tiny" / "refs" / "main").write_text("0123abcd")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))  # HF_HUB_CACHE, read when huggingface_hub is imported
    local_model_dir.cache_clear()
    job = make_job("grpo", policy="hf:acme/tiny")
    RUNNER.check(job)
    assert Path(job.config.hf_path) == snapshot
    local_model_dir.cache_clear()
    with pytest.raises(ConfigError, match="hf:acme/other is neither a folder nor a model in the local Hugging Face "
                                          "cache; nothing is downloaded"):
        RUNNER.check(make_job("grpo", policy="hf:acme/other"))


def test_the_plan_says_the_base_is_cached_and_when_validation_runs(make_job: MakeJob, tiny_root: Path,
                                                                   tmp_path: Path) -> None:
    from rlbench_med.suites.data import DataSource

    job = make_job("grpo", steps=2, eval_every=50, checkpoint_every=50, sft_steps=11, out=tmp_path)  # a base of its own
    source = DataSource.open(tiny_root).save(tmp_path / "sources")  # how a sweep hands its data to the jobs
    job = dataclasses.replace(job, data_dir=source)
    text = "\n".join(RUNNER.plan(job))
    assert "to be trained" in text
    _run(job)
    text = "\n".join(RUNNER.plan(job))
    assert "base: SFT 11 steps on 20% of train, cached (" in text
    assert "validation at the end; no checkpoints; the final policy in" in text
    assert "validation every 2 steps" in "\n".join(RUNNER.plan(make_job("grpo", steps=4, eval_every=2)))


def test_preparing_the_sft_base_says_what_it_does_and_how_far_it_is(make_job: MakeJob, tmp_path: Path) -> None:
    from rlbench_med.runners.local.runner import prepare

    job = make_job("grpo", sft_steps=20, out=tmp_path)  # a base no other test trains
    notes: list[str] = []
    prepare([job], note=notes.append)
    assert notes[0] == ("SFT base: training 20 steps on 20% of train (cached afterwards, for every algorithm, seed "
                        "and later sweep) ...")
    assert [n.split(" (")[0] for n in notes[1:]] == [f"SFT base: step {k}/20" for k in range(2, 21, 2)]
    notes.clear()
    prepare([job], note=notes.append)
    assert len(notes) == 1 and notes[0].startswith("SFT base: cached (")


def test_the_step_bar_counts_steps_from_where_the_job_resumed(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from rlbench_med.runners.local.step_bar import StepBar

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = StepBar(10, 2, "tiny grpo s0", enabled=True)
    progress = bar.progress
    bar.update(1)
    bar.update(2)
    bar.set_postfix(reward="0.500", rollouts_s="12")
    task = progress.tasks[0]
    assert (task.completed, task.total, task.fields["stats"]) == (5, 10, "reward 0.500  rollouts_s 12")
    bar.close()
    assert bar.progress is None
    off = StepBar(10, 0, "x", enabled=False)
    off.update(1), off.set_postfix(a=1), off.close()  # a disabled bar does nothing
