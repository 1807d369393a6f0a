"""``policy=hf:/local/dir`` (or ``hf:org/name`` from the local Hugging Face cache): any Hugging Face
causal LM and its tokenizer as the policy.

The model sees the text prompt only (the sample's ``problem``, its class list and the answer
format), as a user turn through the tokenizer's chat template when it has one and ``chat_template``
is on (the default, as on the openrlhf runner, which applies the same template to the same turn:
:func:`chat_messages`), else as raw text. Generation stops at any EOS of the model's
``generation_config.json`` (an instruct model's end of turn) or the tokenizer's. It answers in the
``\\boxed{...}`` + ```` ```json ```` box format of
``suites.rewards.answer_to_text``; answers are parsed with ``suites.rewards.parse_answer``,
which keeps the decoded text as ``Answer.response`` (the ``response`` of a predictions line, which the
release's reward and ``acc_release`` read).
Nothing is downloaded: the directory must hold ``config.json``, the weights and the tokenizer.
The agent has the same methods as ``rollout.BuiltinAgent`` (no critic: estimators that require
``values`` are refused by ``check``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local.inputs import region_box
from rlbench_med.runners.local.policy import _cache_kwarg
from rlbench_med.runners.local.rollout import Rollouts
from rlbench_med.suites.data import ClinicalData, Sample, load_data


@dataclass
class TextSplit:
    """A split for a text policy: samples and their target boxes (pixels, or ``None``)."""

    samples: list[Sample]
    boxes: list[tuple[float, float, float, float] | None]

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class TextData:
    data: ClinicalData
    train: TextSplit
    validation: TextSplit
    test: TextSplit


def encode_text_data(root: Path, config: LocalConfig) -> TextData:
    data = load_data(root)
    return TextData(data, *(TextSplit(s, [region_box(x) for x in s]) for s in (data.train, data.validation, data.test)))


#: The problem's image and video placeholders: a text policy sees no media, so they are left out of its prompt.
VISUAL_TAG = re.compile(r"<image>|<video>")


def text_prompt(sample: Sample) -> str:
    """:func:`prompt_text` without the media placeholders: what a text policy reads on either runner."""
    return VISUAL_TAG.sub("", prompt_text(sample)).strip()


def chat_messages(sample: Sample) -> list[dict[str, str]]:
    """The chat of a text policy: one user turn holding :func:`text_prompt` (the openrlhf runner sends the same)."""
    return [{"role": "user", "content": text_prompt(sample)}]


def prompt_text(sample: Sample) -> str:
    """The text prompt: the problem, the class list and the answer format."""
    lines = [sample.problem.strip(), f"Options: {', '.join(sample.classes)}."]
    lines.append("Answer with \\boxed{label, ...}.")
    if sample.has_region and sample.image_size is not None:
        w, h = sample.image_size
        lines.append(f'Then give the region as ```json [{{"label": ..., "bbox_2d": [x1, y1, x2, y2]}}]``` '
                     f"in pixels of the {w}x{h} image.")
    return "\n".join(lines) + "\n"


class HFAgent:
    """Text policy over a local HF causal LM (prompts left-padded, KV-cached sampling)."""

    #: A hub model may have dropout: the old log-probs of a step come from an eval-mode forward.
    train_mode_is_eval_mode = False

    def __init__(self, config: LocalConfig, encoded: TextData, device: torch.device) -> None:
        from transformers import AutoTokenizer

        assert config.hf_path is not None
        self.config = config
        self.encoded = encoded
        self.device = device
        self.path = config.hf_path
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.eos_ids = end_tokens(self.path, self.tokenizer.eos_token_id)
        if not self.eos_ids:
            raise ValueError(f"tokenizer in {self.path} has no eos_token and generation_config.json no "
                             "eos_token_id; set one and save it again")
        self.eos = self.eos_ids[0]  # what the SFT targets end with: the model's own end (of turn)
        pad = self.tokenizer.pad_token_id
        self.pad = int(pad) if pad is not None else self.eos
        self.chat = bool(config.chat_template and getattr(self.tokenizer, "chat_template", None))

    def new_model(self) -> nn.Module:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True)
        return model.to(self.device)

    def new_critic(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError("the hf: policy has no critic (check() refuses estimators that require values)")

    # -- prompts ----------------------------------------------------------------------------------
    def prompt_ids(self, sample: Sample) -> list[int]:
        """The prompt's token ids: the chat template over :func:`chat_messages` with the assistant turn opened,
        or the raw :func:`prompt_text`."""
        if self.chat:
            return list(self.tokenizer.apply_chat_template(chat_messages(sample), add_generation_prompt=True,
                                                           tokenize=True, return_dict=False))
        return self.tokenizer(text_prompt(sample) + "\n", add_special_tokens=True)["input_ids"]

    def _prompts(self, split: TextSplit, idx: Tensor) -> dict[str, Tensor]:
        encoded = [self.prompt_ids(split.samples[k]) for k in idx.tolist()]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), width), self.pad, dtype=torch.long)
        mask = torch.zeros(len(encoded), width, dtype=torch.long)
        for i, e in enumerate(encoded):
            ids[i, width - len(e) :] = torch.tensor(e, dtype=torch.long)
            mask[i, width - len(e) :] = 1
        return {"ids": ids.to(self.device), "mask": mask.to(self.device)}

    def _forward(self, model: nn.Module, ids: Tensor, mask: Tensor, **kwargs: Any) -> Tensor:
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        return model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits

    # -- the agent interface ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, model: nn.Module, split: TextSplit, idx: Tensor, drop: Any, n: int, temperature: float,
               greedy: bool, generator: torch.Generator | None) -> Rollouts:
        from transformers import DynamicCache

        prompts = self._prompts(split, idx)
        ids = prompts["ids"].repeat_interleave(n, 0)
        mask = prompts["mask"].repeat_interleave(n, 0)
        b = ids.shape[0]
        cache = DynamicCache()
        done = torch.zeros(b, dtype=torch.bool, device=self.device)
        cache_kwarg = _cache_kwarg(model)
        ends = torch.tensor(self.eos_ids, device=self.device)
        out, active = [], []
        step_ids, full_mask = ids, mask
        for t in range(self.config.max_new_tokens):
            positions = (full_mask.cumsum(1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
            logits = model(input_ids=step_ids, attention_mask=full_mask, position_ids=positions, use_cache=True,
                           **{cache_kwarg: cache}).logits[:, -1].float()
            if greedy:
                token = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, -1).cpu()
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
            token = torch.where(done, torch.full_like(token, self.pad), token)
            out.append(token)
            active.append(~done)
            done = done | torch.isin(token, ends)
            if bool(done.all()):
                break
            step_ids = token[:, None]
            full_mask = torch.cat([full_mask, torch.ones(b, 1, dtype=full_mask.dtype, device=self.device)], 1)
        group = torch.arange(len(idx), device=self.device).repeat_interleave(n)
        return Rollouts(idx.repeat_interleave(n), group, prompts, torch.stack(out, 1), torch.stack(active, 1).float(), {})

    def teacher(self, split: TextSplit, idx: Tensor, drop: Any, generator: torch.Generator) -> tuple[Rollouts, Tensor]:
        from rlbench_med.suites.rewards import Answer, answer_to_text

        prompts = self._prompts(split, idx)
        rows = []
        for k in idx.tolist():
            sample, box = split.samples[k], split.boxes[k]
            answer = Answer(labels=sample.labels, boxes=(box,) if box is not None else ())
            rows.append(self.tokenizer(answer_to_text(answer), add_special_tokens=False)["input_ids"] + [self.eos])
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros(len(rows), width)
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1.0
        ro = Rollouts(idx, torch.arange(len(idx), device=self.device), prompts, tokens.to(self.device),
                      mask.to(self.device), {})
        return ro, ro.mask

    def logprobs(self, model: nn.Module, ro: Rollouts, temperature: float = 1.0) -> Tensor:
        ids = torch.cat([ro.prompts["ids"][ro.group], ro.tokens], 1)
        mask = torch.cat([ro.prompts["mask"][ro.group], torch.ones_like(ro.tokens)], 1)
        p = ro.prompts["ids"].shape[1]
        logits = self._forward(model, ids, mask)[:, p - 1 : -1].float() / temperature
        logp = torch.log_softmax(logits, -1).gather(-1, ro.tokens[..., None]).squeeze(-1)
        return logp * ro.mask

    def values(self, critic: nn.Module, ro: Rollouts) -> Tensor:
        raise NotImplementedError("the hf: policy has no critic")

    def answers(self, ro: Rollouts, split: TextSplit) -> list[Any]:
        from rlbench_med.suites.rewards import parse_answer

        out = []
        for row, m in zip(ro.tokens.tolist(), ro.mask.tolist()):
            kept = [t for t, on in zip(row, m) if on and t not in self.eos_ids]
            out.append(parse_answer(self.tokenizer.decode(kept, skip_special_tokens=True)))
        return out


def end_tokens(path: str, tokenizer_eos: int | None) -> list[int]:
    """The token ids that end a generation: ``generation_config.json``'s ``eos_token_id`` (one id or a list,
    e.g. an instruct model's end of turn and end of text), then the tokenizer's EOS; in that order."""
    from transformers import GenerationConfig

    try:
        configured = GenerationConfig.from_pretrained(path, local_files_only=True).eos_token_id
    except OSError:  # no generation_config.json
        configured = None
    ids = [configured] if isinstance(configured, int) else list(configured or [])
    if tokenizer_eos is not None:
        ids.append(tokenizer_eos)
    return [int(i) for i in dict.fromkeys(ids)]
