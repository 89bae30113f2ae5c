"""Geometry at the answer position: how many key blocks it sees, how many a method
keeps there, the k that keeps a given share, and the seed's search for the smallest k.

Every method states its budget as a *density*, kept / causal key blocks at the
answer position (the prompt's last token), so methods with different budget units
compare at equal compute. The seed's per-prompt sparsity (section 3.2, step 3) is a
binary search over k for the smallest one whose greedy continuation agrees with full
attention: `smallest_agreeing_k` is that search, used by every caller.
"""

from __future__ import annotations

from typing import Callable

from .config import SparseConfig
from .registry import get_sparse_method


def causal_blocks(n_positions: int, block_k: int) -> int:
    """Causal key blocks of the last of `n_positions` positions."""
    return (n_positions - 1) // block_k + 1


def kept_blocks(cfg: SparseConfig, k: int, n_blocks: int) -> int:
    """Key blocks kept at k by a query block with `n_blocks` causal ones, by the method's own
    rule (reserved sink/local blocks, adaptive k ...)."""
    return int(get_sparse_method(cfg.method).kept(cfg.replace(k=k), n_blocks))


def answer_geometry(prompt_len: int, cfg: SparseConfig, ks) -> tuple[int, dict[str, float]]:
    """(causal key blocks at the answer position, {k: kept / causal blocks there})."""
    n_blocks = causal_blocks(prompt_len, cfg.block_k)
    return n_blocks, {str(k): kept_blocks(cfg, k, n_blocks) / n_blocks for k in ks}


def k_for_density(cfg: SparseConfig, density: float, n_blocks: int) -> int:
    """The k whose kept / causal blocks at the answer position is closest to `density`
    (the smaller k on a tie)."""
    return min(range(1, n_blocks + 1), key=lambda k: (abs(kept_blocks(cfg, k, n_blocks) / n_blocks - density), k))


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
