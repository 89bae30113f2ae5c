"""`hip`: HiP's hierarchical top-k search, each chunk represented by one key token
(Lee et al., "HiP Attention", arXiv 2406.09827; written from the paper's text only,
its code, FSL-1.1, was not read).

HiP splits the keys into k chunks, represents every chunk by a single token, and keeps
the top-k chunks; each level halves the kept chunks, scores every half by its own
representative token and keeps the top k halves, until the chunks are as small as the
search goes (one key block here, HiP's block approximation). The attention sink and the
local window are kept outside the search: `SparseConfig.sink_blocks` and `local_blocks`.

Budget and branches are STREAM's (`sparse/methods/stream.py`): the diagonal block counts
towards k, so k - 1 chunks search the blocks between the sink and the local window,
[S, d - max(L, 1) + 1), split into near-equal contiguous ranges of whole blocks; a query
block with at most reserved + k - 1 causal blocks keeps them all.

Where `hip` differs from `stream` (the seed says STREAM is "greatly inspired by HiP"):
- **Representative.** `stream` probes a range by its middle *block* (all b_k keys of it);
  `hip` by one *token*, the centre of the range's tokens, position
  floor((first + last) / 2). So a range whose strong key sits off that token looks weak to
  `hip` and strong to `stream`, and at the last level (one-block ranges) `hip` still
  compares blocks by one token each, where `stream` compares exact block scores.
- **Score.** The largest q.x over the query block's real queries q that may see that one
  token x (causal; a padding token scores -inf; padding queries do not vote, where
  `stream`'s block score counts them): HiP scores a query against the representative
  key; the maximum over the block's queries is our reading of its query block (block
  approximation), which the text does not spell out.
- **Sink and window defaults.** The HiP text we could read gives no default sizes for the
  sink and the window (we found the abstract and secondary summaries, not the method
  section), so `hip` has no settings of its own and takes the shared
  `sink_blocks`/`local_blocks`, 0 by default, exactly as `stream` does.
- **Ties** go to the earlier range (HiP's text states no tie rule; `stream` favours left
  halves first), which only matters between equal scores such as padding's.

Both keep the selection deterministic, vectorised over batch, heads and query blocks,
chunked over query blocks: each level scores 2(k - 1) tokens per query block, O(T k log T)
time, O(T k) memory per chunk, no T x T tensor.
"""

from __future__ import annotations

import torch

from ..layout import SelectionContext
from ..registry import register_sparse_method
from .block_mean import real_queries


@register_sparse_method("hip")
def hip_select(ctx: SelectionContext) -> torch.Tensor:
    """HiP's search with one representative token per chunk."""
    lay = ctx.layout
    per_block = 2 * max(ctx.cfg.k - 1, 1) * (lay.block_q + ctx.head_dim) + lay.n_kblocks
    return torch.cat([_hip_rows(ctx, rows) for rows in ctx.chunks(per_block)], dim=2)


def _hip_rows(ctx: SelectionContext, rows: slice) -> torch.Tensor:
    """Selection of query blocks `rows`: the searched chunks marked 1, handed to keep_top,
    which adds the reserved blocks (and keeps everything in rows without a search)."""
    cfg = ctx.cfg
    chunks = cfg.k - 1
    diag = ctx.diag[rows]
    sink, local = cfg.sink_blocks, max(cfg.local_blocks, 1)
    searched = diag + 1 > sink + local + chunks  # [C]
    marks = torch.zeros(ctx.batch, ctx.q_heads, diag.shape[0], ctx.layout.n_kblocks, device=ctx.device)
    if chunks > 0 and bool(searched.any()):
        found = _search(ctx, rows, sink, diag - local + 1, chunks)  # [B, H, C, chunks]
        marks.scatter_(-1, found.clamp(max=ctx.layout.n_kblocks - 1), 1.0)
        marks = marks * searched[None, None, :, None]
    return ctx.keep_top(rows, marks)


def _search(ctx: SelectionContext, rows: slice, lo: int, hi: torch.Tensor, n: int) -> torch.Tensor:
    """First blocks of the n chunks left after halving [lo, hi) down to single blocks
    (rows with fewer than n blocks in range give well-formed garbage the caller drops)."""
    B, H, bk = ctx.batch, ctx.q_heads, ctx.layout.block_k
    span = torch.clamp(hi - lo, min=n)
    edges = lo + (torch.arange(n + 1, device=ctx.device)[None, :] * span[:, None]) // n  # [C, n + 1]
    first = edges[:, :-1][None, None].expand(B, H, -1, -1)
    size = (edges[:, 1:] - edges[:, :-1])[None, None].expand(B, H, -1, -1)
    while bool((size > 1).any()):
        order = first.argsort(dim=-1)  # keep chunks in position order: ties go to the earlier
        first, size = first.gather(-1, order), size.gather(-1, order)
        half = (size + 1) // 2
        first = torch.stack([first, first + half], dim=-1).flatten(-2)  # children, in position order
        size = torch.stack([half, size - half], dim=-1).flatten(-2)
        centre = ((2 * first + size) * bk - 1) // 2  # middle token of the chunk's tokens
        score = _token_scores(ctx, rows, centre)
        score = torch.where(torch.isneginf(score), torch.full_like(score, torch.finfo(score.dtype).min), score)
        score = score.masked_fill(size == 0, float("-inf"))  # an empty half loses to every real one
        best = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :n]
        first, size = first.gather(-1, best), size.gather(-1, best)
    return first


def _token_scores(ctx: SelectionContext, rows: slice, token: torch.Tensor) -> torch.Tensor:
    """max over the real queries of query blocks `rows` that may see key position `token`
    [B, H, C, M] of q.key[token]; -inf where none may, or the token is padding."""
    B, H, C, M = token.shape
    lay = ctx.layout
    token = token.clamp(0, lay.kv_len - 1)
    n_keys = lay.n_kblocks * lay.block_k
    batch = torch.arange(B, device=ctx.device)[:, None, None, None]
    kv_head = (torch.arange(H, device=ctx.device) // ctx.group)[None, :, None, None]
    flat = (batch * ctx.kv_heads + kv_head) * n_keys + token
    keys = ctx.kblocks.reshape(-1, ctx.head_dim).index_select(0, flat.reshape(-1)).view(B, H, C, M, ctx.head_dim)
    scores = ctx.qblocks[:, :, rows] @ keys.transpose(-1, -2)  # [B, H, C, bq, M]
    qpos = ctx.qpos[rows]  # [C, bq]
    sees = (token[:, :, :, None, :] <= qpos[None, None, :, :, None]) & real_queries(ctx)[:, None, rows, :, None]
    key_real = ctx.kvalid.reshape(B, -1).gather(1, token.reshape(B, -1)).view(B, H, C, 1, M)
    return scores.masked_fill(~(sees & key_real), float("-inf")).amax(dim=3)
