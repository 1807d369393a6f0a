"""Rollouts of the builtin policy: sampling, teacher targets, log-probabilities, decoded answers.

The trainer talks to a policy through an *agent* (this one, or ``hf_policy.HFAgent``) with the
same methods, so the RL and SFT loops are written once:

- ``new_model()`` / ``new_critic(model)``: fresh modules (random init; the critic copies the trunk).
- ``sample(model, split, idx, drop, n, temperature, greedy, generator) -> Rollouts``.
- ``teacher(split, idx, drop, generator) -> (Rollouts, loss_mask)``: the labelled answers.
- ``logprobs(model, rollouts, temperature) -> [B, T]`` and ``values(critic, rollouts) -> [B, T]``.
- ``answers(rollouts) -> list[Answer]``: what ``suites.rewards`` scores.
- ``train_mode_is_eval_mode``: whether the model's train-mode forward computes what its eval-mode
  one does (an ``hf:`` model may have dropout: False).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local.inputs import EncodedData, EncodedSplit
from rlbench_med.runners.local.policy import PolicyModel, PromptBatch, ValueModel
from rlbench_med.runners.local.vocab import PAD, AnswerGrammar


@dataclass
class Rollouts:
    """``B`` answers to ``P`` prompts.

    Attributes:
        sample_idx: ``[B]`` index of each answer's sample in its split (always on the CPU).
        group: ``[B]`` index of each answer's prompt in ``prompts`` (rollouts of a prompt share it).
        prompts: the ``P`` prompts' inputs (after modality dropping).
        tokens: ``[B, T]`` answer tokens (``PAD`` after the end).
        mask: ``[B, T]`` float, 1 on response tokens.
        extra: policy-specific tensors indexed by row (builtin: ``allowed [B, T, V]``).
    """

    sample_idx: Tensor
    group: Tensor
    prompts: Any
    tokens: Tensor
    mask: Tensor
    extra: dict[str, Tensor]

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def subset(self, rows: Tensor) -> Rollouts:
        rows = rows.to(self.tokens.device)
        return Rollouts(self.sample_idx[rows.cpu()], self.group[rows], self.prompts, self.tokens[rows],
                        self.mask[rows], {k: v[rows] for k, v in self.extra.items()})


@dataclass
class TeacherAnswers:
    """The labelled answers of a split's samples (row ``i``: sample ``i``), padded to the longest:
    ``tokens [N, T]`` (reasoning slots hold a placeholder), ``lengths [N]``, the grammar's ``allowed
    [N, T, V]`` and response ``mask [N, T]``, and ``supervised [N, T]`` (1 on label and box tokens)."""

    tokens: Tensor
    lengths: Tensor
    allowed: Tensor
    mask: Tensor
    supervised: Tensor


class BuiltinAgent:
    """The modality-encoder policy of :mod:`~rlbench_med.runners.local.policy`."""

    #: Its model computes the same log-probabilities in train and eval mode (no dropout, no batch
    #: statistics), so the trainer may take a step's old log-probs from the update's own forward.
    train_mode_is_eval_mode = True

    def __init__(self, config: LocalConfig, encoded: EncodedData, device: torch.device) -> None:
        self.config = config
        self.encoded = encoded
        self.vocab = encoded.vocab
        self.device = device
        self.grammar = AnswerGrammar(encoded.vocab, config.reasoning_tokens, device)
        self._teacher: dict[int, tuple[EncodedSplit, TeacherAnswers]] = {}

    def new_model(self) -> PolicyModel:
        return PolicyModel(self.config, self.vocab, use_image=self.encoded.use_image,
                           use_signal=self.encoded.use_signal).to(self.device)

    def new_critic(self, model: nn.Module) -> nn.Module:
        return ValueModel(copy.deepcopy(model)).to(self.device)

    def _prompts(self, split: EncodedSplit, idx: Tensor, drop: tuple[Tensor, Tensor] | None) -> PromptBatch:
        prompts = split.prompts.index(idx)
        if drop is not None:
            prompts = prompts.drop(drop[0], drop[1])
        return prompts.to(self.device)

    def sample(
        self, model: PolicyModel, split: EncodedSplit, idx: Tensor, drop: tuple[Tensor, Tensor] | None, n: int,
        temperature: float, greedy: bool, generator: torch.Generator | None,
    ) -> Rollouts:
        prompts = self._prompts(split, idx, drop)
        tokens, allowed, mask = model.generate(prompts, self.grammar, repeats=n, temperature=temperature,
                                               greedy=greedy, generator=generator)
        group = torch.arange(len(idx), device=self.device).repeat_interleave(n)
        return Rollouts(idx.repeat_interleave(n), group, prompts, tokens, mask, {"allowed": allowed})

    def teacher(
        self, split: EncodedSplit, idx: Tensor, drop: tuple[Tensor, Tensor] | None, generator: torch.Generator
    ) -> tuple[Rollouts, Tensor]:
        """Labelled answers; reasoning tokens (if any) are random and not supervised."""
        prompts = self._prompts(split, idx, drop)
        r = self.config.reasoning_tokens
        reasoning = torch.randint(self.vocab.reasoning_vocab, (len(idx), r), generator=generator)
        answers = self._answers(split)
        width = int(answers.lengths[idx].max())
        tokens = answers.tokens[idx, :width].clone()
        tokens[:, :r] = self.vocab.reasoning_start + reasoning.to(self.device)
        mask = answers.mask[idx, :width]
        group = torch.arange(len(idx), device=self.device)
        ro = Rollouts(idx, group, prompts, tokens, mask, {"allowed": answers.allowed[idx, :width]})
        return ro, answers.supervised[idx, :width] * mask

    def _answers(self, split: EncodedSplit) -> TeacherAnswers:
        """Every labelled answer of ``split``, encoded once (a supervised step only picks rows).

        The grammar's masks of a position depend only on the tokens before it in the same answer, and
        in the reasoning slots not on which reasoning token was drawn, so the rows padded to the longest
        answer of the split, cut to the longest of a batch, are the masks of that batch.
        """
        found = self._teacher.get(id(split))
        if found is not None and found[0] is split:
            return found[1]
        r = self.config.reasoning_tokens
        rows = []
        for sample, box in zip(split.samples, split.boxes):
            bins = self.vocab.box_to_bins(box, sample.image_size) if box is not None else None
            rows.append(self.vocab.encode(self.vocab.task_index(sample.task), sample.labels, bins, [0] * r))
        lengths = torch.tensor([len(t) for t in rows])
        width = int(lengths.max())
        tokens = torch.full((len(rows), width), PAD, dtype=torch.long)
        supervised = torch.zeros(len(rows), width)
        for i, toks in enumerate(rows):
            tokens[i, : len(toks)] = torch.tensor(toks)
            supervised[i, r : len(toks)] = 1.0
        tokens = tokens.to(self.device)
        prompts = split.prompts.to(self.device)
        allowed, mask = self.grammar.replay(tokens, prompts.task, prompts.grounded)
        answers = TeacherAnswers(tokens, lengths, allowed, mask, supervised.to(self.device))
        self._teacher[id(split)] = (split, answers)
        return answers

    def logprobs(self, model: PolicyModel, ro: Rollouts, temperature: float = 1.0) -> Tensor:
        prefix, prefix_mask = model.prefix(ro.prompts)
        logp, _ = model.token_logprobs(prefix[ro.group], prefix_mask[ro.group], ro.tokens, ro.extra["allowed"],
                                       temperature)
        return logp * ro.mask

    def values(self, critic: ValueModel, ro: Rollouts) -> Tensor:
        return critic(ro.prompts, ro.group, ro.tokens) * ro.mask

    def answers(self, ro: Rollouts, split: EncodedSplit) -> list[Any]:
        from rlbench_med.suites.rewards import Answer

        out = []
        tokens = ro.tokens.tolist()
        for row, k in enumerate(ro.sample_idx.tolist()):
            sample = split.samples[k]
            labels, bins, n_reasoning = self.vocab.decode(self.vocab.task_index(sample.task), tokens[row])
            boxes = [] if bins is None or sample.image_size is None else [self.vocab.bins_to_box(bins, sample.image_size)]
            out.append(Answer(labels=tuple(labels), boxes=tuple(boxes), reasoning_tokens=n_reasoning, well_formed=True))
        return out
