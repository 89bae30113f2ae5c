"""harness.results.frame.load_frame: every committed run directory loads with one row per (item, k),
a synthetic run's frame agrees with its rows and with harness.results.stats.summarize, and the
module imports no torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.results.frame import COLUMNS, load_frame
from harness.results import read_rows
from harness.results.stats import summarize

ROOT = Path(__file__).resolve().parents[1]
KS = [2, 4, 8]
KEPT = {"p_correct": 0.8, "p_wrong": 0.1, "token": "Yes", "argmax": "correct"}
STRICT = {"p_correct": 0.1, "p_wrong": 0.8, "token": "No", "argmax": "wrong"}
BREAKDOWN = {"p_correct": 0.05, "p_wrong": 0.05, "token": "The", "argmax": "other"}
NOT_SURE = {"p_correct": 0.5, "p_wrong": 0.4, "token": "Yes", "argmax": "correct"}  # right, below the margin


def run_dir_rows(run: Path) -> int:
    return sum(len(r.natural_flipped) for r in read_rows(run / "results.jsonl").rows)


def test_every_committed_run_loads_one_row_per_item_and_k(tmp_path):
    # A copy: other runs may still be appending to docs/runs while this reads it twice.
    runs = shutil.copytree(ROOT / "docs" / "runs", tmp_path / "runs")
    run_dirs = sorted(m.parent for m in runs.rglob("manifest.json") if (m.parent / "results.jsonl").is_file())
    frame = load_frame(runs)
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == sum(run_dir_rows(r) for r in run_dirs)
    expected = {r.relative_to(runs).as_posix(): run_dir_rows(r) for r in run_dirs}
    assert run_dirs and frame.groupby("run").size().to_dict() == {run: n for run, n in expected.items() if n}
    assert not frame.duplicated(["run", "item_id", "k"]).any()


def row(item_id, natural, adversarial, full=KEPT, skipped=False, needle=None):
    """A row as harness.run writes it; `natural` / `adversarial` map k to a sparse score."""
    out = {"item_id": item_id, "question": f"{item_id}?", "answer": "yes", "status": "attacked",
           "skip_reason": None, "natural": {"full": full, **{str(k): natural[k] for k in KS}},
           "natural_flipped": {str(k): False for k in KS}, "attack": "random", "k_attack": 4,
           "adv_ids": [1, 2, 3], "adv_text": "a b c", "steps": 5, "success": False, "verified": False,
           "scores": {"full": KEPT, **{str(k): score for k, score in adversarial.items()}},
           "flipped": {str(k): False for k in KS}, "density": {str(k): k / 40 for k in KS}, "timing": {}}
    if skipped:
        out.update(status="skipped", skip_reason="full attention answers wrongly", adv_ids=None, adv_text=None,
                   steps=0, scores=None, flipped=None)
    if needle:
        out["needle"] = needle
    return out


@pytest.fixture
def synthetic(tmp_path):
    """Five items: two share a needle context, one is an absent-needle question, one is not
    confident (attacked, full attention right by less than the run's --full-margin 0.2),
    one skipped."""
    rows = [
        row("n-g0-d0.1", {2: STRICT, 4: KEPT, 8: KEPT}, {2: STRICT, 4: BREAKDOWN, 8: KEPT},
            needle={"depth": 0.1, "group": "n-g0", "token_span": [3, 5]}),
        row("n-g0-d0.9", {2: BREAKDOWN, 4: BREAKDOWN, 8: KEPT}, {2: STRICT, 4: STRICT, 8: STRICT},
            needle={"depth": 0.9, "group": "n-g0", "token_span": [30, 32]}),
        row("n-g1-absent", {2: KEPT, 4: KEPT, 8: KEPT}, {2: BREAKDOWN, 4: KEPT, 8: KEPT},
            needle={"depth": None, "group": "n-g1", "token_span": None, "absent": True}),
        row("unsure", {2: STRICT, 4: STRICT, 8: STRICT}, {2: STRICT, 4: STRICT, 8: STRICT}, full=NOT_SURE),
        row("skipped", {2: KEPT, 4: KEPT, 8: KEPT}, {}, full=NOT_SURE, skipped=True),
    ]
    d = tmp_path / "runs" / "synthetic"
    d.mkdir(parents=True)
    config = {"attack": "random", "k_attack": 4, "k_sweep": KS, "method": "stream", "model": "tiny",
              "suite": "needle", "context_tokens": 256, "seed": 3, "full_margin": 0.2}
    (d / "manifest.json").write_text(json.dumps({"config": config}))
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_frame_columns_match_the_rows_and_the_summary(synthetic):
    frame = load_frame(synthetic)
    assert len(frame) == 5 * len(KS) and set(frame.run) == {"synthetic"}
    assert (frame.model == "tiny").all() and (frame.seed == 3).all() and (frame.context_tokens == 256).all()
    rows = read_rows(synthetic / "results.jsonl").rows
    summary = summarize(rows, 4, KS)
    counted = frame[frame.counted]
    assert counted.groupby("k").flip.sum().tolist() == [e["n_flipped"] for e in summary["per_k"]]
    assert counted.groupby("k").natural_flip.sum().tolist() == [e["n_flipped"] for e in summary["natural_per_k"]]
    assert counted.groupby("k").size().tolist() == [e["n"] for e in summary["per_k"]]
    for name in ("strict", "breakdown", "paper_criterion"):
        assert counted.groupby("k")[name].sum().tolist() == [e["count"] for e in summary["outcomes_per_k"][name]]

    by = frame.set_index(["item_id", "k"])
    first = by.loc[("n-g0-d0.1", 4)]
    assert (first.group, first.depth, first.absent, first.status) == ("n-g0", 0.1, False, "attacked")
    assert (first.natural_class, first.adversarial_class, first.natural_flip, first.flip) == \
        ("kept", "breakdown", False, True)
    assert (first.strict, first.breakdown, first.paper_criterion) == (False, True, True)
    assert (first.p_correct, first.p_wrong, first.density) == (0.05, 0.05, 0.1)
    assert first.margin_full == pytest.approx(0.7) and first.p_correct_full == 0.8
    assert bool(by.loc[("n-g0-d0.9", 4)].success) and by.loc[("n-g0-d0.9", 4)].k_attack == 4
    absent = by.loc[("n-g1-absent", 2)]
    assert absent.absent and pd.isna(absent.depth)
    unsure = by.loc[("unsure", 2)]  # reclassified at the run's margin: not counted, no natural outcome
    assert unsure.status == "attacked" and not unsure.counted
    assert pd.isna(unsure.natural_class) and not unsure.natural_flip
    skipped = by.loc[("skipped", 8)]  # no adversarial prompt: NA flags and scores
    assert skipped.status == "skipped" and not skipped.counted and skipped.group == "skipped"
    assert pd.isna(skipped.flip) and pd.isna(skipped.strict) and pd.isna(skipped.p_correct)


def test_runs_are_named_by_their_path_under_a_searched_folder(synthetic, tmp_path):
    nested = tmp_path / "grid" / "cell=a"
    shutil.copytree(synthetic, nested)
    assert set(load_frame(tmp_path).run) == {"runs/synthetic", "grid/cell=a"}
    assert len(load_frame([synthetic, synthetic.parent])) == 5 * len(KS)  # one run, reached twice
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no run directory"):
        load_frame(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        load_frame(tmp_path / "missing")


def test_frame_imports_without_torch():
    code = "import sys, harness.results.frame; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
