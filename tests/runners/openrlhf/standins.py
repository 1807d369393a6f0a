"""Stand-ins for the two GPU-only pieces of OpenRLHF 0.11.2, so its real trainer code runs on a CPU.

- :class:`StandInAsyncLLM` replaces vLLM's ``AsyncLLMEngine.generate`` only. The rollout engine
  around it is OpenRLHF's real ``RolloutRayActor`` class (its ``generate_responses`` and
  ``generate``), called in-process, with OpenRLHF's real ``SingleTurnAgentExecutor`` loading our
  ``reward.py`` from its path, exactly as in a vLLM engine.
- :class:`StandInModelGroup` replaces a ``RayActorGroup`` of DeepSpeed ``PolicyModelActor`` /
  ``ReferenceModelActor`` (they call ``torch.cuda.set_device`` first). It holds OpenRLHF's real
  ``openrlhf.models.Actor`` on the tiny local Qwen2 model, its real ``NaiveReplayBuffer`` and
  ``PolicyLoss``; ``fit`` follows ``ActorPPOTrainer.training_step`` with plain torch AdamW in place
  of DeepSpeed, and checkpoints are ``torch.save`` files under ``<ckpt.path>/_actor``.

Method results travel through ``ray.put`` so OpenRLHF's own ``ray.get``/``ray.wait`` calls run.
"""

from __future__ import annotations

import asyncio
import copy
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any
from unittest import mock

import ray
import torch

#: Reasoning words put before some answers so responses differ in length.
FILLER = " finding"


class _Remote:
    """``handle.method.remote(...)`` -> ``ray.put(method(...))``."""

    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return ray.put(self._method(*args, **kwargs))


@dataclass
class StandInAsyncLLM:
    """vLLM's ``AsyncLLMEngine.generate`` for the tests: canned answers, deterministic per prompt and call.

    Sampled (temperature > 0): the i-th request of a prompt answers the first option, the second
    option or nothing usable, after 0-2 filler words, so a group's rewards differ. Greedy
    (temperature 0): always the first option. ``requests`` records (prompt text, sampling params).
    """

    tokenizer: Any
    requests: list[tuple[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def output_processor(self) -> Any:
        return NS(get_num_unfinished_requests=lambda: 0)

    def answer(self, prompt: str, temperature: float) -> str:
        options = re.search(r"Options: (.*)\.\n", prompt)
        classes = [c.strip() for c in options.group(1).split(",")] if options else ["?"]
        if temperature == 0:
            return "\\boxed{" + classes[0] + "}"
        i = self.counts.get(prompt, 0)
        self.counts[prompt] = i + 1
        pick = (zlib.crc32(prompt.encode()) + i) % 3
        filler = FILLER * (i % 3)
        if pick == 2:
            return filler + " I am not sure."
        return filler + " \\boxed{" + classes[min(pick, len(classes) - 1)] + "}"

    async def generate(self, prompt: Any, sampling_params: Any, request_id: str) -> Any:
        text_prompt = self.tokenizer.decode(prompt["prompt_token_ids"], skip_special_tokens=False)
        self.requests.append((text_prompt, sampling_params))
        text = self.answer(text_prompt, sampling_params.temperature)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        limit = sampling_params.max_tokens
        truncated = limit is not None and len(ids) > limit
        ids = ids[:limit] if limit is not None else ids
        yield NS(outputs=[NS(token_ids=ids, text=self.tokenizer.decode(ids, skip_special_tokens=True),
                             finish_reason="length" if truncated else "stop", logprobs=None)])


class StandInEngine:
    """One rollout engine: OpenRLHF's real ``RolloutRayActor`` code around :class:`StandInAsyncLLM`."""

    def __init__(self, reward_url: str, tokenizer: Any) -> None:
        from openrlhf.trainer.ray.vllm_engine import RolloutRayActor
        from openrlhf.utils.agent import SingleTurnAgentExecutor

        rollout_cls = RolloutRayActor.__ray_metadata__.modified_class.__mro__[1]  # the class under @ray.remote
        self.actor = object.__new__(rollout_cls)
        self.actor.executor = SingleTurnAgentExecutor(reward_url)
        self.actor.llm = StandInAsyncLLM(tokenizer)
        self.actor._mm_pad_token_ids = None
        self.responses: list[dict[str, Any]] = []
        self.generate_responses = _Remote(self._generate_responses)
        self.get_num_unfinished_requests = _Remote(self.actor.get_num_unfinished_requests)
        self.sleep = _Remote(lambda *a, **k: None)
        self.wake_up = _Remote(lambda *a, **k: None)

    @property
    def llm(self) -> StandInAsyncLLM:
        return self.actor.llm

    def _generate_responses(self, **kwargs: Any) -> list[dict[str, Any]]:
        out = asyncio.run(self.actor.generate_responses(**kwargs))
        self.responses.extend(out)
        return out


def _replay_buffer(micro_batch_size: int) -> Any:
    """OpenRLHF's ``NaiveReplayBuffer``; its constructor only names the CUDA device it would move batches to."""
    from openrlhf.trainer.ppo_utils import NaiveReplayBuffer

    with mock.patch("torch.cuda.current_device", return_value=0):
        return NaiveReplayBuffer(micro_batch_size, 0, True, False, False)


class StandInModelGroup:
    """A DeepSpeed actor group (see the module docstring): one in-process real ``openrlhf.models.Actor``."""

    def __init__(self, model_dir: Path, args: Any, *, trainable: bool) -> None:
        from openrlhf.models import Actor, PolicyLoss

        self.args = args
        torch.manual_seed(args.train.seed)
        self.actor = Actor(str(model_dir), attn_implementation="eager", param_dtype="bf16",
                           temperature=args.rollout.temperature)
        self.actor.model.float()  # bf16 is OpenRLHF's load dtype; float32 keeps the CPU checks exact
        self.trainable = trainable
        self.forwards: list[dict[str, torch.Tensor]] = []
        self.appended: list[Any] = []
        self.steps: list[dict[str, Any]] = []
        if trainable:
            self.optim = torch.optim.AdamW(self.actor.parameters(), lr=args.actor.adam.lr)
            self.loss_fn = PolicyLoss(clip_eps_low=args.actor.eps_clip_low_high[0],
                                      clip_eps_high=args.actor.eps_clip_low_high[1],
                                      token_level_loss=args.actor.loss_agg_mode == "token-mean")
            self.buffer = _replay_buffer(args.train.micro_batch_size)

    # -- RayActorGroup's dispatch -----------------------------------------------------------------
    def async_run_method_batch(self, method_name: str, **kwargs: Any) -> list[Any]:
        n = len(next(iter(kwargs.values())))
        method = getattr(self, method_name)
        return [ray.put([method(**{k: v[i] for k, v in kwargs.items()}) for i in range(n)])]

    def async_run_method(self, method_name: str, *args: Any, **kwargs: Any) -> list[Any]:
        return [ray.put(getattr(self, method_name)(*args, **kwargs))]

    # -- PolicyModelActor's methods ---------------------------------------------------------------
    def forward(self, sequences: torch.Tensor, action_mask: torch.Tensor, attention_mask: torch.Tensor,
                mm_train_inputs_list: Any = None) -> torch.Tensor:
        self.actor.eval()
        with torch.no_grad():
            out = self.actor(sequences, action_mask, attention_mask)
        self.forwards.append({"sequences": sequences, "attention_mask": attention_mask, "action_mask": action_mask,
                              "log_probs": out})
        return out

    def append(self, experience: Any) -> None:
        self.appended.append(copy.copy(experience))  # the buffer's split clears experience.index
        self.buffer.append(experience)

    def fit(self, kl_ctl: float = 0.0) -> dict[str, float]:
        """``ActorPPOTrainer.ppo_train`` for one rank: one optimizer step per ``train.batch_size`` rollouts.

        Returns the summed policy loss and, as ``ppo_train`` does (``ppo_actor.py``: ``training_step``
        merges ``experience.info`` into its metrics, per-rollout values weighted by rollout), the mean
        over rollouts of every per-rollout ``info`` entry (the reward components of ``reward_func`` among them).
        """
        from openrlhf.models import aggregate_loss
        from openrlhf.models.utils import compute_approx_kl
        from torch.utils.data import DataLoader

        self.actor.train()
        loader = DataLoader(self.buffer, batch_size=self.buffer.sample_batch_size, shuffle=False,
                            collate_fn=self.buffer.collate_fn)
        micro = list(loader)
        per_step = self.args.train.batch_size // self.args.train.micro_batch_size
        losses = []
        info_sums: dict[str, float] = {}
        info_counts: dict[str, int] = {}
        for start in range(0, len(micro), per_step):
            window = micro[start : start + per_step]
            tokens = sum(float(e.action_mask.sum()) for e in window)
            self.optim.zero_grad(set_to_none=True)
            before = [p.detach().clone() for p in self.actor.parameters()]
            for exp in window:
                info = {"dp_size": 1, "batch_num_tokens": torch.tensor(tokens)}
                log_probs = self.actor(exp.sequences, exp.action_mask, attention_mask=exp.attention_mask)
                policy_loss, *_ = self.loss_fn(log_probs, exp.action_log_probs, exp.advantages,
                                               action_mask=exp.action_mask, **info)
                kl_loss = torch.zeros(())
                if self.args.algo.kl.use_loss and exp.base_action_log_probs is not None:
                    kl = compute_approx_kl(log_probs, exp.base_action_log_probs, log_probs_old=exp.action_log_probs,
                                           kl_estimator=self.args.algo.kl.estimator)
                    kl_loss = aggregate_loss(kl, exp.action_mask, **info)
                (policy_loss + kl_ctl * kl_loss).backward()
                self.steps.append({"experience": exp, "log_probs": log_probs.detach(), "tokens": tokens,
                                   "policy_loss": float(policy_loss), "kl_loss": float(kl_loss), "kl_ctl": kl_ctl})
                losses.append(float(policy_loss))
                for key, value in exp.info.items():  # per-rollout values: a list after the buffer's collate
                    if isinstance(value, list):
                        value = torch.tensor(value, dtype=torch.float64)
                    if isinstance(value, torch.Tensor) and value.dim() == 1:
                        info_sums[key] = info_sums.get(key, 0.0) + float(value.double().sum())
                        info_counts[key] = info_counts.get(key, 0) + value.numel()
            self.optim.step()
            changed = sum(int(not torch.equal(b, p.detach())) for b, p in zip(before, self.actor.parameters()))
            self.steps[-1]["params_changed"] = changed
        self.buffer.clear()
        return {**{key: info_sums[key] / info_counts[key] for key in info_sums}, "policy_loss": sum(losses)}

    def empty_cache(self) -> None:
        return None

    reload_states = offload_states = broadcast_to_vllm = empty_cache

    def save_checkpoint(self, tag: str, client_states: dict | None = None, metric_value: Any = None,
                        metric_key: Any = None) -> None:
        folder = Path(self.args.ckpt.path) / "_actor"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"model": self.actor.state_dict(), "optim": self.optim.state_dict(),
                    "client_states": dict(client_states or {})}, folder / f"{tag}.pt")
        (folder / "latest").write_text(tag)

    def get_checkpoint_states(self) -> dict[str, Any]:
        folder = Path(self.args.ckpt.path) / "_actor"
        state = torch.load(folder / f"{(folder / 'latest').read_text()}.pt", weights_only=False)
        self.actor.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        return state["client_states"]
