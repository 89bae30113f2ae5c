"""Random eviction: seeded uniform scores, the null of the kv-cache family (what keeping any
n_keep region tokens does to the answers), as `random` is for the prefill methods."""

from __future__ import annotations

import torch

from ..kv_cache import KVContext, KVSettings
from ..registry import register_kv_method


@register_kv_method("random-evict", settings=KVSettings)
def random_evict_score(ctx: KVContext) -> torch.Tensor:
    """Uniform scores from `SparseConfig.seed` and the layer (layers evict independently), one
    draw for every row of a batch: a prompt's eviction does not depend on its batch position
    (an attack scores candidates in batches and its row re-scores the winner alone)."""
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed * 1_000_003 + ctx.layer)
    batch, heads, tokens = ctx.key.shape[:3]
    return torch.rand((1, heads, tokens), generator=gen).to(ctx.key.device).expand(batch, -1, -1)
