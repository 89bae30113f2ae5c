"""tasks/: suites, answer token sets, context builders and prompt assembly.

Tokenizers cannot be downloaded here, so the tests build tiny ones with the
`tokenizers` library: a word-level one, a GPT-2-like byte-level BPE with a chat
template, and a SentencePiece-like one whose " Yes" starts with a bare "▁".
"""

from __future__ import annotations

import ast
import csv
import json
import re
import sys
import types
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import yaml
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from tokenizers import decoders as tk_decoders
from transformers import PreTrainedTokenizerFast

import tasks
from tasks import (
    AnswerSets,
    PromptParts,
    SuiteError,
    TaskItem,
    answer_token_sets,
    available_contexts,
    available_suites,
    build_context,
    build_prompt,
    load_suite,
)
from tasks.contexts import sentences
from tasks.prompts import ADV_MARKER

TASKS_DIR = Path(tasks.__file__).parent

# --------------------------------------------------------------------------- tokenizers

CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|user|>", "<|end|>", "<|assistant|>"]
ANSWER_WORDS = ["Yes", "yes", "YES", "No", "no", "NO"]


def _corpus() -> list[str]:
    text = [" ".join(ANSWER_WORDS * 5), "Question: Answer with yes or no. Answer: Yes No yes no"] + ANSWER_WORDS * 5
    text += [item.question for item in load_suite("seed4")] + list(sentences("filler")) + list(sentences("haystack"))
    return text * 3


@pytest.fixture(scope="module")
def bpe():
    """A GPT-2-like byte-level BPE (Ġ marks a leading space) with a chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk_decoders.ByteLevel()
    from tokenizers.trainers import BpeTrainer

    trainer = BpeTrainer(vocab_size=600, special_tokens=SPECIALS, show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   additional_special_tokens=SPECIALS[1:])
    fast.chat_template = CHAT_TEMPLATE
    return fast


@pytest.fixture(scope="module")
def bpe_plain(bpe):
    """The same BPE without a chat template (plain fallback prompt, no BOS added)."""
    plain = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(bpe.backend_tokenizer.to_str()),
                                    eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    assert not plain.chat_template
    return plain


def word_level(vocab_words, normalizer=None, pre_tokenizer=None) -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0}
    for word in vocab_words:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizer or pre_tokenizers.WhitespaceSplit()
    if normalizer is not None:
        tok.normalizer = normalizer
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


@pytest.fixture(scope="module")
def words():
    """Word-level: " Yes" and "Yes" are the same token, unknown words are [UNK]."""
    return word_level(ANSWER_WORDS + ["Is", "the", "sun", "a", "star?"])


def sentencepiece_like() -> PreTrainedTokenizerFast:
    """Metaspace BPE with "Yes" but no "▁Yes": " Yes" encodes as "▁" + "Yes"."""
    chars = sorted(set("".join(ANSWER_WORDS)) | {"▁"})
    vocab = {c: i for i, c in enumerate(chars)}
    merges = []
    for word in ANSWER_WORDS:
        for end in range(2, len(word) + 1):
            left, right = word[: end - 1], word[end - 1]
            if (left, right) not in merges:
                merges.append((left, right))
            vocab.setdefault(word[:end], len(vocab))
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok.decoder = tk_decoders.Metaspace(replacement="▁", prepend_scheme="never")
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def decode(tok, ids) -> str:
    return tok.decode(ids, skip_special_tokens=False)


# --------------------------------------------------------------------------- items and built-in suites


def test_imports_stay_below_attacks_and_harness():
    forbidden = {"sparse", "attacks", "harness", "leaderboard"}
    for path in TASKS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name} imports {names}"


def test_task_item_normalises_answers_and_is_frozen():
    for raw, expected in [("Yes", "yes"), ("NO", "no"), ("true", "yes"), ("False", "no"), ("1", "yes"),
                          ("0", "no"), (1, "yes"), (0, "no"), (True, "yes"), (False, "no"), (" yes ", "yes")]:
        assert TaskItem("a", "Is it?", raw).answer == expected
    for bad in ["maybe", "y", "", None, 2]:
        with pytest.raises(ValueError, match="answer"):
            TaskItem("a", "Is it?", bad)
    with pytest.raises(ValueError, match="empty question"):
        TaskItem("a", "   ", "yes")
    item = TaskItem("a", "Is it?", "yes")
    assert item.context is None
    with pytest.raises(FrozenInstanceError):
        item.answer = "no"


def test_seed4_is_table_1_of_the_seed():
    items = load_suite("seed4")
    assert [(i.question, i.answer) for i in items] == [
        ("Is the sun a star?", "yes"),
        ("Is Rome in Belgium?", "no"),
        ("Is 100 an even number?", "yes"),
        ("Is fire hot?", "yes"),
    ]
    assert [i.id for i in items] == ["seed4-000", "seed4-001", "seed4-002", "seed4-003"]
    assert all(i.context is None for i in items)
    assert set(available_suites()) == {"seed4", "facts", "needle"}


def _norm(question: str) -> str:
    return " ".join(question.lower().split())


def test_facts_is_balanced_unique_and_well_formed():
    items = load_suite("facts")
    assert len(items) >= 200
    answers = [i.answer for i in items]
    assert answers.count("yes") == answers.count("no") == len(items) // 2
    questions = [_norm(i.question) for i in items]
    assert len(set(questions)) == len(questions), "duplicate questions"
    assert all(i.question.endswith("?") and i.question[0].isupper() for i in items)
    assert len({i.id for i in items}) == len(items)
    assert all(re.fullmatch(r"facts-\d{3}", i.id) for i in items)
    assert not set(questions) & {_norm(i.question) for i in load_suite("seed4")}, "facts repeats seed4"
    assert load_suite("facts", limit=5) == items[:5]


# --------------------------------------------------------------------------- loading files


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


OK = {"question": "Is ice cold?", "answer": "yes"}


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("missing.jsonl", jsonl(OK, {"question": "Is ice hot?"}), [r"line 2\b", "field 'answer'", "missing"]),
        ("noq.jsonl", jsonl({"answer": "no"}), [r"line 1\b", "field 'question'", "missing"]),
        ("badanswer.jsonl", jsonl(OK, OK, {"question": "Is ice hot?", "answer": "maybe"}),
         [r"line 3\b", "field 'answer'", "maybe"]),
        ("emptyq.jsonl", jsonl(OK, {"question": "  ", "answer": "no"}), [r"line 2\b", "field 'question'", "empty"]),
        ("broken.jsonl", jsonl(OK, '{"question": "Is ice hot?", "answer": '), [r"line 2\b", "JSON"]),
        ("notdict.jsonl", jsonl(OK, '["Is ice hot?", "no"]'), [r"line 2\b", "question"]),
        ("empty.jsonl", "", ["empty"]),
        ("blank.jsonl", "\n  \n", ["empty"]),
        ("header.csv", "question,reply\nIs ice cold?,yes\n", [r"line 1\b", "field 'answer'"]),
        ("badanswer.csv", "question,answer\nIs ice cold?,yes\nIs ice hot?,nope\n",
         [r"line 3\b", "field 'answer'", "nope"]),
        ("emptyq.csv", "question,answer\n,yes\n", [r"line 2\b", "field 'question'", "empty"]),
        ("short.csv", "question,answer\nIs ice cold?\n", [r"line 2\b", "field 'answer'"]),
        ("empty.csv", "", ["empty"]),
        ("missing.yaml", "- question: Is ice cold?\n  answer: yes\n- question: Is ice hot?\n",
         [r"item 2\b", r"line 3\b", "field 'answer'"]),
        ("badanswer.yml", "items:\n  - question: Is ice cold?\n    answer: perhaps\n",
         [r"item 1\b", r"line 2\b", "field 'answer'", "perhaps"]),
        ("broken.yaml", "- question: [unclosed\n  answer: yes\n", ["YAML"]),
        ("empty.yaml", "", ["empty"]),
        ("scalar.yaml", "just a string\n", ["list of items"]),
        ("dupid.jsonl", jsonl({**OK, "id": "x"}, {**OK, "id": "x"}), ["duplicate", "'x'"]),
        ("suite.txt", "Is ice cold?,yes\n", ["unsupported", ".jsonl"]),
    ],
)
def test_bad_suite_files_name_file_line_and_field(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)
    with pytest.raises(SuiteError) as info:
        load_suite(str(path))
    message = str(info.value)
    assert str(path) in message
    for pattern in expected:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert isinstance(info.value, ValueError)


def test_unknown_names_list_the_builtins(tmp_path):
    with pytest.raises(SuiteError, match="seed4.*facts|facts.*seed4"):
        load_suite("sed4")
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(str(tmp_path / "absent.jsonl"))
    with pytest.raises(SuiteError, match="limit"):
        load_suite("seed4", limit=0)


ROWS = [
    {"question": "Is ice cold?", "answer": "yes"},
    {"question": "Is ice hot?", "answer": "no", "context": "Ice is frozen water."},
    {"question": "Is a cat a bird?", "answer": "no", "id": "custom"},
]


def _check_round_trip(items, stem):
    assert [(i.question, i.answer, i.context) for i in items] == [
        ("Is ice cold?", "yes", None), ("Is ice hot?", "no", "Ice is frozen water."), ("Is a cat a bird?", "no", None)]
    assert [i.id for i in items] == [f"{stem}-000", f"{stem}-001", "custom"]


def test_round_trip_jsonl_csv_yaml(tmp_path):
    path = write(tmp_path, "rt.jsonl", jsonl(*ROWS))
    _check_round_trip(load_suite(str(path)), "rt")

    path = tmp_path / "rt.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "question", "answer", "context"])
        writer.writeheader()
        writer.writerows(ROWS)
    _check_round_trip(load_suite(str(path)), "rt")

    path = write(tmp_path, "rt.yaml", yaml.safe_dump(ROWS))
    _check_round_trip(load_suite(str(path)), "rt")
    path = write(tmp_path, "wrapped.yml", yaml.safe_dump({"items": ROWS}))
    _check_round_trip(load_suite(str(path)), "wrapped")
    assert load_suite(str(path), limit=2) == load_suite(str(path))[:2]


def test_answer_spellings_in_files(tmp_path):
    path = write(tmp_path, "s.csv", "question,answer\nA?,TRUE\nB?,false\nC?,1\nD?,0\nE?,Yes\nF?,NO\n")
    assert [i.answer for i in load_suite(str(path))] == ["yes", "no", "yes", "no", "yes", "no"]
    # YAML 1.1 reads bare yes/no as booleans
    path = write(tmp_path, "s.yaml", "- {question: A, answer: yes}\n- {question: B, answer: no}\n"
                                     "- {question: C, answer: 'False'}\n- {question: D, answer: 1}\n")
    assert [i.answer for i in load_suite(str(path))] == ["yes", "no", "no", "yes"]
    path = write(tmp_path, "s.jsonl", jsonl({"question": "A?", "answer": True}, {"question": "B?", "answer": 0}))
    assert [i.answer for i in load_suite(str(path))] == ["yes", "no"]


def fake_datasets(monkeypatch, rows=None, error=None):
    calls = []

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        if error:
            raise error
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hf_suites_use_boolq_fields(monkeypatch):
    rows = [
        {"question": "is the sky blue", "passage": "The sky looks blue.", "answer": True},
        {"question": "do fish fly?", "passage": "Fish swim.", "answer": False},
    ]
    calls = fake_datasets(monkeypatch, rows)
    items = load_suite("hf:google/boolq:validation")
    assert calls == [("google/boolq", None, "validation")]
    assert [(i.id, i.question, i.answer, i.context) for i in items] == [
        ("boolq-000", "Is the sky blue?", "yes", "The sky looks blue."),
        ("boolq-001", "Do fish fly?", "no", "Fish swim."),
    ]
    calls = fake_datasets(monkeypatch, [{"question": "is it", "passage": "p", "label": 0}] * 3)
    items = load_suite("hf:super_glue:boolq:train", limit=2)
    assert calls == [("super_glue", "boolq", "train")] and len(items) == 2 and items[0].answer == "no"


def test_hf_errors_are_suite_errors(monkeypatch):
    fake_datasets(monkeypatch, error=ConnectionError("Hub unreachable"))
    with pytest.raises(SuiteError, match="hf:boolq:validation.*Hub unreachable"):
        load_suite("hf:boolq:validation")
    with pytest.raises(SuiteError, match="hf:<name>"):
        load_suite("hf:boolq")
    fake_datasets(monkeypatch, [{"question": "is it", "passage": "p"}])
    with pytest.raises(SuiteError, match="row 1.*field 'answer'"):
        load_suite("hf:boolq:validation")
    fake_datasets(monkeypatch, [])
    with pytest.raises(SuiteError, match="empty"):
        load_suite("hf:boolq:validation")


# --------------------------------------------------------------------------- answer token sets


def test_answer_sets_pick_and_wrong():
    sets = AnswerSets(yes=(1, 2), no=(3,))
    assert sets.correct("yes") == sets.wrong("no") == (1, 2)
    assert sets.correct("no") == sets.wrong("yes") == (3,)
    assert sets.correct("True") == (1, 2)
    with pytest.raises(ValueError):
        sets.correct("maybe")


def test_answer_sets_word_level(words):
    sets = answer_token_sets(words)
    ids = words.convert_tokens_to_ids
    assert sets.yes == (ids("Yes"), ids("yes"), ids("YES"))  # " Yes" is "Yes": deduplicated
    assert sets.no == (ids("No"), ids("no"), ids("NO"))


def test_answer_sets_byte_level_bpe(bpe):
    sets = answer_token_sets(bpe)
    first = [bpe.encode(v, add_special_tokens=False)[0] for v in ("Yes", " Yes", "yes", " yes", "YES")]
    assert sets.yes == tuple(dict.fromkeys(first))
    tokens = bpe.convert_tokens_to_ids
    assert sets.yes == tuple(tokens(["Yes", "ĠYes", "yes", "Ġyes", "YES"]))  # one token per variant
    assert sets.no == tuple(tokens(["No", "ĠNo", "no", "Ġno", "NO"]))
    assert not set(sets.yes) & set(sets.no)


def test_answer_sets_skip_a_bare_space_first_token():
    tok = sentencepiece_like()
    assert tok.convert_ids_to_tokens(tok.encode(" Yes", add_special_tokens=False)) == ["▁", "Yes"]
    sets = answer_token_sets(tok)
    space = tok.convert_tokens_to_ids("▁")
    assert space not in sets.yes + sets.no
    assert sets.yes == tuple(tok.convert_tokens_to_ids(["Yes", "yes", "YES"]))


def test_answer_sets_sharing_a_first_token_raise():
    # Every text is prefixed with "#", which is split off as its own token.
    tok = word_level(["#"] + ANSWER_WORDS, normalizer=normalizers.Prepend("#"),
                     pre_tokenizer=pre_tokenizers.Sequence([
                         pre_tokenizers.Split(Regex("#"), behavior="isolated"), pre_tokenizers.WhitespaceSplit()]))
    assert tok.convert_ids_to_tokens(tok.encode("No", add_special_tokens=False)) == ["#", "No"]
    with pytest.raises(ValueError, match=r"share first tokens .*'#'"):
        answer_token_sets(tok)


def test_answer_sets_missing_variants_raise():
    with pytest.raises(ValueError, match="'no' variants"):
        answer_token_sets(word_level(["Yes", "yes"]))  # every "no" spelling is [UNK]


# --------------------------------------------------------------------------- contexts


def test_context_pools():
    assert available_contexts() == ["none", "filler", "haystack"]
    filler, haystack = sentences("filler"), sentences("haystack")
    assert len(filler) >= 40 and len(haystack) >= 60
    assert len(set(filler)) == len(filler) and len(set(haystack)) == len(haystack)
    assert all(s.endswith(".") for s in filler + haystack)


# Words of facts/seed4 questions that say nothing about a topic.
GENERIC = set("""the and are for you who was does have than with usually kind made from used something person equal
plus times less greater even number multiple divisible main clear room temperature that when shape sides live need
grow best total longer smaller bigger heavier older younger colder zero one two three four five six seven eight nine
ten eleven twelve fifteen twenty fifty sixty ninety hundred""".split())


def stems(text: str) -> set[str]:
    """Lower-case words with a plural "s" dropped: enough to match "hearts" with "heart"."""
    return {w[:-1] if w.endswith("s") and len(w) > 4 else w for w in re.findall(r"[a-z]+", text.lower())}


def test_haystack_never_touches_a_question():
    generic = stems(" ".join(GENERIC))
    topics = set()
    for item in load_suite("facts") + load_suite("seed4"):
        topics |= {w for w in stems(item.question) if len(w) >= 3} - generic
    for sentence in sentences("haystack"):
        assert not stems(sentence) & topics, f"{sentence!r} touches {stems(sentence) & topics}"


def _length(tok, text):
    return len(tok.encode(text, add_special_tokens=False))


@pytest.mark.parametrize("kind", ["filler", "haystack"])
@pytest.mark.parametrize("tok_name", ["bpe", "words"])
def test_context_length_bounds(request, kind, tok_name):
    tok = request.getfixturevalue(tok_name)
    longest = max(_length(tok, " " + s) for s in sentences(kind))
    for n in (1, 17, 100, 333, 1500):
        for seed in (0, 1):
            text = build_context(kind, tok, n, seed=seed)
            assert n <= _length(tok, text) <= n + longest, (n, seed)
            assert text.endswith("\n\n") and not text.endswith("\n\n\n")
            body = text[:-2]
            # the fewest sentences: dropping the last one falls short
            shorter = body[: body.rfind(". ") + 1] if ". " in body else ""
            assert not shorter or _length(tok, shorter + "\n\n") < n
            assert all(s in sentences(kind) for s in re.split(r"(?<=\.) ", body))


def test_context_is_deterministic_by_seed(bpe):
    a = build_context("haystack", bpe, 300, seed=3)
    assert a == build_context("haystack", bpe, 300, seed=3)
    assert a != build_context("haystack", bpe, 300, seed=4)
    # no repeats until the pool is used up
    parts = build_context("filler", bpe, 400, seed=0)[:-2].split(". ")
    assert len(parts) == len(set(parts))


def test_context_edge_cases(bpe):
    assert build_context("none", bpe, 500) == ""
    assert build_context("filler", bpe, 0) == ""
    with pytest.raises(ValueError, match="none, filler, haystack"):
        build_context("lorem", bpe, 10)
    with pytest.raises(ValueError, match="n_tokens"):
        build_context("filler", bpe, -1)


# --------------------------------------------------------------------------- prompts

ITEM = TaskItem("seed4-000", "Is the sun a star?", "yes")


def test_prompt_with_chat_template(bpe):
    context = build_context("filler", bpe, 60, seed=0)
    parts = build_prompt(bpe, ITEM, context)
    assert isinstance(parts, PromptParts)
    prefix, suffix = decode(bpe, parts.prefix_ids), decode(bpe, parts.suffix_ids)
    assert prefix == "<|user|>\n" + context
    assert suffix == "Is the sun a star? Answer with yes or no.<|end|>\n<|assistant|>\n"
    assert parts.prefix_ids[0] == bpe.convert_tokens_to_ids("<|user|>")  # special tokens stay single ids
    assert parts.suffix_ids[-2] == bpe.convert_tokens_to_ids("<|assistant|>")
    adv = bpe.encode(" Dungeon act", add_special_tokens=False)
    full = decode(bpe, parts.prefix_ids + adv + parts.suffix_ids)
    assert full == ("<|user|>\n" + context + " Dungeon act"
                    + "Is the sun a star? Answer with yes or no.<|end|>\n<|assistant|>\n")
    assert ADV_MARKER not in full


def test_prompt_context_order_and_blank_lines(bpe):
    item = TaskItem("x", "Is ice cold?", "yes", context="Ice forms below zero degrees.")
    parts = build_prompt(bpe, item, "Some filler text.")  # no trailing blank line given
    prefix = decode(bpe, parts.prefix_ids)
    assert prefix.endswith("Some filler text.\n\nIce forms below zero degrees.\n\n")
    assert decode(bpe, parts.suffix_ids).startswith("Is ice cold? Answer with yes or no.")
    no_context = build_prompt(bpe, item)
    assert decode(bpe, no_context.prefix_ids) == "<|user|>\nIce forms below zero degrees.\n\n"
    assert decode(bpe, build_prompt(bpe, ITEM).prefix_ids) == "<|user|>\n"


def test_prompt_plain_fallback(bpe_plain):
    context = build_context("haystack", bpe_plain, 40, seed=1)
    parts = build_prompt(bpe_plain, ITEM, context)
    assert decode(bpe_plain, parts.prefix_ids) == context
    assert decode(bpe_plain, parts.suffix_ids) == "Question: Is the sun a star? Answer with yes or no.\nAnswer:"
    assert build_prompt(bpe_plain, ITEM).prefix_ids == []


def test_prompt_plain_fallback_keeps_an_added_bos(bpe_plain):
    backend = Tokenizer.from_str(bpe_plain.backend_tokenizer.to_str())
    bos = backend.token_to_id("<|endoftext|>")
    backend.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A",
                                                           special_tokens=[("<|endoftext|>", bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    assert tok.encode("a")[0] == bos
    parts = build_prompt(tok, ITEM, "Context here.\n\n")
    assert parts.prefix_ids[0] == bos and parts.prefix_ids.count(bos) == 1
    assert decode(tok, parts.prefix_ids[1:]) == "Context here.\n\n"
    assert bos not in parts.suffix_ids


def test_prompt_rejects_an_empty_question(bpe):
    blank = types.SimpleNamespace(id="x", question="  ", answer="yes", context=None)
    with pytest.raises(ValueError, match="empty question"):
        build_prompt(bpe, blank)


def test_prompt_rejects_a_template_that_drops_the_marker(bpe):
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(bpe.backend_tokenizer.to_str()))
    tok.chat_template = "{% for m in messages %}{{ m['content'][:3] }}{% endfor %}"
    with pytest.raises(ValueError, match="marker"):
        build_prompt(tok, ITEM)


# --------------------------------------------------------------------------- the real tokenizer


@pytest.mark.integration
def test_smollm2_answer_sets_and_prompt(smollm2):
    _, tok = smollm2
    sets = answer_token_sets(tok)
    assert sets.yes and sets.no and not set(sets.yes) & set(sets.no)
    assert tok.decode([sets.yes[0]]) == "Yes" and tok.decode([sets.no[0]]) == "No"
    context = build_context("haystack", tok, 200, seed=0)
    assert 200 <= _length(tok, context) <= 200 + max(_length(tok, " " + s) for s in sentences("haystack"))
    for item in load_suite("seed4"):
        parts = build_prompt(tok, item, context)
        prefix, suffix = tok.decode(parts.prefix_ids), tok.decode(parts.suffix_ids)
        assert prefix.endswith(context) and suffix.startswith(item.question)
        full = tok.decode(parts.prefix_ids + parts.suffix_ids)
        assert full.index(context) < full.index(item.question) < full.index("Answer with yes or no.")
