"""Random eviction: seeded uniform scores, the null of the kv-cache family (what keeping any
n_keep region tokens does to the answers), as `random` is for the prefill methods."""

from __future__ import annotations

import torch

from ..kv_cache import KVContext, KVSettings
from ..registry import register_kv_method


@register_kv_method("random-evict", settings=KVSettings)
def random_evict_score(ctx: KVContext) -> torch.Tensor:
    """Uniform scores from `SparseConfig.seed` and the layer (layers evict independently)."""
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed * 1_000_003 + ctx.layer)
    return torch.rand(ctx.key.shape[:3], generator=gen).to(ctx.key.device)
