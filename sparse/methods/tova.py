"""TOVA (Oren et al., arXiv 2401.06104): the last token's attention, averaged over the layer's
heads, decides which tokens stay; the last token itself is kept. KVPress's TOVAPress scores the
same (one score for every KV head of a layer)."""

from __future__ import annotations

import torch

from ..kv_cache import KVContext, KVSettings
from ..registry import register_kv_method


@register_kv_method("tova", settings=KVSettings)
def tova_score(ctx: KVContext) -> torch.Tensor:
    B, Hkv, R, _ = ctx.key.shape
    last = ctx.attention_rows(R - 1, R)[:, :, 0].mean(1)  # [B, R]
    last[:, -1] = float("inf")
    return last[:, None].expand(B, Hkv, R)
