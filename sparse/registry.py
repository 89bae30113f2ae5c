"""Name -> sparse-method registry, so users can plug in their own selection rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def fixed_k(cfg, n_causal):
    """The default rule: the reserved blocks plus k - 1 chosen ones (`SparseConfig.kept`)."""
    return cfg.kept(n_causal)


def every_block(cfg, n_causal):
    return n_causal


@dataclass(frozen=True)
class SparseMethod:
    """A registered method.

    `select(ctx)` receives a `sparse.layout.SelectionContext` and returns a
    LongTensor[B, Hq, n_qblocks, width] of kept key-block indices (ascending, -1
    padding at the end). `kept(cfg, n_causal)` is how many blocks the method keeps
    for a query block with `n_causal` causal blocks (int or LongTensor); the
    selection's width is `kept(cfg, n_kblocks)`, and `validate_selection` checks every
    row against it. Default: `SparseConfig.kept`; `full` keeps every block.
    """

    name: str
    select: Callable[..., torch.Tensor]
    kept: Callable = fixed_k
    uses_density: bool = False  # reads SparseConfig.density (position-adaptive methods)

    @property
    def keeps_all(self) -> bool:
        return self.kept is every_block


_METHODS: dict[str, SparseMethod] = {}


class UnknownSparseMethodError(KeyError):
    """Raised for a method name nobody registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


def register_sparse_method(name: str, *, keeps_all: bool = False, kept: Callable | None = None,
                           uses_density: bool = False, overwrite: bool = False):
    """Decorator registering `fn(ctx) -> selection` under `name`; `keeps_all` for methods
    that ignore k, `kept(cfg, n_causal)` for methods with their own kept-block rule."""
    if not isinstance(name, str) or not name:
        raise ValueError("a sparse method needs a non-empty string name")

    def decorator(fn):
        if name in _METHODS and not overwrite:
            raise ValueError(f"sparse method {name!r} is already registered (pass overwrite=True to replace it)")
        rule = every_block if keeps_all else (kept or fixed_k)
        _METHODS[name] = SparseMethod(name=name, select=fn, kept=rule, uses_density=uses_density)
        return fn

    return decorator


def get_sparse_method(name: str) -> SparseMethod:
    try:
        return _METHODS[name]
    except KeyError:
        known = ", ".join(available_sparse_methods())
        raise UnknownSparseMethodError(f"unknown sparse method {name!r}; known methods: {known}") from None


def available_sparse_methods() -> list[str]:
    return sorted(_METHODS)
