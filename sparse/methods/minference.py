"""MInference's vertical-slash pattern (Jiang et al., arXiv 2407.02490), at equal density.

MInference observes that many heads attend along a few *vertical* lines (key columns every
query looks at, such as the first tokens) and *slash* lines (diagonals: keys at a fixed
distance behind the query), and that the last queries of a prompt reveal them:

1. the last `last_q` queries of the current sequence (64 in the paper; with a cached
   prefix only the current queries exist, so the last min(last_q, query length)) take a
   causal softmax of q.k * D^-0.5 over all keys, per query head, padding excluded:
   a last_q x T attention, never T x T;
2. the vertical score of key column c is the attention those queries put on c; the slash
   score of offset o is the attention they put on entries with query_pos - key_pos = o;
3. the `vertical_size` best columns and the `slash_size` best offsets are the pattern, the
   first `sink_columns` columns and the `recent_diagonals` most recent offsets forced in
   (MInference's defaults: 1000, 6096, 30, 100);
4. to blocks (our step): a (query block, key block) pair is scored by the estimated
   attention mass of the pattern's lines crossing it: for every query p of the block and
   key c <= p of the key block (not padding), the vertical score of c plus, if c lies on a
   pattern slash (offset p - c), that slash's score. An entry on both lines counts both.
   The estimate comes from the last queries only and is applied to every query block:
   that is the method.

Differs from the original: MInference computes the pattern's lines exactly (a sparse
kernel over columns and diagonals) and keeps every line it selected; flipbench compares
methods at equal density, so each query block keeps exactly the budget
(`SparseConfig.kept`: reserved sink/local/diagonal blocks, then the k - 1 best blocks by
the estimate; ties go to the earlier block). Cost: O(last_q T) for the estimate, O(T^2)
for the block mapping, chunked over query blocks like `SelectionContext.dense_block_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layout import SelectionContext
from ..registry import register_sparse_method, settings_of


def require_int(name: str, value, minimum: int) -> None:
    """ValueError naming the setting unless `value` is an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class MInferenceSettings:
    """MInference's vertical-slash settings (its defaults): the queries that estimate the
    pattern, how many columns and diagonals it keeps, and the ones it always keeps."""

    last_q: int = 64
    vertical_size: int = 1000
    slash_size: int = 6096
    sink_columns: int = 30
    recent_diagonals: int = 100

    def __post_init__(self):
        require_int("last_q", self.last_q, 1)
        for name in ("vertical_size", "slash_size", "sink_columns", "recent_diagonals"):
            require_int(name, getattr(self, name), 0)


def last_query_attention(ctx: SelectionContext, n_last: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention [B, Hq, n, L], positions [n]): the causal softmax of the last n current
    queries over all keys (L = n_kblocks * block_k; padding keys, positions past the end and
    the rows of padding queries get 0), n = min(n_last, query length)."""
    lay = ctx.layout
    n = min(n_last, lay.q_len)
    base = lay.first_qblock * lay.block_q
    B, Hq, Hkv, D = ctx.batch, ctx.q_heads, ctx.kv_heads, ctx.head_dim
    queries = ctx.qblocks.reshape(B, Hq, -1, D)[:, :, lay.kv_len - n - base: lay.kv_len - base]
    keys = ctx.kblocks.reshape(B, Hkv, -1, D)
    logits = (queries.reshape(B, Hkv, ctx.group * n, D) @ keys.transpose(-1, -2)).view(B, Hq, n, -1)
    positions = torch.arange(lay.kv_len - n, lay.kv_len, device=ctx.device)
    keypos = torch.arange(keys.shape[2], device=ctx.device)
    ok = (keypos[None, :] <= positions[:, None])[None, None] & ctx.kvalid.reshape(B, 1, 1, -1)
    ok = ok & real_queries(ctx, positions)[:, None, :, None]
    logits = logits.masked_fill(~ok, float("-inf")) * D ** -0.5
    attention = torch.softmax(logits, dim=-1)
    return torch.where(ok.any(-1, keepdim=True), attention, torch.zeros_like(attention)), positions


def real_queries(ctx: SelectionContext, positions: torch.Tensor) -> torch.Tensor:
    """Bool [B, *positions.shape]: a query exists there (-1: none) and is not padding."""
    real = ctx.kvalid.reshape(ctx.batch, -1)[:, positions.clamp(min=0).flatten()].view(ctx.batch, *positions.shape)
    return real & (positions >= 0)


def line_scores(attention: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(vertical [B, H, L], slash [B, H, L]): attention summed per key column, and per offset
    o = query_pos - key_pos (index o; non-causal entries hold 0 attention)."""
    L = attention.shape[-1]
    vertical = attention.sum(dim=2)
    offsets = (positions[:, None] - torch.arange(L, device=attention.device)[None, :]).clamp(0, L - 1)
    slash = torch.zeros_like(vertical).scatter_add_(
        -1, offsets.reshape(1, 1, -1).expand(*vertical.shape[:2], -1), attention.flatten(2))
    return vertical, slash


def top_lines(scores: torch.Tensor, size: int, forced: slice) -> torch.Tensor:
    """Bool [B, H, L]: the `size` best lines, the `forced` ones included whatever their score."""
    ranking = scores.clone()
    ranking[..., forced] = float("inf")
    size = min(size, scores.shape[-1])
    chosen = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return chosen.scatter_(-1, ranking.topk(size, dim=-1).indices, True) if size else chosen


def line_block_mass(ctx: SelectionContext, rows: slice, vertical: torch.Tensor, slash: torch.Tensor) -> torch.Tensor:
    """[B, Hq, C, n_kblocks]: per (query block, key block) of `rows`, the sum over its causal,
    non-padding (query p, key c) entries of vertical[c] + slash[p - c]."""
    lay = ctx.layout
    L = lay.n_kblocks * lay.block_k
    qpos = ctx.qpos[rows]  # [C, bq]
    keypos = torch.arange(L, device=ctx.device)
    offset = qpos[:, :, None] - keypos  # [C, bq, L]
    on_slash = slash[:, :, offset.clamp(0, L - 1)]  # [B, H, C, bq, L]
    mass = on_slash + vertical[:, :, None, None, :]
    ok = (offset >= 0)[None, None] & real_queries(ctx, qpos)[:, None, :, :, None]
    ok = ok & ctx.kvalid.reshape(ctx.batch, 1, 1, 1, L)
    mass = mass.masked_fill(~ok, 0.0).sum(dim=3)  # [B, H, C, L]
    return mass.view(*mass.shape[:3], lay.n_kblocks, lay.block_k).sum(-1)


def tie_free_scores(*keys: torch.Tensor) -> torch.Tensor:
    """Scores whose descending order ranks blocks by `keys` (each descending, the first
    deciding), ties to the earlier block: `keep_top` on them is deterministic."""
    order = torch.arange(keys[0].shape[-1], device=keys[0].device).expand(keys[0].shape).contiguous()
    for key in reversed(keys):
        order = order.gather(-1, key.gather(-1, order).sort(dim=-1, descending=True, stable=True).indices)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(order.shape[-1], device=order.device)
                                            .expand(order.shape).contiguous())
    return -rank.float()


def vertical_slash_pattern(ctx: SelectionContext) -> tuple[torch.Tensor, torch.Tensor]:
    """MInference's pattern lines, weighted by their scores (0 off the pattern)."""
    settings = settings_of(ctx.cfg)
    vertical, slash = line_scores(*last_query_attention(ctx, settings.last_q))
    vertical = vertical * top_lines(vertical, settings.vertical_size, slice(0, settings.sink_columns))
    slash = slash * top_lines(slash, settings.slash_size, slice(0, settings.recent_diagonals))
    return vertical, slash


@register_sparse_method("minference", settings=MInferenceSettings)
def minference_select(ctx: SelectionContext) -> torch.Tensor:
    """Blocks ranked by the mass of MInference's vertical-slash lines crossing them."""
    vertical, slash = vertical_slash_pattern(ctx)
    lay = ctx.layout
    out = []
    for rows in ctx.chunks(lay.block_q * lay.n_kblocks * lay.block_k):
        out.append(ctx.keep_top(rows, tie_free_scores(line_block_mass(ctx, rows, vertical, slash))))
    return torch.cat(out, dim=2)
