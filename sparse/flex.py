"""FlexAttention kernel for inference over the same block selection.

`block_sparse_attention` gathers blocks with plain PyTorch ops so it can be
differentiated on CPU; for long inference-only sequences, FlexAttention with a
`BlockMask` built from the selection skips unselected blocks inside one compiled
kernel (measured in docs/performance.md). It must match the gather kernel (tested).
Compilation costs seconds per new shape, so it pays off for long sequences only.
"""

from __future__ import annotations

import functools

import torch

from .config import SparseConfig
from .layout import make_layout


@functools.lru_cache(maxsize=None)
def _compiled():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def selection_block_mask(selection: torch.Tensor, cfg: SparseConfig, kv_len: int, q_offset: int = 0,
                         key_padding_mask: torch.Tensor | None = None):
    """A FlexAttention `BlockMask` keeping exactly the selected blocks, causal per token."""
    from torch.nn.attention.flex_attention import BlockMask

    if q_offset % cfg.block_q:
        raise ValueError(f"the flex kernel needs q_offset ({q_offset}) to be a multiple of block_q ({cfg.block_q})")
    B, H, nqb, _ = selection.shape
    n_kblocks = -(-kv_len // cfg.block_k)
    kept = selection >= 0
    indices = torch.zeros(B, H, nqb, n_kblocks, dtype=torch.int32, device=selection.device)
    indices[..., : selection.shape[-1]] = torch.where(kept, selection, torch.zeros_like(selection)).int()
    padding = key_padding_mask.bool() if key_padding_mask is not None else None

    def mask_mod(b, h, q_idx, kv_idx):
        visible = q_idx + q_offset >= kv_idx
        if padding is not None:
            visible = visible & padding[b, kv_idx]
        return visible

    return BlockMask.from_kv_blocks(kept.sum(-1).int(), indices, BLOCK_SIZE=(cfg.block_q, cfg.block_k),
                                    mask_mod=mask_mod, seq_lengths=(kv_len - q_offset, kv_len))


@torch.no_grad()
def flex_block_sparse_attention(query, key, value, selection, cfg: SparseConfig, q_offset: int = 0,
                                key_padding_mask=None, scaling=None) -> torch.Tensor:
    """Same result as `block_sparse_attention`, through a compiled FlexAttention kernel."""
    lay = make_layout(query, key, cfg, q_offset)
    mask = selection_block_mask(selection, cfg, lay.kv_len, q_offset, key_padding_mask)
    gqa = query.shape[1] != key.shape[1]
    return _compiled()(query, key, value, block_mask=mask, scale=scaling, enable_gqa=gqa)
