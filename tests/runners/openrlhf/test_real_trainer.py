"""Our trainer's ``fit`` on OpenRLHF 0.11.2's real code, on a tiny local Qwen2 model, on the CPU.

Real: OpenRLHF's ``__main__`` checks of our flags, ``get_strategy``, ``get_tokenizer``,
``prepare_datasets`` (``blending_datasets`` + ``PromptDataset`` on our export), ``SamplesGenerator``,
the ``RolloutRayActor`` methods with ``SingleTurnAgentExecutor`` loading ``reward.py`` by path,
``BasePPOTrainer.train_step`` / ``ppo_train`` / checkpoint logic, ``RemoteExperienceMaker``
(``split_rollout_samples``, ``make_experience``) with our advantage step, the ``Actor`` forward,
``NaiveReplayBuffer`` and ``PolicyLoss``. Stand-ins (``standins.py``): vLLM's ``generate`` and
the DeepSpeed actor groups (torch AdamW, ``torch.save`` checkpoints). Checked against independent
computations: the registry estimator on inputs rebuilt here from the rollouts, the suite's reward,
a plain ``transformers`` forward for the log probs and the clipped surrogate by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlbench_med.algorithms import AdvantageInputs, list_estimators, make_estimator
from rlbench_med.runners.base import Job
from rlbench_med.runners.openrlhf import OpenRLHFConfig
from rlbench_med.runners.openrlhf.data import PromptLabel, export_prompts
from rlbench_med.runners.openrlhf.flags import openrlhf_flags, reward_module_path
from rlbench_med.runners.openrlhf.reward import RewardError, response_text
from rlbench_med.runners.openrlhf.runner import context
from rlbench_med.runners.openrlhf.runspec import RunSpec
from rlbench_med.runners.openrlhf.tiny_model import write_tiny_chat_model
from rlbench_med.suites.rewards import RewardFunction, parse_answer
from tests.runners.openrlhf.conftest import (
    DOMAINS,
    local_ray,
    make_samples,
    openrlhf_main_args,
    require_openrlhf_stack,
)

pytestmark = pytest.mark.slow
N = 4  # rollouts per prompt
CRITIC_FREE = [name for name in list_estimators() if "values" not in make_estimator(name).requires]


@pytest.fixture(scope="module")
def ray_local():
    require_openrlhf_stack()
    with local_ray(num_cpus=1):
        yield


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_openrlhf_stack()
    return write_tiny_chat_model(tmp_path_factory.mktemp("tiny"))


def build(tmp_path: Path, model: Path, estimator: str, monkeypatch, *, resume: bool = False, samples=None,
          eval_every: int = 0, **config):
    """The trainer as ``train()`` builds it, with the stand-ins; returns (trainer, actor group, engine, spec)."""
    from openrlhf.utils import get_strategy
    from transformers import AutoTokenizer

    from rlbench_med.runners.openrlhf.trainer import make_trainer_class
    from tests.runners.openrlhf.standins import StandInEngine, StandInModelGroup

    settings = dict(model=str(model), vlm=False, n_samples_per_prompt=N, rollout_batch_size=2,
                    micro_rollout_batch_size=3, train_batch_size=4, micro_train_batch_size=2, max_new_tokens=24,
                    max_len=512, kl_coef=0.01, gpus_per_node=1, vllm_num_engines=1, lr=1e-3, max_samples=4,
                    checkpoint_every=1, attn_implementation="eager", gradient_checkpointing=False)
    settings.update(config)
    cfg = OpenRLHFConfig(**settings)  # type: ignore[arg-type]
    job = Job(suite="climb_vision", algo=estimator, estimator=estimator, seed=0, config=cfg, data_dir=tmp_path,
              out_dir=tmp_path / "out")
    ctx = context(job, resume=resume)
    tmp_path.mkdir(parents=True, exist_ok=True)
    samples = samples if samples is not None else make_samples(tmp_path, 6)
    export_prompts(samples[:4], ctx.paths.train_prompts, vlm=False)
    export_prompts(samples, ctx.paths.eval_prompts, vlm=False)
    args = openrlhf_main_args(openrlhf_flags(ctx), monkeypatch)
    spec = RunSpec(estimator=estimator, n_samples_per_prompt=N, domain_names=DOMAINS, group_by="domain",
                   kl_mode=cfg.kl_mode, kl_coef=cfg.kl_coef, metrics_path=str(ctx.paths.metrics),
                   predictions_path=str(ctx.paths.predictions), eval_prompts=str(ctx.paths.eval_prompts),
                   eval_every=eval_every, max_new_tokens=cfg.max_new_tokens, max_len=cfg.max_len)
    strategy = get_strategy(args)
    actor = StandInModelGroup(model, args, trainable=True)
    ref = StandInModelGroup(model, args, trainable=False)
    engine = StandInEngine(str(reward_module_path()), AutoTokenizer.from_pretrained(model))
    trainer = make_trainer_class(spec)(str(model), strategy, actor, None, None, ref, [engine], do_sample=True,
                                       max_len=args.data.max_len, max_new_tokens=args.rollout.max_new_tokens,
                                       temperature=args.rollout.temperature, top_p=args.rollout.top_p)
    return trainer, actor, engine, spec


def suite_score(exp, j: int, tokenizer, scorer: RewardFunction):
    """The suite reward's breakdown of rollout ``j`` of ``exp``, from its decoded tokens."""
    label = PromptLabel.from_json(exp.labels[j])
    length = int(exp.attention_mask[j].sum())
    query = tokenizer.decode(exp.sequences[j, :length], skip_special_tokens=False)
    return scorer.score(label.to_sample(), parse_answer(response_text(query, exp.prompts[j])))


def independent_inputs(experiences: list, model: Path, tokenizer) -> tuple[AdvantageInputs, list[tuple[int, int]]]:
    """The step's advantage inputs rebuilt from the rollouts with loops: rollout order, response-only tensors.

    Rewards by the suite's ``RewardFunction`` on the decoded response; old and reference log probs
    from a plain ``transformers`` forward of the initial model (the step-1 policy and the reference),
    loaded as OpenRLHF loads it (bf16 weights, computed in float32 as the stand-in group does).
    """
    from transformers import AutoModelForCausalLM

    # OpenRLHF's Actor loads the weights in bf16 (its param_dtype); the stand-in then computes in float32
    net = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).float().eval()
    rows = {}
    for exp in experiences:
        for j, index in enumerate(exp.index):
            rows[index] = (exp, j)
    total = len(rows)
    spans, lengths = [], []
    for r in range(total):
        exp, j = rows[r]
        on = [c for c, v in enumerate(exp.action_mask[j].tolist()) if v]
        spans.append((on[0], on[-1] + 1))
        lengths.append(len(on))
    t = max(lengths)
    rewards = torch.zeros(total)
    mask = torch.zeros(total, t)
    logp = torch.zeros(total, t)
    domains = torch.zeros(total, dtype=torch.long)
    scorer = RewardFunction("paper")
    for r in range(total):
        exp, j = rows[r]
        label = PromptLabel.from_json(exp.labels[j])
        start, end = spans[r]
        ids = exp.sequences[j, : int(exp.attention_mask[j].sum())]
        rewards[r] = suite_score(exp, j, tokenizer, scorer).total
        with torch.no_grad():
            logits = net(ids[None]).logits[0].float()
        token_logp = torch.log_softmax(logits[:-1], -1).gather(-1, ids[1:, None])[:, 0]  # position c predicts c + 1
        mask[r, : end - start] = 1
        logp[r, : end - start] = token_logp[start:end]
        domains[r] = DOMAINS.index(label.domain)
    inputs = AdvantageInputs(rewards=rewards, response_mask=mask, group_ids=torch.arange(total) // N, domains=domains,
                             domain_names=DOMAINS, old_logprobs=logp, ref_logprobs=logp.clone())
    return inputs, spans


@pytest.mark.parametrize("estimator", CRITIC_FREE)
def test_fit_runs_openrlhfs_step_with_the_registry_estimator(estimator, tmp_path, tiny_model, ray_local, monkeypatch):
    from transformers import AutoTokenizer

    trainer, actor, engine, spec = build(tmp_path, tiny_model, estimator, monkeypatch)
    trainer.fit()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    # step 1: what reached the actor's replay buffer holds the registry estimator's advantages
    first = actor.appended[: len(actor.appended) // 2]
    assert sum(len(e.index) for e in first) == 2 * N
    inputs, spans = independent_inputs(first, tiny_model, tokenizer)
    if "baseline_rewards" in make_estimator(estimator).requires:  # ReMax: the greedy answer is the first option
        scorer = RewardFunction("paper")
        baseline = torch.zeros(2 * N)
        for exp in first:
            for j, index in enumerate(exp.index):
                label = PromptLabel.from_json(exp.labels[j])
                greedy = parse_answer("\\boxed{" + label.classes[0] + "}")
                baseline[index] = scorer.score(label.to_sample(), greedy).total
        inputs = AdvantageInputs(**{**inputs.__dict__, "baseline_rewards": baseline})
    expected = make_estimator(estimator)(inputs)
    for exp in first:
        assert exp.advantages.shape == exp.action_mask.shape
        for j, index in enumerate(exp.index):
            start, end = spans[index]
            want = torch.zeros(exp.action_mask.shape[1])
            want[start:end] = expected.advantages[index, : end - start].float()
            assert torch.allclose(exp.advantages[j], want, atol=1e-5), (estimator, index)
    # the actor's log probs (OpenRLHF's Actor) agree with the plain transformers forward
    for exp in first:
        for j, index in enumerate(exp.index):
            start, end = spans[index]
            assert torch.allclose(exp.action_log_probs[j, start:end], inputs.old_logprobs[index, : end - start],
                                  atol=1e-4)

    # PolicyLoss: OpenRLHF's clipped surrogate, token mean over the optimizer step, checked by hand
    assert len(actor.steps) == 8  # 2 RL steps x 8 rollouts in micro-batches of 2, one optimizer step per 4
    for step in actor.steps:
        exp = step["experience"]
        ratio = (step["log_probs"] - exp.action_log_probs).exp()
        surrogate = torch.min(ratio * exp.advantages, ratio.clamp(0.8, 1.28) * exp.advantages)
        by_hand = -float((surrogate * exp.action_mask).sum()) / step["tokens"]
        assert step["policy_loss"] == pytest.approx(by_hand, abs=1e-6)
    if any(float(e.advantages.abs().max()) > 0 for e in actor.appended):
        assert all(s["params_changed"] > 0 for s in actor.steps if "params_changed" in s)

    # metrics with the local runner's keys, and the final greedy evaluation
    lines = [json.loads(x) for x in Path(spec.metrics_path).read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 2]
    assert lines[0]["metrics"]["train/reward_mean"] == pytest.approx(float(inputs.rewards.mean()), abs=1e-6)
    predictions = [json.loads(x) for x in Path(spec.predictions_path).read_text().splitlines()]
    assert len(predictions) == 6 and all(p["predicted"] == [p_label] for p, p_label in
                                         zip(predictions, [json.loads(x)["classes"][0] for x in _labels(spec)]))


def test_fit_logs_each_step_checkpoints_the_estimator_and_evaluates_greedily(
    tmp_path, tiny_model, ray_local, monkeypatch
):
    from transformers import AutoTokenizer

    from rlbench_med.runners.openrlhf.trainer import ESTIMATOR_STATE_KEY
    from rlbench_med.suites.metrics import compute_metrics

    samples = make_samples(tmp_path, 6)
    trainer, actor, engine, spec = build(tmp_path, tiny_model, "drpo_release", monkeypatch, samples=samples,
                                         eval_every=1)
    trainer.fit()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    lines = [json.loads(x) for x in Path(spec.metrics_path).read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 2]

    # each step's line: the local runner's keys, OpenRLHF's own under openrlhf/, the estimator's diagnostics
    half = len(actor.appended) // 2
    for line, experiences in zip(lines[:2], (actor.appended[:half], actor.appended[half:])):
        metrics = line["metrics"]
        assert {"train/reward_mean", "train/kl", "time/advantage_s", "time/generate_s", "time/step_s",
                "time/ppo_train_s", "openrlhf/policy_loss"} <= set(metrics)
        assert any(k.startswith("adv/drpo/") for k in metrics)
        scores = [suite_score(e, j, tokenizer, RewardFunction("paper")) for e in experiences for j in range(len(e.labels))]
        for name in ("accuracy", "iou", "format", "length"):  # reward_func's components, by OpenRLHF's info
            want = sum(getattr(s, name) for s in scores) / len(scores)
            assert metrics[f"train/{name}_reward"] == pytest.approx(want, abs=1e-6), name

    # greedy evaluation after each step and at the end: the stand-in's greedy answer is the first option
    for line in lines:
        for domain in DOMAINS:
            mine = [s for s in samples if s.domain == domain]
            exact = sum(s.labels == s.classes[:1] for s in mine) / len(mine)
            assert line["metrics"][f"eval/{domain}/exact"] == pytest.approx(exact), (line["step"], domain)
    records = [json.loads(x) for x in Path(spec.predictions_path).read_text().splitlines()]
    assert [r["uid"] for r in records] == [s.uid for s in samples]
    final = {f"eval/{r['domain']}/{r['metric']}": r["value"] for r in compute_metrics(records)}
    assert lines[-1]["metrics"] == pytest.approx(final)
    greedy = [params for _, params in engine.llm.requests if params.temperature == 0]
    assert len(greedy) == 3 * len(samples) and all(p.max_tokens == spec.max_new_tokens and p.n == 1 for p in greedy)

    # a checkpoint after every step, each holding the estimator's state of that step
    ckpt = Path(trainer.args.ckpt.path) / "_actor"
    saved = [torch.load(ckpt / f"global_step{s}.pt", weights_only=False)["client_states"] for s in (1, 2)]
    assert [c["global_step"] for c in saved] == [1, 2]
    assert _same(saved[1][ESTIMATOR_STATE_KEY], trainer.estimator.state_dict())
    assert not _same(saved[0][ESTIMATOR_STATE_KEY], saved[1][ESTIMATOR_STATE_KEY])


def _labels(spec: RunSpec) -> list[str]:
    return [json.loads(line)["label"] for line in Path(spec.eval_prompts).read_text().splitlines()]


def test_resume_restores_drpo_release_state_and_continues_identically(tmp_path, tiny_model, ray_local, monkeypatch):
    straight, actor, _, _ = build(tmp_path / "a", tiny_model, "drpo_release", monkeypatch)
    straight.fit()
    second_step = by_rollout(actor.appended[len(actor.appended) // 2 :])

    # interrupted after step 1: its checkpoint is the latest; resume and run step 2 again
    ckpt = tmp_path / "a/out/openrlhf/drpo_release-seed0/ckpt/_actor"
    (ckpt / "latest").write_text("global_step1")
    saved = torch.load(ckpt / "global_step1.pt", weights_only=False)["client_states"]
    assert saved["global_step"] == 1 and saved["rlbench_estimator_state"]
    resumed, actor2, _, _ = build(tmp_path / "a", tiny_model, "drpo_release", monkeypatch, resume=True)
    resumed.fit()
    assert len(actor2.appended) == len(actor.appended) // 2  # only step 2 ran
    again = by_rollout(actor2.appended)
    assert again.keys() == second_step.keys()  # the same rollouts (ray.wait may return them in another order)
    assert all(torch.allclose(again[k], second_step[k], atol=1e-6) for k in again)
    assert _same(resumed.estimator.state_dict(), straight.estimator.state_dict())

    # what was restored is the history the checkpoint holds, not a fresh estimator's
    assert not _same(saved["rlbench_estimator_state"], make_estimator("drpo_release").state_dict())
    seen = []
    (ckpt / "latest").write_text("global_step1")  # the resumed run saved step 2 since
    spy, _, _, _ = build(tmp_path / "a", tiny_model, "drpo_release", monkeypatch, resume=True)
    load = spy.estimator.load_state_dict
    spy.estimator.load_state_dict = lambda state: (seen.append(state), load(state))
    spy.fit()
    assert len(seen) == 1 and _same(seen[0], saved["rlbench_estimator_state"])


def test_a_checkpoint_without_the_estimator_state_is_refused(tmp_path, tiny_model, ray_local, monkeypatch):
    _, actor, _, _ = build(tmp_path, tiny_model, "grpo", monkeypatch)
    # what OpenRLHF's own PPOTrainer saves: its client states, without ours
    actor.save_checkpoint("global_step1", {"episode": 0, "global_step": 1, "total_consumed_prompts": 2,
                                           "data_loader_state_dict": {}})
    resumed, actor2, _, _ = build(tmp_path, tiny_model, "grpo", monkeypatch, resume=True)
    with pytest.raises(RuntimeError, match=r"ckpt has no estimator state \(rlbench_estimator_state\)"):
        resumed.fit()
    assert not actor2.appended  # refused before any rollout


def by_rollout(experiences: list) -> dict[tuple, torch.Tensor]:
    """{(label, response tokens): advantages on the response}: comparable whatever the rollout order."""
    out = {}
    for exp in experiences:
        for j, label in enumerate(exp.labels):
            on = exp.action_mask[j].bool()
            length = int(exp.attention_mask[j].sum())
            out[(label, tuple(exp.sequences[j, :length].tolist()))] = exp.advantages[j][on]
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_reward_exception_inside_openrlhfs_executor_fails_the_run_with_the_record(
    tmp_path, tiny_model, ray_local, monkeypatch
):
    from rlbench_med.suites import rewards

    samples = make_samples(tmp_path, 6)
    broken = samples[1]
    trainer, actor, engine, _ = build(tmp_path, tiny_model, "grpo", monkeypatch, samples=samples)
    score = rewards.RewardFunction.score

    def buggy(self, sample, answer):  # a reward bug that hits one sample
        if sample.uid == broken.uid:
            raise KeyError(f"no class table for {sample.dataset}")
        return score(self, sample, answer)

    monkeypatch.setattr(rewards.RewardFunction, "score", buggy)
    with pytest.raises(RewardError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert f"sample {broken.uid} ({broken.domain}/{broken.dataset}) has no reward" in message
    assert f"KeyError: 'no class table for {broken.dataset}'" in message, message
    assert any(r["reward"] is None for r in engine.responses)  # OpenRLHF itself only logged it
    # no rollout of the broken sample reached the actor
    assert all(PromptLabel.from_json(lab).uid != broken.uid for e in actor.appended for lab in e.labels)
