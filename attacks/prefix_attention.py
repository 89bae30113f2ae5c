"""Full attention for a batch of prompts that share one cached prefix, without copying it.

Scoring N candidates through a transformers KV cache repeats the prefix's keys and
values N times per layer (the cache concatenates each candidate's new keys onto its
own copy, and grouped-query attention repeats them again per query head): for a
566-token prefix on smollm2 that copying was 38% of the scoring time. Here the
prefix stays one [1, kv_heads, P, head_dim] tensor per layer; each layer's queries
attend to it with the batch folded into the rows of one matrix product, attend
causally to their own tail keys, and the two parts are merged with a shared softmax
normaliser (exact attention, no approximation).

`shared_prefix_attention(model, layers)` switches the model's attention function
for the duration of a `with` block (through `sparse.attention_switch`); the caller
passes `position_ids` that continue after the prefix and no KV cache.
"""

from __future__ import annotations

import torch

from sparse.attention_switch import attention_switch


def attend_with_prefix(query, key, value, prefix_key, prefix_value, scaling: float) -> torch.Tensor:
    """Attention output [B, Hq, T, D] of tail queries over a shared prefix plus their own causal tail.

    query [B, Hq, T, D]; key, value [B, Hkv, T, D] (the tail); prefix_key, prefix_value
    [1, Hkv, P, D]."""
    B, Hq, T, D = query.shape
    Hkv = key.shape[1]
    G = Hq // Hkv
    q = query.reshape(B, Hkv, G, T, D)
    rows = q.permute(1, 0, 2, 3, 4).reshape(Hkv, B * G * T, D)
    s_prefix = torch.bmm(rows, prefix_key[0].transpose(1, 2)) * scaling  # [Hkv, BGT, P]
    s_tail = torch.einsum("bhgtd,bhsd->bhgts", q, key) * scaling  # [B, Hkv, G, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=query.device).tril()
    s_tail = s_tail.masked_fill(~causal, float("-inf"))
    top = torch.maximum(s_prefix.amax(-1).view(Hkv, B, G, T).permute(1, 0, 2, 3), s_tail.amax(-1))  # [B,Hkv,G,T]
    e_prefix = torch.exp(s_prefix - top.permute(1, 0, 2, 3).reshape(Hkv, B * G * T, 1))
    e_tail = torch.exp(s_tail - top[..., None])
    denom = e_prefix.sum(-1).view(Hkv, B, G, T).permute(1, 0, 2, 3) + e_tail.sum(-1)
    out_prefix = torch.bmm(e_prefix, prefix_value[0]).view(Hkv, B, G, T, -1).permute(1, 0, 2, 3, 4)
    out = (out_prefix + torch.einsum("bhgts,bhsd->bhgtd", e_tail, value)) / denom[..., None]
    return out.reshape(B, Hq, T, -1)


def shared_prefix_attention(model, layers: list[tuple[torch.Tensor, torch.Tensor]]):
    """Context manager running `model` with every layer attending to `layers[i]` = (keys,
    values) of a prefix (as a transformers cache stores them, positions already rotated)
    before its own tokens."""

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        prefix_key, prefix_value = layers[module.layer_idx]
        scale = query.shape[-1] ** -0.5 if scaling is None else scaling
        out = attend_with_prefix(query, key, value, prefix_key, prefix_value, scale)
        return out.transpose(1, 2).contiguous(), None

    def no_mask(*args, **kwargs):
        """Causality is applied inside `attention`; prompts of one batch are never padded."""
        return None

    return attention_switch(model, "flipbench_shared_prefix", attention, no_mask)
