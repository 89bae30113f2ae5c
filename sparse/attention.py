"""Block-sparse softmax attention over a block selection, plus the dense path.

`block_sparse_attention` restricts every query to the key blocks its head's
selection keeps (causal at token level, so the diagonal block is triangular), with
plain PyTorch ops: differentiable on CPU (GCG takes gradients through it) and
GQA-aware. Two exact implementations:
- with gradients on short sequences (GCG's gradient pass): one SDPA call with K and V
  shared by each KV head's query group and a token mask built from the selection; no
  per-query-head copy of the keys, and its backward is 1.3-1.5x faster than the
  gather's at GCG's shapes (docs/performance.md);
- otherwise (inference, where gathering measured faster, and long sequences): gather,
  per query block, the kept key/value blocks and softmax over them, in chunks of
  query blocks: memory O(T k b_k), never a T x T tensor. The blocks are gathered per
  query head, or once per KV head when its query group keeps (almost) the same blocks
  (`_gathered_attention`).
Rows with no visible key (padding) output zeros instead of NaN so a padded batch
never poisons real tokens.
"""

from __future__ import annotations

import torch

from .config import SparseConfig
from .layout import CHUNK_ELEMENTS, LOOP_CHUNK_ELEMENTS, checked_layout, sort_selection, to_blocks


def _safe_softmax_weighted(scores: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """softmax(scores) @ values where fully masked rows give 0 rather than NaN."""
    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isneginf(row_max), torch.zeros_like(row_max), row_max).detach()
    weights = torch.exp(scores - row_max)
    denom = weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    return (weights / denom) @ values


def block_sparse_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    selection: torch.Tensor,
    cfg: SparseConfig,
    q_offset: int = 0,
    key_padding_mask: torch.Tensor | None = None,
    scaling: float | None = None,
) -> torch.Tensor:
    """Attention output [B, Hq, Tq, D] restricted to the selected key blocks.

    `selection` is what `select_blocks` returns for the same query/key/cfg/q_offset.
    `key_padding_mask` [B, Tk] is True on real tokens. `scaling` defaults to D^-0.5.
    """
    lay = checked_layout(query, key, selection, cfg, q_offset)
    B, Hq, Tq, D = query.shape
    scaling = D**-0.5 if scaling is None else scaling
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    if needs_grad and B * Hq * Tq * key.shape[2] <= CHUNK_ELEMENTS:
        return _masked_attention(query, key, value, selection, lay, key_padding_mask, scaling)
    return _gathered_attention(query, key, value, selection, lay, key_padding_mask, scaling)


def _token_mask(selection: torch.Tensor, lay, key_padding_mask: torch.Tensor | None, tq: int) -> torch.Tensor:
    """Bool [B, Hq, Tq, Tk]: the keys each query token may see under `selection`."""
    device = selection.device
    nkb = lay.n_kblocks
    blocks = torch.zeros(*selection.shape[:3], nkb + 1, dtype=torch.bool, device=device)
    blocks.scatter_(-1, torch.where(selection >= 0, selection, nkb), True)  # -1 lands in a spare column
    qpos = torch.arange(lay.q_offset, lay.kv_len, device=device)
    kpos = torch.arange(lay.kv_len, device=device)
    qblock = (torch.arange(tq, device=device) + lay.q_pad_front) // lay.block_q
    mask = blocks[:, :, qblock][..., kpos // lay.block_k] & (kpos[None, :] <= qpos[:, None])
    if key_padding_mask is not None:
        mask = mask & key_padding_mask.bool()[:, None, None, :]
    return mask


def _masked_attention(query, key, value, selection, lay, key_padding_mask, scaling) -> torch.Tensor:
    """SDPA over each KV head shared by its query group, with the selection as a token mask."""
    mask = _token_mask(selection, lay, key_padding_mask, query.shape[2])
    seen = mask.any(-1, keepdim=True)  # rows with no visible key: attend anywhere, then output 0
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask | ~seen, scale=scaling, enable_gqa=query.shape[1] != key.shape[1]
    )
    return out.masked_fill(~seen, 0.0)


# `_gathered_attention` gathers per KV head when a query group's union is at most this many
# times the selection width and the selection holds at least this many blocks (fewer: the
# union's set-up costs more than it saves).
UNION_MAX_RATIO = 1.1
UNION_MIN_BLOCKS = 512


def _gathered_attention(query, key, value, selection, lay, key_padding_mask, scaling) -> torch.Tensor:
    """Gather the kept key/value blocks and softmax over them, in chunks: per KV head when its
    query group keeps (almost) the same blocks, else per query head.

    Per (batch, KV head, query block), gathering per query head copies G*W blocks and scores
    each query against its head's W; gathering the union of the group's blocks (U) copies U
    blocks once but scores every query of the group against all U, so it pays only when U is
    close to W, as with full, window and drop-one selections. Measured (benchmarks/sparse_layer.py,
    one thread): at U/W = 1 it is faster from batch 4 at GCG's SmolLM2 shapes and 1.9-3.5x faster
    at Qwen2.5's on 2k-4k tokens; at U/W = 1.25 (a real SmolLM2 STREAM layer) it was slower at
    batch 1 and 64. STREAM's per-head selections measured U/W = 1.25-3.3 on SmolLM2 and
    Qwen2.5-1.5B, so they gather per query head.
    """
    unions = _shared_unions(selection, key.shape[1])
    if unions is not None:
        return _gather_per_kv_head(query, key, value, *unions, lay, key_padding_mask, scaling)
    return _gather_per_query_head(query, key, value, selection, lay, key_padding_mask, scaling)


def _shared_unions(selection: torch.Tensor, kv_heads: int):
    """`_group_unions` when the rule of `_gathered_attention` picks the per-KV-head gather, else None."""
    if selection.shape[1] == kv_heads or selection.numel() < UNION_MIN_BLOCKS:
        return None
    unions = _group_unions(selection, kv_heads)
    return unions if unions[2].float().mean() <= UNION_MAX_RATIO * selection.shape[-1] else None


def _key_blocks(key, value, lay, key_padding_mask):
    """Key and value blocks flat over (batch, KV head, block), and which key slots are real [B, nkb, bk]."""
    B, Hkv, _, D = key.shape
    nkb, bk = lay.n_kblocks, lay.block_k
    kflat = to_blocks(key, bk, nkb).reshape(B * Hkv * nkb, bk, D)
    vflat = to_blocks(value, bk, nkb).reshape(B * Hkv * nkb, bk, value.shape[-1])
    valid = torch.arange(nkb * bk, device=key.device) < lay.kv_len
    if key_padding_mask is not None:
        valid = valid[None, :] & torch.nn.functional.pad(key_padding_mask.bool(), (0, nkb * bk - lay.kv_len))
    else:
        valid = valid[None, :].expand(B, -1)
    return kflat, vflat, valid.view(B, nkb, bk)


def _group_unions(selection, kv_heads):
    """Per (batch, KV head, query block) row: the group's selections [rows, G, W], the union of
    their blocks [rows, G*W] (ascending, -1 padded) and its width [rows]."""
    B, Hq, nqb, width = selection.shape
    group = Hq // kv_heads
    per_head = selection.view(B, kv_heads, group, nqb, width).transpose(2, 3).reshape(-1, group, width)
    union = sort_selection(per_head.reshape(-1, group * width))
    repeat = torch.zeros_like(union, dtype=torch.bool)
    repeat[:, 1:] = union[:, 1:] == union[:, :-1]
    union = sort_selection(union.masked_fill(repeat, -1))
    return per_head, union, (union >= 0).sum(-1)


def _gather_per_query_head(query, key, value, selection, lay, key_padding_mask, scaling) -> torch.Tensor:
    """Each query head's kept blocks gathered for it, chunks of query blocks."""
    B, Hq, Tq, D = query.shape
    Hkv, nkb, bk, bq = key.shape[1], lay.n_kblocks, lay.block_k, lay.block_q
    group = Hq // Hkv
    width = selection.shape[-1]
    qblocks = to_blocks(query, bq, lay.n_qblocks, lay.q_pad_front)
    kflat, vflat, valid = _key_blocks(key, value, lay, key_padding_mask)
    qpos = lay.query_positions(query.device)  # [nqb, bq]
    head_base = ((torch.arange(B, device=query.device)[:, None] * Hkv + torch.arange(Hq, device=query.device)[None, :] // group) * nkb)
    offsets = torch.arange(bk, device=query.device)

    step = max(1, LOOP_CHUNK_ELEMENTS // max(1, B * Hq * width * bk * (bq + D)))
    outs = []
    for c0 in range(0, lay.n_qblocks, step):
        rows = slice(c0, min(c0 + step, lay.n_qblocks))
        sel = selection[:, :, rows]  # [B, Hq, C, W]
        safe = sel.clamp(min=0)
        idx = head_base[:, :, None, None] + safe
        keys = kflat[idx].flatten(-3, -2)  # [B, Hq, C, W*bk, D]
        vals = vflat[idx].flatten(-3, -2)
        scores = (qblocks[:, :, rows] @ keys.transpose(-1, -2)) * scaling  # [B, Hq, C, bq, W*bk]
        kpos = (safe[..., None] * bk + offsets).flatten(-2)  # [B, Hq, C, W*bk]
        kval = valid[torch.arange(B, device=query.device)[:, None, None, None], safe]  # [B, Hq, C, W, bk]
        kval = (kval & (sel >= 0)[..., None]).flatten(-2)
        q_at = qpos[rows]  # [C, bq]
        ok = (kpos[..., None, :] <= q_at[None, None, :, :, None]) & kval[..., None, :]
        scores = scores.masked_fill(~ok, float("-inf"))
        outs.append(_safe_softmax_weighted(scores, vals))
    out = torch.cat(outs, dim=2).reshape(B, Hq, lay.n_qblocks * bq, -1)
    return out[:, :, lay.q_pad_front : lay.q_pad_front + Tq]


def _gather_per_kv_head(query, key, value, per_head, union, n_union, lay, key_padding_mask, scaling):
    """Per (batch, KV head, query block) row, the union of the group's kept blocks gathered once and
    the whole group scored against it in one matmul; each head masks the union blocks it did not
    keep. Rows run sorted by union width, so a chunk pads its unions to little more than their widths."""
    B, Hq, Tq, D = query.shape
    Hkv, nkb, bk, bq, nqb = key.shape[1], lay.n_kblocks, lay.block_k, lay.block_q, lay.n_qblocks
    group, width = per_head.shape[1:]
    n_rows, dev = B * Hkv * nqb, query.device
    qrows = to_blocks(query, bq, nqb, lay.q_pad_front).view(B, Hkv, group, nqb, bq, D).transpose(2, 3)
    qrows = qrows.reshape(n_rows, group * bq, D)
    kflat, vflat, valid = _key_blocks(key, value, lay, key_padding_mask)
    qpos = lay.query_positions(dev)
    n_union, order = n_union.sort()
    row_base = (torch.arange(B * Hkv, device=dev) * nkb).repeat_interleave(nqb)
    row_batch = torch.arange(B, device=dev).repeat_interleave(Hkv * nqb)
    row_qblock = torch.arange(nqb, device=dev).repeat(B * Hkv)
    offsets = torch.arange(bk, device=dev)

    per_row = min(group * width, nkb) * (bk * (group * bq + D) + group * width)  # scores, keys, `kept`
    step = max(1, LOOP_CHUNK_ELEMENTS // max(1, per_row))
    outs = []
    for c0 in range(0, n_rows, step):
        rows = order[c0 : c0 + step]
        uni = union[rows, : max(1, int(n_union[min(c0 + step, n_rows) - 1]))]  # [C, U]
        safe = uni.clamp(min=0)
        idx = row_base[rows, None] + safe
        keys = kflat[idx].flatten(1, 2)  # [C, U*bk, D]
        vals = vflat[idx].flatten(1, 2)
        scores = (qrows[rows] @ keys.transpose(-1, -2)) * scaling  # [C, G*bq, U*bk]
        kept = (per_head[rows][..., None] == uni[:, None, None, :]).any(-2)  # [C, G, U]
        kval = valid[row_batch[rows, None], safe] & (uni >= 0)[..., None]  # [C, U, bk]
        keep = (kept[..., None] & kval[:, None]).flatten(-2)  # [C, G, U*bk]
        kpos = (safe[..., None] * bk + offsets).flatten(-2)  # [C, U*bk]
        causal = kpos[:, None, :] <= qpos[row_qblock[rows], :, None]  # [C, bq, U*bk]
        ok = causal[:, None] & keep[:, :, None]  # [C, G, bq, U*bk]
        scores = scores.view(ok.shape).masked_fill(~ok, float("-inf")).flatten(1, 2)
        outs.append(_safe_softmax_weighted(scores, vals))
    out = torch.cat(outs)[order.argsort()].view(B, Hkv, nqb, group, bq, -1)
    out = out.transpose(2, 3).reshape(B, Hq, nqb * bq, -1)
    return out[:, :, lay.q_pad_front : lay.q_pad_front + Tq]


def dense_attention(query, key, value, key_padding_mask=None, scaling=None) -> torch.Tensor:
    """Causal SDPA for the layers kept dense, with the queries at the end of the keys.

    A padded query row would have no visible key (NaN in SDPA); it is allowed to see
    its own position so NaNs never reach the real tokens' values.
    """
    Tq, Tk = query.shape[2], key.shape[2]
    gqa = query.shape[1] != key.shape[1]
    if key_padding_mask is None and Tq == Tk:
        return torch.nn.functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scaling, enable_gqa=gqa
        )
    qpos = torch.arange(Tk - Tq, Tk, device=query.device)
    kpos = torch.arange(Tk, device=query.device)
    mask = (kpos[None, :] <= qpos[:, None])[None, None]
    if key_padding_mask is not None:
        mask = (mask & key_padding_mask.bool()[:, None, None, :]) | (kpos[None, :] == qpos[:, None])[None, None]
    return torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=scaling, enable_gqa=gqa
    )
