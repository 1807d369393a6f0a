"""CPU stand-in for the parts of ``flash_attn`` that OpenRLHF 0.11.2 imports at module level.

OpenRLHF's ``openrlhf/models/ring_attn_utils.py`` (imported by ``Actor``, the DeepSpeed strategy and
so by every trainer module) starts with::

    from flash_attn.bert_padding import index_first_axis, pad_input, rearrange, unpad_input
    from flash_attn.utils.distributed import all_gather

flash-attn ships CUDA builds only, so on a CPU machine (CI) this package provides those five
names, written here from their documented behaviour (no flash-attn code). It is no attention
kernel: there is no ``flash_attn_func``, and the distribution is named
``rlbench-med-flash-attn-shim``, so ``transformers`` still reports flash-attn as unavailable.
Installed by ``scripts/openrlhf/install_cpu_stack.sh``; never on a GPU machine that has the real one.
"""
