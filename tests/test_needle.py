"""The needle suite: deterministic, balanced, one sentence answers each question, contexts
sized in tokens with needles at their depths, and the needle's token span in the prompt."""

import pytest
from tiny_models import tiny_tokenizer

from tasks import SuiteError, available_suites, build_prompt, load_suite, needle_items, needle_token_span
from tasks.needle import ATTRIBUTES, NAMES


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_needle_is_a_listed_suite_and_needs_a_tokenizer():
    assert "needle" in available_suites()
    with pytest.raises(SuiteError, match="tokenizer"):
        load_suite("needle", 3)


def test_load_suite_passes_its_parameters_and_names_bad_ones(tok):
    assert load_suite("needle", 4, tokenizer=tok, context_tokens=128, depths=(0.2, 0.8), seed=5) == \
        needle_items(tok, 4, 128, (0.2, 0.8), 5)
    assert len(load_suite("needle", tokenizer=tok, context_tokens=96)) == 48  # no limit: 16 per default depth
    with pytest.raises(SuiteError, match="depths must lie in"):
        load_suite("needle", 4, tokenizer=tok, depths=(0.5, -0.1))
    with pytest.raises(SuiteError, match="context_tokens must be >= 64"):
        load_suite("needle", 4, tokenizer=tok, context_tokens=10)
    assert load_suite("facts", 5, tokenizer=tok) == load_suite("facts", 5)  # other suites ignore the tokenizer


def test_items_are_deterministic_by_seed_and_balanced_per_depth(tok):
    a = needle_items(tok, 24, context_tokens=128, depths=(0.1, 0.5, 0.9), seed=3)
    assert a == needle_items(tok, 24, context_tokens=128, depths=(0.1, 0.5, 0.9), seed=3)
    assert a != needle_items(tok, 24, context_tokens=128, depths=(0.1, 0.5, 0.9), seed=4)
    assert len({i.id for i in a}) == 24
    for depth in (0.1, 0.5, 0.9):
        answers = [i.answer for i in a if i.depth == depth]
        assert len(answers) == 8 and answers.count("yes") == 4
    # --limit keeps every depth: items come depth by depth within each group
    assert [i.depth for i in a[:3]] == [0.1, 0.5, 0.9]


def test_the_needle_alone_answers_its_question(tok):
    for item in needle_items(tok, 30, context_tokens=160, seed=1):
        needle = item.context[item.needle_span[0]: item.needle_span[1]]
        (attribute, name, stated), = [(a, n, v) for a in ATTRIBUTES for n in NAMES for v in a.values
                                      if a.statement.format(name=n, value=v) == needle]
        asked = [v for v in attribute.values if attribute.question.format(name=name, value=v) == item.question]
        assert asked and (asked[0] == stated) == (item.answer == "yes")
        # no other sentence states this person's attribute, whatever the value
        assert sum(item.context.count(attribute.statement.format(name=name, value=v)) for v in attribute.values) == 1


def test_groups_share_one_context_and_needles_sit_at_their_depths(tok):
    items = needle_items(tok, 12, context_tokens=300, depths=(0.1, 0.5, 0.9), seed=0)
    groups = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    assert len(groups) == 4
    for members in groups.values():
        assert len({m.context for m in members}) == 1
        n = len(tok.encode(members[0].context, add_special_tokens=False))
        assert abs(n - 300) <= 30  # half a filler sentence of this tokenizer, plus merges
        for m in members:
            position = len(tok.encode(m.context[: m.needle_span[0]], add_special_tokens=False)) / n
            assert abs(position - m.depth) < 0.15


def test_needle_token_span_decodes_to_the_needle(tok):
    for item in needle_items(tok, 6, context_tokens=128, seed=2):
        start, end = needle_token_span(tok, item)
        ids = build_prompt(tok, item).prefix_ids
        needle = item.context[item.needle_span[0]: item.needle_span[1]]
        assert needle in tok.decode(ids[start:end])
        assert needle not in tok.decode(ids[start + 1: end]) and needle not in tok.decode(ids[start: end - 1])


@pytest.mark.integration
@pytest.mark.parametrize("context_tokens,depth_tolerance", [(128, 0.15), (512, 0.05)])
def test_on_the_real_smollm2_tokenizer(smollm2, context_tokens, depth_tolerance):
    """Every property at once on SmolLM2's tokenizer and chat template. Tolerances: the length
    is off by at most half a filler sentence (measured -7..+10 tokens over 80 contexts); a
    needle starts on a sentence boundary, so its depth is off by about one sentence."""
    _, tok = smollm2
    depths = (0.0, 0.25, 0.5, 0.75, 1.0)
    for seed in range(3):
        items = needle_items(tok, 10, context_tokens, depths, seed=seed)
        assert items == needle_items(tok, 10, context_tokens, depths, seed=seed)
        assert [i.depth for i in items] == list(depths) * 2 and len({i.group for i in items}) == 2
        for depth in depths:
            assert sorted(i.answer for i in items if i.depth == depth) == ["no", "yes"]
        for item in items:
            assert item.context == next(i.context for i in items if i.group == item.group)
            needle = item.context[item.needle_span[0]: item.needle_span[1]]
            (attribute, name, stated), = [(a, n, v) for a in ATTRIBUTES for n in NAMES for v in a.values
                                          if a.statement.format(name=n, value=v) == needle]
            asked, = [v for v in attribute.values if attribute.question.format(name=name, value=v) == item.question]
            assert (asked == stated) == (item.answer == "yes")
            assert sum(item.context.count(attribute.statement.format(name=name, value=v)) for v in attribute.values) == 1
            # the asked attribute also appears in distractors about other people
            assert any(attribute.statement.format(name=n, value=v) in item.context
                       for n in NAMES if n != name for v in attribute.values)
            n = len(tok.encode(item.context, add_special_tokens=False))
            assert abs(n - context_tokens) <= 12
            position = len(tok.encode(item.context[: item.needle_span[0]], add_special_tokens=False)) / n
            assert abs(position - item.depth) <= depth_tolerance
            start, end = needle_token_span(tok, item)
            assert needle in tok.decode(build_prompt(tok, item).prefix_ids[start:end])


@pytest.mark.parametrize("kwargs,message", [
    ({"depths": (0.5, 1.2)}, "depths must lie in"),
    ({"depths": ()}, "at least one depth"),
    ({"context_tokens": 20}, "context_tokens must be >= 64"),
    ({"n_items": 0}, "n_items must be >= 1"),
])
def test_bad_parameters_are_named(tok, kwargs, message):
    args = {"n_items": 3, "context_tokens": 128, "depths": (0.1, 0.5), "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        needle_items(tok, **args)


def test_absent_needle_questions_ask_about_a_person_the_context_never_mentions(tok):
    items = needle_items(tok, 40, context_tokens=128, depths=(0.1, 0.5, 0.9), seed=2, absent=1, balance=True)
    absent = [i for i in items if i.id.endswith("-absent0")]
    assert len(absent) == 10  # one per group of 3 needles + 1 absent question
    present = {i.group: i for i in items if i.needle_span is not None}
    for item in absent:
        assert item.answer == "no" and item.needle_span is None and item.depth is None
        name = item.question.split("'s ")[0].split()[-1] if "'s " in item.question else item.question.split()[1]
        assert name in NAMES and name not in item.context  # the asked fact is nowhere in the context
        assert item.context == present[item.group].context  # same context as its group's needles
        asked = next(a for a in ATTRIBUTES if a.question.split("{name}")[1].split("{value}")[0] in item.question)
        assert any(a is asked for a in ATTRIBUTES)


def test_balance_gives_as_many_yes_as_no_overall_and_at_every_depth(tok):
    items = needle_items(tok, 48, context_tokens=96, depths=(0.1, 0.5, 0.9), seed=1, absent=1, balance=True)
    answers = [i.answer for i in items]
    assert answers.count("yes") == answers.count("no") == 24
    for depth in (0.1, 0.5, 0.9):  # 12 groups: each needle depth asked yes in 8 and no in 4 (absent adds the no's)
        at = [i.answer for i in items if i.depth == depth]
        assert at.count("yes") == 8
    # without absent items, balanced needles alternate the odd yes between groups
    plain = needle_items(tok, 48, context_tokens=96, depths=(0.1, 0.5, 0.9), seed=1, balance=True)
    assert [i.answer for i in plain].count("yes") == 24
    for depth in (0.1, 0.5, 0.9):
        assert [i.answer for i in plain if i.depth == depth].count("yes") == 8


def test_first_release_items_are_unchanged_without_absent_and_balance(tok):
    """Committed runs resume on the same items: absent=0, balance=False draws nothing new."""
    old = needle_items(tok, 12, context_tokens=128, depths=(0.1, 0.5, 0.9), seed=0)
    assert [i.answer for i in old] == ["yes", "no", "yes", "no", "yes", "no"] * 2
    with_absent = needle_items(tok, 16, context_tokens=128, depths=(0.1, 0.5, 0.9), seed=0, absent=1)
    assert with_absent[0].context == old[0].context  # group 0's context is drawn before its absent question


@pytest.mark.parametrize("absent", [-1, 9, 1.5, True])
def test_bad_absent_is_named(tok, absent):
    with pytest.raises(ValueError, match="absent must be an integer"):
        needle_items(tok, 4, context_tokens=128, absent=absent)
