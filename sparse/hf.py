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
from .registry import get_sparse_method
from .selection import select_blocks
from .triton_kernel import INSTALL_HINT as TRITON_INSTALL_HINT
from .triton_kernel import triton_block_sparse_attention

KERNELS = ("gather", "flex", "triton")
# Inference kernels; forwards that need gradients always run the gather kernel.
_INFERENCE_KERNELS = {"flex": flex_block_sparse_attention, "triton": triton_block_sparse_attention}


@dataclass
class SparseController:
    """Live handle of a `sparse_attention` block.

    `cfg` may be replaced between forwards (e.g. to sweep k). Set `record = True` to
    keep every layer's selection of the next forwards in `selections`
    ({layer_idx: LongTensor}). Set `observe` to a callable to see every sparse layer's
    inputs: `observe(layer, query, key, selection, key_padding_mask, scaling)` (flip
    attribution reads the answer position's attention from it). `kernel="flex"` runs
    forwards without gradients through FlexAttention (long sequences on CPU),
    `kernel="triton"` through the Triton kernel (GPUs; on CPU only under
    TRITON_INTERPRET=1, for tests); forwards that need gradients always use the
    differentiable gather kernel.
    """

    cfg: SparseConfig
    kernel: str = "gather"
    record: bool = False
    observe: Callable | None = None
    selections: dict = field(default_factory=dict)

    def attention(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        layer = getattr(module, "layer_idx", None)
        if layer is None:
            raise UnsupportedModelError(f"{type(module).__name__} has no layer_idx; cannot apply per-layer sparsity")
        padding = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
        if attention_mask is not None and padding is None:
            raise UnsupportedModelError("expected a 2D padding mask from flipbench's mask function, got a 4D mask")
        q_offset = key.shape[2] - query.shape[2]
        if layer < self.cfg.dense_layers:
            out = dense_attention(query, key, value, padding, scaling)
        else:
            sel = select_blocks(query, key, self.cfg, q_offset, padding)
            if self.record:
                self.selections[layer] = sel
            if self.observe is not None:
                self.observe(layer, query, key, sel, padding, scaling)
            attend = block_sparse_attention
            if self.kernel in _INFERENCE_KERNELS and not torch.is_grad_enabled():
                attend = _INFERENCE_KERNELS[self.kernel]
            out = attend(query, key, value, sel, self.cfg, q_offset, padding, scaling)
        return out.transpose(1, 2).contiguous(), None


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

