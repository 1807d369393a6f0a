"""The builtin policy's answer vocabulary and the grammar that constrains its decoding.

An answer is, in order: ``reasoning_tokens`` free reasoning tokens, one to ``max_labels``
diagnosis label tokens (one token per class of the sample's task, no repeats), ``END``, and, for
samples that can be grounded, four quantised box coordinates ``x1 y1 x2 y2`` (each coordinate has
its own ``box_bins`` tokens). Decoding is constrained to that grammar, so every prediction is a
subset of the task's class list. The grammar is replayed over any token sequence to get the
allowed-token masks used for log-probabilities (the same masks as during sampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PAD = 0
END = 1


@dataclass(frozen=True)
class AnswerVocab:
    """Token ids: ``PAD``, ``END``, reasoning tokens, label tokens per task, coordinate tokens.

    ``tasks`` is sorted; ``classes[i]`` is the label space of ``tasks[i]``.
    """

    tasks: tuple[str, ...]
    classes: tuple[tuple[str, ...], ...]
    reasoning_vocab: int
    box_bins: int
    max_labels: int

    @classmethod
    def build(cls, tasks: dict[str, tuple[str, ...]], *, reasoning_vocab: int, box_bins: int, max_labels: int) -> AnswerVocab:
        names = tuple(sorted(tasks))
        return cls(names, tuple(tuple(tasks[t]) for t in names), reasoning_vocab, box_bins, max_labels)

    @property
    def reasoning_start(self) -> int:
        return 2

    @property
    def label_start(self) -> int:
        return self.reasoning_start + self.reasoning_vocab

    def label_offset(self, task_index: int) -> int:
        return self.label_start + sum(len(c) for c in self.classes[:task_index])

    @property
    def coord_start(self) -> int:
        return self.label_start + sum(len(c) for c in self.classes)

    @property
    def size(self) -> int:
        return self.coord_start + 4 * self.box_bins

    def task_index(self, task: str) -> int:
        try:
            return self.tasks.index(task)
        except ValueError:
            raise KeyError(f"task {task!r} is not in the vocabulary (tasks: {', '.join(self.tasks)})") from None

    def label_token(self, task_index: int, label: str) -> int:
        classes = self.classes[task_index]
        if label not in classes:
            raise KeyError(f"label {label!r} is not a class of task {self.tasks[task_index]!r}: {classes}")
        return self.label_offset(task_index) + classes.index(label)

    def coord_token(self, coord: int, bin_: int) -> int:
        return self.coord_start + coord * self.box_bins + bin_

    def max_length(self, reasoning_tokens: int, grounded: bool) -> int:
        """Longest answer: reasoning + labels + END (+ 4 coordinates)."""
        return reasoning_tokens + self.max_labels + 1 + (4 if grounded else 0)

    # -- encoding / decoding ------------------------------------------------------------------
    def box_to_bins(self, box: tuple[float, float, float, float], image_size: tuple[int, int]) -> tuple[int, ...]:
        """Pixel box ``(x1, y1, x2, y2)`` on a ``(W, H)`` image -> four bins in ``[0, box_bins)``."""
        w, h = image_size
        scale = (w, h, w, h)
        return tuple(min(self.box_bins - 1, max(0, int(v / s * self.box_bins))) for v, s in zip(box, scale))

    def bins_to_box(self, bins: tuple[int, ...], image_size: tuple[int, int]) -> tuple[float, float, float, float]:
        """Bin centres back to a pixel box, ordered so that ``x1 <= x2`` and ``y1 <= y2``."""
        w, h = image_size
        x1, y1, x2, y2 = ((b + 0.5) / self.box_bins * s for b, s in zip(bins, (w, h, w, h)))
        return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))

    def encode(
        self, task_index: int, labels: tuple[str, ...], box_bins: tuple[int, ...] | None, reasoning: list[int]
    ) -> list[int]:
        """Target token sequence of a labelled sample (labels beyond ``max_labels`` are cut)."""
        tokens = [self.reasoning_start + r for r in reasoning]
        tokens += [self.label_token(task_index, lab) for lab in dict.fromkeys(labels)][: self.max_labels]
        tokens.append(END)
        if box_bins is not None:
            tokens += [self.coord_token(c, b) for c, b in enumerate(box_bins)]
        return tokens

    def decode(self, task_index: int, tokens: list[int]) -> tuple[list[str], tuple[int, ...] | None, int]:
        """Tokens of one answer -> (labels, box bins or None, number of reasoning tokens)."""
        labels: list[str] = []
        bins: list[int] = []
        n_reasoning = 0
        lo, classes = self.label_offset(task_index), self.classes[task_index]
        for tok in tokens:
            if self.reasoning_start <= tok < self.label_start:
                n_reasoning += 1
            elif lo <= tok < lo + len(classes):
                labels.append(classes[tok - lo])
            elif tok >= self.coord_start:
                bins.append((tok - self.coord_start) % self.box_bins)
        return labels, (tuple(bins) if len(bins) == 4 else None), n_reasoning


@dataclass
class GrammarState:
    """Decoding state of a batch of answers (all ``[B]`` unless noted)."""

    n_reasoning: Tensor
    n_labels: Tensor
    labels_closed: Tensor
    n_coords: Tensor
    done: Tensor
    chosen: Tensor  # [B, V] bool, labels already emitted


class AnswerGrammar:
    """Vectorised constrained decoding of :class:`AnswerVocab` answers.

    ``task_ids [B]`` and ``grounded [B]`` fix each answer's label space and whether a box follows.
    """

    def __init__(self, vocab: AnswerVocab, reasoning_tokens: int, device: torch.device | str = "cpu") -> None:
        self.vocab = vocab
        self.reasoning_tokens = reasoning_tokens
        v = vocab.size
        self.pad_only = torch.zeros(v, dtype=torch.bool, device=device)
        self.pad_only[PAD] = True
        self.reasoning = torch.zeros(v, dtype=torch.bool, device=device)
        self.reasoning[vocab.reasoning_start : vocab.label_start] = True
        self.task_labels = torch.zeros(len(vocab.tasks), v, dtype=torch.bool, device=device)
        for i, classes in enumerate(vocab.classes):
            lo = vocab.label_offset(i)
            self.task_labels[i, lo : lo + len(classes)] = True
        self.n_classes = torch.tensor([len(c) for c in vocab.classes], device=device)
        self.coords = torch.zeros(4, v, dtype=torch.bool, device=device)
        for c in range(4):
            self.coords[c, vocab.coord_token(c, 0) : vocab.coord_token(c, 0) + vocab.box_bins] = True
        self.end_only = torch.zeros(v, dtype=torch.bool, device=device)
        self.end_only[END] = True

    def start(self, batch: int, device: torch.device | str = "cpu") -> GrammarState:
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        false = torch.zeros(batch, dtype=torch.bool, device=device)
        return GrammarState(zeros, zeros.clone(), false, zeros.clone(), false.clone(),
                            torch.zeros(batch, self.vocab.size, dtype=torch.bool, device=device))

    def allowed(self, state: GrammarState, task_ids: Tensor, grounded: Tensor) -> Tensor:
        """``[B, V]`` bool: tokens the grammar allows next (only ``PAD`` once an answer is done)."""
        in_reasoning = (state.n_reasoning < self.reasoning_tokens)[:, None]
        labels = self.task_labels[task_ids] & ~state.chosen
        full = (state.n_labels >= self.vocab.max_labels) | (state.n_labels >= self.n_classes[task_ids])
        labels = torch.where(full[:, None], self.end_only, labels | (self.end_only & (state.n_labels > 0)[:, None]))
        coords = self.coords[state.n_coords.clamp(max=3)]
        out = torch.where(state.labels_closed[:, None], coords, labels)
        out = torch.where(in_reasoning, self.reasoning, out)
        return torch.where(state.done[:, None], self.pad_only, out)

    def advance(self, state: GrammarState, token: Tensor, grounded: Tensor) -> GrammarState:
        """State after emitting ``token [B]`` (finished answers stay finished)."""
        active = ~state.done
        in_reasoning = active & (state.n_reasoning < self.reasoning_tokens)
        in_labels = active & ~in_reasoning & ~state.labels_closed
        in_coords = active & ~in_reasoning & state.labels_closed
        is_end = token == END
        closing = in_labels & is_end
        chosen = state.chosen.clone()
        picked = in_labels & ~is_end
        chosen[picked.nonzero(as_tuple=True)[0], token[picked]] = True
        n_coords = state.n_coords + in_coords.long()
        done = state.done | (closing & ~grounded) | (in_coords & (n_coords >= 4))
        return GrammarState(
            n_reasoning=state.n_reasoning + in_reasoning.long(),
            n_labels=state.n_labels + picked.long(),
            labels_closed=state.labels_closed | closing,
            n_coords=n_coords,
            done=done,
            chosen=chosen,
        )

    def replay(self, tokens: Tensor, task_ids: Tensor, grounded: Tensor) -> tuple[Tensor, Tensor]:
        """Allowed masks ``[B, T, V]`` and response mask ``[B, T]`` (float) of given answers ``[B, T]``.

        Position ``t`` is in the response when the answer was not finished before token ``t``.
        """
        b, t = tokens.shape
        state = self.start(b, tokens.device)
        allowed, mask = [], []
        for i in range(t):
            allowed.append(self.allowed(state, task_ids, grounded))
            mask.append(~state.done)
            state = self.advance(state, tokens[:, i], grounded)
        if t == 0:
            return torch.zeros(b, 0, self.vocab.size, dtype=torch.bool), torch.zeros(b, 0)
        return torch.stack(allowed, 1), torch.stack(mask, 1).float()
