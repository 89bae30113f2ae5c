"""`block-mean`: top-k key blocks by the dot product of mean-pooled queries and keys.

Query block i is summarised by the mean of its queries, key block j by the mean of its
keys, and the pair is scored by their dot product; the diagonal, the reserved sink and
local blocks and the k - 1 best causal blocks are kept (`SelectionContext.keep_top`).
This is MInference's block-sparse pattern estimate and the gate of MoBA (arXiv
2502.13189) or of NSA's compressed branch, here training-free: those gates are learnt
(MoBA and NSA are trained with them), so `block-mean` only approximates what a trained
gate would select. It is the cheapest content-aware baseline: one mean per block, one
small matrix product, where `oracle` looks at every query/key pair.

Means run over real positions only: query slots before `q_offset` or past the end, and
padding tokens (queries or keys), are left out; a block with no real key scores -inf
(kept only when nothing else is left). Causality is at block level: key blocks after
the diagonal are never candidates, and the diagonal block, which holds keys later than
some of the block's queries, is kept anyway. Scores [B, Hq, C, n_kblocks] per chunk of
query blocks; no T x T tensor.
"""

from __future__ import annotations

import torch

from ..layout import SelectionContext
from ..registry import register_sparse_method


def masked_mean(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of x [..., n, D] over the positions where `real` [..., n] is True (0 where none)."""
    weights = real.to(x.dtype)
    return (x * weights[..., None]).sum(-2) / weights.sum(-1, keepdim=True).clamp(min=1)


def real_queries(ctx: SelectionContext) -> torch.Tensor:
    """Bool [B, n_qblocks, b_q]: query slots that exist and are not padding tokens."""
    qpos = ctx.qpos  # [nqb, bq], -1 where no query exists
    not_padding = ctx.kvalid.reshape(ctx.batch, -1)[:, qpos.clamp(min=0)]  # a token's own padding flag
    return not_padding & (qpos >= 0)[None]


@register_sparse_method("block-mean")
def block_mean_select(ctx: SelectionContext) -> torch.Tensor:
    """Top-k blocks by mean query . mean key (MInference / MoBA-style pooled gate)."""
    lay = ctx.layout
    B, Hkv, group = ctx.batch, ctx.kv_heads, ctx.group
    key_mean = masked_mean(ctx.kblocks, ctx.kvalid[:, None])  # [B, Hkv, nkb, D]
    no_key = ~ctx.kvalid.any(-1)  # [B, nkb]
    query_real = real_queries(ctx)  # [B, nqb, bq]
    out = []
    for rows in ctx.chunks(lay.n_kblocks + ctx.head_dim):
        query_mean = masked_mean(ctx.qblocks[:, :, rows], query_real[:, None, rows])  # [B, Hq, C, D]
        C = query_mean.shape[2]
        grouped = query_mean.view(B, Hkv, group * C, ctx.head_dim)
        scores = (grouped @ key_mean.transpose(-1, -2)).view(B, ctx.q_heads, C, lay.n_kblocks)
        scores = scores.masked_fill(no_key[:, None, None, :], float("-inf"))
        out.append(ctx.keep_top(rows, scores))
    return torch.cat(out, dim=2)
