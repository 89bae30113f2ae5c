"""The Triton kernel equals the gather kernel (Triton's interpreter on CPU tensors):
GQA, cached prefixes at any offset, -1 padded selections, left padding with rows that see
no key, fp16 inputs, inside a model; and it refuses what it cannot do with errors that say why.
The compiled kernel on a GPU: tests/test_gpu.py."""

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from tiny_models import tiny_model  # noqa: E402

from sparse import SparseConfig, block_sparse_attention, select_blocks, sparse_attention  # noqa: E402
from sparse.hf import default_kernel  # noqa: E402
from sparse.triton_kernel import triton_block_sparse_attention  # noqa: E402

# conftest.py turns the interpreter on only when there is no GPU: one process runs Triton
# either interpreted or compiled, and on a GPU machine the compiled kernel is the one to test.
interpreted = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                 reason="CPU tensors need Triton's interpreter (TRITON_INTERPRET=1), "
                                        "off on a GPU machine: tests/test_gpu.py covers the compiled kernel")


def qkv(batch, q_heads, kv_heads, q_len, kv_len, dim, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, q_heads, q_len, dim, generator=g),
            torch.randn(batch, kv_heads, kv_len, dim, generator=g),
            torch.randn(batch, kv_heads, kv_len, dim, generator=g))


@interpreted
@pytest.mark.parametrize(
    "heads,q_len,kv_len,dim,bq,bk,method,k",
    [
        ((2, 2), 48, 48, 16, 8, 8, "stream", 2),  # no GQA, no prefix
        ((6, 2), 37, 61, 16, 8, 8, "stream", 3),  # GQA group 3, prefix of 24 tokens
        ((3, 1), 29, 50, 32, 8, 4, "random", 4),  # group 3, offset 21 (not a multiple of b_q), b_q != b_k
        ((4, 2), 20, 45, 8, 4, 8, "stream", 5),  # head dim below tl.dot's 16: padded tiles
    ],
)
def test_triton_equals_the_gather_kernel(heads, q_len, kv_len, dim, bq, bk, method, k):
    q, key, v = qkv(2, *heads, q_len, kv_len, dim, seed=q_len)
    offset = kv_len - q_len
    padding = torch.ones(2, kv_len, dtype=torch.bool)
    padding[1, : offset + 5] = False  # left padding reaching into the queries: their first rows see no key
    cfg = SparseConfig(method=method, k=k, block_q=bq, block_k=bk, seed=1)
    sel = select_blocks(q, key, cfg, offset, padding)
    sel = torch.cat([sel, torch.full_like(sel[..., :1], -1)], dim=-1)  # a -1 padded slot in every row
    with torch.no_grad():
        got = triton_block_sparse_attention(q, key, v, sel, cfg, offset, padding)
        want = block_sparse_attention(q, key, v, sel, cfg, offset, padding)
    assert torch.isfinite(got).all()
    assert (got - want).abs().max() < 1e-4
    assert got[1, :, :5].abs().max() == 0  # rows with no visible key give 0, as in the gather kernel


@interpreted
def test_fp16_inputs_compile_and_stay_within_fp16_rounding():
    """Models run in half precision on GPUs: tl.dot needs P cast to V's dtype. (bf16 tl.dot
    is wrong in Triton 3.9's interpreter itself, so fp16 stands in for it here.)"""
    q, key, v = (t.half() for t in qkv(2, 6, 2, 37, 61, 16, seed=3))
    padding = torch.ones(2, 61, dtype=torch.bool)
    padding[1, :29] = False  # the first 5 queries of row 1 see no key
    cfg = SparseConfig(method="stream", k=3, block_q=8, block_k=8)
    sel = select_blocks(q.float(), key.float(), cfg, 24, padding)
    with torch.no_grad():
        got = triton_block_sparse_attention(q, key, v, sel, cfg, 24, padding)
        want = block_sparse_attention(q.float(), key.float(), v.float(), sel, cfg, 24, padding)
    assert got.dtype == torch.float16
    assert (got.float() - want).abs().max() < 4e-3  # a few fp16 ulps: 9.1e-4 here, the gather kernel in fp16 1.4e-3
    assert got[1, :, :5].abs().max() == 0


@interpreted
def test_transposed_inputs_use_their_strides():
    q, key, v = qkv(1, 4, 2, 32, 32, 16, seed=5)
    q_t = q.transpose(1, 2).contiguous().transpose(1, 2)  # [B, T, H, D] storage, as attention projections give
    cfg = SparseConfig(method="stream", k=2, block_q=8, block_k=8)
    sel = select_blocks(q, key, cfg)
    with torch.no_grad():
        got = triton_block_sparse_attention(q_t, key, v, sel, cfg)
        want = block_sparse_attention(q, key, v, sel, cfg)
    assert (got - want).abs().max() < 1e-4


@interpreted
def test_inside_a_model_triton_equals_gather_and_gradients_fall_back():
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (2, 40), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0
    cfg = SparseConfig(k=2, block_q=8, block_k=8, dense_layers=1)
    with torch.no_grad():
        with sparse_attention(model, cfg, kernel="gather"):
            gather = model(input_ids=ids, attention_mask=mask).logits
        with sparse_attention(model, cfg, kernel="triton"):
            triton = model(input_ids=ids, attention_mask=mask).logits
    assert (triton[0] - gather[0]).abs().max() < 1e-4
    assert (triton[1, 7:] - gather[1, 7:]).abs().max() < 1e-4
    with sparse_attention(model, cfg, kernel="triton"):  # gradients: the gather kernel runs instead
        loss = model(input_ids=ids[:1]).logits[0, -1].logsumexp(-1)
    loss.backward()
    assert default_kernel(model) == "gather"  # a CPU model


def test_errors_say_what_is_missing(monkeypatch):
    q, key, v = qkv(1, 2, 2, 16, 16, 16, seed=0)
    cfg = SparseConfig(method="stream", k=2, block_q=8, block_k=8)
    sel = select_blocks(q, key, cfg)
    with pytest.raises(RuntimeError, match="no backward"):
        triton_block_sparse_attention(q.requires_grad_(True), key, v, sel, cfg)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"), torch.no_grad():
        triton_block_sparse_attention(q, key, v, sel, cfg)
    monkeypatch.setitem(sys.modules, "triton", None)  # as if Triton were not installed
    with pytest.raises(ImportError, match=r"pip install flipbench\[triton\]"):
        with sparse_attention(tiny_model("llama"), cfg, kernel="triton"):
            pass


def test_sparse_imports_without_triton_and_the_kernel_names_the_extra():
    """Triton is optional: `import sparse` must work without it, and a direct call says what to install."""
    code = (
        "import sys; sys.modules['triton'] = None\n"  # as if Triton were not installed
        "import torch, sparse\n"
        "from sparse.triton_kernel import triton_block_sparse_attention\n"
        "q = torch.zeros(1, 1, 8, 16)\n"
        "try:\n"
        "    triton_block_sparse_attention(q, q, q, torch.zeros(1, 1, 1, 1, dtype=torch.long), sparse.SparseConfig())\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          env={**os.environ, "TRITON_INTERPRET": "1"})  # CPU tensors pass the device check
    assert "pip install flipbench[triton]" in done.stdout
