"""The builtin policy: modality encoders -> prefix embeddings -> a small causal transformer.

Prefix layout per prompt (``Lp`` slots): ``[record, image x image_tokens, signal x signal_tokens,
task]`` where the image and signal slots exist only when the training data has that modality
and are masked out (skipped by attention) for prompts that lack it or had it dropped. The
transformer is a ``transformers`` Qwen2 or Llama model built from a config (random init, nothing
downloaded) and fed ``inputs_embeds``; it then generates the answer tokens of
:class:`~rlbench_med.runners.local.vocab.AnswerVocab` under the grammar's constraints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from rlbench_med.runners.config import LocalConfig
from rlbench_med.runners.local.vocab import PAD, AnswerGrammar, AnswerVocab


@dataclass
class PromptBatch:
    """Encoded inputs of ``P`` prompts.

    Attributes:
        image: ``[P, F, 3, S, S]`` in [0, 1], ``F`` visual frames per prompt (an image, video frames;
            zeros where absent); ``frames``: ``[P, F]`` bool, the valid frames; ``has_image``: ``[P]``
            bool, whether the prompt shows any (cleared when the vision input is dropped).
        signal: ``[P, leads, length]`` standardised (zeros where absent); ``has_signal``: ``[P]``.
        text: ``[P, W]`` hashed word ids (0 = padding).
        task: ``[P]`` task index; ``grounded``: ``[P]`` bool, whether a box follows the labels.
    """

    image: Tensor
    frames: Tensor
    has_image: Tensor
    signal: Tensor
    has_signal: Tensor
    text: Tensor
    task: Tensor
    grounded: Tensor

    def __len__(self) -> int:
        return int(self.task.shape[0])

    def index(self, idx: Tensor) -> PromptBatch:
        return PromptBatch(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def to(self, device: torch.device | str) -> PromptBatch:
        return PromptBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def drop(self, image: Tensor | bool, signal: Tensor | bool) -> PromptBatch:
        """Copy with the image / signal marked absent where ``image`` / ``signal`` is true."""
        has_image = self.has_image & ~torch.as_tensor(image, device=self.has_image.device)
        has_signal = self.has_signal & ~torch.as_tensor(signal, device=self.has_signal.device)
        return replace(self, has_image=has_image, has_signal=has_signal)


def build_backbone(config: LocalConfig, vocab_size: int, max_positions: int) -> nn.Module:
    """A randomly initialised transformers decoder (Qwen2Model or LlamaModel) of the config's size."""
    common = dict(
        vocab_size=vocab_size,
        hidden_size=config.d_model,
        intermediate_size=2 * config.d_model,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        pad_token_id=PAD,
    )
    if config.backbone == "qwen2":
        from transformers import Qwen2Config, Qwen2Model

        return Qwen2Model(Qwen2Config(**common))
    from transformers import LlamaConfig, LlamaModel

    return LlamaModel(LlamaConfig(**common))


class PolicyModel(nn.Module):
    """Encoders + transformer + LM head over the answer vocabulary.

    ``use_image`` / ``use_signal`` say whether the data has that modality at all (fixes ``Lp``).
    """

    def __init__(self, config: LocalConfig, vocab: AnswerVocab, *, use_image: bool, use_signal: bool) -> None:
        super().__init__()
        d = config.d_model
        self.vocab = vocab
        self.use_image = use_image
        self.use_signal = use_signal
        self.image_tokens = config.image_tokens if use_image else 0
        self.signal_tokens = config.signal_tokens if use_signal else 0
        side = round(config.image_tokens**0.5)
        self.image_encoder = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveMaxPool2d(side),
        )
        self.image_proj = nn.Linear(64, d)
        self.signal_encoder = nn.Sequential(
            nn.Conv1d(config.signal_leads, 32, 7, stride=4, padding=3), nn.GELU(),
            nn.Conv1d(32, 32, 5, stride=2, padding=2), nn.GELU(),
            nn.AdaptiveAvgPool1d(config.signal_tokens),
        )
        self.signal_proj = nn.Linear(32, d)
        self.text_encoder = nn.EmbeddingBag(config.text_buckets + 1, d, mode="mean", padding_idx=0)
        self.text_proj = nn.Linear(d, d)
        self.task_embedding = nn.Embedding(len(vocab.tasks), d)
        self.prefix_len = 2 + self.image_tokens + self.signal_tokens
        max_len = self.prefix_len + vocab.max_length(config.reasoning_tokens, True) + 1
        self.backbone = build_backbone(config, vocab.size, max_len)
        self.lm_head = nn.Linear(d, vocab.size, bias=False)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    #: Submodules that read the inputs (``encoder_lr_scale`` scales their learning rate in RL).
    ENCODERS = ("image_encoder", "image_proj", "signal_encoder", "signal_proj", "text_encoder", "text_proj")

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The parameters of the modality encoders and their projections (:data:`ENCODERS`)."""
        return [p for name in self.ENCODERS for p in getattr(self, name).parameters()]

    def prefix(self, prompts: PromptBatch) -> tuple[Tensor, Tensor]:
        """Prefix embeddings ``[P, Lp, d]`` and attention mask ``[P, Lp]`` (0 = skipped slot)."""
        p = len(prompts)
        parts = [self.text_proj(self.text_encoder(prompts.text))[:, None]]
        masks = [torch.ones(p, 1, dtype=torch.long, device=self.device)]
        if self.use_image:
            # Every frame goes through the image encoder; features are averaged over the valid frames.
            f = prompts.image.shape[1]
            feats = self.image_encoder(4.0 * (prompts.image.flatten(0, 1) - 0.5)).flatten(2).transpose(1, 2)
            feats = feats.reshape(p, f, *feats.shape[1:])  # [P, F, k, 64]
            weight = prompts.frames.to(feats.dtype)[:, :, None, None]
            feats = (feats * weight).sum(1) / weight.sum(1).clamp(min=1.0)  # [P, k, 64]
            parts.append(self.image_proj(feats))
            masks.append(prompts.has_image.long()[:, None].expand(p, self.image_tokens))
        if self.use_signal:
            feats = self.signal_encoder(prompts.signal).transpose(1, 2)  # [P, k, 32]
            parts.append(self.signal_proj(feats))
            masks.append(prompts.has_signal.long()[:, None].expand(p, self.signal_tokens))
        parts.append(self.task_embedding(prompts.task)[:, None])
        masks.append(torch.ones(p, 1, dtype=torch.long, device=self.device))
        return torch.cat(parts, 1), torch.cat(masks, 1)

    def hidden(self, prefix: Tensor, prefix_mask: Tensor, tokens: Tensor) -> Tensor:
        """Hidden states ``[B, T, d]`` that predict each answer token ``tokens [B, T]``.

        The input is ``prefix + tokens[:, :-1]``; the state at the last prefix slot predicts
        ``tokens[:, 0]``.
        """
        b, t = tokens.shape
        emb = self.backbone.get_input_embeddings()(tokens[:, : t - 1])
        inputs = torch.cat([prefix, emb], 1)
        mask = torch.cat([prefix_mask, torch.ones(b, t - 1, dtype=torch.long, device=tokens.device)], 1)
        out = self.backbone(inputs_embeds=inputs, attention_mask=mask).last_hidden_state
        return out[:, prefix.shape[1] - 1 :]

    def token_logprobs(
        self, prefix: Tensor, prefix_mask: Tensor, tokens: Tensor, allowed: Tensor, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Log-probabilities ``[B, T]`` of ``tokens`` under the constrained policy, and hidden ``[B, T, d]``.

        ``log pi(y_t) = log_softmax(mask(logits_t / temperature, allowed_t))[y_t]``; forced tokens
        (a single allowed token) get log-probability 0.
        """
        hidden = self.hidden(prefix, prefix_mask, tokens)
        logits = _tempered(self.lm_head(hidden).float(), temperature).masked_fill(~allowed, float("-inf"))
        logp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
        return logp.masked_fill(~allowed.gather(-1, tokens[..., None]).squeeze(-1), 0.0), hidden

    @torch.no_grad()
    def generate(
        self,
        prompts: PromptBatch,
        grammar: AnswerGrammar,
        *,
        repeats: int = 1,
        temperature: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Sample ``repeats`` answers per prompt (rows ``p * repeats + r``) with a KV cache.

        Returns tokens ``[B, T]`` (``PAD`` after the end), allowed masks ``[B, T, V]`` and the
        response mask ``[B, T]``; ``T`` is the longest answer in the batch.
        """
        from transformers import DynamicCache

        prefix, prefix_mask = self.prefix(prompts)
        task = prompts.task.repeat_interleave(repeats, 0)
        grounded = prompts.grounded.repeat_interleave(repeats, 0)
        b = task.shape[0]
        max_len = self.vocab.max_length(grammar.reasoning_tokens, bool(grounded.any()))
        cache = DynamicCache()
        embed = self.backbone.get_input_embeddings()
        state = grammar.start(b, self.device)
        cache_kwarg = _cache_kwarg(self.backbone)
        # The prefix is the same for every answer to a prompt: it runs once per prompt, and each answer
        # starts from a copy of its prompt's keys, values and last hidden state (on the CPU bitwise the
        # numbers of a forward over the prefix repeated per answer; tests/runners/local/test_runner.py).
        hidden = self.backbone(inputs_embeds=prefix, attention_mask=prefix_mask, use_cache=True,
                               **{cache_kwarg: cache}).last_hidden_state[:, -1]
        if repeats > 1:
            cache.batch_repeat_interleave(repeats)
            hidden = hidden.repeat_interleave(repeats, 0)
        mask = prefix_mask.repeat_interleave(repeats, 0)
        tokens, allowed_all, active = [], [], []
        for position in range(max_len):
            if position > 0:
                hidden = self.backbone(inputs_embeds=embed(tokens[-1])[:, None], attention_mask=mask, use_cache=True,
                                       **{cache_kwarg: cache}).last_hidden_state[:, -1]
            allowed = grammar.allowed(state, task, grounded)
            logits = self.lm_head(hidden).float().masked_fill(~allowed, float("-inf"))
            if greedy:
                token = logits.argmax(-1)
            else:
                # Drawn on the CPU generator, so a seed gives the same draws on every device.
                probs = torch.softmax(_tempered(logits, temperature), -1).cpu()
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
            tokens.append(token)
            allowed_all.append(allowed)
            active.append(~state.done)
            state = grammar.advance(state, token, grounded)
            if bool(state.done.all()):
                break
            mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=mask.device)], 1)
        return torch.stack(tokens, 1), torch.stack(allowed_all, 1), torch.stack(active, 1).float()


def _tempered(logits: Tensor, temperature: float) -> Tensor:
    """``logits / temperature``; at temperature 1 the logits themselves (the same numbers, one op less)."""
    return logits if temperature == 1.0 else logits / temperature


def _cache_kwarg(model: nn.Module) -> str:
    """Name of the KV-cache argument (``cache`` in transformers >= 5.x, else ``past_key_values``)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class ValueModel(nn.Module):
    """Critic: a copy of the policy trunk with a scalar head; ``V(s_t)`` ``[B, T]`` per answer token."""

    def __init__(self, trunk: PolicyModel) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(trunk.lm_head.in_features, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, prompts: PromptBatch, rows: Tensor, tokens: Tensor) -> Tensor:
        prefix, mask = self.trunk.prefix(prompts)
        hidden = self.trunk.hidden(prefix[rows], mask[rows], tokens)
        return self.head(hidden).squeeze(-1).float()


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Token-mean of ``x`` over ``mask`` (all rollouts' tokens pooled)."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def sft_loss(logp: Tensor, loss_mask: Tensor) -> Tensor:
    """Negative log-likelihood, token-mean over supervised tokens."""
    return -masked_mean(logp, loss_mask)


__all__ = ["PromptBatch", "PolicyModel", "ValueModel", "build_backbone", "masked_mean", "sft_loss"]
