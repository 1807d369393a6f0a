"""Padding helpers with the signatures of ``flash_attn.bert_padding`` (see the package docstring).

Shapes: ``B`` batch, ``S`` padded length, ``N`` = number of kept (attention_mask != 0) tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["index_first_axis", "pad_input", "rearrange", "unpad_input"]


def index_first_axis(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Rows ``indices`` of ``tensor`` along dim 0: ``[B*S, ...] -> [N, ...]`` (differentiable)."""
    return tensor[indices]


def unpad_input(
    hidden_states: torch.Tensor, attention_mask: torch.Tensor, unused_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Drop padded positions: ``[B, S, ...]`` -> ``[N, ...]``.

    Returns ``(kept, indices, cu_seqlens, max_seqlen, seqused)``: ``indices`` ``[N]`` are the flat
    positions ``b * S + s`` of the kept tokens (row-major), ``cu_seqlens`` ``[B + 1]`` int32 the
    running sum of the per-row counts starting at 0, ``max_seqlen`` the largest count and
    ``seqused`` ``[B]`` int32 the per-row counts. ``unused_mask`` (tokens kept but not attended)
    is added to the kept set and left out of ``seqused``, as in flash-attn.
    """
    keep = attention_mask + unused_mask if unused_mask is not None else attention_mask
    seqlens = keep.sum(dim=-1, dtype=torch.int32)
    seqused = attention_mask.sum(dim=-1, dtype=torch.int32)
    indices = torch.nonzero(keep.flatten(), as_tuple=False).flatten()
    cu_seqlens = F.pad(torch.cumsum(seqlens, dim=0, dtype=torch.int32), (1, 0))
    flat = hidden_states.reshape(-1, *hidden_states.shape[2:])
    return index_first_axis(flat, indices), indices, cu_seqlens, int(seqlens.max().item()), seqused


def pad_input(hidden_states: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """Inverse of :func:`unpad_input`: ``[N, ...]`` -> ``[batch, seqlen, ...]`` with zeros elsewhere."""
    out = hidden_states.new_zeros((batch * seqlen, *hidden_states.shape[1:]))
    out[indices] = hidden_states
    return out.reshape(batch, seqlen, *hidden_states.shape[1:])
