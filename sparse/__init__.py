"""Sparse attention as a library: block selections (STREAM and baselines), block-sparse
attention, and a switch that runs a loaded transformers model under them."""

from . import baselines as _baselines  # noqa: F401  (registers full, window, oracle, random)
from . import density_adaptive as _density_adaptive  # noqa: F401  (registers stream-density)
from . import stream as _stream  # noqa: F401  (registers stream)
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
    "register_sparse_method",
    "select_blocks",
    "sparse_attention",
    "validate_selection",
]
