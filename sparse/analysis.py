"""Analysis on top of a sparse model: per-layer selections, density, minimal k.

`minimal_k` is the seed's sparsity optimisation (section 3.2): the smallest k
whose greedy next `n_tokens` tokens equal full attention's, by binary search.
It assumes agreement is monotone in k, as the seed does; k = number of key blocks
is always full attention, so the search always terminates with an answer.
"""

from __future__ import annotations

import math

import torch

from .config import SparseConfig
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
    hi = math.ceil((input_ids.shape[1] + n_tokens) / cfg.block_k)
    lo = 1
    with sparse_attention(model, cfg) as ctl:
        while lo < hi:
            mid = (lo + hi) // 2
            ctl.cfg = cfg.replace(k=mid)
            if _greedy(model, input_ids, n_tokens) == reference:
                hi = mid
            else:
                lo = mid + 1
    return lo
