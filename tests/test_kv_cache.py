"""The kv-cache compression family (sparse/kv_cache.py, sparse/methods/{streamingllm, snapkv,
pyramidkv, h2o, tova, knorm, random_evict}.py): every scorer against a plain-loop reference
written from its paper, the attention against a plain masked softmax, hand-built cases per
method, the density contract on the tiny models, and the harness end to end."""

import math

import pytest
import torch
from tiny_models import tiny_model

from sparse import SparseConfig, get_sparse_method, make_settings, select_blocks, sparse_attention, validate_selection
from sparse.geometry import answer_density, answer_geometry, k_for_density
from sparse.kv_cache import (KVContext, compressed_region, keep_top_tokens, kept_token_indices, kv_attention,
                             region_budget)
from sparse.methods.pyramidkv import pyramid_budgets

KV_METHODS = ["streamingllm", "snapkv", "pyramidkv", "h2o", "tova", "knorm", "random-evict"]


def region_inputs(B, Hkv, R, D=8, seed=0, pad=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, 2 * Hkv, R, D, generator=g)
    k = torch.randn(B, Hkv, R, D, generator=g)
    v = torch.randn(B, Hkv, R, D, generator=g)
    padding = None
    if pad:
        padding = torch.ones(B, R, dtype=torch.bool)
        padding[0, :pad] = False  # the first row is left-padded
    return q, k, v, padding


def context(method, q, k, v, padding, n_keep, layer=1, n_layers=3, seed=0, **values):
    return KVContext(q, k, v, q.shape[-1] ** -0.5, layer, n_layers, make_settings(method, values), padding,
                     n_keep, seed)


# -- plain-loop references, from the papers' text ------------------------------------------


def loop_probs(q, k, padding, b, h, t):
    """Dense causal softmax of query t of head h over the region keys (list of floats)."""
    R, group = k.shape[2], q.shape[1] // k.shape[1]
    logits = []
    for j in range(R):
        real = padding is None or bool(padding[b, j])
        logits.append(float(q[b, h, t] @ k[b, h // group, j]) * q.shape[-1] ** -0.5 if j <= t and real
                      else -math.inf)
    top = max(logits)
    if top == -math.inf:
        return [0.0] * R
    e = [math.exp(x - top) for x in logits]
    return [x / sum(e) for x in e]


def ref_knorm(q, k, padding, n_keep, s):
    B, Hkv, R, _ = k.shape
    return [[[-math.sqrt(sum(float(x) ** 2 for x in k[b, h, j])) for j in range(R)] for h in range(Hkv)]
            for b in range(B)]


def ref_streamingllm(q, k, padding, n_keep, s):
    """Sinks = the first n_sink real tokens; then the most recent."""
    B, Hkv, R, _ = k.shape
    out = []
    for b in range(B):
        row, seen = [], 0
        for j in range(R):
            real = padding is None or bool(padding[b, j])
            seen += real
            row.append(math.inf if real and seen <= s.n_sink else float(j))
        out.append([row] * Hkv)
    return out


def ref_tova(q, k, padding, n_keep, s):
    """The last token's attention averaged over every head of the layer; the last token kept."""
    B, Hq, R, _ = q.shape
    out = []
    for b in range(B):
        rows = [loop_probs(q, k, padding, b, h, R - 1) for h in range(Hq)]
        row = [sum(r[j] for r in rows) / Hq for j in range(R)]
        row[-1] = math.inf
        out.append([row] * k.shape[1])
    return out


def ref_snapkv(q, k, padding, n_keep, s):
    """Window queries vote (mean attention) for earlier keys; pooled over kernel_size neighbours
    (zeros beyond the ends, divided by kernel_size); mean over the group; window kept."""
    B, Hq, R, _ = q.shape
    Hkv, group = k.shape[1], Hq // k.shape[1]
    w = min(s.window_size, R - 1)
    half = s.kernel_size // 2
    out = []
    for b in range(B):
        heads = []
        for hk in range(Hkv):
            row = []
            for j in range(R - w):
                total = 0.0
                for h in range(hk * group, (hk + 1) * group):
                    votes = []
                    for jj in range(R - w):
                        votes.append(sum(loop_probs(q, k, padding, b, h, t)[jj] for t in range(R - w, R)) / w)
                    pooled = sum(votes[i] for i in range(j - half, j + half + 1) if 0 <= i < R - w) / s.kernel_size
                    total += pooled
                row.append(total / group)
            heads.append(row + [math.inf] * w)
        out.append(heads)
    return out


def ref_h2o(q, k, padding, n_keep, s):
    """Accumulated attention (sum over the region's queries; over real queries seeing the key
    when normalised), mean over the group, the latest recent_ratio * n_keep tokens kept."""
    B, Hq, R, _ = q.shape
    Hkv, group = k.shape[1], Hq // k.shape[1]
    n_recent = int(n_keep * s.recent_ratio)
    out = []
    for b in range(B):
        real = [padding is None or bool(padding[b, t]) for t in range(R)]
        heads = []
        for hk in range(Hkv):
            row = []
            for j in range(R):
                total = 0.0
                for h in range(hk * group, (hk + 1) * group):
                    acc = sum(loop_probs(q, k, padding, b, h, t)[j] for t in range(R) if real[t])
                    if s.normalize:
                        acc /= max(1, sum(real[t] for t in range(j, R)))
                    total += acc
                row.append(math.inf if j >= R - n_recent else total / group)
            heads.append(row)
        out.append(heads)
    return out


REFERENCES = {"knorm": (ref_knorm, {}), "streamingllm": (ref_streamingllm, {}), "tova": (ref_tova, {}),
              "snapkv": (ref_snapkv, {"window_size": 4, "kernel_size": 3}),
              "pyramidkv": (ref_snapkv, {"window_size": 4, "kernel_size": 3}),
              "h2o": (ref_h2o, {}), "h2o-kvpress": (ref_h2o, {"recent_ratio": 0.0, "normalize": True})}


def loop_keep(scores, padding, n):
    """Per (batch, KV head): the n best real-token positions (padding last), ties to the earlier."""
    out = []
    for b, heads in enumerate(scores):
        rows = []
        for row in heads:
            key = [(-(x if padding is None or padding[b, j] else -math.inf), j) for j, x in enumerate(row)]
            rows.append(sorted(j for _, j in sorted(key)[:n]))
        out.append(rows)
    return out


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("R,pad", [(9, 0), (16, 0), (13, 3)])
def test_scorer_and_keep_set_equal_the_plain_loop_reference(name, R, pad):
    method = name.split("-")[0] if name == "h2o-kvpress" else name
    reference, values = REFERENCES[name]
    q, k, v, padding = region_inputs(2, 2, R, seed=R + pad, pad=pad)
    n_keep = 5
    ctx = context(method, q, k, v, padding, n_keep, **values)
    got = get_sparse_method(method).select(ctx)
    want = torch.tensor(reference(q, k, padding, n_keep, ctx.settings))
    real = torch.ones(2, R, dtype=torch.bool) if padding is None else padding
    mask = real[:, None].expand_as(got)
    assert torch.allclose(got[mask], want[mask], atol=1e-6)
    cfg = SparseConfig(method=method, k=n_keep, block_k=1, dense_layers=0, settings=ctx.settings)
    layer_budget = n_keep if method != "pyramidkv" else pyramid_budgets(n_keep, 3, R, ctx.settings.beta)[1]
    kept = compressed_region(cfg, 1, 3, q, k, v, R, padding)
    assert kept.tolist() == loop_keep(want.tolist(), padding, layer_budget)


def test_random_evict_is_seeded_uniform_and_differs_per_layer():
    q, k, v, _ = region_inputs(1, 2, 20)
    a = get_sparse_method("random-evict").select(context("random-evict", q, k, v, None, 4, layer=1, seed=3))
    b = get_sparse_method("random-evict").select(context("random-evict", q, k, v, None, 4, layer=1, seed=3))
    c = get_sparse_method("random-evict").select(context("random-evict", q, k, v, None, 4, layer=2, seed=3))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert ((a >= 0) & (a < 1)).all()


def test_keep_top_tokens_is_ascending_and_breaks_ties_to_the_earlier_position():
    scores = torch.tensor([[[1.0, 3.0, 3.0, 0.0, 3.0, 2.0]]])
    assert keep_top_tokens(scores, 2).tolist() == [[[1, 2]]]
    assert keep_top_tokens(scores, 4).tolist() == [[[1, 2, 4, 5]]]


# -- the attention -------------------------------------------------------------------------


def loop_attention(q, k, v, kept, region, padding, scale):
    """Plain masked softmax: query t sees key j iff j <= t, j is real, and (t < region or
    j >= region or j is kept by its KV head); a query always sees itself."""
    B, Hq, T, D = q.shape
    group = Hq // k.shape[1]
    out = torch.zeros(B, Hq, T, D)
    for b in range(B):
        for h in range(Hq):
            keep = set(kept[b, h // group].tolist())
            for t in range(T):
                logits = []
                for j in range(T):
                    ok = j <= t and (padding is None or bool(padding[b, j])) and (t < region or j >= region or j in keep)
                    logits.append(float(q[b, h, t] @ k[b, h // group, j]) * scale if ok or j == t else -math.inf)
                p = torch.softmax(torch.tensor(logits), -1)
                out[b, h, t] = p @ v[b, h // group]
    return out


@pytest.mark.parametrize("T,region,pad", [(20, 12, 0), (20, 19, 0), (17, 10, 3), (12, 12, 0)])
def test_kv_attention_equals_a_plain_masked_softmax(T, region, pad):
    q, k, v, padding = region_inputs(2, 2, T, seed=T + region, pad=pad)
    g = torch.Generator().manual_seed(5)
    n = max(1, region // 3)
    kept = torch.stack([torch.stack([torch.randperm(region, generator=g)[:n].sort().values for _ in range(2)])
                        for _ in range(2)])
    got = kv_attention(q, k, v, kept, region, padding, 0.3)
    want = loop_attention(q, k, v, kept, region, padding, 0.3)
    real = torch.ones(2, T, dtype=torch.bool) if padding is None else padding
    assert torch.allclose(got[real[:, None].expand(2, 4, T)], want[real[:, None].expand(2, 4, T)], atol=1e-5)
    dense = torch.nn.functional.scaled_dot_product_attention(q[:, :, :region], k[:, :, :region].repeat_interleave(2, 1),
                                                             v[:, :, :region].repeat_interleave(2, 1), is_causal=True,
                                                             scale=0.3)
    if padding is None:  # region queries: exactly dense causal attention
        assert torch.allclose(got[:, :, :region], dense, atol=1e-6)


def test_evicted_keys_are_invisible_to_later_queries_only():
    """Changing an evicted key's value moves no output; changing a kept one moves the later queries."""
    q, k, v, _ = region_inputs(1, 1, 16, seed=2)
    kept = torch.tensor([[[0, 3, 7]]])
    base = kv_attention(q, k, v, kept, 10, None, 0.4)
    v_evicted, v_kept = v.clone(), v.clone()
    v_evicted[0, 0, 5] += 10.0
    v_kept[0, 0, 3] += 10.0
    moved = kv_attention(q, k, v_evicted, kept, 10, None, 0.4)
    assert torch.allclose(moved[:, :, 10:], base[:, :, 10:], atol=1e-6)  # later queries never see key 5
    assert not torch.allclose(moved[:, :, 5:10], base[:, :, 5:10])  # region queries still do (dense prefill)
    assert not torch.allclose(kv_attention(q, k, v_kept, kept, 10, None, 0.4)[:, :, 10:], base[:, :, 10:])


# -- hand-built cases ----------------------------------------------------------------------


def kept_of(method, q, k, v, n_keep, **values):
    cfg = SparseConfig(method=method, k=n_keep, block_k=1, dense_layers=0, settings=make_settings(method, values))
    return compressed_region(cfg, 0, 1, q, k, v, k.shape[2])[0, 0].tolist()


def test_knorm_drops_the_largest_norm_key():
    q, k, v, _ = region_inputs(1, 1, 10, seed=4)
    k[0, 0, 6] *= 50
    assert 6 not in kept_of("knorm", q, k, v, 9)


def test_streamingllm_keeps_sinks_and_the_most_recent_tokens():
    q, k, v, _ = region_inputs(1, 1, 20, seed=4)
    assert kept_of("streamingllm", q, k, v, 7, n_sink=4) == [0, 1, 2, 3, 17, 18, 19]


def test_snapkv_keeps_the_key_the_window_attends_to():
    q, k, v, _ = region_inputs(1, 1, 24, seed=6)
    k[0, 0, 5] = 0
    k[0, 0, 5, 0] = 8.0
    q[0, :, -4:, 0] = 8.0  # every window query points at key 5
    kept = kept_of("snapkv", q, k, v, 5, window_size=4, kernel_size=1)
    assert 5 in kept and kept[-4:] == [20, 21, 22, 23]


def test_tova_keeps_the_key_the_last_token_attends_to_and_the_last_token():
    q, k, v, _ = region_inputs(1, 1, 16, seed=7)
    k[0, 0, 2] = 0
    k[0, 0, 2, 1] = 9.0
    q[0, :, -1, 1] = 9.0
    assert kept_of("tova", q, k, v, 2) == [2, 15]


def test_h2o_keeps_the_heavy_hitter_and_the_recent_window():
    q, k, v, _ = region_inputs(1, 1, 16, seed=8)
    k[0, 0, 1] = 0
    k[0, 0, 1, 2] = 9.0
    q[0, :, :, 2] = 9.0  # every query attends to key 1
    kept = kept_of("h2o", q, k, v, 4)  # half the budget for the two latest tokens
    assert 1 in kept and kept[-2:] == [14, 15]
    assert 1 in kept_of("h2o", q, k, v, 1, recent_ratio=0.0)


@pytest.mark.parametrize("n_keep,layers,region,beta", [(10, 4, 40, 20), (30, 5, 40, 20), (7, 3, 8, 2), (1, 6, 5, 20)])
def test_pyramid_budgets_decrease_with_depth_and_average_the_budget(n_keep, layers, region, beta):
    budgets = pyramid_budgets(n_keep, layers, region, beta)
    assert sum(budgets) == n_keep * layers
    assert all(1 <= b <= region for b in budgets)
    assert budgets == sorted(budgets, reverse=True)


# -- settings and refusals -----------------------------------------------------------------


@pytest.mark.parametrize("method,values,message", [
    ("snapkv", {"window_size": 0}, "window_size must be an integer >= 1"),
    ("snapkv", {"kernel_size": 4}, "kernel_size must be odd"),
    ("tova", {"compress": "maybe"}, "compress must be one of context, prompt"),
    ("h2o", {"recent_ratio": 1.5}, "recent_ratio must be a number in [0, 1]"),
    ("streamingllm", {"n_sink": -1}, "n_sink must be an integer >= 0"),
    ("pyramidkv", {"beta": 0.5}, "beta must be a number >= 1"),
])
def test_bad_settings_name_the_method_and_setting(method, values, message):
    with pytest.raises(ValueError, match=f"sparse method '{method}'.*" + message.replace("[", r"\[").replace("]", r"\]")):
        make_settings(method, values)


def test_kv_methods_refuse_block_selection_and_reserved_blocks():
    q, k, _, _ = region_inputs(1, 1, 16)
    cfg = SparseConfig(method="snapkv", k=2, block_q=4, block_k=4)
    with pytest.raises(ValueError, match="'snapkv' is a kv-cache method.*no block selection"):
        select_blocks(q, k, cfg)
    with pytest.raises(ValueError, match="'snapkv' is a kv-cache method"):
        validate_selection(torch.zeros(1, 2, 4, 2, dtype=torch.long), cfg, 16)
    with pytest.raises(ValueError, match="'knorm' is a kv-cache method.*sink_blocks and local_blocks"):
        SparseConfig(method="knorm", sink_blocks=1)


def test_controller_needs_a_region_and_an_uncached_prompt():
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (1, 20))
    with sparse_attention(model, SparseConfig(method="knorm", k=1, block_k=4, dense_layers=1)):
        with pytest.raises(ValueError, match="needs the compressed region's length"):
            model(input_ids=ids)


# -- density contract on the tiny models --------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("method", KV_METHODS)
def test_large_k_is_full_attention_and_small_k_is_not(arch, method):
    model = tiny_model(arch, kv_heads=2)
    ids = torch.randint(0, 128, (2, 40), generator=torch.Generator().manual_seed(1))
    settings = make_settings(method, {"window_size": 4} if "window_size" in make_settings(method).__dataclass_fields__
                             else {})
    with torch.no_grad():
        full = model(input_ids=ids).logits
        with sparse_attention(model, SparseConfig(method=method, k=8, block_k=4, dense_layers=1,
                                                  settings=settings)) as ctl:
            ctl.region = 30
            exact = model(input_ids=ids).logits  # 8 * 4 = 32 >= 30 region tokens
            ctl.cfg = ctl.cfg.replace(k=1)
            small = model(input_ids=ids).logits
    assert (exact - full).abs().max() < 1e-4
    assert (small[:, 30:] - full[:, 30:]).abs().max() > 1e-3
    assert torch.allclose(small[:, :30], full[:, :30], atol=1e-4)  # the region's prefill is dense


@pytest.mark.parametrize("method", KV_METHODS)
def test_kept_count_and_reported_density_equal_the_share_seen_at_the_answer(method):
    model = tiny_model("llama", layers=4)
    T, region, k, bk = 44, 32, 3, 4
    ids = torch.randint(0, 128, (1, T), generator=torch.Generator().manual_seed(2))
    settings = make_settings(method, {"window_size": 4} if "window_size" in make_settings(method).__dataclass_fields__
                             else {})
    cfg = SparseConfig(method=method, k=k, block_k=bk, dense_layers=1, settings=settings)
    seen = {}
    with torch.no_grad(), sparse_attention(model, cfg) as ctl:
        ctl.region, ctl.record = region, True
        ctl.observe_answer = lambda layer, q, key, visible, pad, s: seen.__setitem__(layer, visible)
        model(input_ids=ids)
    n_keep = region_budget(cfg, region)
    counts = [ctl.selections[layer].shape[-1] for layer in sorted(ctl.selections)]
    assert sorted(ctl.selections) == [1, 2, 3]
    if method == "pyramidkv":
        assert sum(counts) == n_keep * 3 and counts[0] > counts[-1]
    else:
        assert counts == [n_keep] * 3
    for layer, kept in ctl.selections.items():
        assert (kept[..., 1:] > kept[..., :-1]).all()  # distinct, ascending
        assert seen[layer].sum(-1).eq(T - region + kept.shape[-1]).all()
    share = sum(float(v.float().mean(-1).mean()) for v in seen.values()) / len(seen)
    assert answer_density(cfg, k, T, region) == pytest.approx(share)
    assert answer_geometry(T, cfg, [k], region)[1][str(k)] == pytest.approx((T - region + n_keep) / T)


def test_k_for_density_picks_the_nearest_reachable_k():
    cfg = SparseConfig(method="snapkv", block_k=4)
    T, region = 100, 80  # densities 0.24 (k=1) ... 1.0 (k=20)
    assert k_for_density(cfg, 0.49, T, region) == 7  # (20 + 28) / 100
    assert k_for_density(cfg, 0.05, T, region) == 1  # unreachable: the question alone is 20% of the keys
    assert k_for_density(cfg, 1.0, T, region) == 20
    with pytest.raises(ValueError, match="needs the compressed region's length"):
        k_for_density(cfg, 0.5, T)


# -- KVPress's setting ----------------------------------------------------------------------


@pytest.mark.parametrize("method", KV_METHODS)
def test_kept_token_indices_is_the_controllers_choice_with_the_whole_input_as_region(method):
    model = tiny_model("qwen2", layers=2)
    ids = torch.randint(0, 128, (1, 24), generator=torch.Generator().manual_seed(3))
    got = kept_token_indices(model, ids, method, 9)
    cfg = SparseConfig(method=method, k=9, block_q=1, block_k=1, dense_layers=0)
    with torch.no_grad(), sparse_attention(model, cfg) as ctl:
        ctl.region, ctl.record = 24, True
        model(input_ids=ids)
    assert sorted(got) == [0, 1]
    for layer, kept in got.items():
        assert torch.equal(kept, ctl.selections[layer][0])
        assert (kept[:, 1:] > kept[:, :-1]).all()
        if method != "pyramidkv":
            assert kept.shape == (2, 9)
