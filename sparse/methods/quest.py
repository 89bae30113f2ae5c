"""`quest`: query-aware page selection by an upper bound of q.k (Quest, Tang et al., arXiv 2406.10774).

Quest keeps, per KV head and page of keys, the elementwise minimum m and maximum M of the
page's keys. For a query q, sum_d max(q_d M_d, q_d m_d) bounds q.x from above for every
key x of the page, so a page holding one key aligned with q scores at least that key's
q.x: Quest's "criticality" of the page. Here a page is a key block; a query block scores
a page by the largest bound over its queries (each query head uses its KV head's m and
M), and keeps the diagonal, the reserved sink and local blocks and the k - 1 best causal
pages (`SelectionContext.keep_top`).

Since M >= m, max(q_d M_d, q_d m_d) is q_d M_d where q_d >= 0 and q_d m_d elsewhere: the
bound is relu(q).M + min(q, 0).m, two matrix products, no [.., D] intermediate. Padding
keys and slots past the sequence end never enter m and M; a page without a real key
scores -inf. Padding queries do not vote in the query block's maximum (`block-mean`'s
`real_queries`). Causality is at page level (pages after the diagonal are not candidates),
as Quest's decode step sees only past pages. The bound table is [B, Hq, C, n_kblocks]
per chunk of C query blocks; no T x T tensor.

Quest selects pages for decoding queries; applying it to every prefill query block is our
use. Quest's own defaults (page size 16, the first two layers dense) map onto
`SparseConfig.block_k` and `dense_layers`; its token budget onto k.
"""

from __future__ import annotations

import torch

from ..layout import SelectionContext
from ..registry import register_sparse_method
from .block_mean import real_queries


def page_bounds(ctx: SelectionContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise (min, max) of each page's real keys, [B, Hkv, n_kblocks, D] each
    (0 on pages without a real key, whose scores the caller masks)."""
    real = ctx.kvalid[:, None, :, :, None]  # [B, 1, nkb, bk, 1]
    low = ctx.kblocks.masked_fill(~real, float("inf")).amin(-2)
    high = ctx.kblocks.masked_fill(~real, float("-inf")).amax(-2)
    empty = ~ctx.kvalid.any(-1)[:, None, :, None]
    return low.masked_fill(empty, 0.0), high.masked_fill(empty, 0.0)


@register_sparse_method("quest")
def quest_select(ctx: SelectionContext) -> torch.Tensor:
    """Top-k pages by Quest's upper bound of q.k, maximised over the query block."""
    lay = ctx.layout
    B, Hkv, D = ctx.batch, ctx.kv_heads, ctx.head_dim
    low, high = page_bounds(ctx)
    no_key = ~ctx.kvalid.any(-1)[:, None, None, :]  # [B, 1, 1, nkb]
    query_real = real_queries(ctx)[:, None, :, :, None]  # [B, 1, nqb, bq, 1]
    out = []
    for rows in ctx.chunks(lay.block_q * (lay.n_kblocks + D)):
        q = ctx.qblocks[:, :, rows]  # [B, Hq, C, bq, D]
        C = q.shape[2]
        grouped = q.reshape(B, Hkv, -1, D)  # each KV head's query group, C * bq queries per head
        bound = grouped.clamp(min=0) @ high.transpose(-1, -2) + grouped.clamp(max=0) @ low.transpose(-1, -2)
        bound = bound.view(B, ctx.q_heads, C, lay.block_q, lay.n_kblocks)
        scores = bound.masked_fill(~query_real[:, :, rows], float("-inf")).amax(dim=3)
        out.append(ctx.keep_top(rows, scores.masked_fill(no_key, float("-inf"))))
    return torch.cat(out, dim=2)
