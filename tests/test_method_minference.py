"""`minference` against a plain loop of MInference's vertical-slash estimate (arXiv 2407.02490)
mapped to blocks, a planted column and a planted diagonal it must keep, and the budget contract."""

import math

import pytest
import torch
from method_contract import (
    check_density_contract,
    check_exact_at_large_k,
    left_padding,
    random_qk,
    reference_selection,
    top_by_score,
)

from sparse import SparseConfig, make_settings, select_blocks, validate_selection


def last_query_attention(query, key, b, h, q_offset, n_last, padding):
    """{query position: {key position: attention}}: the causal softmax of q.k / sqrt(D) of
    each of the last n_last current queries over the real keys before it (padding queries
    attend to nothing)."""
    T, D = key.shape[2], key.shape[3]
    group = query.shape[1] // key.shape[1]
    real = [padding is None or bool(padding[b, p]) for p in range(T)]
    rows = {}
    for p in range(max(q_offset, T - n_last), T):
        logits = {c: float(query[b, h, p - q_offset] @ key[b, h // group, c]) / math.sqrt(D)
                  for c in range(p + 1) if real[c] and real[p]}
        top = max(logits.values(), default=0.0)
        total = sum(math.exp(x - top) for x in logits.values())
        rows[p] = {c: math.exp(x - top) / total for c, x in logits.items()}
    return rows


def lines(rows, T):
    """(vertical[c], slash[o]): the attention summed per key column and per offset o = p - c."""
    vertical, slash = [0.0] * T, [0.0] * T
    for p, row in rows.items():
        for c, a in row.items():
            vertical[c] += a
            slash[p - c] += a
    return vertical, slash


def top_lines(scores, size, forced):
    """The `size` best lines, the first `forced` ones always among them."""
    order = sorted(range(len(scores)), key=lambda i: (i >= forced, -scores[i]))
    return set(order[:size])


def crossing_mass(row, j, vertical, slash):
    """Sum over the row's real queries p and block j's real keys c <= p of vertical[c] + slash[p - c]."""
    return sum(vertical[c] + slash[p - c] for p, _ in row.queries for c, _ in row.keys_of(j) if c <= p)


def reference_minference(query, key, cfg, q_offset=0, padding=None, settings=None):
    s = settings or make_settings("minference")
    T = key.shape[2]
    patterns = {}
    for b in range(query.shape[0]):
        for h in range(query.shape[1]):
            vertical, slash = lines(last_query_attention(query, key, b, h, q_offset, s.last_q, padding), T)
            kept_v = top_lines(vertical, s.vertical_size, s.sink_columns)
            kept_s = top_lines(slash, s.slash_size, s.recent_diagonals)
            patterns[b, h] = ([x if c in kept_v else 0.0 for c, x in enumerate(vertical)],
                              [x if o in kept_s else 0.0 for o, x in enumerate(slash)])

    def choose(row, n):
        vertical, slash = patterns[row.b, row.h]
        return top_by_score(row, n, lambda r, j: crossing_mass(r, j, vertical, slash))

    return reference_selection(query, key, cfg, q_offset, padding, choose)


SMALL = {"last_q": 16, "vertical_size": 6, "slash_size": 5, "sink_columns": 2, "recent_diagonals": 3}


# (kv_len, q_offset, block_q, block_k, k): a cached prefix, b_q != b_k, T not a multiple of either.
GEOMETRIES = [(61, 21, 4, 3, 3), (50, 0, 4, 4, 4), (45, 8, 8, 4, 2), (37, 0, 3, 5, 5)]


def check_equals_reference(method, reference, geometry, sink, local, values):
    """`method` with settings `values` selects what `reference` does on random GQA inputs
    (2 query heads per KV head) with left padding, and the selection is valid."""
    kv_len, q_offset, block_q, block_k, k = geometry
    query, key = random_qk(2, 4, 2, kv_len, q_offset, seed=kv_len + k)
    padding = left_padding(2, kv_len, 5)
    settings = make_settings(method, values)
    cfg = SparseConfig(method=method, k=k, block_q=block_q, block_k=block_k, sink_blocks=sink,
                       local_blocks=local, settings=settings)
    got = select_blocks(query, key, cfg, q_offset, padding)
    assert torch.equal(got, reference(query, key, cfg, q_offset, padding, settings))
    validate_selection(got, cfg, kv_len, q_offset)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("sink,local", [(0, 0), (1, 2)])
@pytest.mark.parametrize("values", [{}, SMALL], ids=["paper", "small"])
def test_minference_equals_the_plain_loop_reference(geometry, sink, local, values):
    check_equals_reference("minference", reference_minference, geometry, sink, local, values)


def planted_column():
    """(query, key, direction): 128 positions, 2 query heads on 1 KV head, every query close
    to `direction`, the keys small noise except key 13 (block 1 of 8) along it."""
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(16, generator=g)
    query = direction + 0.3 * torch.randn(1, 2, 128, 16, generator=g)
    key = 0.3 * torch.randn(1, 1, 128, 16, generator=g)
    key[0, 0, 13] = 3 * direction
    return query, key, direction


def assert_keeps_the_column(sel):
    """Every query block that can choose one block (k = 2, blocks of 8) keeps block 1."""
    for i in range(2, 16):
        assert sel[0, :, i].tolist() == [[1, i]] * 2


def test_minference_keeps_a_strong_column_in_every_query_block():
    """Every query looks at key 13: every query block keeps its block, although the
    estimate comes from the last 64 queries only."""
    query, key, _ = planted_column()
    cfg = SparseConfig(method="minference", k=2, block_q=8, block_k=8)
    sel = select_blocks(query, key, cfg)
    validate_selection(sel, cfg, 128)
    assert_keeps_the_column(sel)


def test_minference_keeps_a_strong_diagonal():
    """Query p looks at key p - 16 only: query block i keeps key block i - 2, not the
    neighbour i - 1 that a recency rule would keep."""
    g = torch.Generator().manual_seed(1)
    units = torch.nn.functional.normalize(torch.randn(128, 64, generator=g), dim=-1)
    key = units[None, None].clone()
    query = torch.zeros(1, 1, 128, 64)
    query[0, 0, 16:] = 40 * units[:-16]
    cfg = SparseConfig(method="minference", k=2, block_q=8, block_k=8,
                       settings=make_settings("minference", {"recent_diagonals": 0, "sink_columns": 0}))
    sel = select_blocks(query, key, cfg)
    for i in range(3, 16):
        assert sel[0, 0, i].tolist() == [i - 2, i]


def test_minference_meets_the_density_contract():
    check_density_contract("minference")


def test_minference_is_exact_at_large_k_and_differs_at_small_k():
    check_exact_at_large_k("minference")


@pytest.mark.parametrize("values,message", [
    ({"last_q": 0}, "last_q must be an integer >= 1, got 0"),
    ({"vertical_size": -1}, "vertical_size must be an integer >= 0, got -1"),
    ({"slash_size": 2.5}, "slash_size must be an integer >= 0, got 2.5"),
])
def test_minference_settings_name_the_setting_and_its_range(values, message):
    with pytest.raises(ValueError, match=f"sparse method 'minference': {message}"):
        make_settings("minference", values)
