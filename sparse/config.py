"""`SparseConfig`: the knobs every sparse method shares, validated once at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SparseConfig:
    """How a model's attention is sparsified.

    `k` counts key blocks kept per query block, the diagonal block included.
    `dense_layers` keeps the first layers on full attention: the seed paper reports
    that sparsifying them destroys the model.
    """

    method: str = "stream"
    k: int = 8
    block_q: int = 8
    block_k: int = 8
    dense_layers: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"SparseConfig.method must be a non-empty string, got {self.method!r}")
        for name, minimum in (("k", 1), ("block_q", 1), ("block_k", 1), ("dense_layers", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"SparseConfig.{name} must be an integer, got {value!r}")
            if value < minimum:
                raise ValueError(f"SparseConfig.{name} must be >= {minimum}, got {value}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"SparseConfig.seed must be an integer, got {self.seed!r}")

    def replace(self, **changes) -> "SparseConfig":
        """A copy with some fields changed (validated again)."""
        return SparseConfig(**{**asdict(self), **changes})

    def to_dict(self) -> dict:
        return asdict(self)
