"""StreamingLLM (Xiao et al., arXiv 2309.17453) as KV-cache compression: keep the attention
sinks (the first tokens, which take attention whatever their content) and the most recent
region tokens, evict the middle. KVPress's StreamingLLMPress scores the same way."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kv_cache import KVContext, KVSettings
from ..registry import register_kv_method


@dataclass(frozen=True)
class StreamingLLMSettings(KVSettings):
    """`n_sink`: the first real tokens always kept (the paper's and KVPress's 4)."""

    n_sink: int = 4

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.n_sink, bool) or not isinstance(self.n_sink, int) or self.n_sink < 0:
            raise ValueError(f"n_sink must be an integer >= 0, got {self.n_sink!r}")


@register_kv_method("streamingllm", settings=StreamingLLMSettings)
def streamingllm_score(ctx: KVContext) -> torch.Tensor:
    """Sinks first (+inf), then recency (the position): the top n_keep are the sinks and the
    n_keep - n_sink latest tokens. Sinks count real tokens, so left padding does not hide them."""
    B, Hkv, R, _ = ctx.key.shape
    pos = torch.arange(R, device=ctx.key.device, dtype=torch.float32).expand(B, R)
    real = torch.ones(B, R, device=ctx.key.device) if ctx.padding is None else ctx.padding.float()
    sink = (real.cumsum(-1) <= ctx.settings.n_sink) & real.bool()
    scores = torch.where(sink, torch.full_like(pos, float("inf")), pos)
    return scores[:, None].expand(B, Hkv, R)
