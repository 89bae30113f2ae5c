"""`hip` against a plain loop of HiP's hierarchical search as its paper describes it (chunks
represented by one token each, top chunks halved level by level), a case where the
representative token makes it keep another block than `stream`, and the budget contract."""

import method_contract as contract
import pytest
import torch

from sparse import SparseConfig, select_blocks

LOWEST = torch.finfo(torch.float32).min  # a real chunk whose token nobody may see: below every score


def token_score(row, t):
    """HiP's chunk score: q . key[t] for the query block's real queries that may see token t,
    the best of them; padding tokens and tokens no query may see score LOWEST."""
    if not row.real_key[t]:
        return LOWEST
    seen = [float(q @ row.key[t]) for p, q in row.queries if t <= p]
    return max(seen) if seen else LOWEST


def hip_search(row, n, lo, hi, bk):
    """[lo, hi) (in key blocks) split into n near-equal chunks; while a chunk spans more than
    one block: halve every chunk (left half ceil(size / 2)), score each half by its centre
    token, keep the n best halves (ties: the earlier half). The chunks' blocks are chosen."""
    chunks = [(lo + (j * (hi - lo)) // n, lo + ((j + 1) * (hi - lo)) // n) for j in range(n)]
    while any(end - start > 1 for start, end in chunks):
        halves = []
        for start, end in sorted(chunks):
            middle = start + (end - start + 1) // 2
            halves += [(start, middle), (middle, end)]
        scores = [token_score(row, ((s + e) * bk - 1) // 2) if e > s else float("-inf") for s, e in halves]
        order = sorted(range(len(halves)), key=lambda i: -scores[i])
        chunks = [halves[i] for i in order[:n]]
    return [start for start, _ in chunks]


def reference_hip(query, key, cfg, q_offset=0, padding=None):
    sink, local = cfg.sink_blocks, max(cfg.local_blocks, 1)
    return contract.reference_selection(
        query, key, cfg, q_offset, padding,
        lambda row, n: hip_search(row, n, sink, row.d - local + 1, cfg.block_k))


@pytest.mark.parametrize("geometry", contract.GEOMETRIES)
@pytest.mark.parametrize("sink,local", contract.RESERVED)
def test_hip_equals_the_plain_loop_reference(geometry, sink, local):
    contract.check_against_reference("hip", reference_hip, geometry, sink, local)


def test_hip_representative_token_keeps_another_block_than_stream():
    """Query block 3 searches blocks 0..2 with one chunk (k = 2): halves [0, 2) and [2, 3).
    A huge aligned key at token 1 of block 0 is off the centre token of [0, 2) (token 3),
    while [2, 3)'s centre (token 9) holds a mildly aligned key: `hip` keeps block 2,
    `stream`, probing the middle block's every key, keeps block 0, as `oracle` does."""
    u = torch.linspace(-1, 1, 8)
    query = u.expand(1, 1, 16, 8).clone()
    key = torch.zeros(1, 1, 16, 8)
    key[0, 0, 1] = 10 * u
    key[0, 0, 9] = u
    cfg = SparseConfig(method="hip", k=2, block_q=4, block_k=4)
    assert select_blocks(query, key, cfg)[0, 0, 3].tolist() == [2, 3]
    assert select_blocks(query, key, cfg.replace(method="stream"))[0, 0, 3].tolist() == [0, 3]
    assert select_blocks(query, key, cfg.replace(method="oracle"))[0, 0, 3].tolist() == [0, 3]
    key[0, 0, 3] = 10 * u  # the spike on the centre token: hip finds it too
    assert select_blocks(query, key, cfg)[0, 0, 3].tolist() == [0, 3]


def test_hip_meets_the_density_contract():
    contract.check_density_contract("hip")


@pytest.mark.parametrize("arch,kv_heads", [("llama", 2), ("qwen3", 4)])
def test_hip_is_exact_at_large_k_and_differs_at_small_k(arch, kv_heads):
    contract.check_exact_at_large_k("hip", arch, kv_heads)
