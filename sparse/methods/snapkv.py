"""SnapKV (Li et al., arXiv 2404.14469): the last `window_size` region queries (the observation
window) vote for the earlier region keys by their mean attention, smoothed by a 1-D average
pool so neighbours of a hit survive with it; the window itself is always kept.

As KVPress's SnapKVPress: softmax over the whole region (the window causal inside itself),
average pool with zero padding counted, votes averaged over each KV head's query group
(GQA), and a window of min(window_size, R - 1) tokens (KVPress refuses a region no longer
than the window). When n_keep is smaller than the window, the earliest window tokens are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kv_cache import KVContext, KVSettings
from ..registry import register_kv_method


@dataclass(frozen=True)
class SnapKVSettings(KVSettings):
    """`window_size` observation queries (KVPress 64) and the pooling `kernel_size` (odd; KVPress 5)."""

    window_size: int = 64
    kernel_size: int = 5

    def __post_init__(self):
        super().__post_init__()
        for name in ("window_size", "kernel_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (a centred pool), got {self.kernel_size}")


def window_votes(ctx: KVContext, window_size: int, kernel_size: int) -> torch.Tensor:
    """Float [B, Hkv, R]: SnapKV's pooled votes of the observation window, +inf on the window."""
    B, Hkv, R, _ = ctx.key.shape
    window = min(window_size, R - 1)
    votes = ctx.attention_rows(R - window, R)[..., : R - window].mean(-2)  # [B, Hq, R - window]
    pooled = torch.nn.functional.avg_pool1d(votes.reshape(-1, 1, R - window), kernel_size, stride=1,
                                            padding=kernel_size // 2)
    pooled = pooled.view(B, Hkv, ctx.group, R - window).mean(2)
    return torch.cat([pooled, torch.full((B, Hkv, window), float("inf"), device=pooled.device)], dim=-1)


@register_kv_method("snapkv", settings=SnapKVSettings)
def snapkv_score(ctx: KVContext) -> torch.Tensor:
    return window_votes(ctx, ctx.settings.window_size, ctx.settings.kernel_size)
