"""Perturbation nulls (`filler`, `far`) and the per-draw records every draw-based attack
keeps: what the nulls draw, where the tokens go, and that random search is unchanged."""

import re

import pytest
import torch
from tiny_models import tiny_model, tiny_tokenizer

from attacks import FULL, Target, available_attacks, get_attack
from attacks.nulls import filler_text
from attacks.random_search import RandomSearchConfig, draw_candidates
from sparse import SparseConfig
from tasks import TaskItem, build_context, build_prompt, needle_items
from tasks.contexts import sentences
from tasks.needle import NAMES
from tasks.outcomes import classify
from tasks.prompts import ADV_MARKER, render

SPARSE = SparseConfig(k=1, block_q=4, block_k=4, dense_layers=1)
ITEM = TaskItem(id="t-0", question="Is fire hot?", answer="yes")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def context(tok):
    return build_context("filler", tok, 40, seed=0)


@pytest.fixture(scope="module")
def target(tok):
    """A random tiny model: its answer mass is negligible, so nothing ever succeeds."""
    return Target(tiny_model("qwen2", layers=3, vocab=len(tok), seed=1), tok, SPARSE)


@pytest.fixture(scope="module")
def answering(tok, context):
    """A tiny model that answers yes or no depending on the adversarial tokens: the answer
    rows of the output layer are +-v, with v orthogonal to the mean final hidden state of
    each mode (so neither mode has a fixed answer) and scaled so candidates spread over
    correct, wrong and neither under both modes."""
    model = tiny_model("qwen2", layers=3, vocab=len(tok), seed=1)
    target = Target(model, tok, SPARSE)
    prepared = target.prepare(ITEM, context)
    gen = torch.Generator().manual_seed(0)
    cands = draw_candidates(gen, target.vocabulary(), 32, 3).tolist()
    ids = torch.tensor([prepared.prompt_ids(c) for c in cands])
    means = []
    for mode in (FULL, 1):
        with torch.no_grad(), target.attention(mode):
            means.append(model.model(input_ids=ids).last_hidden_state[:, -1].mean(0))
    basis, _ = torch.linalg.qr(torch.stack(means).T)
    v = torch.randn(model.config.hidden_size, generator=gen)
    v = v - basis @ (basis.T @ v)
    with torch.no_grad():
        v = 5 * v / (model.model(input_ids=ids).last_hidden_state[:, -1] @ v).std()
        model.lm_head.weight[list(prepared.correct_ids)] = v
        model.lm_head.weight[list(prepared.wrong_ids)] = -v
    target.clear_prefix_caches()
    return target


def record_scores(target, monkeypatch):
    """Every `target.score` call as (prepared, candidates, mode), in call order."""
    calls = []
    score = target.score

    def recording(prepared, cands, mode):
        calls.append((prepared, torch.as_tensor(cands).clone(), mode))
        return score(prepared, cands, mode)

    monkeypatch.setattr(target, "score", recording)
    return calls


def sparse_candidates(calls, k):
    return torch.cat([c for _, c, mode in calls if mode == k]).tolist()


def windows(ids, n):
    return {tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)}


def test_registry_lists_the_nulls_with_random_search_budget():
    assert {"filler", "far", "random"} <= set(available_attacks())
    values = dict(n_adv=2, steps=9, k_attack=3, batch_size=4, full_margin=0.1, ascii_only=True, topk=5)
    for name in ("filler", "far"):
        cfg = get_attack(name).make_config(**values)
        assert (cfg.n_adv, cfg.steps, cfg.k_attack, cfg.batch_size, cfg.full_margin) == (2, 9, 3, 4, 0.1)
        with pytest.raises(ValueError, match=f"{name}: steps"):
            type(cfg)(steps=0)


def test_filler_draws_windows_of_the_filler_sentences_of_a_needle_context(target, tok, monkeypatch):
    item = needle_items(tok, 3, context_tokens=256, seed=0)[0]
    pool = set(sentences("filler"))
    parts = re.split(r"(?<=\.) ", item.context.strip())
    filler_parts = [s for s in parts if s in pool]
    assert filler_parts and len(filler_parts) < len(parts)  # filler, needles and distractors
    prepared = target.prepare(item, "")
    text = filler_text(prepared)
    assert text == " ".join(filler_parts)
    assert not any(name in text for name in NAMES)  # every needle and distractor names a person
    calls = record_scores(target, monkeypatch)
    cfg = get_attack("filler").make_config(n_adv=3, steps=24, k_attack=1, batch_size=8)
    result = get_attack("filler").run(target, prepared, cfg, 3)
    drawn = sparse_candidates(calls, 1)
    assert len(drawn) == len(result.draws) == 24 and result.prepared is None
    allowed = windows(tok.encode(text, add_special_tokens=False), 3)
    assert all(tuple(row) in allowed for row in drawn)
    assert len({tuple(row) for row in drawn}) > 12  # offsets vary
    get_attack("filler").run(target, prepared, cfg, 3)
    assert sparse_candidates(calls, 1)[24:] == drawn  # same seed, same draws


@pytest.mark.parametrize("passage", [None, "Some plain passage without any filler sentence."])
def test_filler_without_filler_in_the_context_draws_from_the_pool(target, tok, monkeypatch, passage):
    """The `--context none` fallback (and a BoolQ-like passage): the whole filler pool."""
    prepared = target.prepare(TaskItem(id="t-1", question="Is ice cold?", answer="yes", context=passage), "")
    pool_text = " ".join(sentences("filler"))
    assert filler_text(prepared) == pool_text
    calls = record_scores(target, monkeypatch)
    cfg = get_attack("filler").make_config(n_adv=4, steps=16, k_attack=1, batch_size=16)
    get_attack("filler").run(target, prepared, cfg, 0)
    allowed = windows(tok.encode(pool_text, add_special_tokens=False), 4)
    assert all(tuple(row) in allowed for row in sparse_candidates(calls, 1))


def test_far_draws_random_search_candidates_before_the_context(target, tok, context, monkeypatch):
    prepared = target.prepare(ITEM, context)
    cfg = RandomSearchConfig(n_adv=3, steps=20, k_attack=1, batch_size=8)
    calls = record_scores(target, monkeypatch)
    rand = get_attack("random").run(target, prepared, cfg, 7)
    n = len(calls)
    far = get_attack("far").run(target, prepared, get_attack("far").make_config(**vars(cfg)), 7)
    assert len(rand.draws) == len(far.draws) == 20  # nothing succeeds on this model
    assert sparse_candidates(calls[n:], 1) == sparse_candidates(calls[:n], 1)
    assert far.adv_ids == rand.adv_ids
    moved = far.prepared
    assert moved.slot == "context" and moved.cut % SPARSE.block_q == 0
    assert all(p is moved for p, _, _ in calls[n:])  # both modes score the far prompt
    head = build_prompt(tok, ITEM, "").prefix_ids  # template head only
    n_head = len(head)
    adv = [5, 6, 7]
    assert moved.prompt_ids(adv) == head + adv + prepared.prefix_ids[n_head:] + prepared.suffix_ids
    assert prepared.prefix_ids[:n_head] == head and len(prepared.prefix_ids) > n_head + 10  # the context moved
    # Without a context the far prompt is random search's.
    plain, moved_plain = target.prepare(ITEM, ""), target.prepare(ITEM, "", slot="context")
    assert (plain.prefix_ids, plain.suffix_ids) == (moved_plain.prefix_ids, moved_plain.suffix_ids)


@pytest.mark.parametrize("chat", [True, False])
def test_context_slot_moves_only_the_marker(tok, context, chat):
    plain = tok
    if not chat:  # the plain template
        plain = tiny_tokenizer()
        plain.chat_template = None
    near, far = render(plain, ITEM, context), render(plain, ITEM, context, slot="context")
    assert near.replace(ADV_MARKER, "") == far.replace(ADV_MARKER, "")
    assert far.index(ADV_MARKER) < far.index(context.strip()) and near.index(ADV_MARKER) > near.index(context.strip())
    with pytest.raises(ValueError, match="slot"):
        render(plain, ITEM, context, slot="answer")


@pytest.mark.parametrize("name", ["random", "filler", "far"])
def test_draws_are_the_answer_classes_of_every_scored_candidate(answering, context, monkeypatch, name):
    prepared = answering.prepare(ITEM, context)
    spec = get_attack(name)
    cfg = spec.make_config(n_adv=3, steps=40, k_attack=1, batch_size=8)
    calls = record_scores(answering, monkeypatch)
    result = spec.run(answering, prepared, cfg, 0)
    monkeypatch.undo()
    scored_on = result.prepared or prepared
    drawn = sparse_candidates(calls, 1)
    assert len(result.draws) == len(drawn)
    assert [c.tolist() for _, c, m in calls if m == FULL] == [c.tolist() for _, c, m in calls if m == 1]
    fresh = Target(answering.model, answering.tokenizer, SPARSE, use_cache=False)
    for row, draw in zip(drawn, result.draws):
        full, sparse = fresh.score(scored_on, [row], FULL)[0], fresh.score(scored_on, [row], 1)[0]
        assert draw == {"full": full.answer_class, "sparse": sparse.answer_class}
    # success: the first draw full attention gets right and sparse attention does not
    hits = [i for i, d in enumerate(result.draws) if d["full"] == "correct" and d["sparse"] != "correct"]
    if result.success:
        assert result.steps == hits[0] + 1 and drawn[hits[0]] == result.adv_ids
        assert len(drawn) == min(cfg.steps, -(-result.steps // cfg.batch_size) * cfg.batch_size)
    else:
        assert not hits and result.steps == len(drawn) == cfg.steps
    assert len({(d["full"], d["sparse"]) for d in result.draws}) > 2  # the model's answers vary


def old_random_search(target, prepared, cfg, seed):
    """Random search before per-draw records: full attention only for sparse-wrong candidates."""
    vocab = target.vocabulary(cfg.ascii_only)
    gen = torch.Generator().manual_seed(seed)
    tried, last = 0, None
    while tried < cfg.steps:
        count = min(cfg.batch_size, cfg.steps - tried)
        cands = draw_candidates(gen, vocab, count, cfg.n_adv)
        sparse = target.score(prepared, cands, cfg.k_attack)
        wrong = [i for i, s in enumerate(sparse) if not s.correct]
        if wrong:
            for i, s in zip(wrong, target.score(prepared, cands[wrong], FULL)):
                if classify(s, sparse[i], cfg.full_margin).success:
                    return cands[i].tolist(), tried + i + 1, True
        tried += count
        last = cands[-1]
    return last.tolist(), tried, False


def test_random_search_returns_what_it_returned_before_per_draw_records(answering, context):
    prepared = answering.prepare(ITEM, context)
    outcomes = []
    for seed, steps, batch, margin in ((0, 40, 8, 0.0), (1, 40, 16, 0.0), (2, 40, 5, 0.3), (0, 6, 4, 0.0)):
        cfg = RandomSearchConfig(n_adv=3, steps=steps, k_attack=1, batch_size=batch, full_margin=margin)
        got = get_attack("random").run(answering, prepared, cfg, seed)
        want = old_random_search(answering, prepared, cfg, seed)
        assert (got.adv_ids, got.steps, got.success) == want
        outcomes.append(got.success)
    assert True in outcomes and False in outcomes
