"""One job of the local runner, top to bottom: base -> RL (or SFT) steps -> evaluations -> result.

An RL step:

1. sample ``prompts_per_step`` training prompts (image / signal dropped with ``modality_dropout``);
2. sample ``n_rollouts`` answers each at ``temperature``; score them with ``suites.rewards``;
3. old log-probs (current policy), reference log-probs (frozen base); critic values and a greedy
   rollout per prompt only when the estimator ``requires`` them. With ``epochs = minibatches = 1``
   the old log-probs are those of the update's own forward, computed here (the policy has not
   moved yet), not by a second forward;
4. ``AdvantageInputs`` -> the estimator (the only algorithm-specific line);
5. ``epochs`` x ``minibatches`` AdamW updates of the token-level clipped surrogate
   ``-min(r A, clip(r, 1 - clip_low, 1 + clip_high) A)`` with ``r = exp(logp - old)``, token-mean
   over all response tokens of the minibatch, plus ``kl_coef`` x k3 KL to the reference
   (``kl_mode=loss``; with ``kl_mode=reward`` the KL is subtracted from the rewards instead).

Metrics use the contract's keys (``train/...``, ``adv/...``, ``time/...``, ``eval/...``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rlbench_med.runners.base import BASE, SFT, TEST, VALIDATION, Job, JobResult, Tracker, predictions_dir
from rlbench_med.runners.config import LocalConfig, parse_eval_input
from rlbench_med.runners.local.checkpoint import (
    capture_rng,
    latest_readable_checkpoint,
    restore_rng,
    save_checkpoint,
)
from rlbench_med.runners.local.inputs import EncodedSplit
from rlbench_med.runners.local.loss import clipped_surrogate, k3_kl
from rlbench_med.runners.local.optim import lr_factor, make_optimizer, set_learning_rate
from rlbench_med.runners.local.policy import masked_mean
from rlbench_med.runners.local.rollout import Rollouts
from rlbench_med.runners.local.sft import draw_drop, load_or_train_base, optimizer_step, sft_update
from rlbench_med.typed_config import ConfigError

EVAL_BATCH = 256
log = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised by :func:`run_job` when ``stop_after`` steps are done (tests simulate a killed run)."""


def resolve_device(config: LocalConfig) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but torch sees no GPU; use device=auto or cpu")
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def suite_eval_inputs(job: Job) -> tuple[str, ...]:
    """The final evaluation's input sets: the config's, else the suite's, else ``("full",)``."""
    if job.config.eval_inputs:
        return tuple(job.config.eval_inputs)
    from rlbench_med.suites.spec import get_suite

    return tuple(get_suite(job.suite).eval_inputs) or ("full",)


def dropout_probability(config: LocalConfig, eval_inputs: tuple[str, ...]) -> float:
    """``modality_dropout``, or 0.3 when any input ablation is evaluated (so ablated evals are meaningful)."""
    if config.modality_dropout is not None:
        return config.modality_dropout
    return 0.3 if any(x != "full" for x in eval_inputs) else 0.0


def make_reward_fn(config: LocalConfig) -> Any:
    """The configured reward (``reward``, ``reward_weights``, ``iou_reduce``); policies state boxes in original pixels."""
    from rlbench_med.suites.rewards import make_reward

    return make_reward(config.reward, config.reward_weights.strip(), config.iou_reduce, accuracy=config.accuracy_reward)


def make_agent(config: LocalConfig, data_dir: Path, device: torch.device) -> Any:
    """The policy adapter: builtin (modality encoders) or ``hf:`` (a local HF causal LM)."""
    if config.hf_path is not None:
        from rlbench_med.runners.local.hf_policy import HFAgent, encode_text_data

        return HFAgent(config, encode_text_data(data_dir, config), device)
    from rlbench_med.runners.local.inputs import encode_data
    from rlbench_med.runners.local.rollout import BuiltinAgent

    return BuiltinAgent(config, encode_data(data_dir, config), device)


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------
def evaluate(agent: Any, model: torch.nn.Module, split: EncodedSplit, reward_fn: Any, inputs: str,
             max_samples: int) -> list[dict[str, Any]]:
    """Greedy answers to the held-out split with only the modalities of ``inputs``; one record per sample."""
    from rlbench_med.suites.rewards import answer_text

    keep = parse_eval_input(inputs)
    n = len(split) if max_samples <= 0 else min(max_samples, len(split))
    records: list[dict[str, Any]] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, n, EVAL_BATCH):
            idx = torch.arange(start, min(n, start + EVAL_BATCH))
            drop = (torch.full((len(idx),), "vision" not in keep), torch.full((len(idx),), "ecg" not in keep))
            ro = agent.sample(model, split, idx, drop, 1, 1.0, True, None)
            for k, answer in zip(idx.tolist(), agent.answers(ro, split)):
                sample = split.samples[k]
                record: dict[str, Any] = {"uid": sample.uid, "domain": sample.domain, "dataset": sample.dataset,
                                          "labels": list(sample.labels), "predicted": list(answer.labels),
                                          "response": answer_text(answer)}
                iou = reward_fn.iou(sample, answer.boxes)
                if iou is not None:
                    record["iou"] = float(iou)
                records.append(record)
    return records


def eval_metrics(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from rlbench_med.suites.metrics import compute_metrics

    return compute_metrics(records)


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
@dataclass
class Timings:
    """Seconds spent per phase, summed over the run's steps (kept across a resume).

    ``generate_s``: sampling plus the gradient-free forward passes that prepare the estimator's inputs
    (reference log-probs, critic values, the greedy baseline, and old log-probs where the update does
    not give them); ``score_s``: rewards; ``advantage_s``: the estimator call; ``update_s``: the
    update's forward and backward passes and optimizer steps (all of an SFT step);
    ``step_s``: whole training steps; ``eval_s``: held-out evaluations (not part of ``step_s``).
    """

    generate_s: float = 0.0
    score_s: float = 0.0
    advantage_s: float = 0.0
    update_s: float = 0.0
    eval_s: float = 0.0
    step_s: float = 0.0
    rollouts: int = 0

    def as_dict(self) -> dict[str, float]:
        out = {k: float(getattr(self, k)) for k in ("generate_s", "score_s", "advantage_s", "update_s", "eval_s",
                                                     "step_s")}
        out["rollouts"] = float(self.rollouts)
        out["rollouts_per_s"] = self.rollouts / self.step_s if self.step_s > 0 else 0.0
        return out


def policy_param_groups(policy: torch.nn.Module, cfg: LocalConfig) -> list[dict[str, Any]]:
    """The policy's optimizer parameter groups: the modality encoders at ``lr x encoder_lr_scale`` (left out
    at 0), everything else at ``lr`` (a policy without encoders, an ``hf:`` one, is one group)."""
    encoders = policy.encoder_parameters() if hasattr(policy, "encoder_parameters") else []
    if not encoders or cfg.encoder_lr_scale == 1.0:
        return [{"params": list(policy.parameters())}]
    ids = {id(p) for p in encoders}
    groups: list[dict[str, Any]] = [{"params": [p for p in policy.parameters() if id(p) not in ids]}]
    if cfg.encoder_lr_scale > 0:
        groups.append({"params": encoders, "lr": cfg.lr * cfg.encoder_lr_scale})
    return groups


@dataclass
class FirstForward:
    """The forward of a step's single update: the rows in update order, their log-probs (with the graph)
    and the same log-probs detached, in rollout order (the step's old log-probs)."""

    order: Tensor
    logprobs: Tensor
    old_logprobs: Tensor


class LocalTrainer:
    """State of one job: agent, policy, reference, optimizer(s), estimator, RNG and timings."""

    def __init__(self, job: Job, base_state: dict[str, Tensor], agent: Any, drop_p: float) -> None:
        cfg: LocalConfig = job.config
        self.job, self.cfg, self.agent, self.drop_p = job, cfg, agent, drop_p
        self.split = agent.encoded.train
        self.is_sft = job.estimator == SFT
        #: Steps this job trains: none for the base (the starting policy, evaluated as it is).
        self.total_steps = 0 if job.estimator == BASE else cfg.steps
        torch.manual_seed(job.seed)
        self.generator = torch.Generator().manual_seed(job.seed)
        self.policy = agent.new_model()
        self.policy.load_state_dict(base_state)
        self.reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
        # The sft baseline uses the RL runs' optimizer settings, so the two differ only in the objective.
        if cfg.encoder_lr_scale == 0 and hasattr(self.policy, "encoder_parameters"):
            for p in self.policy.encoder_parameters():
                p.requires_grad_(False)  # frozen: no gradient computed for them
        self.optimizer = make_optimizer(policy_param_groups(self.policy, cfg), cfg.lr, cfg)
        self.reward_fn = make_reward_fn(cfg)
        self.estimator = None
        self.critic = None
        self.critic_optimizer = None
        if job.estimator not in (SFT, BASE):
            from rlbench_med.algorithms import make_estimator

            self.estimator = make_estimator(job.estimator)
            if "values" in self.estimator.requires:
                self.critic = agent.new_critic(self.policy)
                self.critic_optimizer = make_optimizer(self.critic.parameters(), cfg.critic_lr, cfg)
        data = agent.encoded.data
        if cfg.group_by == "domain":
            self.group_names = tuple(data.domains)
            self.group_of = [self.group_names.index(s.domain) for s in self.split.samples]
        else:
            self.group_names = tuple(sorted({s.dataset for s in self.split.samples}))
            self.group_of = [self.group_names.index(s.dataset) for s in self.split.samples]
        self.timings = Timings()
        self.step = 0

    # -- checkpoints ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "critic": self.critic.state_dict() if self.critic is not None else {},
            "critic_optimizer": self.critic_optimizer.state_dict() if self.critic_optimizer is not None else {},
            "estimator": self.estimator.state_dict() if self.estimator is not None else {},
            "rng": capture_rng(self.generator),
            "timings": dataclasses.asdict(self.timings),
            "config": self._config_key(),
            "estimator_spec": self.job.estimator,
        }

    def _config_key(self) -> str:
        """The config a checkpoint must match to be resumed (display-only knobs left out)."""
        # Display and thread count may change between a run and its resumption.
        return json.dumps({k: v for k, v in self.cfg.to_dict().items() if k not in ("progress", "cpu_threads")}, sort_keys=True)

    def load(self, state: dict[str, Any], path: Path) -> None:
        if state["config"] != self._config_key() or state["estimator_spec"] != self.job.estimator:
            raise ConfigError(
                f"checkpoint {path} was written with another config or estimator; delete "
                f"{path.parent} or run without --resume"
            )
        self.policy.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if self.estimator is not None:
            self.estimator.load_state_dict(state["estimator"])
        restore_rng(state["rng"], self.generator)
        for k, v in state["timings"].items():
            setattr(self.timings, k, int(v) if k == "rollouts" else float(v))
        self.step = int(state["step"])

    # -- steps ------------------------------------------------------------------------------------
    def sft_step(self) -> dict[str, float]:
        cfg = self.cfg
        start = time.perf_counter()
        idx = torch.randint(len(self.split), (cfg.prompts_per_step,), generator=self.generator)
        self.policy.train()
        self._schedule(self.step)
        loss = sft_update(self.agent, self.policy, self.optimizer, self.split, idx, self.drop_p, self.generator,
                          cfg.grad_clip)
        elapsed = time.perf_counter() - start
        self.timings.update_s += elapsed
        self.timings.step_s += elapsed
        self.timings.rollouts += len(idx)
        return {"train/sft_loss": loss, "time/step_s": elapsed}

    def _score(self, ro: Rollouts) -> tuple[Tensor, list[Any]]:
        answers = self.agent.answers(ro, self.split)
        scores = [self.reward_fn.score(self.split.samples[k], a) for k, a in zip(ro.sample_idx.tolist(), answers)]
        return torch.tensor([s.total for s in scores], dtype=torch.float32), scores

    def rl_step(self) -> dict[str, float]:
        from rlbench_med.algorithms import AdvantageInputs
        from rlbench_med.algorithms.group_stats import last_token_rewards

        cfg, agent, est = self.cfg, self.agent, self.estimator
        assert est is not None
        t0 = time.perf_counter()
        idx = torch.randint(len(self.split), (cfg.prompts_per_step,), generator=self.generator)
        drop = draw_drop(len(idx), self.drop_p, self.generator)
        self.policy.eval()
        with torch.no_grad():
            ro = agent.sample(self.policy, self.split, idx, drop, cfg.n_rollouts, cfg.temperature, False,
                              self.generator)
        t1 = time.perf_counter()
        outcome, scores = self._score(ro)
        t2 = time.perf_counter()
        first = self._first_update_forward(ro)
        t_first = time.perf_counter()
        requires = est.requires
        with torch.no_grad():
            old_lp = first.old_logprobs if first is not None else agent.logprobs(self.policy, ro, cfg.temperature)
            ref_lp = agent.logprobs(self.reference, ro, cfg.temperature)
            values = agent.values(self.critic, ro) if self.critic is not None else None
            baseline = None
            if "baseline_rewards" in requires:
                greedy = agent.sample(self.policy, self.split, idx, drop, 1, 1.0, True, None)
                baseline = self._score(greedy)[0].repeat_interleave(cfg.n_rollouts)
        t3 = time.perf_counter()
        mask = ro.mask.cpu()
        old_cpu, ref_cpu = old_lp.cpu(), ref_lp.cpu()
        rewards = outcome
        token_rewards = None
        if cfg.kl_mode == "reward" and cfg.kl_coef > 0:
            kl_tok = (old_cpu - ref_cpu) * mask
            token_rewards = -cfg.kl_coef * kl_tok + last_token_rewards(outcome, mask)
            rewards = token_rewards.sum(1)
        inputs = AdvantageInputs(
            rewards=rewards,
            response_mask=mask,
            group_ids=ro.group.cpu(),
            domains=torch.tensor([self.group_of[k] for k in ro.sample_idx.tolist()], dtype=torch.long),
            domain_names=self.group_names,
            token_rewards=token_rewards,
            values=values.cpu() if values is not None else None,
            baseline_rewards=baseline,
            old_logprobs=old_cpu,
            ref_logprobs=ref_cpu,
        )
        out, advantage_s = run_estimator(est, inputs, self.step + 1)  # the only algorithm-specific line
        t4 = time.perf_counter()
        stats = self._update(ro, out.advantages.to(ro.mask.device), out.returns.to(ro.mask.device), old_lp, ref_lp,
                             first)
        t5 = time.perf_counter()

        tm = self.timings
        tm.generate_s += (t1 - t0) + (t3 - t_first)
        tm.score_s += t2 - t1
        tm.advantage_s += advantage_s
        tm.update_s += (t5 - t4) + (t_first - t2)
        tm.step_s += t5 - t0
        tm.rollouts += len(ro)
        metrics = {
            "train/reward_mean": float(outcome.mean()),
            **{f"train/{part}_reward": float(sum(getattr(s, part) for s in scores) / len(scores))
               for part in ("accuracy", "iou", "format", "length")},
            "train/kl": float(masked_mean(k3_kl(old_cpu, ref_cpu), mask)),
            # -log pi of the sampled tokens: a Monte-Carlo estimate of the sampling policy's entropy per token.
            "train/entropy": float(-masked_mean(old_cpu, mask)),
            "train/zero_spread_frac": zero_spread_fraction(outcome, inputs.group_ids),
            "train/accuracy_zero_spread_frac": zero_spread_fraction(
                torch.tensor([s.accuracy for s in scores], dtype=torch.float64), inputs.group_ids),
            "time/advantage_s": advantage_s,
            "time/step_s": t5 - t0,
            "time/generate_s": (t1 - t0) + (t3 - t_first),
            "time/score_s": t2 - t1,
            "time/update_s": (t5 - t4) + (t_first - t2),
            "train/rollouts_per_s": len(ro) / (t5 - t0),
            **stats,
        }
        per_domain: dict[str, list[float]] = defaultdict(list)
        for k, r in zip(ro.sample_idx.tolist(), outcome.tolist()):
            per_domain[self.split.samples[k].domain].append(r)
        for domain, values_ in per_domain.items():
            metrics[f"train/{domain}/reward_mean"] = sum(values_) / len(values_)
        for key, value in out.diagnostics.items():
            metrics[f"adv/{key}"] = float(value)
        return metrics

    def _first_update_forward(self, ro: Rollouts) -> FirstForward | None:
        """The update's forward, done before the estimator when it is the step's only one.

        With ``epochs = minibatches = 1`` the policy has not moved when the update's log-probs are
        computed, so they are the step's old log-probs: one forward (the one the update backpropagates
        through) gives both, where a second, gradient-free forward used to compute the same numbers.
        Needs a model that computes the same in train and eval mode (``agent.train_mode_is_eval_mode``);
        otherwise, and with several updates per step, None: the old log-probs get their own forward.
        """
        cfg = self.cfg
        if cfg.epochs != 1 or cfg.minibatches != 1 or not getattr(self.agent, "train_mode_is_eval_mode", False):
            return None
        order = torch.randperm(len(ro), generator=self.generator).to(ro.mask.device)  # _update's draw, made early
        self.policy.train()
        logp = self.agent.logprobs(self.policy, ro.subset(order), cfg.temperature)
        old = torch.empty_like(logp, requires_grad=False)
        old[order] = logp.detach()
        return FirstForward(order, logp, old)

    def _update(self, ro: Rollouts, adv: Tensor, returns: Tensor, old_lp: Tensor, ref_lp: Tensor,
                first: FirstForward | None = None) -> dict[str, float]:
        cfg = self.cfg
        self.policy.train()
        b = len(ro)
        sums: dict[str, float] = defaultdict(float)
        n_updates = 0
        for _ in range(cfg.epochs):
            order = first.order if first is not None else torch.randperm(b, generator=self.generator).to(ro.mask.device)
            for rows in order.chunk(cfg.minibatches):
                sums["train/lr"] += self._schedule(self.step * cfg.epochs * cfg.minibatches + n_updates)
                mb = ro.subset(rows)
                mask = mb.mask
                logp = first.logprobs if first is not None else self.agent.logprobs(self.policy, mb, cfg.temperature)
                pg_loss, clip_frac = clipped_surrogate(logp, old_lp[rows], adv[rows], mask, cfg.clip_low,
                                                       cfg.clip_high)
                loss = pg_loss
                if cfg.kl_mode == "loss" and cfg.kl_coef > 0:
                    loss = loss + cfg.kl_coef * masked_mean(k3_kl(logp, ref_lp[rows]), mask)
                sums["train/grad_norm"] += optimizer_step(self.optimizer, loss, cfg.grad_clip)
                sums["train/pg_loss"] += float(pg_loss.detach())
                sums["train/clip_frac"] += float(clip_frac)
                if self.critic is not None:
                    v = self.agent.values(self.critic, mb)
                    v_loss = cfg.vf_coef * masked_mean((v - returns[rows]) ** 2, mask)
                    optimizer_step(self.critic_optimizer, v_loss, cfg.grad_clip)
                    sums["train/value_loss"] += float(v_loss.detach())
                n_updates += 1
        return {k: v / n_updates for k, v in sums.items()}

    def _schedule(self, update: int) -> float:
        """Set the learning rates of optimizer update ``update`` (0-based) of the job's; returns the policy's."""
        cfg = self.cfg
        per_step = 1 if self.is_sft else cfg.epochs * cfg.minibatches
        factor = lr_factor(update, self.total_steps * per_step, cfg)
        set_learning_rate(self.optimizer, factor)
        if self.critic_optimizer is not None:
            set_learning_rate(self.critic_optimizer, factor)
        return cfg.lr * factor

    def evaluate(self, inputs: str = "full", split: str = VALIDATION) -> list[dict[str, Any]]:
        """Greedy answers to ``split`` (validation: curves and choices; test: once, at the end)."""
        start = time.perf_counter()
        records = evaluate(self.agent, self.policy, getattr(self.agent.encoded, split), self.reward_fn, inputs,
                           self.cfg.eval_max_samples)
        self.timings.eval_s += time.perf_counter() - start
        return records


def zero_spread_fraction(rewards: Tensor, group_ids: Tensor) -> float:
    """Fraction of prompt groups whose rollouts all got the same reward (no signal for group-relative estimators)."""
    from rlbench_med.algorithms.group_stats import group_stats

    stats = group_stats(rewards, group_ids)
    return float((stats.std == 0).double().mean()) if stats.std.numel() else 0.0


def _eval_log(rows: list[dict[str, Any]], prefix: str = "val") -> dict[str, float]:
    """MLflow keys of metric rows: ``val/<domain>/<metric>`` (validation) or ``eval/...`` (the test split)."""
    return {f"{prefix}/{r['domain']}/{r['metric']}": float(r["value"]) for r in rows}


def _result_rows(job: Job, label: str, metric_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric rows of one evaluation as the job's result rows (results.csv columns) under ``label``."""
    return [{"suite": job.suite, "algo": label, "seed": job.seed, "domain": r["domain"], "metric": r["metric"],
             "value": float(r["value"]), "n": int(r["n"])} for r in metric_rows]


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write prediction records as JSONL (one per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return path


def save_final_policy(trainer: LocalTrainer, directory: Path) -> Path:
    """The trained policy beside the job's checkpoints, replacing an earlier one (a resumed job's).

    An ``hf:`` policy goes to ``<directory>/final/`` with ``save_pretrained`` (config, weights, generation
    config) and its tokenizer, so ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``
    load it; the builtin policy to ``<directory>/final.pt`` (``model``: its state dict, ``config``: the job's
    config, which rebuilds it). Written under a temporary name and renamed, so a crash leaves no half policy.
    """
    import shutil

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = getattr(trainer.agent, "tokenizer", None)
    if tokenizer is None:
        path, tmp = directory / "final.pt", directory / "final.pt.tmp"
        torch.save({"model": {k: v.detach().cpu() for k, v in trainer.policy.state_dict().items()},
                    "config": trainer.cfg.to_dict()}, tmp)
        os.replace(tmp, path)
        return path
    path, tmp = directory / "final", directory / "final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.policy.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


class EstimatorFailed(RuntimeError):
    """An estimator raised, or returned what the runner cannot train on; the message names it and the step."""


def run_estimator(est: Any, inputs: Any, step: int) -> tuple[Any, float]:
    """``est(inputs)`` and the seconds the call took, its output checked against the contract.

    ``advantages`` and ``returns`` must be float tensors of the shape of ``response_mask`` ([B, T]),
    finite on response tokens, and every diagnostic a number. Anything else, or an exception inside
    the estimator (``sys.exit`` included), raises :class:`EstimatorFailed` naming the estimator and
    the RL step: a ``[B, 1]`` output would otherwise broadcast over the tokens and train silently,
    and an integer one would truncate every advantage.
    """
    start = time.perf_counter()
    try:
        out = est(inputs)
    except (Exception, SystemExit) as exc:
        text = str(exc).strip().splitlines()
        what = f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {text[0] if text else ''}"
        raise EstimatorFailed(f"estimator {est.name!r} failed at step {step}: {what}") from exc
    seconds = time.perf_counter() - start
    from rlbench_med.algorithms import AdvantageOutput

    shape = tuple(inputs.response_mask.shape)
    problem = None
    if not isinstance(out, AdvantageOutput):
        problem = f"returned {type(out).__name__}, not an AdvantageOutput"
    else:
        for name in ("advantages", "returns"):
            value = getattr(out, name)
            if not isinstance(value, Tensor):
                problem = f"{name} is a {type(value).__name__}, not a tensor"
            elif tuple(value.shape) != shape:
                problem = f"{name} has shape {tuple(value.shape)}; expected {shape}, the shape of response_mask [B, T]"
            elif not value.is_floating_point():
                problem = f"{name} has dtype {value.dtype}; expected a float tensor"
            elif not bool(torch.isfinite(value[inputs.on_response]).all()):
                where = tuple(int(i) for i in torch.nonzero(~torch.isfinite(value) & inputs.on_response)[0])
                problem = f"{name}{list(where)} is {float(value[where])} on a response token"
            if problem:
                break
        bad = [k for k, v in (out.diagnostics or {}).items() if not _is_number(v)] if problem is None else []
        if bad:
            problem = f"diagnostic {bad[0]!r} is {out.diagnostics[bad[0]]!r}, not a number"
    if problem:
        raise EstimatorFailed(f"estimator {est.name!r} at step {step}: {problem}")
    return out, seconds


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _progress(cfg: LocalConfig, job: Job, initial: int) -> Any:
    from rlbench_med.runners.local.step_bar import StepBar

    return StepBar(cfg.steps, initial, f"{job.suite} {job.algo} s{job.seed}", cfg.progress and sys.stderr.isatty())


def run_job(job: Job, tracker: Tracker, resume: bool = False, *, stop_after: int | None = None) -> JobResult:
    """Train and evaluate one job (see the module docstring); ``stop_after`` simulates a kill."""
    cfg: LocalConfig = job.config
    wall = time.perf_counter()
    device = resolve_device(cfg)
    agent = make_agent(cfg, job.data_dir, device)
    eval_inputs = suite_eval_inputs(job)
    drop_p = dropout_probability(cfg, eval_inputs)
    base_state, base_file, _ = load_or_train_base(agent, cfg, job.data_dir, agent.encoded.train, drop_p, device.type)
    trainer = LocalTrainer(job, base_state, agent, drop_p)
    ckpt_dir = Path(job.out_dir) / "checkpoints" / job.slug
    found = latest_readable_checkpoint(ckpt_dir) if resume else None
    if found is not None:
        trainer.load(found[1], found[0])
    else:
        if resume and ckpt_dir.is_dir():
            log.warning("%s seed %s: no readable checkpoint in %s; training from step 0", job.algo, job.seed, ckpt_dir)
        # The job's identity and config are the tracker owner's to log (the sweep logs them once per run).
        tracker.log_params({"base": str(base_file)})
        if cfg.eval_every > 0 and trainer.total_steps > 0:
            tracker.log_metrics(_eval_log(eval_metrics(trainer.evaluate())), step=0)
    bar = _progress(cfg, job, trainer.step)
    try:
        while trainer.step < trainer.total_steps:
            metrics = trainer.sft_step() if trainer.is_sft else trainer.rl_step()
            trainer.step += 1
            step = trainer.step
            if cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < cfg.steps:
                metrics.update(_eval_log(eval_metrics(trainer.evaluate())))
            tracker.log_metrics(metrics, step=step)
            if cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0 and step < cfg.steps:
                save_checkpoint(ckpt_dir, step, trainer.state())
            bar.update(1)
            rate = trainer.timings.rollouts / max(trainer.timings.step_s, 1e-9)
            bar.set_postfix(reward=f"{metrics.get('train/reward_mean', float('nan')):.3f}", rollouts_s=f"{rate:.0f}")
            if stop_after is not None and step >= stop_after:
                raise StopRequested(f"stopped after step {step}")
    finally:
        bar.close()
    if cfg.save_final:
        save_final_policy(trainer, ckpt_dir)

    # The validation split, full inputs: the last point of the curves, and what calibration and tuning read.
    val_records = trainer.evaluate()
    val_path = write_records(predictions_dir(job.out_dir, VALIDATION) / f"{job.slug}.jsonl", val_records)
    val_rows = eval_metrics(val_records)
    tracker.log_metrics(_eval_log(val_rows), step=trainer.total_steps)
    rows: list[dict[str, Any]] = []
    predictions: dict[str, Path] = {}
    if not job.score_test:  # a tuning trial: the test split is neither answered nor scored
        return JobResult(job=job, rows=_result_rows(job, job.algo, val_rows), predictions=predictions,
                         wall_s=time.perf_counter() - wall, timings=trainer.timings.as_dict(),
                         validation={job.algo: val_path})
    # The test split, scored once: results.csv.
    pred_dir = predictions_dir(job.out_dir)
    for inputs in eval_inputs:
        records = trainer.evaluate(inputs, TEST)
        metric_rows = eval_metrics(records)
        label = job.algo if inputs == "full" else f"{job.algo}@{inputs}"
        path = write_records(pred_dir / (f"{job.slug}.jsonl" if inputs == "full" else f"{job.slug}@{inputs}.jsonl"),
                             records)
        predictions[label] = path
        tracker.log_artifact(path)
        if inputs == "full":
            tracker.log_metrics(_eval_log(metric_rows, "eval"), step=trainer.total_steps)
        else:
            # MLflow metric names allow neither '@' nor '+': eval_inputs/ecg_text/overall/f1.
            safe = inputs.replace("+", "_")
            tracker.log_metrics({f"eval_inputs/{safe}/{r['domain']}/{r['metric']}": float(r["value"])
                                 for r in metric_rows}, step=trainer.total_steps)
        rows += _result_rows(job, label, metric_rows)
    timings = trainer.timings.as_dict()
    return JobResult(job=job, rows=rows, predictions=predictions, wall_s=time.perf_counter() - wall, timings=timings,
                     validation={job.algo: val_path})
