"""``device=cpu``: OpenRLHF 0.11.2's real pipeline on a machine without GPUs (CI, a laptop).

Everything runs as on a GPU node: Ray with *logical* GPUs (a scheduling resource only) places
OpenRLHF's own actors, vLLM's CPU build generates the rollouts in ``RolloutRayActor``, DeepSpeed's
CPU accelerator (``DS_ACCELERATOR=cpu``, gloo) trains the actor in ``PolicyModelActor`` and the
weights reach vLLM through OpenRLHF's ``broadcast_to_vllm``. What a CPU-only PyTorch cannot do is
patched at the narrowest point (the table of README.md, section "Without GPUs", gives each with the
OpenRLHF line that forces it):

- four ``torch.cuda`` functions, which on a CPU build can only raise, get their CPU meaning;
- OpenRLHF's device mesh is built for ``cpu`` instead of ``cuda``;
- the weight-sync group is gloo instead of NCCL (vLLM's NCCL communicator needs CUDA);
- vLLM's worker receives each broadcast weight into a CPU tensor instead of ``device="cuda"``.

:func:`install` applies them in every process that runs OpenRLHF code: the launch itself, every
Ray worker (Ray's ``worker_process_setup_hook``) and vLLM's engine-core process (a vLLM general
plugin, ``rlbench_med_cpu`` in ``pyproject.toml``). It does nothing unless :data:`DEVICE_ENV`
is ``cpu``, so a GPU run is untouched.
"""

from __future__ import annotations

import os
from typing import Any

#: Set to ``cpu`` by the launch for itself and every Ray worker; :func:`install` acts only then.
DEVICE_ENV = "RLBENCH_OPENRLHF_DEVICE"
#: vLLM's CPU KV cache in GiB (its default is 4); one small engine needs far less.
KV_CACHE_GIB = "1"

def environment() -> dict[str, str]:
    """Environment of the launch and of every Ray worker in CPU mode."""
    return {
        DEVICE_ENV: "cpu",
        "DS_ACCELERATOR": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB),
        # one thread per process: the actors, the engine and the trainer share the machine's cores
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }


def enabled() -> bool:
    return os.environ.get(DEVICE_ENV) == "cpu"


class GlooBroadcast:
    """The weight-sync group's ``broadcast(tensor, src, stream)`` (PyNcclCommunicator's call) over gloo."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def broadcast(self, tensor: Any, src: int, stream: Any = None) -> None:
        self.group.broadcast(tensor, src).wait()


def gloo_sync_group(master_address: str, master_port: int, rank: int, world_size: int, device: Any) -> GlooBroadcast:
    """``openrlhf.utils.distributed_util.stateless_init_process_group`` over gloo (``device`` is unused)."""
    from vllm.distributed.utils import stateless_init_torch_distributed_process_group

    group = stateless_init_torch_distributed_process_group(master_address, master_port, rank, world_size,
                                                           backend="gloo")
    return GlooBroadcast(group)


def update_weight_on_cpu(self: Any, name: str, dtype: Any, shape: Any, empty_cache: bool = False) -> None:
    """``WorkerWrap.update_weight`` on vLLM's CPU worker.

    The weight is received into a CPU tensor. vLLM's CPU build repacks every linear layer's weight
    for its GEMM kernels after loading and drops the original, so a weight cannot be loaded alone
    as on a GPU: the received weights are kept until the last one of the sync (OpenRLHF passes
    ``empty_cache=True`` with it), then loaded together through vLLM's own in-place reload
    (``model_runner.reload_weights``), which unpacks, loads and repacks each layer.
    """
    import torch

    assert dtype == self.model_config.dtype, f"mismatch dtype: src {dtype}, dst {self.model_config.dtype}"
    weight = torch.empty(shape, dtype=dtype, device="cpu")
    self._model_update_group.broadcast(weight, src=0)
    pending = self.__dict__.setdefault("_rlbench_pending_weights", [])
    pending.append((name, weight))
    if empty_cache:
        self.model_runner.reload_weights(weights_iterator=list(pending))
        pending.clear()
        if getattr(self.model_config.hf_config, "tie_word_embeddings", False):
            # A tied head is not among the weights sent (it is the embedding); its repacked GEMM copy
            # still holds the old values, so repack it from the reloaded embedding.
            from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

            for module in self.model_runner.get_model().modules():
                if isinstance(module, ParallelLMHead):
                    module.quant_method.process_weights_after_loading(module)


def _patch_torch() -> None:
    import torch

    torch.cuda.set_device = lambda device: None
    torch.cuda.current_device = lambda: "cpu"
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.current_stream = lambda device=None: None


def _patch_openrlhf() -> None:
    import openrlhf.trainer.ray.ppo_actor as ppo_actor
    import openrlhf.utils.deepspeed.deepspeed as ds_strategy
    from openrlhf.trainer.ppo_utils import replay_buffer
    from torch.distributed.device_mesh import init_device_mesh

    ds_strategy.init_device_mesh = lambda device_type, *args, **kwargs: init_device_mesh("cpu", *args, **kwargs)
    buffer_init = replay_buffer.NaiveReplayBuffer.__init__

    def buffer_on_cpu(self: Any, *args: Any, **kwargs: Any) -> None:
        import torch

        current = torch.cuda.current_device
        torch.cuda.current_device = lambda: 0
        try:
            buffer_init(self, *args, **kwargs)
        finally:
            torch.cuda.current_device = current

    replay_buffer.NaiveReplayBuffer.__init__ = buffer_on_cpu  # type: ignore[method-assign]
    ppo_actor.stateless_init_process_group = gloo_sync_group  # imported by name there
    _patch_vllm_worker()


def _patch_vllm_worker() -> None:
    import openrlhf.utils.distributed_util as distributed_util
    from openrlhf.trainer.ray.vllm_worker_wrap import WorkerWrap

    distributed_util.stateless_init_process_group = gloo_sync_group
    WorkerWrap.update_weight = update_weight_on_cpu  # type: ignore[method-assign]


def install() -> None:
    """Apply the patches in this process when :data:`DEVICE_ENV` is ``cpu`` (Ray's worker setup hook)."""
    if not enabled():
        return
    _patch_torch()
    _patch_openrlhf()


def vllm_plugin() -> None:
    """vLLM's general-plugin entry point: runs in the engine-core process, where the worker lives."""
    if not enabled():
        return
    _patch_torch()
    _patch_vllm_worker()
