"""Geometry at the answer position: how many key blocks it sees, how many a method
keeps there, the k that keeps a given share, and the seed's search for the smallest k.

Every method states its budget as a *density* at the answer position (the prompt's
last token), so methods with different budget units compare at equal compute: kept /
causal key blocks for block-sparse prefill methods, kept / causal keys for kv-cache
methods, which compress the prompt's first `region` tokens to n_keep (`sparse.kv_cache`):
((T - region) + n_keep) / T. The seed's per-prompt sparsity (section 3.2, step 3) is a
binary search over k for the smallest one whose greedy continuation agrees with full
attention: `smallest_agreeing_k` is that search, used by every caller.
"""

from __future__ import annotations

from typing import Callable

import math

from .config import SparseConfig
from .kv_cache import region_budget
from .registry import get_sparse_method


def causal_blocks(n_positions: int, block_k: int) -> int:
    """Causal key blocks of the last of `n_positions` positions."""
    return (n_positions - 1) // block_k + 1


def kept_blocks(cfg: SparseConfig, k: int, n_blocks: int) -> int:
    """Key blocks kept at k by a query block with `n_blocks` causal ones, by the method's own
    rule (reserved sink/local blocks, adaptive k ...)."""
    return int(get_sparse_method(cfg.method).kept(cfg.replace(k=k), n_blocks))


def answer_density(cfg: SparseConfig, k: int, prompt_len: int, region: int | None = None) -> float:
    """What the answer position keeps at k, as a share of what it could see (either family;
    kv-cache methods need the `region` length)."""
    cfg = cfg.replace(k=k)
    if get_sparse_method(cfg.method).is_kv:
        if region is None:
            raise ValueError(f"kv-cache method {cfg.method!r}: its density needs the compressed region's length")
        return (prompt_len - region + region_budget(cfg, region)) / prompt_len
    n_blocks = causal_blocks(prompt_len, cfg.block_k)
    return kept_blocks(cfg, k, n_blocks) / n_blocks


def answer_geometry(prompt_len: int, cfg: SparseConfig, ks, region: int | None = None) -> tuple[int, dict[str, float]]:
    """(causal key blocks at the answer position, {k: `answer_density` at k})."""
    return causal_blocks(prompt_len, cfg.block_k), {str(k): answer_density(cfg, k, prompt_len, region) for k in ks}


def k_for_density(cfg: SparseConfig, density: float, prompt_len: int, region: int | None = None) -> int:
    """The k whose `answer_density` is closest to `density` (the smaller k on a tie), among the
    k that change it: up to the causal blocks (prefill) or the region's blocks (kv-cache). A
    density no k reaches gets the nearest k; callers record the density it achieves."""
    kv = get_sparse_method(cfg.method).is_kv
    if kv and region is None:
        raise ValueError(f"kv-cache method {cfg.method!r}: its density needs the compressed region's length")
    top = math.ceil(region / cfg.block_k) if kv else causal_blocks(prompt_len, cfg.block_k)
    return min(range(1, top + 1), key=lambda k: (abs(answer_density(cfg, k, prompt_len, region) - density), k))


def smallest_agreeing_k(agrees: Callable[[int], bool], n_blocks: int) -> int:
    """The seed's binary search over k in [1, n_blocks] (k = n_blocks is full attention, so
    it always agrees): the smallest agreeing k if agreement is monotone in k; otherwise an
    agreeing k whose k - 1 disagrees, while a smaller k may agree again."""
    lo, hi = 1, n_blocks
    while lo < hi:
        mid = (lo + hi) // 2
        if agrees(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
