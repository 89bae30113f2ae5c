"""`select_blocks`: run a registered method and check its output is a valid selection."""

from __future__ import annotations

import torch

from .config import SparseConfig
from .layout import SelectionContext, reserved_mask
from .registry import get_sparse_method


def prefill_method(name: str):
    """The registered block-sparse prefill method `name`; a kv-cache method is refused (it keeps
    tokens per KV head, not key blocks per query block)."""
    method = get_sparse_method(name)
    if method.is_kv:
        raise ValueError(f"sparse method {name!r} is a kv-cache method: it keeps region tokens per KV head "
                         "(sparse.kv_cache), not key blocks, so it has no block selection")
    return method


@torch.no_grad()
def select_blocks(query, key, cfg: SparseConfig, q_offset: int = 0, key_padding_mask=None) -> torch.Tensor:
    """Kept key-block indices per query block.

    query [B, Hq, Tq, D], key [B, Hkv, Tk, D] with Tk = q_offset + Tq (GQA: Hq a
    multiple of Hkv). Returns LongTensor[B, Hq, n_qblocks, min(k, n_kblocks)]
    (n_kblocks for methods that ignore k), ascending, -1 padded where fewer
    causal blocks exist. `key_padding_mask` [B, Tk] is True on real tokens.
    """
    method = prefill_method(cfg.method)
    ctx = SelectionContext(query, key, cfg, q_offset, key_padding_mask)
    sel = method.select(ctx)
    width = int(method.kept(cfg, ctx.layout.n_kblocks))
    expected = (ctx.batch, ctx.q_heads, ctx.layout.n_qblocks, width)
    if tuple(sel.shape) != expected:
        raise ValueError(f"sparse method {cfg.method!r} returned shape {tuple(sel.shape)}, expected {expected}")
    return sel.long()


def validate_selection(selection: torch.Tensor, cfg: SparseConfig, kv_len: int, q_offset: int = 0,
                       keeps_all: bool = False) -> None:
    """Raise ValueError unless `selection` obeys the invariants every method must keep.

    Each query block i keeps exactly the method's kept count of distinct causal blocks
    (`SparseMethod.kept`: min(d_i + 1, reserved + k - 1) by default, all d_i + 1 when
    `keeps_all`), its diagonal d_i and its reserved sink and local blocks among them,
    ascending, padded with -1 only after the kept blocks. Use it to test a method you
    register.
    """
    from .layout import BlockLayout

    method = prefill_method(cfg.method)
    lay = BlockLayout(kv_len=kv_len, q_offset=q_offset, block_q=cfg.block_q, block_k=cfg.block_k)
    diag = lay.diagonal(selection.device)
    if selection.shape[2] != lay.n_qblocks:
        raise ValueError(f"selection has {selection.shape[2]} query blocks, layout has {lay.n_qblocks}")
    expected = diag + 1 if keeps_all else method.kept(cfg, diag + 1)
    kept = selection >= 0
    n_kept = kept.sum(-1)
    bad = n_kept != expected[None, None, :]
    if bad.any():
        b, h, i = bad.nonzero()[0].tolist()
        raise ValueError(f"query block {i} (batch {b}, head {h}) keeps {int(n_kept[b, h, i])} blocks, expected {int(expected[i])}")
    width = selection.shape[-1]
    rank = torch.arange(width, device=selection.device)
    if (kept != (rank < n_kept[..., None])).any():
        raise ValueError("-1 padding must come after all kept blocks")
    if (selection > diag[None, None, :, None]).any():
        raise ValueError("a kept block lies after the diagonal (not causal)")
    inner = selection[..., 1:] - selection[..., :-1]
    if ((inner <= 0) & kept[..., 1:]).any():
        raise ValueError("kept blocks must be distinct and ascending")
    has_diag = ((selection == diag[None, None, :, None]) & kept).any(-1)
    if not has_diag.all():
        raise ValueError("a query block does not keep its diagonal block")
    if not keeps_all:
        reserved = reserved_mask(cfg, diag, lay.n_kblocks)  # [nqb, nkb]
        present = torch.zeros(*selection.shape[:3], lay.n_kblocks + 1, dtype=torch.bool, device=selection.device)
        present.scatter_(-1, torch.where(kept, selection, torch.full_like(selection, lay.n_kblocks)), True)
        if (reserved[None, None] & ~present[..., :-1]).any():
            raise ValueError("a query block does not keep its reserved sink or local blocks")
