"""H2O, the Heavy-Hitter Oracle (Zhang et al., arXiv 2306.14048), written from the paper only
(its code has no licence and was not read): a token's importance is the attention it has
accumulated from the queries after it; the cache keeps the heavy hitters and the most recent
tokens, an equal share each in the paper's experiments (10% + 10% for a 20% cache).

Applied once to the prefilled region (the paper evicts greedily while decoding): the scores
are the region's dense causal attention summed over its queries, chunked over queries (never
R x R at once), averaged over each KV head's query group (GQA). With `normalize` each sum is
divided by the number of queries that see the key, and with `recent_ratio=0` no recent
window is reserved: that is KVPress's ObservedAttentionPress.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kv_cache import KVContext, KVSettings
from ..registry import register_kv_method


@dataclass(frozen=True)
class H2OSettings(KVSettings):
    """`recent_ratio`: the share of the budget kept for the latest tokens (the paper's 0.5);
    `normalize`: mean instead of summed attention (KVPress)."""

    recent_ratio: float = 0.5
    normalize: bool = False

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.recent_ratio, bool) or not isinstance(self.recent_ratio, (int, float)) \
                or not 0 <= self.recent_ratio <= 1:
            raise ValueError(f"recent_ratio must be a number in [0, 1], got {self.recent_ratio!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be true or false, got {self.normalize!r}")


def accumulated_attention(ctx: KVContext, normalize: bool) -> torch.Tensor:
    """Float [B, Hkv, R]: attention each region key receives, summed over the region's queries
    (divided by how many real queries see it when `normalize`), averaged over the query group."""
    B, Hkv, R, _ = ctx.key.shape
    total = torch.zeros(B, Hkv * ctx.group, R, device=ctx.key.device)
    for start, stop in ctx.query_chunks():
        total += ctx.attention_rows(start, stop).sum(-2)
    if normalize:
        real = torch.ones(B, R, device=total.device) if ctx.padding is None else ctx.padding.float()
        seen_by = real.flip(-1).cumsum(-1).flip(-1).clamp(min=1)  # real queries at or after each key
        total = total / seen_by[:, None]
    return total.view(B, Hkv, ctx.group, R).mean(2)


@register_kv_method("h2o", settings=H2OSettings)
def h2o_score(ctx: KVContext) -> torch.Tensor:
    scores = accumulated_attention(ctx, ctx.settings.normalize)
    n_recent = int(ctx.n_keep * ctx.settings.recent_ratio)
    if n_recent:
        scores[..., -n_recent:] = float("inf")
    return scores
