"""Switch a loaded Hugging Face model between full and sparse attention.

`sparse_attention(model, cfg)` switches the model to an attention function *and* a
mask function through `sparse.attention_switch`. The mask function hands the
attention function the 2D padding mask instead of a T x T mask: without it
transformers would skip mask creation and padding would be silently ignored.
The previous implementation is restored on exit, exceptions included.
"""

from __future__ import annotations

import importlib.util
import itertools
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from .attention import block_sparse_attention, dense_attention
from .attention_switch import UnsupportedModelError, attention_switch
from .config import SparseConfig
from .flex import flex_block_sparse_attention
from .kv_cache import answer_visibility, compressed_region, kv_attention
from .layout import kept_key_mask
from .registry import get_sparse_method
from .selection import select_blocks
from .triton_kernel import INSTALL_HINT as TRITON_INSTALL_HINT
from .triton_kernel import triton_block_sparse_attention

KERNELS = ("gather", "flex", "triton")
# Inference kernels; forwards that need gradients always run the gather kernel.
_INFERENCE_KERNELS = {"flex": flex_block_sparse_attention, "triton": triton_block_sparse_attention}


@dataclass
class SparseController:
    """Live handle of a `sparse_attention` block; installs either method family.

    `cfg` may be replaced between forwards (e.g. to sweep k). A block-sparse prefill method
    selects key blocks per query block; a kv-cache method (`sparse.kv_cache`) compresses the
    prompt's first `region` tokens, which must be set before each forward (Target sets it
    from the prompt) and the queries of every prompt token: run the whole prompt in one
    forward, or set `prefix_queries` (per layer [1, Hq, P, D]) for a cached full-attention
    prefix of P tokens inside the region (its prefill is dense, so they are full attention's).
    Set `record =
    True` to keep every sparse layer's choice of the next forwards in `selections`
    ({layer_idx: LongTensor}: the block selection, or a kv method's kept region tokens
    [B, Hkv, n]). Set `observe_answer` to a callable to see, for every sparse layer, what the
    last query attends to: `observe_answer(layer, query_row [B, Hq, D], key [B, Hkv, Tk, D],
    visible [B, Hq, Tk] bool, key_padding_mask, scaling)` (flip attribution reads it), and
    `observe_selection` to a callable to see every block-sparse layer's choice as it is made,
    `observe_selection(layer, selection [B, Hq, n_qblocks, W])` (a flip page's heatmap).
    `kernel="flex"` runs prefill forwards without gradients through FlexAttention (long
    sequences on CPU), `kernel="triton"` through the Triton kernel (GPUs; on CPU only under
    TRITON_INTERPRET=1, for tests); forwards that need gradients always use the
    differentiable gather kernel.
    """

    cfg: SparseConfig
    kernel: str = "gather"
    record: bool = False
    observe_answer: Callable | None = None
    observe_selection: Callable | None = None
    region: int | None = None
    prefix_queries: list | None = None
    selections: dict = field(default_factory=dict)

    def attention(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        layer = getattr(module, "layer_idx", None)
        if layer is None:
            raise UnsupportedModelError(f"{type(module).__name__} has no layer_idx; cannot apply per-layer sparsity")
        padding = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
        if attention_mask is not None and padding is None:
            raise UnsupportedModelError("expected a 2D padding mask from flipbench's mask function, got a 4D mask")
        if layer < self.cfg.dense_layers:
            out = dense_attention(query, key, value, padding, scaling)
        elif get_sparse_method(self.cfg.method).is_kv:
            out = self._compressed(module, layer, query, key, value, padding, scaling)
        else:
            out = self._block_sparse(layer, query, key, value, padding, scaling)
        return out.transpose(1, 2).contiguous(), None

    def _block_sparse(self, layer, query, key, value, padding, scaling):
        q_offset = key.shape[2] - query.shape[2]
        sel = select_blocks(query, key, self.cfg, q_offset, padding)
        if self.record:
            self.selections[layer] = sel
        if self.observe_selection is not None:
            self.observe_selection(layer, sel)
        if self.observe_answer is not None:
            visible = kept_key_mask(sel[:, :, -1], self.cfg.block_k, key.shape[2])
            self.observe_answer(layer, query[:, :, -1], key, visible, padding, scaling)
        attend = block_sparse_attention
        if self.kernel in _INFERENCE_KERNELS and not torch.is_grad_enabled():
            attend = _INFERENCE_KERNELS[self.kernel]
        return attend(query, key, value, sel, self.cfg, q_offset, padding, scaling)

    def _compressed(self, module, layer, query, key, value, padding, scaling):
        if self.region is None:
            raise ValueError(f"kv-cache method {self.cfg.method!r} needs the compressed region's length: set "
                             "SparseController.region before the forward")
        n_layers = module.config.num_hidden_layers
        q_offset = key.shape[2] - query.shape[2]
        if q_offset:
            if self.prefix_queries is None or self.prefix_queries[layer].shape[2] != q_offset:
                raise ValueError(f"kv-cache method {self.cfg.method!r} scores the region's queries: run the whole "
                                 f"prompt in one forward, or set prefix_queries for the {q_offset} cached tokens")
            cached = self.prefix_queries[layer].to(query.dtype)
            query = torch.cat([cached.expand(query.shape[0], -1, -1, -1), query], dim=2)
        kept = compressed_region(self.cfg, layer, n_layers, query, key, value, self.region, padding, scaling)
        if self.record:
            self.selections[layer] = kept
        if self.observe_answer is not None:
            visible = answer_visibility(kept, self.region, key.shape[2], query.shape[1])
            self.observe_answer(layer, query[:, :, -1], key, visible, padding, scaling)
        return kv_attention(query, key, value, kept, self.region, padding, scaling)[:, :, q_offset:]


def _padding_mask_function(batch_size, q_length, kv_length, q_offset=0, kv_offset=0, attention_mask=None, **kwargs):
    """Return the 2D [B, kv_len] padding mask (None when nothing is padded)."""
    if attention_mask is None:
        return None
    attention_mask = attention_mask[:, -kv_length:].bool()
    return None if bool(attention_mask.all()) else attention_mask


def default_kernel(model) -> str:
    """"triton" for a model on a GPU when Triton is installed (the fastest inference kernel
    there), else "gather"."""
    on_gpu = any(p.is_cuda for p in itertools.islice(model.parameters(), 1))
    return "triton" if on_gpu and importlib.util.find_spec("triton") is not None else "gather"


@contextmanager
def sparse_attention(model, cfg: SparseConfig, kernel: str | None = None):
    """Run `model` with sparse attention inside the block; yields a `SparseController`.

    Either family: block-sparse prefill methods, or kv-cache methods (set the controller's
    `region` before each forward).
    `kernel`: "gather" (differentiable, any shape), "flex" (FlexAttention for
    inference on long sequences; needs cached prefixes cut at block_q multiples) or
    "triton" (the Triton kernel for inference, GPUs; needs the triton extra). Default:
    `default_kernel(model)`, i.e. "triton" on a GPU with Triton installed, else "gather".
    """
    kernel = default_kernel(model) if kernel is None else kernel
    if kernel not in KERNELS:
        raise ValueError(f"unknown attention kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if kernel == "triton" and importlib.util.find_spec("triton") is None:
        raise ImportError(TRITON_INSTALL_HINT)
    get_sparse_method(cfg.method)  # fail fast on an unknown name
    ctl = SparseController(cfg=cfg, kernel=kernel)
    with attention_switch(model, "flipbench_sparse", ctl.attention, _padding_mask_function):
        yield ctl

