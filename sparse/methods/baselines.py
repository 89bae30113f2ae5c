"""Reference and baseline selections: full, window, oracle top-k, random.

`oracle` keeps the exact top-k blocks by the same block score STREAM
approximates (O(T^2) work, chunked); STREAM's recall is measured against it.
`random` is the null baseline: what any k-block pattern does to the answers.
`drop-one` is a non-sparsity null: all blocks but one random one.
"""

from __future__ import annotations

import torch

from ..layout import SelectionContext, reserved_mask, sort_selection
from ..registry import register_sparse_method


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


def _block_noise(ctx: SelectionContext) -> torch.Tensor:
    """Uniform noise [B, Hq, n_qblocks, n_kblocks] seeded by cfg.seed: one draw serves every
    row of a batch, so a prompt's selection does not depend on its batch position (an attack
    scores candidates in batches and its row re-scores the winner alone)."""
    gen = torch.Generator(device="cpu").manual_seed(ctx.cfg.seed)
    shape = (1, ctx.q_heads, ctx.layout.n_qblocks, ctx.layout.n_kblocks)
    return torch.rand(shape, generator=gen).to(ctx.device).expand(ctx.batch, -1, -1, -1)


@register_sparse_method("random")
def random_select(ctx: SelectionContext) -> torch.Tensor:
    """Diagonal plus k-1 causal blocks drawn uniformly (seeded by cfg.seed)."""
    noise = _block_noise(ctx)
    out = []
    for rows in ctx.chunks(ctx.layout.n_kblocks):
        out.append(ctx.keep_top(rows, noise[:, :, rows]))
    return torch.cat(out, dim=2)


def _all_but_one(cfg, n_causal):
    """Every causal block but one, when a block outside the reserved ones exists."""
    if isinstance(n_causal, int):
        return n_causal - 1 if n_causal > cfg.reserved_blocks else n_causal
    return torch.where(n_causal > cfg.reserved_blocks, n_causal - 1, n_causal)


@register_sparse_method("drop-one", kept=_all_but_one)
def drop_one_select(ctx: SelectionContext) -> torch.Tensor:
    """Every causal block but one drawn at random outside the reserved ones (seeded by
    cfg.seed): a non-sparsity null control. A flip here says the answer was fragile to
    any small perturbation of attention, not that sparsity removed information."""
    nkb = ctx.layout.n_kblocks
    noise = _block_noise(ctx)
    kb = torch.arange(nkb, device=ctx.device)
    causal = kb[None, :] <= ctx.diag[:, None]
    droppable = causal & ~reserved_mask(ctx.cfg, ctx.diag, nkb)
    noise = noise.masked_fill(~droppable, -1.0)
    dropped = noise.argmax(-1, keepdim=True)  # [B, H, nqb, 1]
    has_choice = droppable.any(-1)[None, None, :, None]
    keep = causal[None, None] & ~((kb == dropped) & has_choice)
    sel = sort_selection(torch.where(keep, kb, torch.full_like(kb, -1)))
    return sel[..., : int(_all_but_one(ctx.cfg, nkb))].contiguous()
