"""`xattention` against a plain loop of XAttention's strided antidiagonal scoring and threshold
selection (arXiv 2503.16428, written from the paper) at flipbench's fixed budget, a planted
column it must keep, a padding key it must ignore, and the budget contract."""

import math

import pytest
import torch
from method_contract import check_density_contract, check_exact_at_large_k, reference_selection
from test_method_flexprefill import cover
from test_method_minference import assert_keeps_the_column, check_equals_reference, planted_column

from sparse import SparseConfig, make_settings, select_blocks, validate_selection


def antidiagonal_scores(row, stride):
    """Per key block 0..d: the share of the row's softmax over its sampled entries, the real
    (query p, key c <= p) with (p + c) mod stride == stride - 1, of q.k / sqrt(D)."""
    logits = {}
    for p, q in row.queries:
        for j in range(row.d + 1):
            for c, x in row.keys_of(j):
                if c <= p and (p + c) % stride == stride - 1:
                    logits[p, c] = float(q @ x) / math.sqrt(len(x))
    top = max(logits.values(), default=0.0)
    total = sum(math.exp(v - top) for v in logits.values())
    scores = [0.0] * (row.d + 1)
    for (_, c), v in logits.items():
        scores[c // row.block_k] += math.exp(v - top) / total
    return scores


def reference_xattention(query, key, cfg, q_offset=0, padding=None, settings=None):
    s = settings or make_settings("xattention")
    stride = math.gcd(s.stride, cfg.block_q, cfg.block_k)

    def choose(row, n):
        scores = antidiagonal_scores(row, stride)
        first = cover(scores, s.tau)
        candidates = [j for j in range(row.d + 1) if j not in row.reserved]
        return sorted(candidates, key=lambda j: (j not in first, -scores[j]))[:n]

    return reference_selection(query, key, cfg, q_offset, padding, choose)


@pytest.mark.parametrize("kv_len,q_offset,block_q,block_k,k,stride", [
    (61, 21, 4, 8, 3, 4),   # cached prefix, b_q != b_k, T not a multiple of either
    (50, 0, 4, 4, 4, 2),
    (45, 8, 8, 4, 2, 4),
    (64, 16, 8, 8, 3, 8),   # the paper's stride
    (37, 0, 6, 4, 5, 8),    # blocks not multiples of 8: stride gcd(8, 6, 4) = 2
])
@pytest.mark.parametrize("sink,local", [(0, 0), (1, 2)])
@pytest.mark.parametrize("tau", [0.9, 0.3])
def test_xattention_equals_the_plain_loop_reference(kv_len, q_offset, block_q, block_k, k, stride, sink, local, tau):
    check_equals_reference("xattention", reference_xattention, (kv_len, q_offset, block_q, block_k, k), sink, local,
                           {"stride": stride, "tau": tau})


def test_xattention_keeps_a_strong_column_and_ignores_a_padding_key():
    """Every query looks at key 13 (block 1): every query block that can choose keeps block 1;
    a larger key at a padding position of block 3 is never kept."""
    query, key, direction = planted_column()
    key[0, 0, 26] = 10 * direction
    padding = torch.ones(1, 128, dtype=torch.bool)
    padding[0, 26] = False
    cfg = SparseConfig(method="xattention", k=2, block_q=8, block_k=8)
    sel = select_blocks(query, key, cfg, key_padding_mask=padding)
    validate_selection(sel, cfg, 128)
    assert_keeps_the_column(sel)


def test_xattention_meets_the_density_contract():
    check_density_contract("xattention")


def test_xattention_is_exact_at_large_k_and_differs_at_small_k():
    check_exact_at_large_k("xattention")


@pytest.mark.parametrize("values,message", [
    ({"stride": 0}, "stride must be an integer >= 1, got 0"),
    ({"stride": 2.5}, "stride must be an integer >= 1, got 2.5"),
    ({"tau": 0}, r"tau must be a number in \(0, 1\], got 0"),
])
def test_xattention_settings_name_the_setting_and_its_range(values, message):
    with pytest.raises(ValueError, match=f"sparse method 'xattention': {message}"):
        make_settings("xattention", values)
