"""`stream-density`: STREAM with a number of kept blocks that grows with the position.

With a constant k, the last query blocks of a long text, which have the most causal
key blocks, keep the smallest share of them: the seed's section 4.2 finds retrieval
poor toward the end of texts longer than 8k tokens. Here query block i with n_i
causal blocks searches k_i - 1 blocks with k_i = max(k, ceil(density * n_i)), so
every position keeps about the same share (its setting `density`, rho), and at
least k (the floor k_min). Kept per query block: min(n_i, reserved + k_i - 1).

It is STREAM's own hierarchical search (`sparse.methods.stream.stream_rows`), run once per
group of consecutive query blocks sharing k_i (k_i never decreases along the
sequence, so groups are contiguous); registered like any user method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..layout import SelectionContext
from ..registry import get_sparse_method, register_sparse_method, settings_of
from .stream import _per_block, stream_rows


@dataclass(frozen=True)
class StreamDensitySettings:
    """`density`: the share of each query block's causal key blocks to keep (no default:
    it is the method's budget)."""

    density: float

    def __post_init__(self):
        if isinstance(self.density, bool) or not isinstance(self.density, (int, float)) or not 0 < self.density <= 1:
            raise ValueError(f"density must be a number in (0, 1], got {self.density!r}")


def adaptive_k(cfg, n_causal):
    """k_i for `n_causal` causal blocks (int or LongTensor): max(k, ceil(density * n_causal))."""
    density = settings_of(cfg).density
    if isinstance(n_causal, int):
        return max(cfg.k, math.ceil(density * n_causal - 1e-9))
    return torch.clamp(torch.ceil(density * n_causal.double() - 1e-9).long(), min=cfg.k)


def kept_blocks(cfg, n_causal):
    """Blocks kept for `n_causal` causal blocks: min(n, reserved + k_i - 1)."""
    limit = cfg.reserved_blocks + adaptive_k(cfg, n_causal) - 1
    if isinstance(n_causal, int):
        return min(n_causal, limit)
    return torch.minimum(n_causal, limit)


@register_sparse_method("stream-density", kept=kept_blocks, settings=StreamDensitySettings)
def stream_density_select(ctx: SelectionContext) -> torch.Tensor:
    """STREAM keeping a constant share of each query block's causal blocks (floor k)."""
    width = int(kept_blocks(ctx.cfg, ctx.layout.n_kblocks))
    ks = adaptive_k(ctx.cfg, ctx.diag + 1).tolist()
    out = []
    start = 0
    while start < len(ks):
        end = start
        while end < len(ks) and ks[end] == ks[start]:
            end += 1
        step = max(1, ctx.chunk_rows(_per_block(ctx, ks[start])))
        for lo in range(start, end, step):
            out.append(stream_rows(ctx, slice(lo, min(lo + step, end)), ks[start], width))
        start = end
    return torch.cat(out, dim=2)


def total_kept(cfg, method: str, n_qblocks: int) -> int:
    """Key blocks kept over a sequence of `n_qblocks` query blocks (block_q == block_k,
    no cached prefix): the per-layer, per-head compute of a method at this length."""
    n_causal = torch.arange(1, n_qblocks + 1)
    return int(torch.as_tensor(get_sparse_method(method).kept(cfg, n_causal)).sum())


def matched_density(cfg, n_qblocks: int, k_min: int = 2, tol: float = 1e-4) -> float:
    """The smallest rho at which `stream-density` (floor `k_min`) keeps at least as many
    blocks in all as fixed-k STREAM at `cfg.k` over `n_qblocks` query blocks: the
    equal-compute comparison of a position-adaptive k against a constant one."""
    target = total_kept(cfg, "stream", n_qblocks)
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        adaptive = cfg.replace(method="stream-density", k=k_min, settings=StreamDensitySettings(mid))
        if total_kept(adaptive, "stream-density", n_qblocks) >= target:
            hi = mid
        else:
            lo = mid
    return hi
