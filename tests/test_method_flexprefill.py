"""`flexprefill` against a plain loop of FlexPrefill's pattern choice and cumulative-attention
selection (arXiv 2502.20766) at flipbench's fixed budget, planted patterns it must keep, and
the budget contract."""

import math

import pytest
import torch
from method_contract import check_density_contract, check_exact_at_large_k, reference_selection
from test_method_minference import (
    GEOMETRIES,
    assert_keeps_the_column,
    check_equals_reference,
    crossing_mass,
    last_query_attention,
    lines,
    planted_column,
)

from sparse import SparseConfig, make_settings, select_blocks


def cover(scores, share):
    """The fewest best entries (ties to the earlier) whose sum reaches `share` of the total."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    total = sum(scores)
    chosen, running = set(), 0.0
    for i in order:
        if running < share * total:
            chosen.add(i)
        running += scores[i]
    return chosen


def mean(vectors):
    return sum(vectors) / len(vectors) if vectors else None


def pooled_row(query_vectors, key, b, kv_head, d, block_k, real):
    """softmax over key blocks 0..d with a real key of mean(queries) . mean(keys) / sqrt(D)."""
    D = key.shape[3]
    pq = mean(query_vectors)
    logits = {}
    for j in range(d + 1):
        keys = [key[b, kv_head, p] for p in range(j * block_k, (j + 1) * block_k) if p < len(real) and real[p]]
        if keys:
            logits[j] = 0.0 if pq is None else float(pq @ mean(keys)) / math.sqrt(D)
    top = max(logits.values(), default=0.0)
    total = sum(math.exp(x - top) for x in logits.values())
    return [math.exp(logits[j] - top) / total if j in logits else 0.0 for j in range(d + 1)]


def js_distance(p, q):
    def kl(a, m):
        return sum(x * math.log(x / y) for x, y in zip(a, m) if x > 0)

    m = [(x + y) / 2 for x, y in zip(p, q)]
    return math.sqrt(max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m)))


def reference_flexprefill(query, key, cfg, q_offset=0, padding=None, settings=None):
    s = settings or make_settings("flexprefill")
    B, Hq, _, _ = query.shape
    T, bq, bk = key.shape[2], cfg.block_q, cfg.block_k
    group = Hq // key.shape[1]
    last_start = max(q_offset, (math.ceil(T / bq) - 1) * bq)
    d_last = (T - 1) // bk
    heads = {}
    for b in range(B):
        real = [padding is None or bool(padding[b, p]) for p in range(T)]
        for h in range(Hq):
            rows = last_query_attention(query, key, b, h, q_offset, T - last_start, padding)
            n_real = sum(1 for p in rows if real[p])
            true_pooled = [sum(a for row in rows.values() for c, a in row.items() if c // bk == j) / max(n_real, 1)
                           for j in range(d_last + 1)]
            last_queries = [query[b, h, p - q_offset] for p in rows if real[p]]
            estimate = pooled_row(last_queries, key, b, h // group, d_last, bk, real)
            vertical, slash = lines(rows, T)
            kept_v, kept_s = cover(vertical, s.gamma), cover(slash, s.gamma)
            heads[b, h] = (js_distance(true_pooled, estimate) < s.tau, vertical, slash,
                           [x if c in kept_v else 0.0 for c, x in enumerate(vertical)],
                           [x if o in kept_s else 0.0 for o, x in enumerate(slash)], real)

    def choose(row, n):
        query_aware, vertical, slash, covered_v, covered_s, real = heads[row.b, row.h]
        if query_aware:
            mass = pooled_row([x for _, x in row.queries], key, row.b, row.h // group, row.d, bk, real)
            first = cover(mass, s.gamma)
        else:
            mass = [crossing_mass(row, j, vertical, slash) for j in range(row.d + 1)]
            first = {j for j in range(row.d + 1) if crossing_mass(row, j, covered_v, covered_s) > 0}
        candidates = [j for j in range(row.d + 1) if j not in row.reserved]
        return sorted(candidates, key=lambda j: (j not in first, -mass[j]))[:n]

    return reference_selection(query, key, cfg, q_offset, padding, choose)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("sink,local", [(0, 0), (1, 2)])
@pytest.mark.parametrize("values", [{}, {"tau": 1.0, "gamma": 0.5}, {"tau": 0.0, "gamma": 0.3}],
                         ids=["paper", "query-aware", "vertical-slash"])
def test_flexprefill_equals_the_plain_loop_reference(geometry, sink, local, values):
    check_equals_reference("flexprefill", reference_flexprefill, geometry, sink, local, values)


def test_flexprefill_keeps_a_strong_column_in_every_query_block():
    query, key, _ = planted_column()
    assert_keeps_the_column(select_blocks(query, key, SparseConfig(method="flexprefill", k=2, block_q=8, block_k=8)))


def test_flexprefill_query_aware_head_keeps_a_block_the_last_queries_do_not_see():
    """Only query block 5 looks at key block 2. The last block's attention is near uniform and
    so is its pooled estimate: the head passes the Jensen-Shannon test, and block-pooled q.k
    makes query block 5 keep block 2; the vertical-slash pattern (tau = 0), estimated from
    the last queries, does not."""
    g = torch.Generator().manual_seed(2)
    direction = torch.randn(16, generator=g)
    query = 0.1 * torch.randn(1, 1, 128, 16, generator=g)
    key = 0.1 * torch.randn(1, 1, 128, 16, generator=g)
    query[0, 0, 40:48] += 3 * direction
    key[0, 0, 16:24] += 3 * direction
    cfg = SparseConfig(method="flexprefill", k=2, block_q=8, block_k=8)
    assert select_blocks(query, key, cfg)[0, 0, 5].tolist() == [2, 5]
    vertical_slash = cfg.replace(settings=make_settings("flexprefill", {"tau": 0.0}))
    assert 2 not in select_blocks(query, key, vertical_slash)[0, 0, 5].tolist()


def test_flexprefill_meets_the_density_contract():
    check_density_contract("flexprefill")


def test_flexprefill_is_exact_at_large_k_and_differs_at_small_k():
    check_exact_at_large_k("flexprefill")


@pytest.mark.parametrize("values,message", [
    ({"gamma": 0}, r"gamma must be a number in \(0, 1\], got 0"),
    ({"gamma": 1.5}, r"gamma must be a number in \(0, 1\], got 1.5"),
    ({"tau": -0.1}, r"tau must be a number in \[0, 1\], got -0.1"),
])
def test_flexprefill_settings_name_the_setting_and_its_range(values, message):
    with pytest.raises(ValueError, match=f"sparse method 'flexprefill': {message}"):
        make_settings("flexprefill", values)
