"""`SparseConfig`: the knobs every sparse method shares, validated once at construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class SparseConfig:
    """How a model's attention is sparsified.

    `k` counts the diagonal block plus the k - 1 blocks a method chooses per query
    block. HiP, which STREAM builds on, also keeps attention-sink tokens and a local
    window outside its search: `sink_blocks` (the first blocks of the sequence) and
    `local_blocks` (the blocks ending at the diagonal) are *reserved*, always kept and
    not counted in k. Query block i with diagonal d_i keeps
    min(d_i + 1, |reserved_i| + k - 1) blocks, reserved_i = {0..sink_blocks-1} ∪
    {d_i-local_blocks+1..d_i} ∪ {d_i}; with both 0 (the default) that is min(d_i + 1, k).
    `dense_layers` keeps the first layers on full attention: the seed paper reports
    that sparsifying them destroys the model. `settings` holds the method's own settings
    (its registered dataclass, `sparse.settings`; None: the method's defaults).
    """

    method: str = "stream"
    k: int = 8
    block_q: int = 8
    block_k: int = 8
    dense_layers: int = 2
    seed: int = 0
    sink_blocks: int = 0
    local_blocks: int = 0
    settings: object | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"SparseConfig.method must be a non-empty string, got {self.method!r}")
        for name, minimum in (("k", 1), ("block_q", 1), ("block_k", 1), ("dense_layers", 0), ("sink_blocks", 0),
                              ("local_blocks", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"SparseConfig.{name} must be an integer, got {value!r}")
            if value < minimum:
                raise ValueError(f"SparseConfig.{name} must be >= {minimum}, got {value}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"SparseConfig.seed must be an integer, got {self.seed!r}")
        if self.sink_blocks or self.local_blocks:
            from .registry import METHODS

            if self.method in METHODS and METHODS.get(self.method).is_kv:
                raise ValueError(f"sparse method {self.method!r} is a kv-cache method: SparseConfig.sink_blocks and "
                                 "local_blocks (reserved key blocks) do not apply to it; set them to 0")
        if self.settings is not None and not dataclasses.is_dataclass(self.settings):
            raise ValueError(f"SparseConfig.settings must be a method's settings dataclass or None, "
                             f"got {self.settings!r}")

    @property
    def reserved_blocks(self) -> int:
        """Blocks kept outside the search when a query block has enough of them: sink + local
        (the diagonal counts once)."""
        return self.sink_blocks + max(self.local_blocks, 1)

    def kept(self, n_causal):
        """Blocks a fixed-k method keeps for a query block with `n_causal` causal blocks
        (an int or a tensor)."""
        limit = self.reserved_blocks + self.k - 1
        if isinstance(n_causal, int):
            return min(n_causal, limit)
        return n_causal.clamp(max=limit)

    def replace(self, **changes) -> "SparseConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

