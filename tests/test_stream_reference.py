"""STREAM against a plain-loop reference of the algorithm documented in sparse/methods/stream.py,
and block scoring against its dense counterpart: exact equality on random inputs."""

import itertools
import math

import pytest
import torch

import sparse.layout as layout_module
from sparse import SelectionContext, SparseConfig, select_blocks, validate_selection

NEG = float("-inf")


def reference_stream(query, key, cfg, q_offset=0, padding=None):
    """sparse/methods/stream.py's docstring, one (batch, head, query block) at a time."""
    B, Hq, Tq, D = query.shape
    Hkv, T = key.shape[1], key.shape[2]
    bq, bk, k = cfg.block_q, cfg.block_k, cfg.k
    first = q_offset // bq
    n_q = math.ceil(T / bq) - first
    n_k = math.ceil(T / bk)
    S, L = cfg.sink_blocks, max(cfg.local_blocks, 1)
    width = min(n_k, S + L + k - 1)
    out = torch.full((B, Hq, n_q, width), -1, dtype=torch.long)
    for b, h, c in itertools.product(range(B), range(Hq), range(n_q)):
        qb = first + c
        qpos = [p if q_offset <= p < T else -1 for p in range(qb * bq, (qb + 1) * bq)]
        d = min((qb + 1) * bq - 1, T - 1) // bk
        reserved = {j for j in range(d + 1) if j < S or j > d - L}
        if d + 1 <= len(reserved) + k - 1:
            kept = set(range(d + 1))
        else:
            qblock = [query[b, h, p - q_offset] if p >= 0 else None for p in qpos]

            def score(j):
                kpos = list(range(j * bk, (j + 1) * bk))
                valid = [p < T and (padding is None or bool(padding[b, p])) for p in kpos]
                keys = [key[b, h // (Hq // Hkv), min(p, T - 1)] for p in kpos]
                best = NEG
                for a, pa in enumerate(qpos):
                    for kk, pk in enumerate(kpos):
                        if pa >= 0 and pk <= pa and valid[kk]:
                            best = max(best, float(qblock[a] @ keys[kk]))
                return best

            branches, lo, hi = k - 1, S, d - L + 1
            m = hi - lo
            spans = [(lo + (j * m) // branches, lo + ((j + 1) * m) // branches) for j in range(branches)]
            while any(e - s > 1 for s, e in spans):
                lefts, rights = [], []
                for s, e in spans:
                    half = (e - s + 1) // 2
                    lefts.append((s, s + half))
                    rights.append((s + half, e))
                children = lefts + rights
                keyed = []
                for s, e in children:
                    if e <= s:
                        keyed.append(NEG)
                    else:
                        value = score(s + (e - s - 1) // 2)
                        keyed.append(torch.finfo(torch.float32).min if value == NEG else value)
                order = sorted(range(len(children)), key=lambda i: -keyed[i])  # stable: ties to the earlier
                spans = [children[i] for i in order[:branches]]
            kept = reserved | {s for s, _ in spans}
        row = sorted(kept)
        out[b, h, c, : len(row)] = torch.tensor(row)
    return out


@pytest.fixture(params=["table", "gathered"])
def scoring(request, monkeypatch):
    """Both ways SelectionContext.block_scores scores candidates: from the dense score table
    (short sequences) and by gathering key blocks (forced by a zero size budget)."""
    if request.param == "gathered":
        monkeypatch.setattr(layout_module, "CHUNK_ELEMENTS", 0)
        monkeypatch.setattr(layout_module, "LOOP_CHUNK_ELEMENTS", 0)  # and one query block per chunk
    return request.param


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("heads", [(4, 2), (2, 2)])
@pytest.mark.parametrize("sink,local", [(0, 0), (1, 0), (1, 2)])
def test_stream_equals_the_plain_loop_reference(k, heads, sink, local, scoring):
    g = torch.Generator().manual_seed(k * 10 + heads[1] + sink * 3 + local)
    Hq, Hkv = heads
    T, q_offset = 61, 21
    query = torch.randn(2, Hq, T - q_offset, 8, generator=g, dtype=torch.float64)
    key = torch.randn(2, Hkv, T, 8, generator=g, dtype=torch.float64)
    padding = torch.ones(2, T, dtype=torch.bool)
    padding[1, :6] = False  # left padding on the second sequence
    cfg = SparseConfig(method="stream", k=k, block_q=4, block_k=3, sink_blocks=sink, local_blocks=local)
    got = select_blocks(query, key, cfg, q_offset, padding)
    assert torch.equal(got, reference_stream(query, key, cfg, q_offset, padding))
    validate_selection(got, cfg, T, q_offset)


def test_block_scores_equal_dense_block_scores_at_the_same_candidates(scoring):
    g = torch.Generator().manual_seed(0)
    T, q_offset = 45, 13
    query, key = torch.randn(2, 4, T - q_offset, 8, generator=g), torch.randn(2, 2, T, 8, generator=g)
    padding = torch.ones(2, T, dtype=torch.bool)
    padding[0, :7] = False
    ctx = SelectionContext(query, key, SparseConfig(block_q=4, block_k=5), q_offset, padding)
    rows = slice(0, ctx.layout.n_qblocks)
    dense = ctx.dense_block_scores(rows)  # [B, H, C, n_kblocks]
    cand = torch.randint(-1, ctx.layout.n_kblocks + 1, (2, 4, ctx.layout.n_qblocks, 6), generator=g)
    got = ctx.block_scores(rows, cand)
    inside = (cand >= 0) & (cand < ctx.layout.n_kblocks)
    want = torch.where(inside, dense.gather(-1, cand.clamp(0, ctx.layout.n_kblocks - 1)), torch.tensor(NEG))
    assert torch.equal(torch.isneginf(got), torch.isneginf(want))
    assert torch.allclose(got[~torch.isneginf(got)], want[~torch.isneginf(want)], atol=1e-5)
    assert torch.isneginf(got).any() and (~torch.isneginf(got)).any()  # both cases exercised
