"""FlexPrefill (Lai et al., arXiv 2502.20766): a per-head choice between a query-aware
block pattern and the vertical-slash one, blocks ranked by cumulative attention.

FlexPrefill trusts block-pooled q.k only in heads where it predicts the true attention:

1. per head, the last query block Q^ (its real queries) takes its true causal softmax
   over all keys, block-pooled: a^_j = mean over Q^ of the attention on key block j;
2. the pooled estimate of the same row: b_j = softmax_j(mean(Q^) . mean(K_j) * D^-0.5)
   over the causal key blocks with a real key (means over real queries and keys);
3. sqrt(JSD(a^, b)) < `tau` (0.1; the Jensen-Shannon distance, natural log): the head is
   *query-aware*: every query block i scores key block j by the softmax over j of its
   pooled q.k, and the blocks covering `gamma` (0.9) of the row's mass form its set;
   otherwise *vertical-slash*: the vertical and slash lines of Q^'s attention (as in
   `sparse.methods.minference`), the fewest best columns covering `gamma` of the vertical
   mass and the fewest best offsets covering `gamma` of the slash mass; a block is in the
   set when one of those lines crosses it (mass > 0), and blocks score by the mass of all
   lines crossing them.

Differs from the original: FlexPrefill keeps exactly its covering set (with a minimum and
a maximum budget); flipbench compares methods at equal density, so each query block keeps
exactly the budget (`SparseConfig.kept`: the reserved sink/local/diagonal blocks first),
filled from the covering set first and then from the other blocks, each part ordered by
its score (ties to the earlier block): a set larger than the budget is clipped to its best
blocks, a smaller one is completed by the best blocks outside it. So tau acts through the
pattern choice, gamma through which blocks come first: in a query-aware head the covering
set is the best blocks of the row, so at a fixed budget gamma changes nothing there; in a
vertical-slash head it decides which lines' blocks are kept before any others. The first
block and the diagonal FlexPrefill always keeps are the reserved sink and diagonal blocks.
Cost: O(b_q T) for the estimate, O(T^2) chunked for the vertical-slash blocks, no T x T
tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layout import SelectionContext
from ..registry import register_sparse_method, settings_of
from .minference import last_query_attention, line_block_mass, line_scores, real_queries, tie_free_scores


def require_share(name: str, value, low: float, high: float, open_low: bool) -> None:
    """ValueError naming the setting unless `value` is a number in (low, high] or [low, high]."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not (value > low if open_low else value >= low) or value > high:
        interval = f"{'(' if open_low else '['}{low}, {high}]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


@dataclass(frozen=True)
class FlexPrefillSettings:
    """`gamma`: the attention mass a head's covering set must reach; `tau`: the largest
    Jensen-Shannon distance at which the pooled estimate is trusted (FlexPrefill's defaults)."""

    gamma: float = 0.9
    tau: float = 0.1

    def __post_init__(self):
        require_share("gamma", self.gamma, 0, 1, open_low=True)
        require_share("tau", self.tau, 0, 1, open_low=False)


def cumulative_cover(mass: torch.Tensor, share: float) -> torch.Tensor:
    """Bool like `mass`: along the last axis, the fewest largest entries whose sum reaches
    `share` of the total (ties to the earlier entry); nothing where the total is 0."""
    ordered, order = mass.sort(dim=-1, descending=True, stable=True)
    running = ordered.cumsum(-1)
    inside = (running - ordered) < share * running[..., -1:]
    return torch.zeros_like(inside).scatter_(-1, order, inside)


def covering_first(in_cover: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """`keep_top` scores: the covering set first, then the other blocks, each by mass."""
    return tie_free_scores(in_cover.to(mass.dtype), mass)


def pooled_block_attention(ctx: SelectionContext) -> torch.Tensor:
    """[B, Hq, n_qblocks, n_kblocks]: per query block, softmax over its causal key blocks
    holding a real key of mean(real queries) . mean(real keys) * D^-0.5 (0 elsewhere)."""
    B, Hq, Hkv, D = ctx.batch, ctx.q_heads, ctx.kv_heads, ctx.head_dim
    qreal = real_queries(ctx, ctx.qpos).to(ctx.qblocks.dtype)  # [B, nqb, bq]
    pooled_q = (ctx.qblocks * qreal[:, None, :, :, None]).sum(3) / qreal.sum(-1).clamp(min=1)[:, None, :, None]
    kreal = ctx.kvalid.to(ctx.kblocks.dtype)  # [B, nkb, bk]
    pooled_k = (ctx.kblocks * kreal[:, None, :, :, None]).sum(3) / kreal.sum(-1).clamp(min=1)[:, None, :, None]
    n_q = pooled_q.shape[2]
    logits = (pooled_q.reshape(B, Hkv, -1, D) @ pooled_k.transpose(-1, -2)).view(B, Hq, n_q, -1) * D ** -0.5
    kb = torch.arange(ctx.layout.n_kblocks, device=ctx.device)
    ok = (kb[None, :] <= ctx.diag[:, None])[None, None] & ctx.kvalid.any(-1)[:, None, None, :]
    attention = torch.softmax(logits.masked_fill(~ok, float("-inf")), dim=-1)
    return torch.where(ok.any(-1, keepdim=True), attention, torch.zeros_like(attention))


def jensen_shannon_distance(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sqrt(JSD(p, q)) along the last axis (natural log, 0 log 0 = 0)."""
    m = (p + q) / 2
    divergence = 0.5 * (torch.xlogy(p, p) - torch.xlogy(p, m) + torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1)
    return divergence.clamp(min=0).sqrt()


def last_block_attention(ctx: SelectionContext) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention [B, Hq, n, L], positions [n]) of the last query block's queries."""
    lay = ctx.layout
    start = (lay.first_qblock + lay.n_qblocks - 1) * lay.block_q
    return last_query_attention(ctx, lay.kv_len - max(start, lay.q_offset))


@register_sparse_method("flexprefill", settings=FlexPrefillSettings)
def flexprefill_select(ctx: SelectionContext) -> torch.Tensor:
    """Query-aware or vertical-slash per head (Jensen-Shannon test), covering set first."""
    settings = settings_of(ctx.cfg)
    lay = ctx.layout
    attention, positions = last_block_attention(ctx)
    n_real = real_queries(ctx, positions).sum(-1).clamp(min=1)  # [B]
    true_pooled = attention.sum(2).view(ctx.batch, ctx.q_heads, lay.n_kblocks, lay.block_k).sum(-1)
    true_pooled = true_pooled / n_real[:, None, None].to(true_pooled.dtype)
    pooled = pooled_block_attention(ctx)
    query_aware = jensen_shannon_distance(true_pooled, pooled[:, :, -1]) < settings.tau  # [B, Hq]
    vertical, slash = line_scores(attention, positions)
    covered_vertical = vertical * cumulative_cover(vertical, settings.gamma)
    covered_slash = slash * cumulative_cover(slash, settings.gamma)
    out = []
    for rows in ctx.chunks(lay.block_q * lay.n_kblocks * lay.block_k):
        aware = covering_first(cumulative_cover(pooled[:, :, rows], settings.gamma), pooled[:, :, rows])
        in_lines = line_block_mass(ctx, rows, covered_vertical, covered_slash) > 0
        lines = covering_first(in_lines, line_block_mass(ctx, rows, vertical, slash))
        out.append(ctx.keep_top(rows, torch.where(query_aware[:, :, None, None], aware, lines)))
    return torch.cat(out, dim=2)
