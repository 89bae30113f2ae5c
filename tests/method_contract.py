"""What the per-method test files share: a plain-loop skeleton of a block selection (one
batch, head and query block at a time) that a method's reference fills with its own choice,
and the budget contract every block-sparse method meets: a requested density is met at the
answer position within one block, and k at least the number of blocks is exact full
attention on a tiny model while a small k is not."""

import itertools
import math
from dataclasses import dataclass

import torch
from tiny_models import tiny_model

from sparse import SparseConfig, select_blocks, sparse_attention, validate_selection
from sparse.geometry import causal_blocks, kept_blocks


# (kv_len, q_offset, block_q, block_k, k, left padding of the last row) for the reference tests
GEOMETRIES = [
    (61, 21, 4, 3, 3, 5),    # cached prefix, b_q != b_k, T not a multiple of either
    (64, 0, 4, 4, 4, 6),
    (45, 9, 8, 4, 2, 6),     # the first query block present is partial
    (37, 0, 3, 5, 5, 6),
    (30, 0, 8, 2, 2, 3),     # padding queries inside a query block that searches
    (70, 0, 4, 4, 7, 6),
]
RESERVED = [(0, 0), (1, 2)]  # (sink_blocks, local_blocks)


def random_qk(batch, q_heads, kv_heads, kv_len, q_offset=0, dim=8, seed=0, dtype=torch.float64):
    """Random queries (the last kv_len - q_offset positions) and keys, float64 so that a
    reference summing in another order ranks blocks identically."""
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, q_heads, kv_len - q_offset, dim, generator=g, dtype=dtype)
    key = torch.randn(batch, kv_heads, kv_len, dim, generator=g, dtype=dtype)
    return query, key


def left_padding(batch, kv_len, pad):
    """Key padding mask [batch, kv_len]: the last row starts with `pad` padding tokens."""
    mask = torch.ones(batch, kv_len, dtype=torch.bool)
    mask[-1, :pad] = False
    return mask


@dataclass
class Row:
    """One (batch b, query head h) query block as a reference sees it: its diagonal d,
    its real queries [(position, vector)], the blocks it keeps anyway, and its KV head's
    real keys by block."""

    b: int
    h: int
    d: int
    queries: list
    reserved: set
    key: torch.Tensor  # [T, D] of the KV head
    real_key: list  # bool per position (padding and past the end: False)
    block_k: int

    def keys_of(self, j):
        """[(position, vector)] of the real keys of key block j."""
        lo = j * self.block_k
        return [(p, self.key[p]) for p in range(lo, lo + self.block_k) if p < len(self.real_key) and self.real_key[p]]


def reference_selection(query, key, cfg, q_offset, padding, choose):
    """Selection [B, Hq, n_qblocks, width] of a method defined by `choose(row, n)`, the n =
    k - 1 blocks it adds to a row's reserved ones when the row has more causal blocks than
    reserved + k - 1 (otherwise the row keeps every causal block)."""
    B, Hq, _, _ = query.shape
    Hkv, T = key.shape[1], key.shape[2]
    bq, bk = cfg.block_q, cfg.block_k
    first = q_offset // bq
    n_q, n_k = math.ceil(T / bq) - first, math.ceil(T / bk)
    S, L = cfg.sink_blocks, max(cfg.local_blocks, 1)
    width = min(n_k, S + L + cfg.k - 1)
    out = torch.full((B, Hq, n_q, width), -1, dtype=torch.long)
    for b, h, c in itertools.product(range(B), range(Hq), range(n_q)):
        qb = first + c
        real = [padding is None or bool(padding[b, p]) for p in range(T)]
        queries = [(p, query[b, h, p - q_offset]) for p in range(qb * bq, (qb + 1) * bq)
                   if q_offset <= p < T and real[p]]
        d = min((qb + 1) * bq - 1, T - 1) // bk
        reserved = {j for j in range(d + 1) if j < S or j > d - L}
        if d + 1 <= len(reserved) + cfg.k - 1:
            kept = set(range(d + 1))
        else:
            row = Row(b, h, d, queries, reserved, key[b, h // (Hq // Hkv)], real, bk)
            chosen = set(choose(row, cfg.k - 1))
            assert len(chosen) == cfg.k - 1 and not chosen & reserved and max(chosen) < d
            kept = reserved | chosen
        out[b, h, c, : len(kept)] = torch.tensor(sorted(kept))
    return out


def check_against_reference(method, reference, geometry, sink, local):
    """`method` selects exactly what `reference(query, key, cfg, q_offset, padding)` does on
    random float64 inputs (GQA: 2 query heads per KV head, left padding), and validly."""
    kv_len, q_offset, block_q, block_k, k, pad = geometry
    query, key = random_qk(2, 4, 2, kv_len, q_offset, seed=kv_len + 7 * k + sink)
    padding = left_padding(2, kv_len, pad)
    cfg = SparseConfig(method=method, k=k, block_q=block_q, block_k=block_k, sink_blocks=sink, local_blocks=local)
    got = select_blocks(query, key, cfg, q_offset, padding)
    assert torch.equal(got, reference(query, key, cfg, q_offset, padding))
    validate_selection(got, cfg, kv_len, q_offset)


def top_by_score(row, n, score):
    """The n best causal blocks outside the reserved ones by `score(row, j)` (-inf lowest)."""
    candidates = [j for j in range(row.d + 1) if j not in row.reserved]
    return sorted(candidates, key=lambda j: -score(row, j))[:n]


def check_density_contract(method, densities=(0.2, 0.3, 0.5, 0.75, 1.0)):
    """At every k the answer position's query block keeps, in every head, exactly the blocks
    `sparse.geometry.kept_blocks` reports (what `k_for_density` and `--density-sweep` read),
    reserved sink and local blocks included; so every requested density is met within one
    block, and the largest k keeps every causal block."""
    prompt_len = 61
    cfg = SparseConfig(method=method, block_q=4, block_k=4, sink_blocks=1, local_blocks=1)
    n_blocks = causal_blocks(prompt_len, cfg.block_k)
    query, key = random_qk(1, 4, 2, prompt_len, seed=5)
    kept_at = {}
    for k in range(1, n_blocks + 1):
        at_k = cfg.replace(k=k)
        sel = select_blocks(query, key, at_k)
        validate_selection(sel, at_k, prompt_len)
        kept = (sel[0, :, -1] >= 0).sum(-1).tolist()  # the answer position's query block
        assert kept == [kept_blocks(cfg, k, n_blocks)] * 4, (k, kept)
        kept_at[k] = kept[0]
    for rho in densities:
        assert min(abs(kept - rho * n_blocks) for kept in kept_at.values()) <= 1, rho
    assert kept_at[n_blocks] == n_blocks


def check_exact_at_large_k(method, arch="llama", kv_heads=2):
    """With k >= the number of blocks the model's logits equal its own attention's (< 1e-4,
    left padding and GQA included); at k = 2 they move (> 1e-2)."""
    model = tiny_model(arch, kv_heads=kv_heads)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 128, (2, 40), generator=g)
    mask = left_padding(2, 40, 9).long()
    real = mask.bool()
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask).logits
        outputs = {}
        for k in (64, 2):
            with sparse_attention(model, SparseConfig(method=method, k=k, block_q=4, block_k=4, dense_layers=1)):
                outputs[k] = model(input_ids=ids, attention_mask=mask).logits
    assert (outputs[64] - reference)[real].abs().max() < 1e-4
    assert (outputs[2] - reference)[real].abs().max() > 1e-2
