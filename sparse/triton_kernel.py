"""Block-sparse attention as a Triton kernel (inference): the same result as
`block_sparse_attention`, read from the same selection tensor.

One program per (query block, batch x query head) walks the head's selected key blocks
with an online softmax, so nothing of size T x T, nor a gathered copy of the keys,
ever exists. GQA-aware: a query head reads the key and value rows of its KV head
(h // group) in place; no per-query-head copy of K/V. Causal at token level inside the
diagonal block; left padding through `key_padding_mask`; rows that see no key give 0.

Triton is optional (`pip install flipbench[triton]` or `pip install triton`). On a
GPU this is the fastest inference kernel; on a CPU Triton runs only in its
interpreter (`TRITON_INTERPRET=1`, set before the first call), which is for testing,
not speed. No backward: forwards that need gradients use the gather kernel
(`sparse.hf` switches automatically). Scores and the softmax accumulate in fp32; for fp16
and bf16 inputs the probabilities are rounded to V's dtype before the P @ V product
(tl.dot takes operands of one dtype).
"""

from __future__ import annotations

import functools
import os

import torch

from .config import SparseConfig
from .layout import checked_layout

INSTALL_HINT = "kernel='triton' needs Triton: pip install flipbench[triton] (or pip install triton)"


@functools.lru_cache(maxsize=1)
def _kernel():
    """The jitted kernel, defined at first use so that TRITON_INTERPRET set by then applies."""
    try:
        import triton
        import triton.language as tl
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc

    @triton.jit
    def block_sparse_fwd(
        Q, K, V, SEL, PAD, OUT,
        sq_b, sq_h, sq_t, sq_d,
        sk_b, sk_h, sk_t, sk_d,
        sv_b, sv_h, sv_t, sv_d,
        ss_b, ss_h, ss_c, ss_w,
        sp_b, sp_t,
        so_b, so_h, so_t, so_d,
        n_heads, group, q_len, kv_len, q_offset, first_qblock, width, scaling,
        BQ: tl.constexpr, BK: tl.constexpr, D: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ):
        c = tl.program_id(0)
        bh = tl.program_id(1).to(tl.int64)  # b * stride may pass 2**31 elements in a large batch
        b = bh // n_heads
        h = bh % n_heads
        kvh = h // group
        rows = tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_N)
        dims = tl.arange(0, BLOCK_D)
        qpos = (first_qblock + c) * BQ + rows  # absolute positions of this block's queries
        t = qpos - q_offset  # their index in the query tensor
        q_ok = (rows < BQ) & (t >= 0) & (t < q_len)
        d_ok = dims < D
        q = tl.load(Q + b * sq_b + h * sq_h + t[:, None] * sq_t + dims[None, :] * sq_d,
                    mask=q_ok[:, None] & d_ok[None, :], other=0.0)
        # A finite "minus infinity": exp(m - m) stays defined and masked scores are zeroed
        # explicitly, so rows that see no key never produce NaN.
        m_i = tl.full((BLOCK_M,), -1.0e30, tl.float32)
        l_i = tl.zeros((BLOCK_M,), tl.float32)
        acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
        for w in range(width):
            blk = tl.load(SEL + b * ss_b + h * ss_h + c * ss_c + w * ss_w)
            if blk >= 0:
                kpos = blk * BK + cols
                k_ok = (cols < BK) & (kpos < kv_len)
                real = tl.load(PAD + b * sp_b + kpos * sp_t, mask=k_ok, other=0)
                k_ok = k_ok & (real != 0)
                kv_mask = k_ok[:, None] & d_ok[None, :]
                k = tl.load(K + b * sk_b + kvh * sk_h + kpos[:, None] * sk_t + dims[None, :] * sk_d,
                            mask=kv_mask, other=0.0)
                v = tl.load(V + b * sv_b + kvh * sv_h + kpos[:, None] * sv_t + dims[None, :] * sv_d,
                            mask=kv_mask, other=0.0)
                s = tl.dot(q, tl.trans(k), input_precision="ieee") * scaling
                visible = q_ok[:, None] & k_ok[None, :] & (kpos[None, :] <= qpos[:, None])
                s = tl.where(visible, s, -1.0e30)
                m_new = tl.maximum(m_i, tl.max(s, axis=1))
                p = tl.where(visible, tl.exp(s - m_new[:, None]), 0.0)
                alpha = tl.exp(m_i - m_new)
                l_i = l_i * alpha + tl.sum(p, axis=1)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
                m_i = m_new
        out = tl.where(l_i[:, None] > 0, acc / tl.maximum(l_i, 1e-30)[:, None], 0.0)
        tl.store(OUT + b * so_b + h * so_h + t[:, None] * so_t + dims[None, :] * so_d, out,
                 mask=q_ok[:, None] & d_ok[None, :])

    return block_sparse_fwd


def _padded(n: int) -> int:
    """Tile size for n rows or columns: a power of two, at least 16 (tl.dot's minimum)."""
    return max(16, 1 << (n - 1).bit_length())


def triton_block_sparse_attention(query, key, value, selection, cfg: SparseConfig, q_offset: int = 0,
                                  key_padding_mask=None, scaling=None) -> torch.Tensor:
    """Same result as `block_sparse_attention` (arguments and output alike), through the Triton kernel."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)):
        raise RuntimeError("the Triton kernel has no backward; use kernel='gather' for gradients")
    if query.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the Triton kernel runs on CPU tensors only in Triton's interpreter: set "
                           "TRITON_INTERPRET=1 before the first call (testing only), or use a GPU")
    kernel = _kernel()
    lay = checked_layout(query, key, selection, cfg, q_offset)
    B, Hq, Tq, D = query.shape
    Hkv, Tk = key.shape[1], key.shape[2]
    if value.shape[-1] != D:
        raise ValueError(f"the Triton kernel needs value head dim == query head dim, got {value.shape[-1]} and {D}")
    scaling = D**-0.5 if scaling is None else scaling
    pad = (torch.ones(B, Tk, dtype=torch.int8, device=query.device) if key_padding_mask is None
           else key_padding_mask.to(torch.int8))
    sel = selection.to(torch.int32)
    out = torch.empty(B, Hq, Tq, D, dtype=query.dtype, device=query.device)
    kernel[(lay.n_qblocks, B * Hq)](
        query, key, value, sel, pad, out,
        *query.stride(), *key.stride(), *value.stride(), *sel.stride(), *pad.stride(), *out.stride(),
        Hq, Hq // Hkv, Tq, Tk, q_offset, lay.first_qblock, sel.shape[-1], float(scaling),
        BQ=lay.block_q, BK=lay.block_k, D=D,
        BLOCK_M=_padded(lay.block_q), BLOCK_N=_padded(lay.block_k), BLOCK_D=_padded(D),
    )
    return out
