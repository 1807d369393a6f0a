"""Our trainer's ``fit`` on OpenRLHF 0.11.2's real actors, on a tiny local Qwen2 model, on the CPU.

Everything is OpenRLHF's own code on its own actors (``device=cpu``, :mod:`tests.runners.openrlhf.pipeline`):
the vLLM engine generates the rollouts from the current weights and calls ``reward.py`` through
``SingleTurnAgentExecutor``; ``make_experience`` runs the actor's and reference's forward on the
DeepSpeed actors; ``ppo_train`` updates the actor; ``broadcast_to_vllm`` syncs the engine;
checkpoints are DeepSpeed's. Our trainer is built in this process as ``train()`` builds it.

First, the update and the sync alone: one ``ppo_train`` step on advantages set here must follow
their sign, leave the engine as it was, and after ``broadcast_to_vllm`` the engine's log probs of
the same responses equal the updated actor's. Then, before every rollout batch a spy checks that the engine's log probs of a fixed response equal
the actor's, so a skipped sync (after a step or on resume) fails. Advantages reaching the actor
are compared with the registry estimator on inputs rebuilt here from the decoded rollouts and
the suite's reward. Rewards are the ``release`` reward, whose length term varies for any text, so
the random model's rollouts of one prompt differ in reward and updates are not zero.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from rlbench_med.algorithms import AdvantageInputs, make_estimator
from rlbench_med.runners.base import Job
from rlbench_med.runners.openrlhf import OpenRLHFConfig
from rlbench_med.runners.openrlhf.data import PromptLabel, export_prompts
from rlbench_med.runners.openrlhf.flags import openrlhf_flags
from rlbench_med.runners.openrlhf.reward import RewardError, response_text
from rlbench_med.runners.openrlhf.runner import context
from rlbench_med.runners.openrlhf.runspec import RunSpec
from rlbench_med.runners.openrlhf.tiny_model import write_tiny_chat_model
from rlbench_med.suites.rewards import make_reward
from tests.runners.openrlhf.conftest import DOMAINS, make_samples, openrlhf_main_args, require_openrlhf_stack
from tests.runners.openrlhf.pipeline import Groups, actor_logprobs, build_groups, cpu_ray, engine_logprobs

pytestmark = pytest.mark.slow
N = 4  # rollouts per prompt
TOL = 0.02  # engine vs actor log probs: both bf16, different kernels (measured: 0.002)
MAX_STEPS = 16  # the actor's LR schedule length; the tests of this module run 2 steps each, 7 in all


def settings(model: Path, **config: Any) -> OpenRLHFConfig:
    base = dict(model=str(model), vlm=False, device="cpu", colocate=False, n_samples_per_prompt=N,
                rollout_batch_size=2, micro_rollout_batch_size=3, train_batch_size=4, micro_train_batch_size=2,
                max_new_tokens=24, max_len=512, kl_coef=0.01, gpus_per_node=1, vllm_num_engines=1, lr=1e-2,
                max_samples=4, checkpoint_every=0, zero_stage=2, attn_implementation="eager",
                gradient_checkpointing=False, reward="release",
                openrlhf_args=("--actor.lr_warmup_ratio=0",))  # OpenRLHF's warmup makes the 1st step's lr 0
    return OpenRLHFConfig(**{**base, **config})  # type: ignore[arg-type]


def parsed_args(cfg: OpenRLHFConfig, root: Path, estimator: str, resume: bool = False) -> tuple[Any, Any]:
    job = Job(suite="climb_vision", algo=estimator, estimator=estimator, seed=0, config=cfg, data_dir=root,
              out_dir=root / "out")
    ctx = context(job, resume=resume)
    with pytest.MonkeyPatch.context() as patch:
        return openrlhf_main_args(openrlhf_flags(ctx), patch), ctx


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Groups]]:
    """One engine, actor and reference for the module (4 logical GPUs: a second actor group resumes)."""
    require_openrlhf_stack()
    root = tmp_path_factory.mktemp("trainer")
    model = write_tiny_chat_model(root / "model")
    args, _ = parsed_args(settings(model), root, "grpo")
    with cpu_ray(num_gpus=5):
        yield model, build_groups(args, str(model), MAX_STEPS)


def fixed_response(model: Path) -> tuple[list[int], int]:
    rows, start = chat(model, ["\\boxed{Normal}"])
    return rows[0], start


class Spies:
    """What the trainer sends the actor (``append``) and the engine/actor gap before each rollout batch."""

    def __init__(self, trainer: Any, groups: Groups, model: Path) -> None:
        self.appended: list[Any] = []
        self.gaps: list[float] = []
        self.engine_before: list[torch.Tensor] = []
        ids, start = fixed_response(model)
        group = trainer.actor_model_group
        run_batch = group.async_run_method_batch
        generate = trainer.samples_generator.generate_samples

        def recording(method_name: str, **kwargs: Any) -> Any:
            if method_name == "append":
                self.appended.extend(kwargs["experience"])
            return run_batch(method_name, **kwargs)

        def checked(**kwargs: Any) -> Any:
            engine = engine_logprobs(groups.engines[0], ids, start)
            self.engine_before.append(engine)
            self.gaps.append(float((engine - actor_logprobs(group, ids, start)).abs().max()))
            return generate(**kwargs)

        group.async_run_method_batch = recording
        trainer.samples_generator.generate_samples = checked


def build(root: Path, model: Path, groups: Groups, estimator: str, *, eval_every: int = 0, resume: bool = False,
          samples: list | None = None, break_label: int | None = None, **config: Any) -> tuple[Any, RunSpec, Spies]:
    """Our trainer as ``train()`` builds it, on the module's actors; returns (trainer, spec, spies).

    ``break_label``: that training prompt's label names a reward that does not exist.
    """
    from rlbench_med.runners.openrlhf.trainer import make_trainer_class

    cfg = settings(model, **config)
    args, ctx = parsed_args(cfg, root, estimator, resume)
    samples = samples if samples is not None else make_samples(root, 6)
    export_prompts(samples[:4], ctx.paths.train_prompts, vlm=False, reward="release")
    export_prompts(samples, ctx.paths.eval_prompts, vlm=False, reward="release")
    export_prompts(samples[3:], ctx.paths.validation_prompts, vlm=False, reward="release")
    if break_label is not None:
        lines = ctx.paths.train_prompts.read_text().splitlines()
        record = json.loads(lines[break_label])
        record["label"] = json.dumps({**json.loads(record["label"]), "reward": "no_such_reward"})
        lines[break_label] = json.dumps(record)
        ctx.paths.train_prompts.write_text("\n".join(lines) + "\n")
    spec = RunSpec(estimator=estimator, n_samples_per_prompt=N, domain_names=DOMAINS, group_by="domain",
                   kl_mode=cfg.kl_mode, kl_coef=cfg.kl_coef, metrics_path=str(ctx.paths.metrics),
                   predictions_path=str(ctx.paths.predictions), eval_prompts=str(ctx.paths.eval_prompts),
                   validation_prompts=str(ctx.paths.validation_prompts),
                   validation_predictions_path=str(ctx.paths.validation_predictions),
                   eval_every=eval_every, max_new_tokens=cfg.max_new_tokens, max_len=cfg.max_len, device="cpu")
    from openrlhf.utils import get_strategy

    args.ckpt.path = str(groups.ckpt)  # train() gives the trainer the actors' args
    strategy = get_strategy(args)
    trainer = make_trainer_class(spec)(str(model), strategy, groups.actor, None, None, groups.ref, groups.engines,
                                       do_sample=True, max_len=args.data.max_len,
                                       max_new_tokens=args.rollout.max_new_tokens,
                                       temperature=args.rollout.temperature, top_p=args.rollout.top_p)
    return trainer, spec, Spies(trainer, groups, model)


def independent_inputs(experiences: list, tokenizer: Any) -> tuple[AdvantageInputs, list[tuple[int, int]]]:
    """The step's advantage inputs rebuilt with loops: rollout order, response-only tensors, rewards from the
    ``release`` reward of each decoded response; log probs are the experience's own (inputs, not outputs)."""
    rows = {index: (exp, j) for exp in experiences for j, index in enumerate(exp.index)}
    total = len(rows)
    spans = []
    for r in range(total):
        exp, j = rows[r]
        on = [c for c, v in enumerate(exp.action_mask[j].tolist()) if v]
        spans.append((on[0], on[-1] + 1))
    t = max(end - start for start, end in spans)
    rewards, mask = torch.zeros(total), torch.zeros(total, t)
    old, ref = torch.zeros(total, t), torch.zeros(total, t)
    domains = torch.zeros(total, dtype=torch.long)
    scorer = make_reward("release")
    for r in range(total):
        exp, j = rows[r]
        label = PromptLabel.from_json(exp.labels[j])
        start, end = spans[r]
        query = tokenizer.decode(exp.sequences[j, : int(exp.attention_mask[j].sum())], skip_special_tokens=False)
        rewards[r] = scorer.score_text(label.to_sample(), response_text(query, exp.prompts[j])).total
        mask[r, : end - start] = 1
        old[r, : end - start] = exp.action_log_probs[j, start:end].float()
        ref[r, : end - start] = exp.base_action_log_probs[j, start:end].float()
        domains[r] = DOMAINS.index(label.domain)
    inputs = AdvantageInputs(rewards=rewards, response_mask=mask, group_ids=torch.arange(total) // N,
                             domains=domains, domain_names=DOMAINS, old_logprobs=old, ref_logprobs=ref)
    return inputs, spans


def greedy_rewards(groups: Groups, model: Path, prompts: Path) -> dict[str, float]:
    """{chat-templated prompt: release reward of the engine's greedy answer}, asked here (ReMax's baseline)."""
    import ray
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from rlbench_med.runners.openrlhf.data import read_prompts

    tokenizer = AutoTokenizer.from_pretrained(model)
    scorer = make_reward("release")
    out = {}
    for item in read_prompts(prompts):
        prompt = tokenizer.apply_chat_template([dict(m) for m in item.messages], tokenize=False,
                                               add_generation_prompt=True)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        done = ray.get(groups.engines[0].generate.remote(ids, SamplingParams(temperature=0.0, max_tokens=24)))
        text = tokenizer.decode(done.outputs[0].token_ids, skip_special_tokens=True)
        out[prompt] = scorer.score_text(item.label.to_sample(), text).total
    return out


def metric_lines(spec: RunSpec) -> list[dict]:
    return [json.loads(x) for x in Path(spec.metrics_path).read_text().splitlines()]


def chat(model: Path, responses: list[str]) -> tuple[list[list[int]], int]:
    """Token ids of one prompt followed by each response (+ eos), and where the responses start."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Case 1: what is the diagnosis?"}],
                                           tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    rows = [prompt_ids + tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            for r in responses]
    return rows, len(prompt_ids)


def experience(rows: list[list[int]], start: int, old: list[torch.Tensor], advantage: list[float]):
    """The batch OpenRLHF's experience maker hands the actor: equal-length rows, response-only action mask;
    the reference log probs are the actor's (a KL of 0 before the update)."""
    from openrlhf.trainer.ppo_utils import Experience

    sequences = torch.tensor(rows)
    action_mask = torch.zeros(len(rows), sequences.shape[1] - 1, dtype=torch.bool)
    action_mask[:, start - 1 :] = True
    log_probs = torch.zeros(action_mask.shape)
    log_probs[:, start - 1 :] = torch.stack(old)
    adv = torch.tensor(advantage)[:, None] * action_mask
    return Experience(sequences=sequences, attention_mask=torch.ones_like(sequences), action_mask=action_mask,
                      action_log_probs=log_probs, base_action_log_probs=log_probs.clone(), advantages=adv,
                      returns=adv.clone(),
                      rewards=torch.tensor(advantage), info={})


def test_the_engine_generates_from_the_weights_the_actor_trained_after_the_sync(stack):
    import ray

    model, groups = stack
    engine = groups.engines[0]
    rows, start = chat(model, ["\\boxed{Normal}", "\\boxed{Nevus!}"])  # same length: no padding
    before_engine = [engine_logprobs(engine, r, start) for r in rows]
    before_actor = [actor_logprobs(groups.actor, r, start) for r in rows]
    for e, a in zip(before_engine, before_actor):
        assert torch.allclose(e, a, atol=TOL), (e - a).abs().max()

    # one optimizer step of OpenRLHF's ppo_train (train_batch_size 4): advantage +1 on the first response, -1 on
    # the second, each twice
    batch = experience(rows * 2, start, before_actor * 2, [1, -1, 1, -1])
    ray.get(groups.actor.async_run_method_batch("append", experience=[batch]))
    [status] = ray.get(groups.actor.async_run_method("fit", kl_ctl=0.0))
    assert status["actor_grad_norm"] > 0
    after_actor = [actor_logprobs(groups.actor, r, start) for r in rows]
    # the responses share most tokens, so compare their changes: the +1 one gains on the -1 one
    gain = [float(a.sum() - b.sum()) for a, b in zip(after_actor, before_actor)]
    assert gain[0] - gain[1] > 1.0, gain

    # the engine still has the old weights until OpenRLHF's broadcast_to_vllm
    assert all(torch.equal(engine_logprobs(engine, r, start), b) for r, b in zip(rows, before_engine))
    ray.get(groups.actor.async_run_method("broadcast_to_vllm"))
    for r, b, a in zip(rows, before_engine, after_actor):
        synced = engine_logprobs(engine, r, start)
        assert torch.allclose(synced, a, atol=TOL), (synced - a).abs().max()
        assert float((synced - b).abs().max()) > 2 * TOL


@pytest.mark.parametrize("estimator", ["grpo", "remax", "drpo"])
def test_fit_runs_openrlhfs_step_with_the_registry_estimator(estimator, tmp_path, stack):
    from transformers import AutoTokenizer

    model, groups = stack
    trainer, spec, spies = build(tmp_path, model, groups, estimator)
    baseline = greedy_rewards(groups, model, Path(spec.eval_prompts)) if estimator == "remax" else {}
    trainer.fit()

    # every rollout batch came from an engine holding the actor's weights, and those weights moved
    assert len(spies.gaps) >= 2 and max(spies.gaps) < TOL, spies.gaps  # (the last call finds the data exhausted)
    after = engine_logprobs(groups.engines[0], *fixed_response(model))
    assert float((after - spies.engine_before[0]).abs().max()) > 2 * TOL

    # step 1: what reached the actor holds the registry estimator's advantages
    first = spies.appended[: len(spies.appended) // 2]
    assert sum(len(e.index) for e in first) == 2 * N
    inputs, spans = independent_inputs(first, AutoTokenizer.from_pretrained(model))
    assert len(set(inputs.rewards.tolist())) > 1  # different rewards: advantages are not all zero
    if estimator == "remax":
        by_row = {index: exp.prompts[j] for exp in first for j, index in enumerate(exp.index)}
        inputs = AdvantageInputs(**{**inputs.__dict__, "baseline_rewards": torch.tensor(
            [baseline[by_row[r]] for r in range(2 * N)])})
    expected = make_estimator(estimator)(inputs)
    assert float(expected.advantages.abs().max()) > 0
    for exp in first:
        for j, index in enumerate(exp.index):
            start, end = spans[index]
            want = torch.zeros(exp.action_mask.shape[1])
            want[start:end] = expected.advantages[index, : end - start].float()
            assert torch.allclose(exp.advantages[j], want, atol=1e-5), (estimator, index)

    lines = metric_lines(spec)
    assert [x["step"] for x in lines] == [1, 2, 2]
    assert lines[0]["metrics"]["train/reward_mean"] == pytest.approx(float(inputs.rewards.mean()), abs=1e-6)
    predictions = [json.loads(x) for x in Path(spec.predictions_path).read_text().splitlines()]
    assert len(predictions) == 6


def test_fit_logs_each_step_checkpoints_the_estimator_and_evaluates_greedily(tmp_path, stack):
    from transformers import AutoTokenizer

    from rlbench_med.runners.openrlhf.trainer import ESTIMATOR_STATE_KEY
    from rlbench_med.suites.metrics import compute_metrics

    model, groups = stack
    trainer, spec, spies = build(tmp_path, model, groups, "drpo_release", eval_every=1, checkpoint_every=1)
    trainer.fit()
    tokenizer = AutoTokenizer.from_pretrained(model)
    lines = metric_lines(spec)
    assert [x["step"] for x in lines] == [1, 2, 2]
    half = len(spies.appended) // 2
    scorer = make_reward("release")
    for line, experiences in zip(lines[:2], (spies.appended[:half], spies.appended[half:])):
        metrics = line["metrics"]
        assert {"train/reward_mean", "train/kl", "time/advantage_s", "time/generate_s", "time/step_s",
                "time/ppo_train_s", "openrlhf/policy_loss", "openrlhf/actor_grad_norm"} <= set(metrics)
        assert any(k.startswith("adv/drpo/") for k in metrics)
        scores = []
        for e in experiences:
            for j in range(len(e.labels)):
                query = tokenizer.decode(e.sequences[j, : int(e.attention_mask[j].sum())], skip_special_tokens=False)
                label = PromptLabel.from_json(e.labels[j])
                scores.append(scorer.score_text(label.to_sample(), response_text(query, e.prompts[j])))
        for name in ("accuracy", "iou", "format", "length"):  # reward_func's components, by OpenRLHF's info
            want = sum(getattr(s, name) for s in scores) / len(scores)
            assert metrics[f"train/{name}_reward"] == pytest.approx(want, abs=1e-6), name

    # greedy evaluation of the validation split after each step and at the end (the curves), of the test
    # split once, at the end; the last line holds both predictions files' metrics
    records = [json.loads(x) for x in Path(spec.predictions_path).read_text().splitlines()]
    validation = [json.loads(x) for x in Path(spec.validation_predictions_path).read_text().splitlines()]
    assert len(records) == 6 and len(validation) == 3
    assert all("val/cxr/acc" in line["metrics"] for line in lines)
    assert not any(k.startswith("eval/") for line in lines[:-1] for k in line["metrics"])
    final = {f"eval/{r['domain']}/{r['metric']}": r["value"] for r in compute_metrics(records)}
    final.update({f"val/{r['domain']}/{r['metric']}": r["value"] for r in compute_metrics(validation)})
    assert lines[-1]["metrics"] == pytest.approx(final)

    # DeepSpeed checkpoints after each step, holding the estimator's state of that step
    ckpt = groups.ckpt / "_actor"
    saved = [torch.load(ckpt / f"global_step{s}" / "mp_rank_00_model_states.pt", weights_only=False)
             for s in (1, 2)]
    assert [c["global_step"] for c in saved] == [1, 2] and (ckpt / "latest").read_text() == "global_step2"
    assert _same(saved[1][ESTIMATOR_STATE_KEY], trainer.estimator.state_dict())
    assert not _same(saved[0][ESTIMATOR_STATE_KEY], saved[1][ESTIMATOR_STATE_KEY])


def test_the_greedy_pass_wakes_a_sleeping_engine_first_and_puts_it_back_to_sleep(tmp_path, stack):
    """As on a colocated GPU node (``--vllm.enable_sleep``): vLLM's ``sleep`` pauses its scheduler (the
    memory release is the GPU's part; the CPU worker skips it), so a sleeping engine takes requests but
    generates nothing until ``wake_up``. The greedy pass must wake the engines, generate, and put them
    back to sleep for the training that follows."""
    import threading

    import ray
    from openrlhf.trainer.ray.vllm_engine import batch_vllm_engine_call
    from vllm import SamplingParams

    model, groups = stack
    trainer, _, _ = build(tmp_path, model, groups, "grpo")
    trainer.args.vllm.enable_sleep = True  # what --vllm.enable_sleep (colocate=true) sets
    batch_vllm_engine_call(groups.engines, "sleep")  # as create_vllm_engines leaves them with sleep mode
    done: list[Any] = []
    try:
        greedy = threading.Thread(target=lambda: done.append(trainer.evaluate_greedy(trainer.eval_prompts)), daemon=True)
        greedy.start()
        greedy.join(timeout=180)
        assert done and len(done[0]) == 6, "the greedy pass did not finish: it generated on a sleeping engine"
        ids, _ = fixed_response(model)
        ref = groups.engines[0].generate.remote(ids, SamplingParams(max_tokens=1))
        with pytest.raises(ray.exceptions.GetTimeoutError):
            ray.get(ref, timeout=5)  # asleep again: the request waits
    finally:
        batch_vllm_engine_call(groups.engines, "wake_up")
    assert ray.get(ref).outputs[0].token_ids  # and runs once awake


def test_a_reward_exception_inside_openrlhfs_executor_fails_the_run_with_the_record(tmp_path, stack):
    model, groups = stack
    samples = make_samples(tmp_path, 6)
    # reward_func raises inside the vLLM engine for that sample only; OpenRLHF only logs it
    trainer, spec, spies = build(tmp_path, model, groups, "grpo", samples=samples, break_label=1)
    with pytest.raises(RewardError) as caught:
        trainer.fit()
    uid = samples[1].uid
    assert f"sample {uid} ({samples[1].domain}/{samples[1].dataset}) has no reward" in str(caught.value)
    assert "no_such_reward" in str(caught.value), str(caught.value)
    assert all(PromptLabel.from_json(lab).uid != uid for e in spies.appended for lab in e.labels)


def test_resume_loads_the_checkpoint_into_new_actors_and_syncs_the_engine_first(tmp_path, stack):
    """A second actor group loads step 1 of a run (``--ckpt.load_enable``); only step 2 runs, from the restored
    estimator state, and its rollouts come from the restored weights, not from what the engine held.

    Last in the module: the new actor group makes the engine's weight-sync group its own (as a restarted
    job does), so the module's first actor group can no longer sync."""
    from openrlhf.trainer.ray.launcher import RayActorGroup, ReferenceModelActor
    from openrlhf.trainer.ray.ppo_actor import PolicyModelActor

    model, groups = stack
    first, _, _ = build(tmp_path, model, groups, "drpo_release", checkpoint_every=1)
    first.fit()
    ckpt = groups.ckpt / "_actor"
    (ckpt / "latest").write_text("global_step1")  # as if stopped after step 1
    saved = torch.load(ckpt / "global_step1" / "mp_rank_00_model_states.pt", weights_only=False)

    import ray

    args, _ = parsed_args(settings(model, checkpoint_every=1), tmp_path, "drpo_release", resume=True)
    from openrlhf.utils import get_strategy

    args.ckpt.path = str(groups.ckpt)
    strategy = get_strategy(args)
    actor = RayActorGroup(1, 1, PolicyModelActor)
    ref = RayActorGroup(1, 1, ReferenceModelActor)
    ray.get(actor.async_init_model_from_pretrained(strategy, str(model), MAX_STEPS, groups.engines)
            + ref.async_init_model_from_pretrained(strategy, str(model)))
    resumed_groups = Groups(strategy=strategy, engines=groups.engines, actor=actor, ref=ref, ckpt=groups.ckpt)
    ids, start = fixed_response(model)
    stale = float((engine_logprobs(groups.engines[0], ids, start) - actor_logprobs(actor, ids, start)).abs().max())
    assert stale > 2 * TOL  # the engine holds the first run's last weights, not step 1's

    resumed, spec, spies = build(tmp_path, model, resumed_groups, "drpo_release", resume=True, checkpoint_every=1)
    seen = []
    load = resumed.estimator.load_state_dict
    resumed.estimator.load_state_dict = lambda state: (seen.append(state), load(state))
    resumed.fit()
    assert len(seen) == 1 and _same(seen[0], saved["rlbench_estimator_state"])
    assert max(spies.gaps) < TOL, spies.gaps  # synced before its first rollout
    assert sum(len(e.index) for e in spies.appended) == 2 * N  # only step 2 ran
    assert [x["step"] for x in metric_lines(spec)][-2:] == [2, 2]


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
