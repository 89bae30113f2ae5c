"""STREAM: hierarchical top-k block search (seed paper section 3.2, after HiP).

For query block i the causal candidates are key blocks 0..d (d = diagonal). The
diagonal is always kept and counts towards k; with `sink_blocks` S and
`local_blocks` L (HiP's attention sink and local window, `SparseConfig`) the first
S blocks and the L blocks ending at the diagonal are also kept, outside k. If there
are at most S + max(L, 1) + k - 1 causal blocks, all are kept. Otherwise the other
k-1 blocks are found by a branch search over the blocks between the sink and the
local window, [S, d - max(L, 1) + 1) (with S = L = 0: the off-diagonal blocks 0..d-1):

1. split that range into k-1 contiguous branches of (near) equal size;
2. every iteration splits each branch into two halves (a one-block branch stays
   whole), scores every half by its *representative* key block, and keeps the k-1
   best halves;
3. stop when every branch is a single block; those blocks are the selection.

**Score.** A half is scored by its middle block m (the lower middle for even
sizes): max over the query block's queries q and block m's keys x of q.x, with the
causal and padding masks applied. The max (not the mean) is used because a single
strongly attended key is what attention, and a tracer built on it, must not lose;
the middle block is the least biased single probe of a contiguous range. At the
last level every half is one block, so the final comparison uses exact block
scores.

Cost: each iteration scores 2(k-1) blocks per query block and there are
ceil(log2(d / (k-1))) iterations, so time is O(T k b_k log T) and the working
memory O(T k b_k) per chunk; no T x T tensor exists. The search is vectorised
over batch, heads and query blocks, chunked over query blocks. It uses no
randomness: ties resolve by position, so the selection is deterministic.
"""

from __future__ import annotations

import torch

from ..layout import SelectionContext, sort_selection
from ..registry import register_sparse_method


@register_sparse_method("stream")
def stream_select(ctx: SelectionContext) -> torch.Tensor:
    """Hierarchical branch search (STREAM/HiP): O(T log T) time, O(T k) memory."""
    return torch.cat([stream_rows(ctx, rows, ctx.cfg.k, ctx.width) for rows in ctx.chunks(_per_block(ctx, ctx.cfg.k))],
                     dim=2)


def _per_block(ctx: SelectionContext, k: int) -> int:
    """Score elements per query block and search step: 2(k-1) candidate blocks of b_q x b_k."""
    return 2 * max(k - 1, 1) * ctx.layout.block_k * (ctx.layout.block_q + ctx.head_dim)


def stream_rows(ctx: SelectionContext, rows: slice, k: int, width: int) -> torch.Tensor:
    """STREAM's selection [B, H, C, width] for query blocks `rows`, searching k - 1 blocks
    besides the reserved ones (sink, local, diagonal); -1 padded to `width`."""
    cfg = ctx.cfg
    B, H = ctx.batch, ctx.q_heads
    diag = ctx.diag[rows]  # [C]
    C = diag.shape[0]
    sink, local = cfg.sink_blocks, max(cfg.local_blocks, 1)
    branches = k - 1
    rank = torch.arange(width, device=ctx.device)
    # Rows with at most reserved + k - 1 causal blocks keep them all.
    keep_all = torch.where(rank[None, :] <= diag[:, None], rank[None, :], torch.full((C, width), -1, device=ctx.device))
    sel = keep_all[None, None].expand(B, H, C, width).clone()
    search = diag + 1 > sink + local + branches
    if bool(search.any()):
        hi = diag - local + 1  # the search covers [sink, hi): neither sink nor local blocks
        parts = [torch.arange(sink, device=ctx.device).expand(B, H, C, sink)]
        if branches > 0:
            parts.append(_branch_search(ctx, rows, sink, hi, branches))  # [B, H, C, branches]
        parts.append((hi[:, None] + torch.arange(local, device=ctx.device))[None, None].expand(B, H, C, local))
        picked = torch.cat(parts, dim=-1)
        picked = torch.nn.functional.pad(picked, (0, width - picked.shape[-1]), value=-1)
        sel = torch.where(search[None, None, :, None], picked, sel)
    return sort_selection(sel)


def _branch_search(ctx: SelectionContext, rows: slice, lo: int, hi: torch.Tensor, branches: int) -> torch.Tensor:
    """Best `branches` blocks among [lo, hi) per row (rows with fewer candidates than
    branches get garbage, which the caller discards)."""
    B, H = ctx.batch, ctx.q_heads
    m = torch.clamp(hi - lo, min=branches)  # candidates; clamp keeps garbage rows well-formed
    j = torch.arange(branches + 1, device=ctx.device)
    bounds = lo + (j[None, :] * m[:, None]) // branches  # [C, branches + 1]
    start = bounds[:, :-1][None, None].expand(B, H, -1, -1).contiguous()
    end = bounds[:, 1:][None, None].expand(B, H, -1, -1).contiguous()
    while bool(((end - start) > 1).any()):
        size = end - start
        left_size = (size + 1) // 2
        child_start = torch.cat([start, start + left_size], dim=-1)
        child_end = torch.cat([start + left_size, end], dim=-1)
        alive = child_end > child_start
        rep = child_start + (child_end - child_start - 1) // 2
        scores = ctx.block_scores(rows, torch.where(alive, rep, torch.full_like(rep, -1)))
        scores = torch.where(alive, scores, torch.full_like(scores, float("-inf")))
        # Dead children must lose to every live child, even a fully masked one.
        scores = torch.where(alive & torch.isneginf(scores), torch.full_like(scores, torch.finfo(scores.dtype).min), scores)
        # A stable sort makes ties go to the earlier child: deterministic selections.
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :branches]
        start = child_start.gather(-1, order)
        end = child_end.gather(-1, order)
    return start
