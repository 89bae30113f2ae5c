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
  query blocks: memory O(T k b_k), never a T x T tensor.
Rows with no visible key (padding) output zeros instead of NaN so a padded batch
never poisons real tokens.
"""

from __future__ import annotations

import torch

from .config import SparseConfig
from .layout import CHUNK_ELEMENTS, checked_layout, to_blocks


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


def _gathered_attention(query, key, value, selection, lay, key_padding_mask, scaling) -> torch.Tensor:
    """Gather each query block's kept key/value blocks and softmax over them, in chunks."""
    B, Hq, Tq, D = query.shape
    Hkv, nkb, bk, bq = key.shape[1], lay.n_kblocks, lay.block_k, lay.block_q
    group = Hq // Hkv
    width = selection.shape[-1]
    qblocks = to_blocks(query, bq, lay.n_qblocks, lay.q_pad_front)
    kflat = to_blocks(key, bk, nkb).reshape(B * Hkv * nkb, bk, D)
    vflat = to_blocks(value, bk, nkb).reshape(B * Hkv * nkb, bk, value.shape[-1])
    qpos = lay.query_positions(query.device)  # [nqb, bq]
    valid = torch.arange(nkb * bk, device=query.device) < lay.kv_len
    if key_padding_mask is not None:
        pad = torch.nn.functional.pad(key_padding_mask.bool(), (0, nkb * bk - lay.kv_len))
        valid = valid[None, :] & pad
    else:
        valid = valid[None, :].expand(B, -1)
    valid = valid.view(B, nkb, bk)
    head_base = ((torch.arange(B, device=query.device)[:, None] * Hkv + torch.arange(Hq, device=query.device)[None, :] // group) * nkb)
    offsets = torch.arange(bk, device=query.device)

    step = max(1, CHUNK_ELEMENTS // max(1, B * Hq * width * bk * (bq + D)))
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
