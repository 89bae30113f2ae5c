"""PyramidKV (Cai et al., arXiv 2406.02069): attention funnels from broad in lower layers to a
few tokens in higher ones, so lower layers keep more of the region. SnapKV's scoring with a
linear pyramid of per-layer budgets over the sparse layers: the top sparse layer keeps
n_keep / beta, the lowest 2 n_keep - n_keep / beta (capped at R, the top raised to keep the
mean), rounded so the mean over the sparse layers is exactly n_keep (the budget every method
is compared at). KVPress's PyramidKVPress sizes its pyramid from the compression ratio and
window instead and falls back to SnapKV for short inputs; we keep the density contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..kv_cache import KVContext
from ..registry import register_kv_method, settings_of
from .snapkv import SnapKVSettings, window_votes


@dataclass(frozen=True)
class PyramidKVSettings(SnapKVSettings):
    """SnapKV's settings plus `beta`, the pyramid's steepness (the paper's and KVPress's 20)."""

    beta: float = 20.0

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or self.beta < 1:
            raise ValueError(f"beta must be a number >= 1, got {self.beta!r}")


def pyramid_budgets(n_keep: int, n_layers: int, region: int, beta: float) -> list[int]:
    """Region tokens kept by each of `n_layers` sparse layers (lowest first): linear from the
    largest to n_keep / beta (at least 1), each in [1, region], summing to n_layers * n_keep
    (largest remainders round up, lower layers first on a tie)."""
    if n_layers == 1:
        return [n_keep]
    low = max(n_keep / beta, 1.0)
    high = 2 * n_keep - low
    if high > region:
        high, low = region, 2 * n_keep - region
    exact = [high - i * (high - low) / (n_layers - 1) for i in range(n_layers)]
    budgets = [math.floor(b + 1e-9) for b in exact]
    order = sorted(range(n_layers), key=lambda i: (-(exact[i] - budgets[i]), i))
    for i in order[: n_layers * n_keep - sum(budgets)]:
        budgets[i] += 1
    return budgets


def pyramid_budget(cfg, n_keep: int, layer: int, n_layers: int, region: int) -> int:
    """The budget of model layer `layer` (the sparse layers are dense_layers..n_layers-1)."""
    sparse_layers = n_layers - cfg.dense_layers
    return pyramid_budgets(n_keep, sparse_layers, region, settings_of(cfg).beta)[layer - cfg.dense_layers]


@register_kv_method("pyramidkv", settings=PyramidKVSettings, kept=pyramid_budget)
def pyramidkv_score(ctx: KVContext) -> torch.Tensor:
    return window_votes(ctx, ctx.settings.window_size, ctx.settings.kernel_size)
