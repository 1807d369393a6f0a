"""``all_gather`` with the signature of ``flash_attn.utils.distributed`` (see the package docstring)."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather"]


def all_gather(input_: torch.Tensor, process_group: dist.ProcessGroup | None) -> torch.Tensor:
    """Concatenate ``input_`` ``[n, ...]`` of every rank of ``process_group`` along dim 0: ``[world * n, ...]``.

    Without an initialised process group (one process) it returns ``input_`` unchanged.
    """
    if not dist.is_available() or not dist.is_initialized():
        return input_
    world = dist.get_world_size(process_group)
    out = input_.new_empty((world * input_.shape[0], *input_.shape[1:]))
    dist.all_gather_into_tensor(out, input_.contiguous(), group=process_group)
    return out
