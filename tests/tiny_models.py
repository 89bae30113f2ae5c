"""Tiny randomly initialised causal LMs (Llama, Qwen2, Qwen3) for fast tests."""

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ARCHITECTURES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
}


def tiny_model(arch: str = "llama", kv_heads: int = 2, layers: int = 3, vocab: int = 128, seed: int = 0):
    """A float32 eval-mode model small enough to run in milliseconds."""
    config_cls, model_cls = ARCHITECTURES[arch]
    torch.manual_seed(seed)
    config = config_cls(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        head_dim=16,
        max_position_embeddings=4096,
        attn_implementation="sdpa",
        tie_word_embeddings=False,
    )
    return model_cls(config).eval()
