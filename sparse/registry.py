"""Name -> sparse-method registry, so users can plug in their own selection rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from plugins import Registry, UnknownNameError

from .settings import NoSettings, build_settings


def fixed_k(cfg, n_causal):
    """The default rule: the reserved blocks plus k - 1 chosen ones (`SparseConfig.kept`)."""
    return cfg.kept(n_causal)


def every_block(cfg, n_causal):
    return n_causal


def same_budget(cfg, n_keep, layer, n_layers, region):
    """The default kv-cache rule: every sparse layer keeps `n_keep` region tokens."""
    return n_keep


PREFILL, KV_CACHE = "prefill", "kv-cache"  # the two families of docs/design.md


@dataclass(frozen=True)
class SparseMethod:
    """A registered method.

    `select(ctx)` receives a `sparse.layout.SelectionContext` and returns a
    LongTensor[B, Hq, n_qblocks, width] of kept key-block indices (ascending, -1
    padding at the end). `kept(cfg, n_causal)` is how many blocks the method keeps
    for a query block with `n_causal` causal blocks (int or LongTensor); the
    selection's width is `kept(cfg, n_kblocks)`, and `validate_selection` checks every
    row against it. Default: `SparseConfig.kept`; `full` keeps every block.
    `settings` is the method's own settings dataclass (`sparse.settings`), read through
    `settings_of(cfg)`.

    `family` is "prefill" (the above) or "kv-cache" (`sparse.kv_cache`): then `select` is
    a scorer `score(ctx) -> Float[B, Hkv, R]` over the compressed region's tokens (higher
    = keep) and `kept(cfg, n_keep, layer, n_layers, region)` the region tokens a layer
    keeps (default: `n_keep` in every layer).
    """

    name: str
    select: Callable[..., torch.Tensor]
    kept: Callable = fixed_k
    settings: type = NoSettings
    family: str = PREFILL

    @property
    def keeps_all(self) -> bool:
        return self.kept is every_block

    @property
    def is_kv(self) -> bool:
        return self.family == KV_CACHE


# Methods of installed distributions register themselves through this entry point group.
METHODS: Registry[SparseMethod] = Registry("sparse method", entry_point_group="flipbench.sparse_methods")

UnknownSparseMethodError = UnknownNameError  # the name earlier releases raised


def register_sparse_method(name: str, *, keeps_all: bool = False, kept: Callable | None = None,
                           settings: type = NoSettings, overwrite: bool = False):
    """Decorator registering `fn(ctx) -> selection` under `name`; `keeps_all` for methods
    that ignore k, `kept(cfg, n_causal)` for methods with their own kept-block rule,
    `settings` for a method with settings of its own (a frozen dataclass)."""

    def decorator(fn):
        rule = every_block if keeps_all else (kept or fixed_k)
        METHODS.register(name, SparseMethod(name=name, select=fn, kept=rule, settings=settings), overwrite)
        return fn

    return decorator


def register_kv_method(name: str, *, settings: type, kept: Callable | None = None, overwrite: bool = False):
    """Decorator registering a kv-cache scorer `fn(ctx) -> Float[B, Hkv, R]` (`sparse.kv_cache`)
    under `name`; `kept(cfg, n_keep, layer, n_layers, region)` for per-layer budgets (PyramidKV)."""

    def decorator(fn):
        METHODS.register(name, SparseMethod(name=name, select=fn, kept=kept or same_budget, settings=settings,
                                            family=KV_CACHE), overwrite)
        return fn

    return decorator


def make_settings(name: str, values=None):
    """The settings of method `name` from user values (ValueError naming the method and setting)."""
    return build_settings(name, get_sparse_method(name).settings, values or {})


def settings_of(cfg):
    """`cfg.settings`, or the defaults of `cfg.method`'s settings when none were given."""
    settings_cls = get_sparse_method(cfg.method).settings
    if cfg.settings is None:
        return make_settings(cfg.method)
    if not isinstance(cfg.settings, settings_cls):
        raise ValueError(f"sparse method {cfg.method!r} takes {settings_cls.__name__}, "
                         f"got {type(cfg.settings).__name__}")
    return cfg.settings


def get_sparse_method(name: str) -> SparseMethod:
    return METHODS.get(name)


def available_sparse_methods() -> list[str]:
    return METHODS.names()
