"""Name -> sparse-method registry, so users can plug in their own selection rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class SparseMethod:
    """A registered method.

    `select(ctx)` receives a `sparse.layout.SelectionContext` and returns a
    LongTensor[B, Hq, n_qblocks, width] of kept key-block indices (ascending, -1
    padding at the end). `keeps_all` marks methods that ignore k (`full`): their
    width is the number of key blocks instead of min(k, n_kblocks).
    """

    name: str
    select: Callable[..., torch.Tensor]
    keeps_all: bool = False
    doc: str = ""


_METHODS: dict[str, SparseMethod] = {}


class UnknownSparseMethodError(KeyError):
    """Raised for a method name nobody registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


def register_sparse_method(name: str, *, keeps_all: bool = False, overwrite: bool = False):
    """Decorator registering `fn(ctx) -> selection` under `name`."""
    if not isinstance(name, str) or not name:
        raise ValueError("a sparse method needs a non-empty string name")

    def decorator(fn):
        if name in _METHODS and not overwrite:
            raise ValueError(f"sparse method {name!r} is already registered (pass overwrite=True to replace it)")
        _METHODS[name] = SparseMethod(name=name, select=fn, keeps_all=keeps_all, doc=(fn.__doc__ or "").strip())
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
