"""`block-mean` against a plain loop of the pooled gate (mean query . mean key, as in
MInference's block estimate and MoBA's gate), a case where pooling must drop the block an
exact score keeps, and the budget contract."""

import pytest
import torch
import method_contract as contract

from sparse import SparseConfig, select_blocks


def mean(vectors):
    return [sum(float(v[d]) for v in vectors) / len(vectors) for d in range(len(vectors[0]))]


def pooled_score(row, j):
    """Mean of the block's real queries . mean of key block j's real keys (-inf: no key)."""
    keys = [x for _, x in row.keys_of(j)]
    if not keys or not row.queries:
        return float("-inf")
    return sum(a * b for a, b in zip(mean([q for _, q in row.queries]), mean(keys)))


def reference_block_mean(query, key, cfg, q_offset=0, padding=None):
    return contract.reference_selection(query, key, cfg, q_offset, padding,
                                        lambda row, n: contract.top_by_score(row, n, pooled_score))


@pytest.mark.parametrize("geometry", contract.GEOMETRIES)
@pytest.mark.parametrize("sink,local", contract.RESERVED)
def test_block_mean_equals_the_plain_loop_reference(geometry, sink, local):
    contract.check_against_reference("block-mean", reference_block_mean, geometry, sink, local)


def test_block_mean_keeps_the_aligned_mean_and_drops_a_cancelling_spike():
    """Block 2 holds +10u and -10u (mean 0, best single key 10|u|^2), block 5 holds u four
    times (mean u): pooling keeps block 5 where the exact block score (oracle) keeps 2."""
    u = torch.linspace(-1, 1, 8)
    query = u.expand(1, 1, 64, 8).clone()
    key = torch.zeros(1, 1, 64, 8)
    key[0, 0, 8], key[0, 0, 9] = 10 * u, -10 * u
    key[0, 0, 20:24] = u
    cfg = SparseConfig(method="block-mean", k=2, block_q=4, block_k=4)
    assert select_blocks(query, key, cfg)[0, 0, 12].tolist() == [5, 12]
    assert select_blocks(query, key, cfg.replace(method="oracle"))[0, 0, 12].tolist() == [2, 12]


def test_block_mean_meets_the_density_contract():
    contract.check_density_contract("block-mean")


@pytest.mark.parametrize("arch,kv_heads", [("llama", 2), ("qwen2", 4)])
def test_block_mean_is_exact_at_large_k_and_differs_at_small_k(arch, kv_heads):
    contract.check_exact_at_large_k("block-mean", arch, kv_heads)
