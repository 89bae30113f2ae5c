"""KV-cache compression, the second method family (docs/design.md, "Two families, one switch").

Serving stacks (NVIDIA KVPress) prefill a prompt with full attention, then keep only some of
the prefilled keys and values per layer and KV head; every later token attends to the kept
ones. Here the *compressed region* is the prompt's first R tokens: their queries attend
densely and causally (their prefill is unchanged), and in every sparse layer the queries
after the region see the region keys the method keeps plus every causal key after it. A
method is only a scorer over the region's tokens (higher = keep, `KVContext`); this module
keeps the top ones, builds the visible-key mask and runs the attention.

Budget: k keeps n_keep = min(R, k * block_k) region tokens per KV head (a method with its
own layer budgets, PyramidKV, keeps n_keep on average over the sparse layers), so the answer
position (the last prompt token, T causal keys) sees (T - R) + n_keep of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import dense_attention
from .attention_switch import attention_switch
from .config import SparseConfig
from .registry import get_sparse_method, make_settings, settings_of

REGIONS = ("context", "prompt")
# Region queries scored per chunk by the attention-based scorers (H2O sums over all of them).
QUERY_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class KVSettings:
    """What every kv-cache method sets: which prompt tokens form the compressed region.

    `context` (KVPress's question-agnostic setting): everything before the question, i.e.
    template head + context + adversarial slot, so an observation window ends at the
    adversarial tokens; `prompt` (query-aware): every prompt token before the answer position."""

    compress: str = "context"

    def __post_init__(self):
        if self.compress not in REGIONS:
            raise ValueError(f"compress must be one of {', '.join(REGIONS)}, got {self.compress!r}")


@dataclass(frozen=True)
class KVContext:
    """One sparse layer's compressed region, as a kv method's scorer sees it.

    query [B, Hq, R, D] (post-RoPE, as the attention function receives them), key and value
    [B, Hkv, R, D]; `padding` [B, R] True on real tokens (None: no padding); `n_keep` the
    region tokens this layer keeps per KV head; `seed` is `SparseConfig.seed`."""

    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    scaling: float
    layer: int
    n_layers: int
    settings: object
    padding: torch.Tensor | None
    n_keep: int
    seed: int = 0

    @property
    def region(self) -> int:
        return self.key.shape[2]

    @property
    def group(self) -> int:
        return self.query.shape[1] // self.key.shape[1]

    def attention_rows(self, start: int, stop: int) -> torch.Tensor:
        """Float [B, Hq, stop - start, R]: the dense causal softmax of region queries
        start..stop-1 over the region's keys (padding keys get 0; a padding query row is 0)."""
        B, Hkv, R, D = self.key.shape
        q = self.query[:, :, start:stop].reshape(B, Hkv, self.group * (stop - start), D)
        scores = (q @ self.key.transpose(-1, -2)).view(B, Hkv * self.group, stop - start, R) * self.scaling
        qpos = torch.arange(start, stop, device=q.device)
        ok = (torch.arange(R, device=q.device)[None, :] <= qpos[:, None])[None, None]
        if self.padding is not None:
            ok = ok & self.padding.bool()[:, None, None, :]
        probs = torch.softmax(scores.masked_fill(~ok, float("-inf")), dim=-1).nan_to_num(0.0)
        if self.padding is not None:
            probs = probs * self.padding[:, None, start:stop, None].to(probs.dtype)
        return probs

    def query_chunks(self):
        """(start, stop) spans of region queries whose attention rows stay under QUERY_CHUNK_ELEMENTS."""
        B, Hq, R, _ = self.query.shape
        step = max(1, QUERY_CHUNK_ELEMENTS // max(1, B * Hq * R))
        for start in range(0, R, step):
            yield start, min(start + step, R)


def region_budget(cfg: SparseConfig, region: int) -> int:
    """n_keep: region tokens kept per KV head at `cfg.k` (k blocks of block_k tokens, at most R)."""
    return min(region, cfg.k * cfg.block_k)


def keep_top_tokens(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """LongTensor [B, Hkv, n_keep]: the ascending positions of the n_keep highest scores per
    row, ties to the earlier position (a stable sort; topk's tie order is unspecified)."""
    order = scores.sort(dim=-1, descending=True, stable=True).indices
    return order[..., :n_keep].sort(dim=-1).values


def visible_keys(kept: torch.Tensor, region: int, kv_len: int) -> torch.Tensor:
    """Bool [B, Hkv, kv_len]: the kept region keys and every key after the region."""
    visible = torch.ones(*kept.shape[:2], kv_len, dtype=torch.bool, device=kept.device)
    visible[..., :region] = False
    return visible.scatter_(-1, kept, True)


def check_whole_prompt(query, key, region: int) -> int:
    """The prompt length T, after checking there is a query for every key (the scorers read
    the region's queries; a cached prefix's come from `SparseController.prefix_queries`) and
    the region is 1..T tokens."""
    T = key.shape[2]
    if query.shape[2] != T:
        raise ValueError("kv-cache methods score the region's queries: run the whole prompt without a KV cache "
                         f"(got {query.shape[2]} queries for {T} keys)")
    if isinstance(region, bool) or not isinstance(region, int) or not 1 <= region <= T:
        raise ValueError(f"the compressed region must hold 1..{T} tokens, got {region!r}")
    return T


def compressed_region(cfg: SparseConfig, layer: int, n_layers: int, query, key, value, region: int,
                      padding=None, scaling: float | None = None) -> torch.Tensor:
    """LongTensor [B, Hkv, n]: the region tokens layer `layer` keeps per KV head under `cfg`'s
    kv method (n its layer budget); every region token when the budget covers the region."""
    check_whole_prompt(query, key, region)
    method = get_sparse_method(cfg.method)
    n_keep = region_budget(cfg, region)
    n_layer = int(method.kept(cfg, n_keep, layer, n_layers, region))
    B, Hkv = key.shape[:2]
    if n_layer >= region:
        return torch.arange(region, device=key.device).expand(B, Hkv, -1)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    pad = None if padding is None else padding[:, :region].bool()
    ctx = KVContext(query[:, :, :region].detach(), key[:, :, :region].detach(), value[:, :, :region].detach(),
                    scale, layer, n_layers, settings_of(cfg), pad, n_layer, cfg.seed)
    with torch.no_grad():
        scores = method.select(ctx)
    if tuple(scores.shape) != (B, Hkv, region):
        raise ValueError(f"kv-cache method {cfg.method!r} returned scores of shape {tuple(scores.shape)}, "
                         f"expected {(B, Hkv, region)}")
    if pad is not None:
        scores = scores.masked_fill(~pad[:, None, :], float("-inf"))
    return keep_top_tokens(scores.float(), n_layer)


def kv_attention(query, key, value, kept: torch.Tensor, region: int, padding=None,
                 scaling: float | None = None) -> torch.Tensor:
    """Attention output [B, Hq, T, D] with the region compressed to `kept` [B, Hkv, n].

    Region queries: dense causal attention (SDPA, is_causal). Queries after the region:
    the kept region keys and their causal keys after it, through a mask of shape
    [T - R, T] per (batch, head), never T x T. A query always sees its own position (a
    padding row then outputs its own value rather than NaN)."""
    T = check_whole_prompt(query, key, region)
    head_pad = None if padding is None else padding[:, :region]
    head = dense_attention(query[:, :, :region], key[:, :, :region], value[:, :, :region], head_pad, scaling)
    if region == T:
        return head
    group = query.shape[1] // key.shape[1]
    qpos = torch.arange(region, T, device=query.device)
    kpos = torch.arange(T, device=query.device)
    mask = visible_keys(kept, region, T)[:, :, None, :] & (kpos[None, :] <= qpos[:, None])
    if padding is not None:
        mask = mask & padding.bool()[:, None, None, :]
    mask = (mask | (kpos[None, :] == qpos[:, None])).repeat_interleave(group, dim=1)
    tail = torch.nn.functional.scaled_dot_product_attention(query[:, :, region:], key, value, attn_mask=mask,
                                                            scale=scaling, enable_gqa=group > 1)
    return torch.cat([head, tail], dim=2)


def answer_visibility(kept: torch.Tensor, region: int, kv_len: int, q_heads: int) -> torch.Tensor:
    """Bool [B, Hq, kv_len]: the keys the last query (position kv_len - 1) attends to."""
    if region == kv_len:  # the last query is in the region: dense causal attention
        return torch.ones(kept.shape[0], q_heads, kv_len, dtype=torch.bool, device=kept.device)
    return visible_keys(kept, region, kv_len).repeat_interleave(q_heads // kept.shape[1], dim=1)


@torch.no_grad()
def kept_token_indices(model, input_ids: torch.Tensor, method: str, n_kept: int,
                       settings=None) -> dict[int, torch.Tensor]:
    """{layer: LongTensor [Hkv, n_kept]}: the ascending tokens kv method `method` keeps per
    layer and KV head when the WHOLE input (batch 1) is the region, every layer is compressed
    and the prefill is full attention: KVPress's setting (it compresses the prefilled context
    and keeps int(T * (1 - compression_ratio)) tokens per KV head)."""
    spec = get_sparse_method(method)
    if not spec.is_kv:
        raise ValueError(f"sparse method {method!r} is not a kv-cache method")
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"kept_token_indices takes input ids of shape [1, T], got {tuple(input_ids.shape)}")
    T = input_ids.shape[1]
    if not 1 <= n_kept <= T:
        raise ValueError(f"n_kept must be in [1, {T}], got {n_kept}")
    cfg = SparseConfig(method=method, k=n_kept, block_q=1, block_k=1, dense_layers=0,
                       settings=make_settings(method) if settings is None else settings)
    kept: dict[int, torch.Tensor] = {}
    n_layers = model.config.num_hidden_layers

    def compress(layer, query, key, value, scaling):
        kept[layer] = compressed_region(cfg, layer, n_layers, query, key, value, T, None, scaling)[0]

    with dense_attention_with(model, compress):
        model(input_ids=input_ids)
    return dict(sorted(kept.items()))


def dense_attention_with(model, hook):
    """Context manager running `model` (one unpadded prompt, batch 1) under plain causal
    attention, calling `hook(layer, query, key, value, scaling)` in every layer first: what a
    full-attention prefill shows a kv method (the queries a cached prefix does not keep)."""

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        hook(module.layer_idx, query, key, value, scaling)
        return dense_attention(query, key, value, None, scaling).transpose(1, 2).contiguous(), None

    def no_mask(*args, **kwargs):
        """One unpadded prompt: attention is causal inside `attention`."""
        return None

    return attention_switch(model, "flipbench_dense_hook", attention, no_mask)
