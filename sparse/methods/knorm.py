"""Knorm (Devoto et al., arXiv 2406.11430): keys with a low L2 norm draw high attention, so
keep the region keys of smallest norm per KV head (KVPress's KnormPress: score = -||k||)."""

from __future__ import annotations

import torch

from ..kv_cache import KVContext, KVSettings
from ..registry import register_kv_method


@register_kv_method("knorm", settings=KVSettings)
def knorm_score(ctx: KVContext) -> torch.Tensor:
    return -ctx.key.float().norm(dim=-1)
