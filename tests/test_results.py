"""The results contract: outcome classes on constructed scores, rows of every release
load and round-trip exactly, and the one torn-line policy."""

import json

import pytest

from harness.results import ResultRow, RowError, read_rows
from harness.stats import summarize
from tasks.outcomes import CORRECT, OTHER, WRONG, Score, classify

CONFIDENT = Score(0.90, 0.05, "Yes", CORRECT)


def test_a_collapse_is_a_breakdown_not_a_strict_flip():
    # smollm2 under STREAM: the sparse model no longer answers yes or no (0.035 vs 0.046).
    out = classify(CONFIDENT, Score(0.035, 0.046, "The", OTHER))
    assert out.flip  # the original definition counts it ...
    assert (out.strict, out.breakdown, out.seed) == (False, True, True)  # ... the classes do not call it a flip


def test_a_wrong_answer_is_a_strict_flip():
    out = classify(CONFIDENT, Score(0.2, 0.7, "No", WRONG))
    assert (out.flip, out.strict, out.breakdown, out.seed, out.success) == (True, True, False, True, True)


def test_a_full_margin_below_the_threshold_is_not_counted():
    near_tie = Score(0.496, 0.493, "Yes", CORRECT)  # the qwen2.5-1.5b "fire" item
    sparse = Score(0.3, 0.6, "No", WRONG)
    assert classify(near_tie, sparse, 0.0).strict
    out = classify(near_tie, sparse, 0.2)
    assert out.flip and not out.confident and not out.success
    assert (out.strict, out.breakdown, out.seed) == (False, False, False)
    collapse = Score(0.01, 0.02, "The", OTHER)
    assert classify(near_tie, collapse, 0.0).breakdown and not classify(near_tie, collapse, 0.2).breakdown


def test_sparse_still_right_is_nothing():
    out = classify(CONFIDENT, Score(0.6, 0.3, "Yes", CORRECT))
    assert not (out.flip or out.success or out.strict or out.breakdown or out.seed)


def test_old_scores_have_unknown_classes_and_bad_margins_fail():
    out = classify(Score(0.9, 0.1, "Yes"), Score(0.1, 0.9, "No"))
    assert out.flip and (out.strict, out.breakdown, out.seed) == (None, None, None)
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


def test_a_first_release_row_loads_and_round_trips_byte_for_byte():
    row = ResultRow.from_dict(FIRST_RELEASE_ROW, k_sweep=[4])
    assert row.outcomes is None and row.scores["4"].argmax is None
    assert json.dumps(row.to_dict()) == json.dumps(FIRST_RELEASE_ROW)
    summary = summarize([row], 4, [4])
    assert summary["per_k"][0]["n_flipped"] == 1 and "outcomes_per_k" not in summary


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


def test_summary_counts_outcome_classes_with_intervals():
    new = dict(FIRST_RELEASE_ROW, outcomes={"4": {"strict": False, "breakdown": True, "seed": True}},
               natural_outcomes={"4": {"strict": False, "breakdown": False, "seed": False}},
               density={"4": 0.5}, verified_status="unverifiable", monotone=True)
    rows = [ResultRow.from_dict(new), ResultRow.from_dict(FIRST_RELEASE_ROW)]
    summary = summarize(rows, 4, [4])
    breakdown = summary["outcomes_per_k"]["breakdown"][0]
    assert (breakdown["count"], breakdown["n"]) == (1, 1)  # the old row records no classes
    assert summary["density_per_k"] == [{"k": 4, "density": 0.5}]
    assert (summary["n_unverifiable"], summary["n_monotone"]) == (1, 1)
