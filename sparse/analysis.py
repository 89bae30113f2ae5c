"""Analysis on top of a sparse model: per-layer selections, density, minimal k.

`minimal_k` is the seed's sparsity optimisation (section 3.2): the smallest k
whose greedy next `n_tokens` tokens equal full attention's, by the binary search of
`sparse.geometry.smallest_agreeing_k` up to the causal key blocks of the last
decoded position (full attention there, so the search always ends with an answer).
"""

from __future__ import annotations

import torch

from .config import SparseConfig
from .geometry import causal_blocks, smallest_agreeing_k
from .hf import sparse_attention


@torch.no_grad()
def layer_selections(model, input_ids, cfg: SparseConfig, attention_mask=None) -> dict[int, torch.Tensor]:
    """{layer_idx: LongTensor[B, Hq, n_qblocks, width]} for one forward; dense layers absent."""
    with sparse_attention(model, cfg) as ctl:
        ctl.record = True
        model(input_ids=input_ids, attention_mask=attention_mask)
        return dict(sorted(ctl.selections.items()))


def density(selection: torch.Tensor, cfg: SparseConfig, kv_len: int, q_offset: int = 0) -> float:
    """Fraction of causal (query, key) pairs a selection keeps, at token level."""
    from .layout import BlockLayout

    lay = BlockLayout(kv_len=kv_len, q_offset=q_offset, block_q=cfg.block_q, block_k=cfg.block_k)
    qpos = lay.query_positions(selection.device)  # [nqb, bq]
    sel = selection.clamp(min=0)
    kpos = sel[..., None] * cfg.block_k + torch.arange(cfg.block_k, device=selection.device)  # [B,H,nqb,W,bk]
    ok = (selection >= 0)[..., None] & (kpos < kv_len)
    kept = (ok[..., None, :, :] & (kpos[..., None, :, :] <= qpos[None, None, :, :, None, None])).sum()
    real_q = qpos[qpos >= 0]
    causal_pairs = int((real_q + 1).sum()) * selection.shape[0] * selection.shape[1]
    return float(kept) / causal_pairs


def block_density(selection: torch.Tensor, cfg: SparseConfig, kv_len: int, q_offset: int = 0) -> torch.Tensor:
    """Float [B, H, n_qblocks]: kept / causal key blocks of each query block (the block-level
    density that k is compared with; -1 entries are padding, not kept blocks)."""
    qb = torch.arange(selection.shape[2], device=selection.device)
    last_query = torch.clamp(q_offset + (qb + 1) * cfg.block_q - 1, max=kv_len - 1)
    causal = (last_query // cfg.block_k + 1).float()
    return (selection >= 0).sum(-1).float() / causal


@torch.no_grad()
def dropped_attention_mass(query_row: torch.Tensor, key: torch.Tensor, visible: torch.Tensor,
                           scaling: float | None = None, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of dense attention's probability mass that one query puts on the keys it does not see.

    query_row [B, Hq, D]: the query vectors of one position (the last key position, so
    every key is causal); key [B, Hkv, T, D]; visible [B, Hq, T] bool: the keys that
    position attends to (`SparseController.observe_answer`, either family). Returns
    [B, Hq]: the softmax over all (non-padding) keys, summed over the invisible keys.
    O(T) per head: one row of scores, never T x T.
    """
    B, Hq, D = query_row.shape
    group = Hq // key.shape[1]
    keys = key.repeat_interleave(group, dim=1) if group > 1 else key
    scale = D**-0.5 if scaling is None else scaling
    scores = torch.einsum("bhd,bhtd->bht", query_row.float(), keys.float()) * scale
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask.bool()[:, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return (probs * ~visible).sum(-1)


def span_kept(visible: torch.Tensor, start: int, end: int) -> torch.Tensor:
    """Bool [B, H]: every token of positions [start, end) is visible."""
    return visible[..., start:end].all(-1)


@torch.no_grad()
def _greedy(model, input_ids, n_tokens: int) -> list[list[int]]:
    ids = input_ids
    out = []
    for _ in range(n_tokens):
        nxt = model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
        out.append(nxt)
        ids = torch.cat([ids, nxt], dim=1)
    return torch.cat(out, dim=1).tolist()


@torch.no_grad()
def minimal_k(model, input_ids, cfg: SparseConfig, n_tokens: int = 2) -> int:
    """Smallest k in [1, n_kblocks] whose greedy next `n_tokens` tokens match full attention."""
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError("minimal_k needs a non-empty [batch, seq] tensor of input ids")
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
    reference = _greedy(model, input_ids, n_tokens)
    with sparse_attention(model, cfg) as ctl:
        def agrees(k: int) -> bool:
            ctl.cfg = cfg.replace(k=k)
            return _greedy(model, input_ids, n_tokens) == reference

        return smallest_agreeing_k(agrees, causal_blocks(input_ids.shape[1] + n_tokens - 1, cfg.block_k))
