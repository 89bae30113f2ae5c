"""XAttention (Xu et al., arXiv 2503.16428), from the paper only: blocks scored by strided
antidiagonals of the attention, kept by cumulative threshold.

XAttention's observation: in a block of the attention map, the antidiagonals (lower left
to upper right) cross every vertical line and every slash line of the block, so summing a
few of them finds the blocks that hold such patterns without computing the block:

1. within the blocks, the entries (query p, key c) with (p + c) mod S = S - 1 (absolute
   positions; stride S = 8 in the paper) are the antidiagonals sampled with stride S:
   each S x S tile contributes its antidiagonal, every query and key meets one per tile;
2. the sampled entries of a query block row, causal (c <= p) and not padding, take one
   softmax of q.k * D^-0.5 over the whole row (the strided estimate of its attention);
   a key block's score is the sum of its entries' share, so a row's scores sum to 1;
3. the blocks whose cumulative score reaches `tau` (0.9), best first, form the row's set.

S must tile the blocks (the paper's block sizes are multiples of S); with block sizes
that are not multiples of S the stride used is gcd(S, b_q, b_k), the largest one that
still tiles both, so every block holds whole strided tiles.

Differs from the original: XAttention keeps exactly its threshold set; flipbench compares
methods at equal density, so each query block keeps exactly the budget
(`SparseConfig.kept`: the reserved sink/local/diagonal blocks first), filled as in
`sparse.methods.flexprefill`: the threshold set first, then the other blocks, each by
score (ties to the earlier block). The threshold set is the row's best blocks, so at a
fixed budget the kept blocks are the best by score whatever tau: tau sets how many the
paper would keep, which the equal-density comparison replaces by the budget. Cost:
O(T^2 / S), chunked over query blocks; no T x T tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..layout import SelectionContext
from ..registry import register_sparse_method, settings_of
from .flexprefill import covering_first, cumulative_cover, require_share
from .minference import real_queries, require_int


@dataclass(frozen=True)
class XAttentionSettings:
    """`stride`: the antidiagonal sampling stride S; `tau`: the cumulative score threshold
    (XAttention's defaults)."""

    stride: int = 8
    tau: float = 0.9

    def __post_init__(self):
        require_int("stride", self.stride, 1)
        require_share("tau", self.tau, 0, 1, open_low=True)


def antidiagonal_block_scores(ctx: SelectionContext, rows: slice, stride: int) -> torch.Tensor:
    """[B, Hq, C, n_kblocks]: per query block of `rows`, the share of its strided softmax on
    each key block (`stride` divides b_q and b_k)."""
    lay = ctx.layout
    B, Hq, Hkv, D, S = ctx.batch, ctx.q_heads, ctx.kv_heads, ctx.head_dim, stride
    L = lay.n_kblocks * lay.block_k
    M = L // S
    q = ctx.qblocks[:, :, rows]  # [B, Hq, C, bq, D]; query t of a block has residue t mod S
    C, R = q.shape[2], lay.block_q // S
    q = q.reshape(B, Hkv, ctx.group, C, R, S, D).transpose(4, 5)  # [B, Hkv, g, C, S(u), R, D]
    # Residue u queries meet the keys of residue S - 1 - u: key m * S + S - 1 - u.
    keys = ctx.kblocks.reshape(B, Hkv, M, S, D).flip(3).transpose(2, 3)  # [B, Hkv, S(u), M, D]
    logits = (q @ keys[:, :, None, None].transpose(-1, -2)).view(B, Hq, C, S, R, M) * D ** -0.5
    qpos = ctx.qpos[rows].view(C, R, S).transpose(1, 2)  # [C, S, R]
    residue = torch.arange(S, device=ctx.device)
    kpos = torch.arange(M, device=ctx.device)[None, :] * S + (S - 1 - residue)[:, None]  # [S, M]
    ok = (kpos[None, :, None, :] <= qpos[..., None])[None]  # [1, C, S, R, M]
    ok = ok & real_queries(ctx, qpos)[..., None] & ctx.kvalid.reshape(B, L)[:, kpos][:, None, :, None, :]
    logits = logits.masked_fill(~ok[:, None], float("-inf")).flatten(3)
    share = torch.softmax(logits, dim=-1)
    share = torch.where(ok[:, None].flatten(3).any(-1, keepdim=True), share, torch.zeros_like(share))
    share = share.view(B, Hq, C, S * R, lay.n_kblocks, lay.block_k // S)
    return share.sum((3, 5))


@register_sparse_method("xattention", settings=XAttentionSettings)
def xattention_select(ctx: SelectionContext) -> torch.Tensor:
    """Blocks by strided antidiagonal score, the tau threshold set first."""
    settings = settings_of(ctx.cfg)
    lay = ctx.layout
    stride = math.gcd(settings.stride, lay.block_q, lay.block_k)
    out = []
    for rows in ctx.chunks(lay.block_q * lay.n_kblocks * lay.block_k // stride):
        scores = antidiagonal_block_scores(ctx, rows, stride)
        out.append(ctx.keep_top(rows, covering_first(cumulative_cover(scores, settings.tau), scores)))
    return torch.cat(out, dim=2)
