"""The two gather kernels of `block_sparse_attention` (per query head, per KV head over the
union of its query group's blocks) against a dense masked softmax over the kept keys: GQA
groups 1, 2, 3 and 6, -1 padded selections, left padding, a cached prefix that is not a
multiple of b_q, b_q != b_k, one, a few or all rows per chunk; values and gradients."""

import pytest
import torch

import sparse.attention as attention_module
from sparse import SparseConfig, block_sparse_attention, select_blocks
from sparse.layout import checked_layout, sort_selection


def dense_reference(q, k, v, selection, bq, bk, q_offset, padding, scaling):
    """softmax over the keys of the blocks each query's head keeps, causal and not padding
    (T x T, tests only); a query with no such key outputs 0."""
    Hq, Tk = q.shape[1], k.shape[2]
    k, v = (t.repeat_interleave(Hq // t.shape[1], 1) for t in (k, v))
    qpos = torch.arange(q_offset, Tk)
    sel = selection[:, :, qpos // bq - q_offset // bq]  # [B, Hq, Tq, W]; -1 matches no block
    kpos = torch.arange(Tk)
    mask = (sel[..., None] == kpos // bk).any(-2) & (kpos <= qpos[:, None]) & padding[:, None, None, :]
    seen = mask.any(-1, keepdim=True)
    scores = (q @ k.transpose(-1, -2)) * scaling
    return torch.softmax(scores.masked_fill(~(mask | ~seen), float("-inf")), -1) @ v * seen


def gather(kernel, q, k, v, sel, cfg, q_offset, padding, scaling):
    lay = checked_layout(q, k, sel, cfg, q_offset)
    if kernel == "per query head":
        return attention_module._gather_per_query_head(q, k, v, sel, lay, padding, scaling)
    unions = attention_module._group_unions(sel, k.shape[1])
    return attention_module._gather_per_kv_head(q, k, v, *unions, lay, padding, scaling)


@pytest.mark.parametrize("kernel", ["per query head", "per KV head"])
@pytest.mark.parametrize("blocks", ["per head", "shared by the group"])
@pytest.mark.parametrize("q_heads,kv_heads", [(2, 2), (4, 2), (6, 2), (6, 1)])
@pytest.mark.parametrize("kv_len,q_offset,bq,bk,k", [(53, 13, 8, 4, 3), (45, 6, 4, 8, 2), (40, 0, 8, 8, 3)])
@pytest.mark.parametrize("budget", [0, 20_000, 1 << 24])  # chunks of one row, of a few, a single chunk
def test_gather_kernels_match_dense_reference(kernel, blocks, q_heads, kv_heads, kv_len, q_offset, bq, bk, k,
                                              budget, monkeypatch):
    g = torch.Generator().manual_seed(q_heads * 100 + kv_len)
    B, D, Tq = 2, 16, kv_len - q_offset
    q = torch.randn(B, q_heads, Tq, D, generator=g)
    key, value = (torch.randn(B, kv_heads, kv_len, D, generator=g) for _ in range(2))
    padding = torch.ones(B, kv_len, dtype=torch.bool)
    padding[1, : q_offset + 3] = False  # left padding: item 1's first 3 queries see no real key
    cfg = SparseConfig(method="random", k=k, block_q=bq, block_k=bk, seed=7)
    sel = select_blocks(q, key, cfg, q_offset=q_offset, key_padding_mask=padding)
    if blocks == "shared by the group":  # each head then drops its own subset: the union has repeats
        sel = sel[:, (torch.arange(q_heads) // (q_heads // kv_heads)) * (q_heads // kv_heads)]
    sel = sort_selection(sel.masked_fill(torch.rand(sel.shape, generator=g) < 0.3, -1))  # -1 padding
    assert (sel < 0).any() and (sel[:, :1] != sel[:, 1:2]).any()  # heads keep different blocks
    monkeypatch.setattr(attention_module, "LOOP_CHUNK_ELEMENTS", budget)
    tensors = [t.clone().requires_grad_(True) for t in (q, key, value)]
    refs = [t.clone().requires_grad_(True) for t in (q, key, value)]
    out = gather(kernel, *tensors, sel, cfg, q_offset, padding, 0.3)
    ref = dense_reference(*refs, sel, bq, bk, q_offset, padding, 0.3)
    assert torch.allclose(out, ref, atol=1e-5)
    assert out[1, :, :3].abs().max() == 0
    weights = torch.randn(ref.shape, generator=g)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    for got, want in zip(tensors, refs):
        assert torch.allclose(got.grad, want.grad, atol=1e-5)


@pytest.mark.parametrize("method,batch,kernel", [("window", 2, "_gather_per_kv_head"),
                                                 ("window", 1, "_gather_per_query_head"),
                                                 ("random", 2, "_gather_per_query_head")])
def test_gather_kernel_is_chosen_by_the_union_width(method, batch, kernel, monkeypatch):
    """The rule of `_gathered_attention`: window selections (the same blocks for every head, union
    width = W) gather per KV head unless the selection is tiny; independent per-head selections
    (union width near G*W) gather per query head."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(batch, 12, 64 if batch > 1 else 16, 16, generator=g)
    key, value = (torch.randn(batch, 2, q.shape[2], 16, generator=g) for _ in range(2))
    cfg = SparseConfig(method=method, k=3)
    sel = select_blocks(q, key, cfg)
    calls = []
    original = getattr(attention_module, kernel)
    monkeypatch.setattr(attention_module, kernel, lambda *args: calls.append(kernel) or original(*args))
    out = block_sparse_attention(q, key, value, sel, cfg)
    assert calls == [kernel]
    padding = torch.ones(batch, q.shape[2], dtype=torch.bool)
    assert torch.allclose(out, dense_reference(q, key, value, sel, 8, 8, 0, padding, 16**-0.5), atol=1e-5)
