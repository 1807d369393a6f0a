"""A tiny random chat model written to a folder: what the OpenRLHF runner's tests and smoke script train.

Nothing is downloaded: the tokenizer is byte-level BPE without merges (every UTF-8 byte is a
token, so any text round-trips exactly) plus the ChatML special tokens and a ChatML chat
template, and the policy is a ``transformers`` Qwen2 causal LM with random weights. OpenRLHF,
vLLM and ``transformers`` load the folder like any Hugging Face checkpoint.
"""

from __future__ import annotations

from pathlib import Path

#: ChatML, the template of Qwen2 models: ``<|im_start|>role\\ncontent<|im_end|>\\n`` per message.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


#: Head size of the attention: vLLM's CPU attention supports 32, 64, 80, ... (not 16).
HEAD_SIZE = 32


def write_tiny_chat_model(
    path: Path, *, seed: int = 0, hidden_size: int = 64, layers: int = 2, max_positions: int = 2048
) -> Path:
    """Write the tokenizer and a random Qwen2 model (``layers`` x ``hidden_size``, float32) to ``path``.

    Heads are :data:`HEAD_SIZE` wide (``hidden_size / HEAD_SIZE`` query heads, half as many key/value
    heads, at least one), so vLLM's CPU engine can serve it.
    """
    if hidden_size % HEAD_SIZE:
        raise ValueError(f"hidden_size must be a multiple of {HEAD_SIZE} (vLLM's CPU head sizes), got {hidden_size}")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        padding_side="left",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=hidden_size // HEAD_SIZE,
        num_key_value_heads=max(1, hidden_size // HEAD_SIZE // 2),
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
    )
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path
