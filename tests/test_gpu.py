"""What only a CUDA machine can check (`pytest -m gpu`; skipped elsewhere): the compiled
Triton kernel equals the gather kernel on CUDA tensors, and a `Target` sweep on CUDA (where
sparse modes default to that kernel) scores as the CPU sweep does."""

import copy
import importlib.util
import os

import pytest
import torch
from tiny_models import answer_mostly_yes_or_no, tiny_model, tiny_tokenizer

from attacks import Target
from sparse import SparseConfig, block_sparse_attention, select_blocks
from sparse.hf import default_kernel
from sparse.triton_kernel import triton_block_sparse_attention
from tasks import TaskItem

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

# Only asked on a CUDA machine, so that elsewhere the skip reason is the missing device.
compiled_triton = pytest.mark.skipif(
    torch.cuda.is_available()
    and (importlib.util.find_spec("triton") is None or os.environ.get("TRITON_INTERPRET") == "1"),
    reason="the compiled kernel needs Triton installed and TRITON_INTERPRET unset (else: the interpreter)",
)


def cuda_qkv(batch, q_heads, kv_heads, q_len, kv_len, dim, seed):
    g = torch.Generator().manual_seed(seed)
    shapes = [(batch, q_heads, q_len, dim), (batch, kv_heads, kv_len, dim), (batch, kv_heads, kv_len, dim)]
    return [torch.randn(*shape, generator=g).cuda() for shape in shapes]


# heads (query, kv), query and key lengths (a cached prefix when they differ), head dim, block sizes
SHAPES = [
    ((2, 2), 48, 48, 16, 8, 8),  # no GQA, no prefix
    ((6, 2), 37, 61, 16, 8, 8),  # GQA group 3, prefix of 24 tokens
    ((3, 1), 29, 50, 32, 8, 4),  # offset 21 (not a multiple of b_q), b_q != b_k
    ((4, 2), 20, 45, 8, 4, 8),  # head dim below tl.dot's 16: padded tiles
    ((9, 3), 200, 330, 64, 64, 64),  # smollm2's heads and head dim, the default 64-token blocks
]


@compiled_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("heads,q_len,kv_len,dim,bq,bk", SHAPES)
def test_compiled_triton_equals_the_gather_kernel(heads, q_len, kv_len, dim, bq, bk, dtype):
    """fp32: both tl.dot calls ask for input_precision="ieee", so no TF32 (Triton's fp32 default
    on GPUs, ~1e-3 off) and the CPU tests' 1e-4 holds. fp16: the reference is the gather kernel
    in fp32 on the same fp16-rounded inputs; a few fp16 ulps, as on CPU."""
    q, key, v = (t.to(dtype) for t in cuda_qkv(2, *heads, q_len, kv_len, dim, seed=q_len))
    offset = kv_len - q_len
    padding = torch.ones(2, kv_len, dtype=torch.bool, device="cuda")
    padding[1, : offset + 5] = False  # left padding reaching into the queries: their first rows see no key
    cfg = SparseConfig(method="stream", k=3, block_q=bq, block_k=bk)
    sel = select_blocks(q.float(), key.float(), cfg, offset, padding)
    sel = torch.cat([sel, torch.full_like(sel[..., :1], -1)], dim=-1)  # a -1 padded slot in every row
    with torch.no_grad():
        got = triton_block_sparse_attention(q, key, v, sel, cfg, offset, padding)
        want = block_sparse_attention(q.float(), key.float(), v.float(), sel, cfg, offset, padding)
    assert got.dtype == dtype and got.is_cuda
    assert torch.isfinite(got).all()
    assert (got.float() - want).abs().max() < (1e-4 if dtype == torch.float32 else 4e-3)
    assert got[1, :, :5].abs().max() == 0  # rows with no visible key give 0, as in the gather kernel


def test_a_cuda_sweep_scores_as_the_cpu_sweep():
    """Full attention runs the shared-prefix path, sparse modes the default kernel of each device
    (Triton on CUDA when installed, the gather kernel on CPU)."""
    tok = tiny_tokenizer()
    cpu_model = answer_mostly_yes_or_no(tiny_model("qwen2", layers=3, vocab=len(tok), seed=0), tok)
    cuda_model = copy.deepcopy(cpu_model).cuda()
    cfg = SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1)
    item = TaskItem(id="gpu-0", question="Is fire hot?", answer="yes")
    context = "Water boils at one hundred degrees at sea level. " * 3
    sweeps = []
    for model in (cpu_model, cuda_model):
        target = Target(model, tok, cfg)
        prepared = target.prepare(item, context)
        sweeps.append(target.sweep(prepared, [5, 6, 7], [1, 2, 3]))
    if importlib.util.find_spec("triton") is not None:
        assert default_kernel(cuda_model) == "triton"
    cpu, cuda = sweeps
    assert cpu.keys() == cuda.keys()
    assert all(score.p_correct + score.p_wrong > 0.9 for score in cpu.values())  # 1e-4 is not vacuous
    for mode in cpu:
        assert cuda[mode].p_correct == pytest.approx(cpu[mode].p_correct, abs=1e-4), mode
        assert cuda[mode].p_wrong == pytest.approx(cpu[mode].p_wrong, abs=1e-4), mode
