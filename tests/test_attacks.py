"""Scoring oracle and random search: cached/batched scoring is exact, and random search
follows the seed's control flow with docs/design.md's correction."""


import pytest
import torch
from tiny_models import tiny_model, tiny_tokenizer

from attacks import FULL, Mode, Score, Target, available_attacks, get_attack
from attacks.prefix_attention import attend_with_prefix
from attacks.random_search import RandomSearchConfig, draw_candidates
from sparse import (SparseConfig, available_sparse_methods, dropped_attention_mass, make_settings, span_kept,
                    sparse_attention)
from sparse.layout import kept_key_mask
from tasks import TaskItem


@pytest.fixture(scope="module")
def pair():
    tok = tiny_tokenizer()
    return tiny_model("qwen2", layers=3, vocab=len(tok), seed=1), tok


def uncached_score(model, tok, prepared, adv, mode, sparse_cfg, region=None):
    """P(correct), P(wrong) of one plain forward over the whole prompt; `region` is the
    compressed region's length for a kv-cache method."""
    ids = torch.tensor([prepared.prompt_ids(adv)])
    with torch.no_grad():
        if mode == FULL:
            logits = model(input_ids=ids).logits[0, -1]
        else:
            with sparse_attention(model, sparse_cfg.replace(k=mode)) as ctl:
                ctl.region = region
                logits = model(input_ids=ids).logits[0, -1]
    probs = torch.softmax(logits, -1)
    return probs[list(prepared.correct_ids)].sum().item(), probs[list(prepared.wrong_ids)].sum().item()


# Methods whose selection is drawn per forward pass, so a cached prefix (two forwards) and one
# forward over the whole prompt select differently, by their documented design: MInference
# estimates its pattern from the current forward's last queries; the random nulls draw their
# noise over the current forward's query blocks.
PER_FORWARD = {"minference", "random", "drop-one"}


def method_config(method):
    settings = make_settings(method, {"density": 0.5} if method == "stream-density" else None)
    return SparseConfig(method=method, k=2, block_q=4, block_k=4, dense_layers=1, settings=settings)


@pytest.mark.parametrize("method", available_sparse_methods())
def test_a_candidate_scores_the_same_in_every_batch_position(pair, method):
    """Every method, the seeded nulls included, is a function of its config and the prompt: an
    attack's search scores candidates in batches and its row re-scores the winner alone, so a
    batch row must score as the same prompt alone (bit for bit up to float summation order)."""
    model, tok = pair
    target = Target(model, tok, method_config(method), batch_size=7)
    alone = Target(model, tok, method_config(method), batch_size=1)
    prepared = target.prepare(TaskItem(id="t-0", question="Is fire hot?", answer="yes"),
                              "The weather was mild and the afternoon passed quietly. " * 3)
    cands = torch.randint(4, len(tok), (7, 3), generator=torch.Generator().manual_seed(0))
    for mode in (2, 3):
        for got, want in zip(target.score(prepared, cands, mode), alone.score(prepared, cands, mode)):
            assert got.p_correct == pytest.approx(want.p_correct, abs=1e-6)
            assert got.p_wrong == pytest.approx(want.p_wrong, abs=1e-6)


@pytest.mark.parametrize("method", sorted(set(available_sparse_methods()) - PER_FORWARD))
def test_cached_batched_scores_equal_uncached_single_scores(pair, method):
    model, tok = pair
    cfg = method_config(method)
    target = Target(model, tok, cfg, batch_size=3)
    item = TaskItem(id="t-0", question="Is fire hot?", answer="yes")
    prepared = target.prepare(item, "The weather was mild and the afternoon passed quietly. " * 3)
    assert prepared.cut > 0 and prepared.cut % 4 == 0
    cands = torch.randint(4, len(tok), (7, 3), generator=torch.Generator().manual_seed(0))
    for mode in (FULL, 2, 3):
        batched = target.score(prepared, cands, mode)
        for adv, got in zip(cands.tolist(), batched):
            pc, pw = uncached_score(model, tok, prepared, adv, mode, cfg, target.region_length(prepared, len(adv)))
            assert got.p_correct == pytest.approx(pc, abs=1e-5)
            assert got.p_wrong == pytest.approx(pw, abs=1e-5)


def reference_probs(model, ids, sparse_cfg=None):
    """Answer-position probabilities [vocab] of one plain forward over the whole prompt:
    no cache, no batching, no shared prefix; full attention when `sparse_cfg` is None."""
    ids = torch.tensor([ids])
    with torch.no_grad():
        if sparse_cfg is None:
            logits = model(input_ids=ids).logits[0, -1]
        else:
            with sparse_attention(model, sparse_cfg):
                logits = model(input_ids=ids).logits[0, -1]
    return torch.softmax(logits, -1)


def test_scores_equal_a_plain_forward_and_full_attention_once_k_keeps_every_block(pair):
    model, tok = pair
    cfg = SparseConfig(k=1, block_q=4, block_k=4, dense_layers=1)
    target = Target(model, tok, cfg)
    prepared = target.prepare(TaskItem(id="t-1", question="Is ice cold?", answer="yes"), "Water boils. " * 10)
    adv = [5, 6, 7]
    ids = prepared.prompt_ids(adv)
    assert prepared.cut > 0 and prepared.cut % 4 == 0  # the cached path is the one under test
    n_blocks = (len(ids) - 1) // 4 + 1  # causal key blocks of the answer position
    assert n_blocks >= 6

    def check(mode, probs):
        got = target.score(prepared, torch.tensor([adv]), mode)[0]
        assert got.p_correct == pytest.approx(probs[list(prepared.correct_ids)].sum().item(), abs=1e-5), mode
        assert got.p_wrong == pytest.approx(probs[list(prepared.wrong_ids)].sum().item(), abs=1e-5), mode
        top = int(probs.argmax())
        assert got.argmax == ("correct" if top in prepared.correct_ids else "wrong" if top in prepared.wrong_ids
                              else "other"), mode
        return got

    full_probs = reference_probs(model, ids)
    full = check(FULL, full_probs)
    for k in (1, 2, 3, n_blocks - 1, n_blocks, n_blocks + 3):
        probs = reference_probs(model, ids, cfg.replace(k=k))
        sparse = check(k, probs)
        if k < n_blocks:  # blocks are dropped and the reference moves (so the match above is not vacuous):
            # far at small k, and still well above float noise (~1e-6) with one block dropped
            shift = (probs.log() - full_probs.log()).abs().max()
            assert shift > (5e-2 if k <= 3 else 1e-3), (k, shift)
        else:  # every causal block kept: sparse attention is full attention
            assert torch.allclose(probs, full_probs, atol=1e-5), k
            assert (sparse.p_correct, sparse.p_wrong) == pytest.approx((full.p_correct, full.p_wrong), abs=1e-5)
            assert sparse.argmax == full.argmax


def test_items_sharing_a_context_share_one_prefix_forward_per_mode(pair):
    model, tok = pair
    cfg = SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1)
    shared = Target(model, tok, cfg, batch_size=4)
    context = "The weather was mild and the afternoon passed quietly. " * 3
    items = [TaskItem(id=f"t-{i}", question=q, answer=a)
             for i, (q, a) in enumerate([("Is fire hot?", "yes"), ("Is ice hot?", "no"), ("Do fish swim?", "yes")])]
    prepared = [shared.prepare(item, context) for item in items]
    assert len({tuple(p.prefix_ids[: p.cut]) for p in prepared}) == 1  # the question comes after the slot
    scores = [shared.sweep(p, [5, 6, 7], [2, 3]) for p in prepared]
    assert shared.prefix_forwards == 3  # full, k=2, k=3: once each for all three items
    for p, got in zip(prepared, scores):
        for mode in (FULL, 2, 3):
            pc, pw = uncached_score(model, tok, p, [5, 6, 7], mode, cfg)
            assert got[str(mode)].p_correct == pytest.approx(pc, abs=1e-5)
            assert got[str(mode)].p_wrong == pytest.approx(pw, abs=1e-5)


def test_prefix_caches_are_a_bounded_lru(pair):
    model, tok = pair
    target = Target(model, tok, SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1), max_cached_prefixes=2)
    prepared = [target.prepare(TaskItem(id=f"t-{i}", question="Is fire hot?", answer="yes"), f"Context {i}. " * 8)
                for i in range(3)]
    for p in prepared:
        target.score(p, [[5, 6, 7]], FULL)
    assert target.prefix_forwards == 3 and len(target._caches) == 2
    target.score(prepared[2], [[5, 6, 8]], FULL)  # most recent: still cached (new candidate: not a remembered score)
    assert target.prefix_forwards == 3
    target.score(prepared[0], [[5, 6, 8]], FULL)  # evicted first: computed again
    assert target.prefix_forwards == 4


def test_full_attention_scores_are_remembered_by_batch_across_sparse_configs(pair):
    """A board swaps `Target.sparse` between cells; full attention's scores of the same batch
    of candidates (an attack's seeded draws) come from one forward, bit for bit, and a batch
    with other candidates, or with the same candidates grouped otherwise, is computed."""
    model, tok = pair
    target = Target(model, tok, SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="m", question="Is fire hot?", answer="yes"), "Water boils. " * 8)
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        draws = [[5, 6, 7], [8, 9, 10], [11, 12, 13]]
        first = target.score(prepared, draws, FULL)
        calls = len(forwards)
        target.sparse = SparseConfig(method="oracle", k=3, block_q=4, block_k=4, dense_layers=1)
        assert target.score(prepared, draws, FULL) == first and len(forwards) == calls
        assert target.full_score(prepared, draws[1]).p_correct == pytest.approx(first[1].p_correct, abs=1e-5)
        assert len(forwards) == calls + 1  # a single prompt is its own batch
        target.score(prepared, draws[:2], FULL)
        assert len(forwards) == calls + 2
        target.clear_prefix_caches()
        assert target.score(prepared, draws, FULL) == first and len(forwards) > calls + 2
    finally:
        hook.remove()


def test_sparse_scores_are_remembered_by_batch_and_whole_config(pair):
    """A board re-scores the tokens several sources chose under each method (transfer): a
    batch already scored under the same method, settings and k comes from that forward, bit
    for bit; another k or method is computed. Remembering is exact only because every
    method, the seeded nulls included, is a function of its config and the prompt: scoring
    again after `forget_scores` gives the same bits."""
    model, tok = pair
    target = Target(model, tok, SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="m", question="Is fire hot?", answer="yes"), "Water boils. " * 8)
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    draws = [[5, 6, 7], [8, 9, 10]]
    try:
        for method in ("stream", "random", "random-evict"):
            target.sparse = SparseConfig(method=method, k=2, block_q=4, block_k=4, dense_layers=1)
            first = target.score(prepared, draws, 2)
            calls = len(forwards)
            assert target.score(prepared, draws, 2) == first and len(forwards) == calls
            target.score(prepared, draws, 3)
            assert len(forwards) > calls  # another k
            calls = len(forwards)
            target.forget_scores()
            assert target.score(prepared, draws, 2) == first and len(forwards) > calls
        calls = len(forwards)
        target.sparse = SparseConfig(method="oracle", k=2, block_q=4, block_k=4, dense_layers=1)
        target.score(prepared, draws, 2)
        assert len(forwards) > calls  # another method at the same k
    finally:
        hook.remove()


def test_scores_record_the_class_of_the_greedy_token(pair):
    model, tok = pair
    target = Target(model, tok, SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="t-2", question="Is fire hot?", answer="yes"), "Water boils. " * 6)
    ids = torch.randint(4, len(tok), (12, 3), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        tokens = target.answer_logits(prepared, FULL, adv_ids=ids).argmax(-1).tolist()
    for token, score in zip(tokens, target.score(prepared, ids, FULL)):
        want = "correct" if token in prepared.correct_ids else "wrong" if token in prepared.wrong_ids else "other"
        assert score.argmax == want and score.mass == pytest.approx(score.p_correct + score.p_wrong)


def test_modes_are_typed_and_validated():
    assert Mode.of(FULL).is_full and Mode.of(4) == Mode(4) and Mode.of("4").key == "4"
    with pytest.raises(ValueError, match="k >= 1"):
        Mode(0)


class ScriptedTarget:
    """Sparse attention answers wrongly when the candidate holds token 7; full attention
    answers wrongly when it holds token 9. Records every call."""

    def __init__(self):
        self.tokenizer = _FakeTok()
        self.calls = []

    def vocabulary(self, ascii_only=False):
        return torch.arange(1, 12)  # every id but the special id 0

    def score(self, prepared, cands, mode):
        self.calls.append((mode, cands.tolist()))
        bad = 9 if mode == FULL else 7
        return [Score(0.1, 0.9, "x") if bad in row else Score(0.9, 0.1, "y") for row in cands.tolist()]


class _FakeTok:
    all_special_ids = [0]

    def __len__(self):
        return 12

    def decode(self, ids):
        return " ".join(map(str, ids))

    def batch_decode(self, seqs):
        return [self.decode(s) for s in seqs]


def expected_first_success(seed, steps, n_adv=3):
    vocab = torch.arange(1, 12)
    gen = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        cand = draw_candidates(gen, vocab, 1, n_adv)[0].tolist()
        if 7 in cand and 9 not in cand:
            return step, cand
    return None, None


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_search_stops_at_first_success_in_draw_order(seed):
    run = get_attack("random").run
    want_step, want_adv = expected_first_success(seed, 200)
    assert want_step is not None
    results = []
    for batch in (1, 5, 64):
        target = ScriptedTarget()
        res = run(target, None, RandomSearchConfig(steps=200, batch_size=batch), seed)
        results.append((res.steps, res.adv_ids, res.success))
        # each batch is scored once per mode, and every candidate scored is a draw
        sparse_calls, full_calls = target.calls[0::2], target.calls[1::2]
        assert [m for m, _ in sparse_calls] == [4] * len(sparse_calls)
        assert full_calls == [(FULL, c) for _, c in sparse_calls]
        scored = [c for _, cands in sparse_calls for c in cands]
        assert res.draws == [{"full": "wrong" if 9 in c else "correct", "sparse": "wrong" if 7 in c else "correct"}
                             for c in scored]
        assert len(scored) == min(200, -(-want_step // batch) * batch)
    assert results == [(want_step, want_adv, True)] * 3


def test_random_search_reports_failure_after_budget():
    class NeverWrong(ScriptedTarget):
        def score(self, prepared, cands, mode):
            return [Score(0.9, 0.1, "y") for _ in cands.tolist()]

    res = get_attack("random").run(NeverWrong(), None, RandomSearchConfig(steps=37, batch_size=8), 0)
    assert (res.success, res.steps, len(res.adv_ids)) == (False, 37, 3)


def test_random_search_is_deterministic_by_seed(pair):
    model, tok = pair
    target = Target(model, tok, SparseConfig(k=1, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="t-2", question="Is 100 an even number?", answer="yes"), "")
    run = get_attack("random").run
    cfg = RandomSearchConfig(steps=20, k_attack=1, batch_size=8)
    a, b, c = run(target, prepared, cfg, 5), run(target, prepared, cfg, 5), run(target, prepared, cfg, 6)
    assert (a.adv_ids, a.steps, a.success) == (b.adv_ids, b.steps, b.success)
    assert a.adv_ids != c.adv_ids or a.steps != c.steps


@pytest.mark.parametrize("field", ["n_adv", "steps", "k_attack", "batch_size"])
def test_random_search_config_rejects_nonpositive(field):
    with pytest.raises(ValueError, match=field):
        RandomSearchConfig(**{field: 0})


def test_registry_lists_random_and_rejects_unknown():
    assert "random" in available_attacks()
    with pytest.raises(KeyError, match=r"unknown attack 'nope'; did you mean 'none'\? known attacks: .*random"):
        get_attack("nope")


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_shared_prefix_attention_equals_causal_attention_over_the_whole_sequence(kv_heads):
    g = torch.Generator().manual_seed(0)
    B, Hq, P, T, D = 3, 4, 13, 5, 8
    pk, pv = torch.randn(1, kv_heads, P, D, generator=g), torch.randn(1, kv_heads, P, D, generator=g)
    q = torch.randn(B, Hq, T, D, generator=g)
    k, v = torch.randn(B, kv_heads, T, D, generator=g), torch.randn(B, kv_heads, T, D, generator=g)
    got = attend_with_prefix(q, k, v, pk, pv, D**-0.5)
    keys, values = torch.cat([pk.expand(B, -1, -1, -1), k], 2), torch.cat([pv.expand(B, -1, -1, -1), v], 2)
    mask = torch.ones(T, P + T, dtype=torch.bool).tril(P)
    want = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                                            enable_gqa=kv_heads != Hq)
    assert torch.allclose(got, want, atol=1e-5)


def test_dropped_attention_mass_equals_a_dense_computation():
    g = torch.Generator().manual_seed(1)
    B, Hq, Hkv, T, D, bk = 2, 4, 2, 37, 8, 4
    q, key = torch.randn(B, Hq, D, generator=g), torch.randn(B, Hkv, T, D, generator=g)
    patterns = torch.tensor([[0, 3, 9], [2, 9, -1]])
    kept = patterns[torch.arange(Hq) % 2].expand(B, Hq, 3)  # heads 0,2 and 1,3 keep different blocks
    visible = kept_key_mask(kept, bk, T)
    got = dropped_attention_mass(q, key, visible, scaling=0.5)
    for b in range(B):
        for h in range(Hq):
            probs = torch.softmax(key[b, h // (Hq // Hkv)] @ q[b, h] * 0.5, -1)
            blocks = {int(x) for x in kept[b, h] if x >= 0}
            want = sum(float(probs[t]) for t in range(T) if t // bk not in blocks)
            assert float(got[b, h]) == pytest.approx(want, abs=1e-6)
    assert span_kept(visible, 36, 37).tolist() == [[True] * 4] * 2  # block 9 always kept
    assert span_kept(visible, 0, 13)[0].tolist() == [False] * 4


def test_attribution_finds_nothing_dropped_when_k_keeps_every_block(pair):
    model, tok = pair
    target = Target(model, tok, SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="t-3", question="Is fire hot?", answer="yes"), "Water boils. " * 6)
    n_blocks = (len(prepared.prompt_ids([5, 6, 7])) - 1) // 4 + 1
    out = target.attribution(prepared, [5, 6, 7], [1, n_blocks], needle=(4, 9))
    assert out["layers"] == [1, 2]
    assert out[str(n_blocks)]["dropped_mass"] == [0.0, 0.0] and out[str(n_blocks)]["needle_kept"] == [1.0, 1.0]
    assert all(m > 0 for m in out["1"]["dropped_mass"]) and out["1"]["needle_kept"] == [0.0, 0.0]


@pytest.mark.parametrize("method", ["stream", "snapkv"])
def test_traced_sweep_gives_the_sweep_and_the_attribution_in_one_forward_per_k(pair, method):
    """run_item takes scores and attribution from the same traced forward: both must equal
    what the separate `sweep` and `attribution` passes give, bit for bit."""
    model, tok = pair
    target = Target(model, tok, SparseConfig(method=method, k=2, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="t-4", question="Is fire hot?", answer="yes"), "Water boils. " * 6)
    scores, attribution = target.traced_sweep(prepared, [5, 6, 7], [1, 3], needle=(4, 9))
    assert scores == target.sweep(prepared, [5, 6, 7], [1, 3])
    assert attribution == target.attribution(prepared, [5, 6, 7], [1, 3], needle=(4, 9))


def test_full_attention_score_is_shared_by_every_method_of_one_target(pair, monkeypatch):
    """A board swaps `target.sparse` between methods: full attention's score of a prompt is
    computed once, and equals a fresh computation."""
    model, tok = pair
    target = Target(model, tok, SparseConfig(method="stream", k=2, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="t-5", question="Is fire hot?", answer="yes"), "Water boils. " * 6)
    calls = []
    real = target.answer_logits
    monkeypatch.setattr(target, "answer_logits", lambda p, mode, **kw: calls.append(Mode.of(mode).key) or real(p, mode, **kw))
    first = target.sweep(prepared, [5, 6], [2])
    target.sparse = target.sparse.replace(method="oracle")
    second = target.sweep(prepared, [5, 6], [2])
    assert calls.count(FULL) == 1 and calls.count("2") == 2
    assert first[FULL] == second[FULL] == Target(model, tok, target.sparse).score(prepared, [[5, 6]], FULL)[0]
