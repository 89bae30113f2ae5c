"""The results contract: outcome classes on constructed scores, rows of every release
load and round-trip exactly, and the one torn-line policy."""

import json

import pytest

from harness.results import ResultRow, RowError, read_rows
from harness.results.stats import summarize
from tasks.outcomes import BREAKDOWN, CORRECT, KEPT, OTHER, STRICT, WRONG, Score, classify

CONFIDENT = Score(0.90, 0.05, "Yes", CORRECT)


def test_answer_class_is_the_largest_of_correct_wrong_and_neither():
    assert Score(0.5, 0.2, "Yes", CORRECT).answer_class == CORRECT
    assert Score(0.2, 0.5, "No", WRONG).answer_class == WRONG
    assert Score(0.035, 0.046, "The", OTHER).answer_class == OTHER  # smollm2 under STREAM: no yes/no at all
    assert Score(0.4, 0.35, "Yes", CORRECT).answer_class == CORRECT  # 0.25 on neither
    assert Score(0.4, 0.4, "Yes", CORRECT).answer_class == WRONG  # a tie is never right
    assert Score(0.3, 0.2, "The", OTHER).answer_class == OTHER  # 0.5 on neither: a breakdown, though P(a) > P(ā)
    assert Score(0.45, 0.5, "Yes", CORRECT).answer_class == WRONG  # argmax token correct, the wrong set heavier


@pytest.mark.parametrize("sparse, cls", [
    (Score(0.035, 0.046, "The", OTHER), BREAKDOWN),
    (Score(0.2, 0.7, "No", WRONG), STRICT),
    (Score(0.3, 0.2, "The", OTHER), BREAKDOWN),
    (Score(0.45, 0.5, "Yes", CORRECT), STRICT),
    (Score(0.6, 0.3, "Yes", CORRECT), KEPT),
])
def test_outcomes_partition_every_sparse_score_of_a_confident_item(sparse, cls):
    out = classify(CONFIDENT, sparse)
    assert out.cls == cls and out.confident
    assert [out.strict, out.breakdown].count(True) == (cls != KEPT) and out.flip == (out.strict or out.breakdown)
    assert out.success == out.flip
    assert out.paper_criterion == (sparse.argmax != CORRECT)  # the greedy-token column, beside the classes


def test_a_full_margin_below_the_threshold_is_not_counted():
    near_tie = Score(0.496, 0.493, "Yes", CORRECT)  # the qwen2.5-1.5b "fire" item
    sparse = Score(0.3, 0.6, "No", WRONG)
    assert classify(near_tie, sparse, 0.0).strict
    out = classify(near_tie, sparse, 0.2)
    assert not (out.flip or out.confident or out.success or out.strict or out.breakdown) and out.cls is None
    assert not classify(Score(0.3, 0.2, "The", OTHER), sparse).confident  # full attention itself says neither


def test_old_scores_without_argmax_still_partition_and_bad_margins_fail():
    out = classify(Score(0.9, 0.1, "Yes"), Score(0.1, 0.9, "No"))
    assert out.flip and out.strict and out.paper_criterion is None
    with pytest.raises(ValueError, match="full_margin"):
        classify(CONFIDENT, CONFIDENT, -0.1)
    with pytest.raises(ValueError, match="argmax"):
        Score(0.1, 0.2, "x", "maybe")


FIRST_RELEASE_ROW = {  # a row exactly as the first release wrote it
    "item_id": "seed4-000", "question": "Is the sun a star?", "answer": "yes", "status": "attacked",
    "skip_reason": None,
    "natural": {"full": {"p_correct": 0.8, "p_wrong": 0.1, "correct": True, "token": "Yes"},
                "4": {"p_correct": 0.7, "p_wrong": 0.2, "correct": True, "token": "Yes"}},
    "natural_flipped": {"4": False}, "attack": "random", "k_attack": 4, "adv_ids": [1, 2, 3],
    "adv_text": "a b c", "steps": 7, "success": True, "verified": True,
    "scores": {"full": {"p_correct": 0.6, "p_wrong": 0.3, "correct": True, "token": "Yes"},
               "4": {"p_correct": 0.2, "p_wrong": 0.5, "correct": False, "token": "No"}},
    "flipped": {"4": True}, "timing": {"seconds": 1.5},
}


def test_a_first_release_row_loads_reclassified_and_keeps_its_data():
    row = ResultRow.from_dict(FIRST_RELEASE_ROW, k_sweep=[4])
    assert row.scores["4"].argmax is None and row.confident
    assert row.outcomes == {"4": {"class": STRICT, "strict": True, "breakdown": False, "paper_criterion": None}}
    written = row.to_dict()
    assert {k: written[k] for k in FIRST_RELEASE_ROW} == FIRST_RELEASE_ROW  # every stored value unchanged
    summary = summarize([row], 4, [4])
    assert summary["per_k"][0]["n_flipped"] == 1 == summary["outcomes_per_k"]["strict"][0]["count"]


def test_reading_reclassifies_rows_whose_stored_flags_did_not_partition(tmp_path):
    """A second-release row: argmax "other" with P(a) > P(ā) was a breakdown but no flip."""
    scores = {"full": {"p_correct": 0.9, "p_wrong": 0.05, "token": "Yes", "argmax": "correct"},
              "4": {"p_correct": 0.02, "p_wrong": 0.01, "token": "The", "argmax": "other"}}
    old = dict(FIRST_RELEASE_ROW, natural=scores, scores=scores, natural_flipped={"4": False},
               flipped={"4": False}, success=False,
               outcomes={"4": {"strict": False, "breakdown": True, "seed": True}})
    (tmp_path / "results.jsonl").write_text(json.dumps(old) + "\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"full_margin": 0.0}}))
    row = read_rows(tmp_path / "results.jsonl").rows[0]
    assert row.flipped == {"4": True} and row.natural_flipped == {"4": True} and row.success
    assert row.outcomes["4"]["breakdown"] and not row.outcomes["4"]["strict"]
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"full_margin": 0.9}}))
    row = read_rows(tmp_path / "results.jsonl").rows[0]  # the run's own margin: 0.85 < 0.9
    assert not row.confident and not row.counted and row.flipped == {"4": False}


def test_rows_missing_fields_or_sweep_keys_are_named():
    broken = {k: v for k, v in FIRST_RELEASE_ROW.items() if k != "steps"}
    with pytest.raises(RowError, match="lacks 'steps'"):
        ResultRow.from_dict(broken, "results.jsonl line 3")
    with pytest.raises(RowError, match="lacks k = 8"):
        ResultRow.from_dict(FIRST_RELEASE_ROW, "line 1", k_sweep=[4, 8])
    with pytest.raises(RowError, match="status 'done'"):
        ResultRow.from_dict({**FIRST_RELEASE_ROW, "status": "done"})


def test_torn_last_line_is_dropped_and_reported(tmp_path):
    path = tmp_path / "results.jsonl"
    line = json.dumps(FIRST_RELEASE_ROW)
    path.write_text(line + "\n" + line + "\n" + line[:40])
    read = read_rows(path)
    assert len(read.rows) == 2 and "line 3 is truncated" in read.torn
    assert read.good_bytes == 2 * (len(line.encode()) + 1)
    path.write_text(line + "\n" + line)  # complete JSON but no newline: the write did not finish
    assert len(read_rows(path).rows) == 1


def test_a_broken_line_before_the_end_is_an_error(tmp_path):
    path = tmp_path / "results.jsonl"
    line = json.dumps(FIRST_RELEASE_ROW)
    path.write_text(line + "\n{oops\n" + line + "\n")
    with pytest.raises(RowError, match="line 2 is not valid JSON"):
        read_rows(path)


def test_summary_counts_outcome_classes_that_add_up_to_the_flips():
    collapse = dict(FIRST_RELEASE_ROW, scores=dict(FIRST_RELEASE_ROW["scores"],
                                                   **{"4": {"p_correct": 0.02, "p_wrong": 0.01, "token": "The",
                                                            "argmax": "other"}}),
                    density={"4": 0.5})
    rows = [ResultRow.from_dict(collapse), ResultRow.from_dict(FIRST_RELEASE_ROW)]
    summary = summarize(rows, 4, [4])
    classes = summary["outcomes_per_k"]
    assert (classes["breakdown"][0]["count"], classes["strict"][0]["count"]) == (1, 1)
    assert summary["per_k"][0]["n_flipped"] == 2 and summary["per_k"][0]["n"] == 2
    assert summary["density_per_k"] == [{"k": 4, "density": 0.5}]
    assert (summary["n_unverifiable"], summary["n_monotone"]) == (1, 1)  # only k = 4 swept: nothing to verify at
