"""Reference and baseline selections: full, window, oracle top-k, random.

`oracle` keeps the exact top-k blocks by the same block score STREAM
approximates (O(T^2) work, chunked); STREAM's recall is measured against it.
`random` is the null baseline: what any k-block pattern does to the answers.
"""

from __future__ import annotations

import torch

from .layout import SelectionContext
from .registry import register_sparse_method


@register_sparse_method("full", keeps_all=True)
def full_select(ctx: SelectionContext) -> torch.Tensor:
    """Every causal block (ignores k): exact full attention through the sparse path."""
    n = ctx.layout.n_kblocks
    kb = torch.arange(n, device=ctx.device)
    sel = torch.where(kb[None, :] <= ctx.diag[:, None], kb[None, :], torch.full((1, n), -1, device=ctx.device))
    return sel[None, None].expand(ctx.batch, ctx.q_heads, -1, -1).contiguous()


@register_sparse_method("window")
def window_select(ctx: SelectionContext) -> torch.Tensor:
    """Attention sink (block 0) plus the most recent blocks, the diagonal included."""
    kb = torch.arange(ctx.layout.n_kblocks, device=ctx.device, dtype=torch.float32)
    out = []
    for rows in ctx.chunks(ctx.layout.n_kblocks):
        recency = kb[None, :].expand(ctx.diag[rows].shape[0], -1).clone()
        if ctx.cfg.k >= 2:
            recency[:, 0] = float(ctx.layout.n_kblocks)  # sink outranks every local block
        out.append(ctx.keep_top(rows, recency[None, None]))
    return torch.cat(out, dim=2)


@register_sparse_method("oracle")
def oracle_select(ctx: SelectionContext) -> torch.Tensor:
    """Exact top-k blocks by block score (max q.k): the target STREAM approximates."""
    lay = ctx.layout
    out = []
    for rows in ctx.chunks(lay.block_q * lay.n_kblocks * lay.block_k):
        out.append(ctx.keep_top(rows, ctx.dense_block_scores(rows)))
    return torch.cat(out, dim=2)


@register_sparse_method("random")
def random_select(ctx: SelectionContext) -> torch.Tensor:
    """Diagonal plus k-1 causal blocks drawn uniformly (seeded by cfg.seed)."""
    gen = torch.Generator(device="cpu").manual_seed(ctx.cfg.seed)
    shape = (ctx.batch, ctx.q_heads, ctx.layout.n_qblocks, ctx.layout.n_kblocks)
    noise = torch.rand(shape, generator=gen).to(ctx.device)
    out = []
    for rows in ctx.chunks(ctx.layout.n_kblocks):
        out.append(ctx.keep_top(rows, noise[:, :, rows]))
    return torch.cat(out, dim=2)
