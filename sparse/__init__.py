"""Sparse attention as a library: block selections (STREAM and baselines), block-sparse
attention, KV-cache compression (`sparse.kv_cache`), and a switch that runs a loaded
transformers model under either family."""

from . import methods as _methods  # noqa: F401  (registers every method of sparse/methods)
from .analysis import density, dropped_attention_mass, layer_selections, minimal_k, span_kept
from .attention import block_sparse_attention, dense_attention
from .config import SparseConfig
from .flex import flex_block_sparse_attention
from .hf import SparseController, UnsupportedModelError, sparse_attention
from .layout import SelectionContext
from .registry import (
    SparseMethod,
    UnknownSparseMethodError,
    available_sparse_methods,
    get_sparse_method,
    make_settings,
    register_kv_method,
    register_sparse_method,
    settings_of,
)
from .settings import NoSettings
from .selection import select_blocks, validate_selection

__all__ = [
    "SparseConfig",
    "SparseController",
    "SparseMethod",
    "SelectionContext",
    "UnknownSparseMethodError",
    "UnsupportedModelError",
    "available_sparse_methods",
    "block_sparse_attention",
    "dense_attention",
    "flex_block_sparse_attention",
    "density",
    "get_sparse_method",
    "make_settings",
    "NoSettings",
    "settings_of",
    "layer_selections",
    "minimal_k",
    "register_kv_method",
    "register_sparse_method",
    "select_blocks",
    "sparse_attention",
    "validate_selection",
]
