"""Our trainer inside OpenRLHF: the PPO loop of ``PPOTrainer`` with the registry's advantage step.

OpenRLHF 0.11.2's ``PPOTrainer`` is a ``@ray.remote`` class, and Ray does not allow subclassing an
actor class, so :func:`make_trainer_class` builds a plain subclass of ``BasePPOTrainer`` (which
holds the PPO step, weight sync and checkpointing) that

- replaces the experience maker by one whose ``compute_advantages_and_returns`` calls
  :func:`rlbench_med.runners.openrlhf.hook.apply_estimator` (the estimator from the run spec);
- generates the greedy baseline of every prompt (vLLM, n=1, temperature 0, scored by the same
  reward function) when the estimator requires ``baseline_rewards`` (ReMax);
- saves the estimator's ``state_dict()`` in OpenRLHF's checkpoint ``client_states`` and restores
  it on resume;
- appends each step's metrics (the local runner's keys) to the run's ``metrics.jsonl``, which the
  runner forwards to MLflow;
- evaluates greedily on the exported test prompts with vLLM and writes the predictions file.

Everything OpenRLHF, Ray or vLLM is imported inside the functions: this module imports without
them, and the classes exist only on a machine with the ``openrlhf`` extra installed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rlbench_med.runners.openrlhf.data import ExportedPrompt, PromptLabel, read_prompts
from rlbench_med.runners.openrlhf.hook import BASELINE_INFO_KEY, HookSettings, apply_estimator
from rlbench_med.runners.openrlhf.reward import COMPONENTS, missing_reward_error, reward_function
from rlbench_med.runners.openrlhf.runspec import RunSpec

#: Key of the estimator state in OpenRLHF's checkpoint ``client_states``.
ESTIMATOR_STATE_KEY = "rlbench_estimator_state"


def prediction_record(label: PromptLabel, response: str) -> dict[str, Any]:
    """One predictions line (the local runner's format): domain, dataset, labels, predicted, iou, uid, response."""
    from rlbench_med.suites.rewards import parse_answer

    answer = parse_answer(response)
    sample = label.to_sample()
    record: dict[str, Any] = {
        "domain": label.domain,
        "dataset": label.dataset,
        "labels": list(label.answer),
        "predicted": list(answer.labels),
    }
    iou = reward_function(label).iou(sample, answer.boxes)
    if iou is not None:
        record["iou"] = float(iou)
    record["uid"] = label.uid
    record["response"] = response
    return record


def status_metrics(status: dict[str, Any]) -> dict[str, float]:
    """OpenRLHF's step status -> our keys.

    Reward components become ``train/<component>_reward`` (the local runner's ``train/accuracy_reward``),
    OpenRLHF's ``timing/<phase>`` become ``time/<phase>_s``, everything else ``openrlhf/<key>``.
    """
    out: dict[str, float] = {}
    for key, value in status.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        prefix, _, name = key.partition("/")
        if prefix == "reward" and name in COMPONENTS:
            out[f"train/{name}_reward"] = float(value)
        elif prefix == "timing" and name:
            out[f"time/{name}_s"] = float(value)
        else:
            out[f"openrlhf/{key}"] = float(value)
    return out


def append_metrics(path: Path, step: int, metrics: dict[str, float]) -> None:
    """Append one ``{"step": s, "metrics": {...}}`` line (flushed, so the runner sees it at once)."""
    with Path(path).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"step": step, "metrics": metrics}, sort_keys=True) + "\n")
        fh.flush()


def require_rewards(samples: Sequence[Any], decode: Callable[[Any], str]) -> None:
    """Raise :class:`~rlbench_med.runners.openrlhf.reward.RewardError` for the first rollout without a reward.

    ``samples`` are OpenRLHF's one-rollout ``Experience`` objects as ``SamplesGenerator`` returns
    them; ``decode`` turns token ids into the text OpenRLHF's executor gave ``reward_func``.
    """
    for sample in samples:
        if sample.rewards is None:
            raise missing_reward_error(decode(sample.sequences[0]), sample.prompts[0], sample.labels[0])


#: OpenRLHF's client states of a run that starts from scratch (``BasePPOTrainer.init_checkpoint_states``).
FRESH_STATES: dict[str, Any] = {"episode": 0, "global_step": 0, "total_consumed_prompts": 0,
                                "data_loader_state_dict": {}}


def restore_states(states: dict[str, Any], estimator: Any, ckpt_path: str) -> dict[str, Any]:
    """The client states ``fit`` continues from, with the estimator's state restored from them.

    ``states`` are what OpenRLHF loaded for ``--ckpt.load_enable``: empty when its folder holds no
    complete checkpoint (DeepSpeed loads nothing without a ``latest`` tag, e.g. a job stopped
    during its first save), in which case training starts from scratch and says so. A checkpoint
    past step 0 without the estimator's state was not written by this trainer and is refused.
    """
    if not states:
        print(f"rlbench trainer: no complete checkpoint in {ckpt_path}/_actor (no 'latest' tag: stopped during "
              "its first save?); training from scratch", flush=True)
        return dict(FRESH_STATES)
    if states["global_step"] > 0:
        if ESTIMATOR_STATE_KEY not in states:
            raise RuntimeError(
                f"the checkpoint in {ckpt_path} has no estimator state ({ESTIMATOR_STATE_KEY}); "
                "it was not written by the rlbench trainer, so the run cannot resume identically"
            )
        estimator.load_state_dict(states[ESTIMATOR_STATE_KEY])
    return states


def make_trainer_class(spec: RunSpec) -> type:
    """The trainer class for ``ray.remote`` (same constructor as OpenRLHF's ``PPOTrainer``)."""
    import ray
    import torch
    from openrlhf.datasets.prompts_dataset import preprocess_data
    from openrlhf.trainer.ppo_trainer import BasePPOTrainer, prepare_datasets
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ppo_utils.length_penalty import apply_length_penalties
    from openrlhf.trainer.ppo_utils.samples_generator import SamplesGenerator
    from openrlhf.trainer.ray.vllm_engine import batch_vllm_engine_call
    from openrlhf.utils.utils import get_tokenizer
    from vllm import SamplingParams

    from rlbench_med.algorithms import make_estimator
    from rlbench_med.suites.metrics import compute_metrics

    class RLBenchExperienceMaker(RemoteExperienceMaker):
        """OpenRLHF's experience maker with the advantage step of the registry estimator."""

        def __init__(self, *args: Any, estimator: Any, settings: HookSettings, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.estimator = estimator
            self.settings = settings
            self.last_metrics: dict[str, float] = {}

        @torch.no_grad()
        def compute_advantages_and_returns(self, experiences: list[Any]) -> list[Any]:
            # As OpenRLHF: rewards in at least fp32, then its (opt-in) length penalties.
            for exp in experiences:
                exp.rewards = exp.rewards.to(torch.promote_types(exp.rewards.dtype, torch.float32))
            apply_length_penalties(experiences, self.args)
            settings = replace(self.settings, kl_coef=float(self.kl_ctl.value))
            self.last_metrics = apply_estimator(experiences, self.estimator, settings)
            return experiences

    class RLBenchPPOTrainer(BasePPOTrainer):
        """``PPOTrainer`` of OpenRLHF 0.11.2 with the rlbench advantage step, baseline, metrics and eval."""

        def __init__(
            self,
            pretrain: str,
            strategy: Any,
            actor_model_group: Any,
            critic_model_group: Any,
            reward_model_group: Any,
            reference_model_group: Any,
            vllm_engines: Any,
            **generate_kwargs: Any,
        ) -> None:
            args = strategy.args
            if args.rollout.n_samples_per_prompt != spec.n_samples_per_prompt:
                raise ValueError(
                    f"--rollout.n_samples_per_prompt {args.rollout.n_samples_per_prompt} differs from the run spec's "
                    f"{spec.n_samples_per_prompt}; relaunch through the runner"
                )
            if not vllm_engines:
                raise ValueError("the rlbench trainer generates with vLLM: set --vllm.num_engines >= 1")
            if args.eval.steps == -1:
                args.eval.steps = float("inf")
            if args.ckpt.save_steps == -1:
                args.ckpt.save_steps = float("inf")
            tokenizer = get_tokenizer(pretrain, None, "left", strategy, use_fast=not args.data.disable_fast_tokenizer)
            self.prompts_dataloader, self.eval_dataloader, self.max_steps = prepare_datasets(strategy, tokenizer)
            self.generate_kwargs = generate_kwargs
            self.samples_generator = SamplesGenerator(
                strategy=strategy,
                prompts_dataloader=self.prompts_dataloader,
                eval_dataloader=self.eval_dataloader,
                tokenizer=tokenizer,
                vllm_engines=vllm_engines,
            )
            super().__init__(
                strategy,
                actor_model_group,
                critic_model_group,
                reward_model_group,
                reference_model_group,
                vllm_engines,
                tokenizer,
            )
            self.estimator = make_estimator(spec.estimator)
            settings = HookSettings(
                n_samples_per_prompt=spec.n_samples_per_prompt,
                domain_names=spec.domain_names,
                group_by=spec.group_by,  # type: ignore[arg-type]
                kl_mode=spec.kl_mode,  # type: ignore[arg-type]
                kl_coef=spec.kl_coef,
            )
            self.experience_maker = RLBenchExperienceMaker(
                actor_model_group,
                critic_model_group,
                reward_model_group,
                reference_model_group,
                self.kl_ctl,
                strategy,
                tokenizer,
                estimator=self.estimator,
                settings=settings,
            )
            self.eval_prompts: list[ExportedPrompt] = read_prompts(Path(spec.eval_prompts))
            self.validation_prompts: list[ExportedPrompt] = (
                read_prompts(Path(spec.validation_prompts)) if spec.validation_prompts else [])
            print(f"rlbench trainer ready: {len(self.prompts_dataloader.dataset)} prompts, {self.max_steps} steps, "
                  f"estimator {spec.estimator}", flush=True)

        def get_max_steps(self) -> int:
            return self.max_steps

        def _decode(self, ids: Any) -> str:
            """Token ids -> text as OpenRLHF's executor decodes the query for ``reward_func``."""
            return self.tokenizer.decode(ids, skip_special_tokens=False)

        # -- greedy generation (ReMax baseline and evaluation) ----------------------------------
        def _greedy(self, prompts: Sequence[str], labels: Sequence[str], images: Sequence[Any]) -> list[dict[str, Any]]:
            """One greedy (temperature 0, n=1) response per prompt, scored by the reward function."""
            params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=spec.max_new_tokens, min_tokens=1)
            if self.args.vllm.enable_sleep:
                batch_vllm_engine_call(self.vllm_engines, "wake_up")
            try:
                refs = [
                    self.vllm_engines[i % len(self.vllm_engines)].generate_responses.remote(
                        prompt=p, label=lab, sampling_params=params, max_length=spec.max_len,
                        hf_tokenizer=self.tokenizer, num_samples=1, images=img,
                    )
                    for i, (p, lab, img) in enumerate(zip(prompts, labels, images))
                ]
                responses = [r[0] for r in ray.get(refs)]
            finally:
                if self.args.vllm.enable_sleep:
                    batch_vllm_engine_call(self.vllm_engines, "sleep")
            return responses

        def _attach_greedy_baselines(self, rollout_samples: list[Any]) -> None:
            """ReMax: the reward of each prompt's greedy response, on each of its n rollouts' info."""
            n = spec.n_samples_per_prompt
            if len(rollout_samples) % n:
                raise ValueError(f"{len(rollout_samples)} rollouts is not a multiple of n_samples_per_prompt={n}")
            firsts = rollout_samples[::n]
            for g, first in enumerate(firsts):
                group = rollout_samples[g * n : (g + 1) * n]
                if any(s.prompts[0] != first.prompts[0] for s in group):
                    raise ValueError(f"rollouts {g * n}..{g * n + n - 1} are not the samples of one prompt")
            responses = self._greedy(
                [s.prompts[0] for s in firsts], [s.labels[0] for s in firsts], [s.images[0] for s in firsts]
            )
            for g, response in enumerate(responses):
                if response.get("reward") is None:
                    raise missing_reward_error(self._decode(response["observation_tokens"]), response["prompt"],
                                               response["label"])
                value = torch.tensor([float(response["reward"])])
                for sample in rollout_samples[g * n : (g + 1) * n]:
                    sample.info[BASELINE_INFO_KEY] = value

        @torch.no_grad()
        def evaluate_greedy(self, items: list[ExportedPrompt]) -> list[dict[str, Any]]:
            """Greedy answers to exported prompts (a split's); one predictions record per prompt."""
            prompts, labels, images = [], [], []
            for item in items:
                data = {"input": [dict(m) for m in item.messages], "label": item.label.to_json()}
                prompt, label = preprocess_data(
                    data, None, "input", "label", apply_chat_template=self.tokenizer.apply_chat_template
                )
                prompts.append(prompt)
                labels.append(label)
                images.append(list(item.images) or None)
            records = []
            for item, response in zip(items, self._greedy(prompts, labels, images)):
                start, end = response["action_ranges"][0]
                text = self.tokenizer.decode(response["observation_tokens"][start:end], skip_special_tokens=True)
                records.append(prediction_record(item.label, text))
            return records

        # -- the loop ---------------------------------------------------------------------------
        def fit(self, global_step: int = 0) -> None:
            checkpoint_states = restore_states(self.init_checkpoint_states(), self.estimator, self.args.ckpt.path)
            self.restore_best_checkpoint_state(checkpoint_states)
            start_episode = checkpoint_states["episode"]
            global_step = checkpoint_states["global_step"] or global_step
            total_consumed_prompts = checkpoint_states["total_consumed_prompts"]
            if global_step:
                self.broadcast_to_vllm()
                state_dict = checkpoint_states["data_loader_state_dict"]
                if state_dict:
                    self.prompts_dataloader.load_state_dict(state_dict)
            needs_baseline = "baseline_rewards" in self.estimator.requires

            for episode in range(start_episode, self.args.train.num_episodes):
                while True:
                    t_step = time.time()
                    rollout_samples, _, prompts_consumed, is_exhausted = self.samples_generator.generate_samples(
                        **self.generate_kwargs
                    )
                    generation_s = time.time() - t_step
                    total_consumed_prompts += prompts_consumed
                    if not rollout_samples:
                        if is_exhausted:
                            break
                        continue
                    require_rewards(rollout_samples, self._decode)
                    if needs_baseline:
                        self._attach_greedy_baselines(rollout_samples)
                    status, global_step = self.train_step(rollout_samples, global_step)
                    status.pop("generated_samples", None)

                    metrics = status_metrics(status)
                    metrics.update(self.experience_maker.last_metrics)
                    if "train/kl" not in metrics and "openrlhf/kl" in metrics:
                        # kl_mode=reward: OpenRLHF's per-sample mean of the kl_estimator.
                        metrics["train/kl"] = metrics["openrlhf/kl"]
                    metrics["time/generate_s"] = generation_s
                    metrics["time/step_s"] = time.time() - t_step
                    client_states = {
                        "episode": episode,
                        "global_step": global_step,
                        "total_consumed_prompts": total_consumed_prompts,
                        "data_loader_state_dict": self.prompts_dataloader.state_dict(),
                        ESTIMATOR_STATE_KEY: self.estimator.state_dict(),
                    }
                    self.save_logs_and_checkpoints(global_step, status, client_states)
                    if spec.eval_every > 0 and global_step % spec.eval_every == 0 and self.validation_prompts:
                        for row in compute_metrics(self.evaluate_greedy(self.validation_prompts)):
                            metrics[f"val/{row['domain']}/{row['metric']}"] = float(row["value"])
                    append_metrics(Path(spec.metrics_path), global_step, metrics)
                    if is_exhausted:
                        break

            final: dict[str, float] = {}
            # the validation split (the curves' last point), then the test split, scored once
            for items, where, prefix in ((self.validation_prompts, spec.validation_predictions_path, "val"),
                                         (self.eval_prompts, spec.predictions_path, "eval")):
                if not items:
                    continue
                records = self.evaluate_greedy(items)
                path = Path(where)
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("w", encoding="utf-8") as fh:
                    for record in records:
                        fh.write(json.dumps(record) + "\n")
                final.update({f"{prefix}/{r['domain']}/{r['metric']}": float(r["value"])
                              for r in compute_metrics(records)})
            append_metrics(Path(spec.metrics_path), global_step, final)
            if self.wandb_logger:
                self.wandb_logger.close()
            if self.tensorboard_logger:
                self.tensorboard_logger.close()

    return RLBenchPPOTrainer
