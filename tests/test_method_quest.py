"""`quest` against a plain loop of Quest's page criticality (arXiv 2406.10774), a planted
key it must keep, a padding key it must ignore, and the budget contract."""

import pytest
import torch
import method_contract as contract

from sparse import SparseConfig, select_blocks


def criticality(row, j):
    """Quest: per channel d the page's min m_d and max M_d over its keys; a query q scores
    sum_d max(q_d M_d, q_d m_d); the query block takes its best query. No key: -inf."""
    keys = [x for _, x in row.keys_of(j)]
    if not keys or not row.queries:
        return float("-inf")
    dims = range(len(keys[0]))
    low = [min(float(x[d]) for x in keys) for d in dims]
    high = [max(float(x[d]) for x in keys) for d in dims]
    return max(sum(max(float(q[d]) * high[d], float(q[d]) * low[d]) for d in dims) for _, q in row.queries)


def reference_quest(query, key, cfg, q_offset=0, padding=None):
    return contract.reference_selection(query, key, cfg, q_offset, padding,
                                        lambda row, n: contract.top_by_score(row, n, criticality))


@pytest.mark.parametrize("geometry", contract.GEOMETRIES)
@pytest.mark.parametrize("sink,local", contract.RESERVED)
def test_quest_equals_the_plain_loop_reference(geometry, sink, local):
    contract.check_against_reference("quest", reference_quest, geometry, sink, local)


def test_quest_keeps_the_page_of_one_huge_aligned_key_and_ignores_padding_keys():
    """Keys are small noise except a huge key aligned with the queries in block 5 (kept,
    though its other keys are noise) and a larger one at a padding position of block 1
    (never kept: padding does not enter a page's min/max)."""
    g = torch.Generator().manual_seed(0)
    query = torch.randn(1, 2, 64, 8, generator=g)
    key = 0.1 * torch.randn(1, 1, 64, 8, generator=g)
    direction = query[0, :, 48:52].mean((0, 1))
    key[0, 0, 5 * 4 + 2] = 20 * direction
    key[0, 0, 1 * 4 + 1] = 100 * direction
    padding = torch.ones(1, 64, dtype=torch.bool)
    padding[0, :6] = False  # block 0 and the first two tokens of block 1
    cfg = SparseConfig(method="quest", k=2, block_q=4, block_k=4)
    sel = select_blocks(query, key, cfg, key_padding_mask=padding)
    assert sel[0, :, 12].tolist() == [[5, 12], [5, 12]]
    assert not (sel[0, :, 6:] == 1).any()


def test_quest_meets_the_density_contract():
    contract.check_density_contract("quest")


@pytest.mark.parametrize("arch,kv_heads", [("llama", 2), ("qwen3", 4)])
def test_quest_is_exact_at_large_k_and_differs_at_small_k(arch, kv_heads):
    contract.check_exact_at_large_k("quest", arch, kv_heads)
