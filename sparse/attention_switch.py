"""Run a transformers model with one of flipbench's attention functions for a `with` block.

`attention_switch(model, label, attention, mask)` is the one place that switches a
model's attention: `sparse.hf.sparse_attention` and
`attacks.prefix_attention.shared_prefix_attention` both go through it. It registers
the functions with transformers' public `AttentionInterface.register` /
`AttentionMaskInterface.register` and switches with `model.set_attn_implementation`
(both exist from transformers 5.5.4, the oldest supported version, on).
"""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Callable

_names = itertools.count()


class UnsupportedModelError(TypeError):
    """The model's attention does not go through transformers' AttentionInterface."""


def _check_model(model) -> None:
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise UnsupportedModelError(f"flipbench needs a transformers PreTrainedModel, got {type(model).__name__}")
    if not any(hasattr(m, "layer_idx") and hasattr(m, "scaling") for m in model.modules()):
        raise UnsupportedModelError(
            f"{type(model).__name__} has no attention modules with a layer_idx; "
            "flipbench's attention functions keep per-layer state"
        )


@contextmanager
def attention_switch(model, label: str, attention: Callable, mask: Callable):
    """Run `model` with `attention` (an AttentionInterface function) and `mask` (an
    AttentionMaskInterface function) inside the block; the previous implementation is
    restored on exit, exceptions included. `label` starts the registered name and must
    not contain "sdpa", "flash" or "flex_attention" (transformers special-cases those).

    Two private accesses remain, because the public API has no equivalent:
    - reading `model.config._attn_implementation`: transformers has no getter, and the
      read also detects a refused switch (`set_attn_implementation` only logs a warning
      for a model that does not dispatch through AttentionInterface; running on would
      silently use the model's own attention);
    - popping the names from `_global_mapping` on exit: there is no unregister
      (`register` writes that class-level dict, `del` on an instance only touches its
      local mapping), and without it every block would keep its functions, and the
      tensors they close over (a cached prefix's keys), alive for the life of the process.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    _check_model(model)
    name = f"{label}_{next(_names)}"
    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, mask)
    previous = model.config._attn_implementation
    try:
        model.set_attn_implementation(name)
        if model.config._attn_implementation != name:
            raise UnsupportedModelError(
                f"{type(model).__name__} does not route attention through transformers' AttentionInterface, "
                "so flipbench cannot switch its attention"
            )
        yield
    finally:
        model.set_attn_implementation(previous)
        AttentionInterface._global_mapping.pop(name, None)
        AttentionMaskInterface._global_mapping.pop(name, None)
