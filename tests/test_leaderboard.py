"""leaderboard: reading run directories, pooling, ranking, every output format and the page in a browser.

Run directories are synthetic (written per docs/results-schema.md by `make_run`), so
every expected number is known by construction.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from harness.results import ResultRow, RowError
from harness.results.intervals import wilson
from harness.results.stats import summarize
from leaderboard.cli import main

ROOT = Path(__file__).resolve().parents[1]
KS = [2, 4, 8]
ROUNDING = 5e-4 + 1e-9  # three decimals in the Markdown table


def config(**overrides):
    cfg = {"attack": "random", "k_attack": 4, "k_sweep": list(KS), "method": "stream", "block_q": 8, "block_k": 8,
           "dense_layers": 2, "model": "smollm2-135m", "suite": "seed4", "limit": None, "n_adv": 3, "steps": 200,
           "context": "filler", "context_tokens": 256, "seed": 0, "batch_size": 16, "ascii_only": False,
           "attack_params": {"n_adv": 3, "steps": 200, "k_attack": 4, "batch_size": 16, "ascii_only": False}}
    cfg.update(overrides)
    return cfg


def score(correct):
    return {"p_correct": 0.8 if correct else 0.2, "p_wrong": 0.2 if correct else 0.8, "correct": correct,
            "token": "Yes" if correct else "No"}


DENSITY_OF_K = {1: 0.025, 2: 0.05, 4: 0.1, 8: 0.2, 16: 0.4}  # a 40-block answer position: k = 4 is the default density


def make_rows(n, flips, natural=None, skipped=0, prefix="item", k_attack=4, ks=KS):
    """n attacked items: item i flips at k iff i < flips[k] (natural likewise), then `skipped` skipped items."""
    natural = natural or {}
    rows = []
    for i in range(n):
        flipped = {str(k): i < flips.get(k, 0) for k in ks}
        nat = {str(k): i < natural.get(k, 0) for k in ks}
        success = flipped[str(k_attack)]
        rows.append({
            "item_id": f"{prefix}-{i:03d}", "question": f"Question {i}?", "answer": "yes", "status": "attacked",
            "skip_reason": None,
            "natural": {"full": score(True), **{str(k): score(not nat[str(k)]) for k in ks}},
            "natural_flipped": nat, "attack": "random", "k_attack": k_attack,
            "adv_ids": [1, 2, 3], "adv_text": "a b c", "steps": 10 + i if success else 200, "success": success,
            "verified": success and not flipped[str(max(ks))],
            "scores": {"full": score(True), **{str(k): score(not flipped[str(k)]) for k in ks}},
            "flipped": flipped, "density": {str(k): DENSITY_OF_K[k] for k in ks}, "timing": {"seconds": 0.1},
        })
    for j in range(skipped):
        rows.append({
            "item_id": f"{prefix}-s{j:03d}", "question": "Skipped?", "answer": "no", "status": "skipped",
            "skip_reason": "full attention answers wrongly without adversarial tokens",
            "natural": {"full": score(False), **{str(k): score(False) for k in ks}},
            "natural_flipped": {str(k): False for k in ks}, "attack": "random", "k_attack": k_attack,
            "adv_ids": None, "adv_text": None, "steps": 0, "success": False, "verified": False,
            "scores": None, "flipped": None, "timing": {"seconds": 0.1},
        })
    return rows


def loaded(rows):
    return [ResultRow.from_dict(r) for r in rows]


def make_run(root, name, rows, **cfg):
    """Write a run directory as harness.run does: manifest, one JSON line per item, summary."""
    d = Path(root) / name
    d.mkdir(parents=True)
    c = config(**cfg)
    (d / "manifest.json").write_text(json.dumps({
        "config": c, "model": {"name": c["model"], "source": "x", "sha256": None},
        "versions": {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.0.0", "flipbench": "0.1.0"},
        "git_commit": None, "created": "2026-01-01T00:00:00Z"}))
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        summary = summarize(loaded(rows), c["k_attack"], c["k_sweep"])
    except RowError:  # a deliberately broken row: the harness would never have written a summary of it
        summary = {}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def build(args, capsys):
    status = main(["build", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.err


def board_of(out):
    return json.loads((Path(out) / "leaderboard.json").read_text())


def by_method(board):
    return {e["method"]: e for e in board["entries"]}


@pytest.fixture
def three_entries(tmp_path):
    """stream: two runs (seeds 0, 1) pooled; window and oracle: one run each, with different flip rates."""
    runs = tmp_path / "runs"
    make_run(runs, "stream-s0", make_rows(10, {2: 6, 4: 3, 8: 1}, natural={2: 2, 4: 1}, skipped=2, prefix="a"), seed=0)
    make_run(runs, "stream-s1", make_rows(6, {2: 4, 4: 3, 8: 0}, natural={2: 1}, skipped=1, prefix="a"), seed=1)
    make_run(runs, "window", make_rows(8, {2: 8, 4: 6, 8: 2}, natural={2: 3, 4: 2}), method="window")
    make_run(runs, "oracle", make_rows(12, {2: 3, 4: 1, 8: 0}), method="oracle")
    return runs


# ---------------------------------------------------------------- pooling and ranking

def test_runs_of_one_entry_pool_their_counts(three_entries, tmp_path, capsys):
    status, err = build([three_entries, "--out", tmp_path / "out"], capsys)
    assert status == 0, err
    board = board_of(tmp_path / "out")
    assert len(board["entries"]) == 3
    stream = by_method(board)["stream"]
    assert stream["runs"] == [str(three_entries / "stream-s0"), str(three_entries / "stream-s1")]
    assert stream["seeds"] == [0, 1]
    # counts add: 3 + 3 flipped at k=4 over 10 + 6 attacked items
    assert (stream["n_flipped"], stream["n"]) == (6, 16)
    assert stream["flip_rate"] == pytest.approx(6 / 16)
    assert (stream["ci_low"], stream["ci_high"]) == wilson(6, 16)
    assert (stream["n_items"], stream["n_skipped"]) == (19, 3)
    assert [(e["k"], e["n_flipped"], e["n"]) for e in stream["k_sweep"]] == [(2, 10, 16), (4, 6, 16), (8, 1, 16)]
    for e in stream["k_sweep"]:
        assert (e["ci_low"], e["ci_high"]) == wilson(e["n_flipped"], e["n"])
    # not the mean of the two runs' rates (0.3 and 0.5)
    assert stream["flip_rate"] != pytest.approx((0.3 + 0.5) / 2)
    # natural flip rate at the reference k (k_attack = 4): 1 + 0 of 16
    assert stream["natural_flip_rate"] == pytest.approx(1 / 16)
    assert (stream["natural_ci_low"], stream["natural_ci_high"]) == wilson(1, 16)
    assert stream["attack_success_rate"] == pytest.approx(6 / 16) and stream["n_success"] == 6
    # successful steps: 10, 11, 12 (seed 0) and 10, 11, 12 (seed 1)
    assert stream["median_steps_to_flip"] == 11
    assert stream["n_verified"] == 5  # the one item flipped at k=8 is not verified


def test_pooled_numbers_equal_a_single_run_of_all_rows(tmp_path, capsys):
    a = make_rows(7, {2: 5, 4: 2, 8: 1}, natural={2: 2}, skipped=1, prefix="x")
    b = make_rows(9, {2: 3, 4: 3, 8: 0}, natural={4: 1}, skipped=2, prefix="y")
    make_run(tmp_path / "split", "a", a, seed=0)
    make_run(tmp_path / "split", "b", b, seed=1)
    make_run(tmp_path / "whole", "ab", a + b)
    assert build([tmp_path / "split", "--out", tmp_path / "o1"], capsys)[0] == 0
    assert build([tmp_path / "whole", "--out", tmp_path / "o2"], capsys)[0] == 0
    split, whole = board_of(tmp_path / "o1")["entries"][0], board_of(tmp_path / "o2")["entries"][0]
    for key in ("flip_rate", "ci_low", "ci_high", "n_flipped", "n", "natural_flip_rate", "attack_success_rate",
                "n_success", "n_verified", "median_steps_to_flip", "n_items", "n_skipped", "k_sweep",
                "natural_k_sweep"):
        assert split[key] == whole[key], key


def test_ranking_lower_flip_rate_first(three_entries, tmp_path, capsys):
    assert build([three_entries, "--out", tmp_path / "out"], capsys)[0] == 0
    entries = board_of(tmp_path / "out")["entries"]
    # oracle 1/12 < stream 6/16 < window 6/8
    assert [e["method"] for e in entries] == ["oracle", "stream", "window"]
    assert [e["rank"] for e in entries] == [1, 2, 3]
    rates = [e["flip_rate"] for e in entries]
    assert rates == sorted(rates)


def test_equal_rates_rank_the_better_evidenced_entry_first(tmp_path, capsys):
    make_run(tmp_path / "r", "small", make_rows(5, {4: 0}), method="window")
    make_run(tmp_path / "r", "large", make_rows(50, {4: 0}), method="stream")
    assert build([tmp_path / "r", "--out", tmp_path / "out"], capsys)[0] == 0
    entries = board_of(tmp_path / "out")["entries"]
    assert [e["method"] for e in entries] == ["stream", "window"]  # 0/50 has the lower upper bound
    assert entries[0]["ci_high"] < entries[1]["ci_high"]


def test_ref_k_changes_the_ranking(three_entries, tmp_path, capsys):
    make_run(three_entries, "random", make_rows(10, {2: 0, 4: 5, 8: 0}), method="random")
    assert build([three_entries, "--out", tmp_path / "a"], capsys)[0] == 0
    assert build([three_entries, "--out", tmp_path / "b", "--ref-k", "8"], capsys)[0] == 0
    at_attack, at_8 = board_of(tmp_path / "a"), board_of(tmp_path / "b")
    assert [e["method"] for e in at_attack["entries"]] == ["oracle", "stream", "random", "window"]
    assert [e["method"] for e in at_8["entries"]] == ["oracle", "random", "stream", "window"]
    assert at_8["ref_k"] == 8 and all(e["ref_k"] == 8 for e in at_8["entries"])
    window = by_method(at_8)["window"]
    assert (window["n_flipped"], window["n"]) == (2, 8) and window["natural_flip_rate"] == 0.0


def test_ref_k_outside_the_sweep_ranks_last_with_a_warning(three_entries, tmp_path, capsys):
    make_run(three_entries, "wide", make_rows(10, {2: 9, 4: 9, 8: 9, 16: 9}, ks=[2, 4, 8, 16]),
             method="wide", k_sweep=[2, 4, 8, 16])
    status, err = build([three_entries, "--out", tmp_path / "out", "--ref-k", "16"], capsys)
    assert status == 0
    entries = board_of(tmp_path / "out")["entries"]
    assert entries[0]["method"] == "wide" and entries[0]["n_flipped"] == 9
    assert all(e["flip_rate"] is None for e in entries[1:])
    assert "reference k=16 is not in its k_sweep" in err


def test_conflicting_configs_name_both_runs(tmp_path, capsys):
    a = make_run(tmp_path / "runs", "a", make_rows(4, {4: 1}, prefix="a"), n_adv=3)
    b = make_run(tmp_path / "runs", "b", make_rows(4, {4: 1}, prefix="b"), n_adv=5, seed=1)
    status, err = build([a, b, "--out", tmp_path / "out"], capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leaderboard: error:")
    assert str(a) in lines[0] and str(b) in lines[0] and "n_adv" in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field,value", [("steps", 50), ("k_attack", 2)])
def test_other_result_fields_conflict_too(tmp_path, capsys, field, value):
    make_run(tmp_path / "runs", "a", make_rows(4, {4: 1}))
    make_run(tmp_path / "runs", "b", make_rows(4, {4: 1}, prefix="b"), seed=3, **{field: value})
    status, err = build([tmp_path / "runs", "--out", tmp_path / "out"], capsys)
    assert status == 2 and field in err


def test_runs_on_different_suites_are_different_entries(tmp_path, capsys):
    make_run(tmp_path / "runs", "a", make_rows(4, {4: 1}))
    make_run(tmp_path / "runs", "b", make_rows(4, {4: 2}), suite="facts")
    assert build([tmp_path / "runs", "--out", tmp_path / "out"], capsys)[0] == 0
    entries = board_of(tmp_path / "out")["entries"]
    assert sorted(e["config"]["suite"] for e in entries) == ["facts", "seed4"]
    assert all(e["label"].endswith(e["config"]["suite"]) for e in entries)


def test_same_seed_items_count_once(tmp_path, capsys):
    rows = make_rows(10, {4: 4})
    make_run(tmp_path / "runs", "first10", rows, limit=10)
    make_run(tmp_path / "runs", "first5", rows[:5], limit=5)
    status, err = build([tmp_path / "runs", "--out", tmp_path / "out"], capsys)
    assert status == 0
    entry = board_of(tmp_path / "out")["entries"][0]
    assert (entry["n_flipped"], entry["n"]) == (4, 10)
    assert "counted once" in err and "first5" in err


def test_different_entry_fields_make_separate_entries(tmp_path, capsys):
    for i, over in enumerate([{}, {"block_q": 16, "block_k": 16}, {"dense_layers": 0}, {"context_tokens": 512},
                              {"attack": "gcg"}, {"model": "qwen2.5-0.5b"}]):
        make_run(tmp_path / "runs", f"r{i}", make_rows(4, {4: i % 4}), **over)
    assert build([tmp_path / "runs", "--out", tmp_path / "out"], capsys)[0] == 0
    assert len(board_of(tmp_path / "out")["entries"]) == 6
    assert len(list((tmp_path / "out" / "plots").glob("model_*.png"))) == 2


# ---------------------------------------------------------------- unreadable runs and empty input

def test_truncated_last_line_uses_complete_rows_and_warns(tmp_path, capsys):
    run = make_run(tmp_path / "runs", "torn", make_rows(6, {4: 2}))
    with open(run / "results.jsonl", "a") as fh:
        fh.write('{"item_id": "item-006", "status": "attac')
    status, err = build([run, "--out", tmp_path / "out"], capsys)
    assert status == 0
    warning = [line for line in err.splitlines() if "truncated" in line]
    assert warning and str(run) in warning[0]
    entry = board_of(tmp_path / "out")["entries"][0]
    assert (entry["n_flipped"], entry["n"]) == (2, 6)


def test_half_written_runs_are_skipped_with_a_warning_naming_them(tmp_path, capsys):
    runs = tmp_path / "runs"
    good = make_run(runs, "good", make_rows(5, {4: 1}))
    no_manifest = make_run(runs, "no-manifest", make_rows(5, {4: 5}), method="window")
    (no_manifest / "manifest.json").unlink()
    no_rows = make_run(runs, "no-rows", [], method="oracle")
    only_torn = make_run(runs, "only-torn", [], method="random")
    (only_torn / "results.jsonl").write_text('{"item_id": "x", "sta')
    bad_middle = make_run(runs, "bad-middle", make_rows(3, {4: 1}), method="full")
    lines = (bad_middle / "results.jsonl").read_text().splitlines()
    (bad_middle / "results.jsonl").write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    bad_row = make_run(runs, "bad-row", [{"item_id": "x", "status": "attacked", "natural_flipped": {}}],
                       method="x")
    status, err = build([runs, "--out", tmp_path / "out"], capsys)
    assert status == 0
    for skipped, reason in [(no_manifest, "no manifest.json"), (no_rows, "no complete rows"),
                            (only_torn, "no complete rows"), (bad_middle, "line 2"), (bad_row, "lacks")]:
        line = next((ln for ln in err.splitlines() if f"skipped {skipped}:" in ln), None)
        assert line is not None and reason in line, (skipped, err)
    board = board_of(tmp_path / "out")
    assert [e["runs"] for e in board["entries"]] == [[str(good)]]
    assert {s["run"] for s in board["skipped"]} == {str(p) for p in (no_manifest, no_rows, only_torn, bad_middle,
                                                                      bad_row)}


def _one_line_error(status, err):
    assert status == 2
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("leaderboard: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1]
    assert "Traceback" not in err
    return errors[0]


def test_empty_input_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "no runs" in _one_line_error(*build(["--out", tmp_path / "out"], capsys))
    line = _one_line_error(*build([tmp_path / "empty", "--out", tmp_path / "out"], capsys))
    assert "no runs found" in line
    line = _one_line_error(*build([str(tmp_path / "nothing-*"), "--out", tmp_path / "out"], capsys))
    assert "no runs found" in line
    broken = make_run(tmp_path / "b", "r", make_rows(2, {}))
    (broken / "manifest.json").unlink()
    line = _one_line_error(*build([broken, "--out", tmp_path / "out"], capsys))
    assert "skipped" in line
    assert not (tmp_path / "out").exists()


def test_empty_input_through_the_module_entry_point(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "leaderboard", "build", str(tmp_path / "empty"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("leaderboard: error:")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_bad_arguments_exit_2(tmp_path, capsys):
    _one_line_error(*build([tmp_path, "--out", tmp_path / "o", "--ref-k", "zero"], capsys))
    _one_line_error(*build([tmp_path, "--out", tmp_path / "o", "--ref-k", "0"], capsys))
    _one_line_error(*build([tmp_path], capsys))  # --out missing
    status = main([])
    assert status == 2


def test_globs_and_parent_folders_find_runs(three_entries, tmp_path, capsys):
    assert build([str(three_entries / "stream-*"), "--out", tmp_path / "a"], capsys)[0] == 0
    assert [e["method"] for e in board_of(tmp_path / "a")["entries"]] == ["stream"]
    # a run and its parent folder name the same run once
    assert build([three_entries / "oracle", three_entries, "--out", tmp_path / "b"], capsys)[0] == 0
    assert sum(len(e["runs"]) for e in board_of(tmp_path / "b")["entries"]) == 4


def test_leaderboard_never_imports_a_model_library(three_entries, tmp_path):
    code = ("import sys; from leaderboard.cli import main; "
            f"assert main(['build', {str(three_entries)!r}, '--out', {str(tmp_path / 'o')!r}]) == 0; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- output formats

def parse_markdown_table(text):
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    assert set(lines[1].replace("|", "").replace("-", "").replace(":", "")) <= {""}
    return header, [dict(zip(header, (c.strip() for c in ln[2:-2].split(" | ")))) for ln in lines[2:]]


def test_markdown_table_parses_back_to_the_same_numbers(three_entries, tmp_path, capsys):
    assert build([three_entries, "--out", tmp_path / "out", "--title", "My board"], capsys)[0] == 0
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert md.startswith("# My board\n")
    header, rows = parse_markdown_table(md)
    entries = board_of(tmp_path / "out")["entries"]
    assert len(rows) == len(entries)
    for row, e in zip(rows, entries):
        assert int(row["Rank"]) == e["rank"]
        assert (row["Model"], row["Method"], row["Attack"]) == (e["model"], e["method"], e["attack"])
        assert row["Blocks (q×k)"] == f"{e['block_q']}×{e['block_k']}"
        assert int(row["Dense layers"]) == e["dense_layers"] and int(row["Context tokens"]) == e["context_tokens"]
        assert int(row["k"]) == e["ref_k"]
        rate, bounds = row["Flip rate [95% CI]"].split(" ", 1)
        low, high = (float(x) for x in bounds.strip("[]").split(","))
        assert float(rate) == pytest.approx(e["flip_rate"], abs=ROUNDING)
        assert low == pytest.approx(e["ci_low"], abs=ROUNDING) and high == pytest.approx(e["ci_high"], abs=ROUNDING)
        assert row["Flipped/n"] == f"{e['n_flipped']}/{e['n']}"
        assert float(row["Natural flip rate"]) == pytest.approx(e["natural_flip_rate"], abs=ROUNDING)
        assert float(row["Attack success"]) == pytest.approx(e["attack_success_rate"], abs=ROUNDING)
        assert float(row["Median steps"]) == e["median_steps_to_flip"]
        sweep = dict(part.split(": ") for part in row["Flip rate by k"].split(", "))
        assert {int(k): float(v) for k, v in sweep.items()} == {
            x["k"]: pytest.approx(x["flip_rate"], abs=ROUNDING) for x in e["k_sweep"]}


def test_markdown_escapes_pipes(tmp_path, capsys):
    make_run(tmp_path / "runs", "odd", make_rows(4, {4: 1}), model="org/odd|name")
    assert build([tmp_path / "runs", "--out", tmp_path / "out"], capsys)[0] == 0
    _, rows = parse_markdown_table((tmp_path / "out" / "leaderboard.md").read_text())
    assert rows[0]["Model"] == "org/odd\\|name"


def test_csv_and_json_match(three_entries, tmp_path, capsys):
    assert build([three_entries, "--out", tmp_path / "out"], capsys)[0] == 0
    entries = board_of(tmp_path / "out")["entries"]
    with open(tmp_path / "out" / "leaderboard.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(entries)
    for row, e in zip(rows, entries):
        for key in ("rank", "block_q", "block_k", "dense_layers", "context_tokens", "ref_k", "n_flipped", "n",
                    "n_success", "n_verified", "n_items", "n_skipped", "k_attack"):
            assert int(row[key]) == e[key], key
        for key in ("flip_rate", "ci_low", "ci_high", "natural_flip_rate", "attack_success_rate",
                    "median_steps_to_flip"):
            assert float(row[key]) == e[key], key  # full precision, not rounded
        for key in ("label", "model", "method", "attack"):
            assert row[key] == e[key]
        assert row["runs"].split(";") == e["runs"]
        for x in e["k_sweep"]:
            assert float(row[f"flip_rate_k{x['k']}"]) == x["flip_rate"]
            assert (float(row[f"ci_low_k{x['k']}"]), float(row[f"ci_high_k{x['k']}"])) == (x["ci_low"], x["ci_high"])
            assert int(row[f"n_flipped_k{x['k']}"]) == x["n_flipped"] and int(row[f"n_k{x['k']}"]) == x["n"]
        for x in e["natural_k_sweep"]:
            assert float(row[f"natural_flip_rate_k{x['k']}"]) == x["flip_rate"]


def test_html_is_self_contained_and_holds_every_entry(three_entries, tmp_path, capsys):
    assert build([three_entries, "--out", tmp_path / "out"], capsys)[0] == 0
    page = (tmp_path / "out" / "index.html").read_text()
    board = board_of(tmp_path / "out")
    for e in board["entries"]:
        assert f'data-label="{e["label"]}"' in page
        assert f'{e["flip_rate"]:.3f}' in page and f'[{e["ci_low"]:.3f}, {e["ci_high"]:.3f}]' in page
    assert page.count('<tr data-rank=') == 3
    assert page.count('<svg class="plot"') == 3  # one plot per entry
    start = page.index('<script type="application/json" id="leaderboard-data">') + len(
        '<script type="application/json" id="leaderboard-data">')
    embedded = json.loads(page[start:page.index("</script>", start)].replace("<\\/", "</"))
    assert embedded["entries"] == board["entries"]
    for needle in ("http://", "https://", "<link", "src="):
        assert needle not in page.replace('xmlns="http://www.w3.org/2000/svg"', ""), needle


def test_pngs_are_written(three_entries, tmp_path, capsys):
    assert build([three_entries, "--out", tmp_path / "out"], capsys)[0] == 0
    pngs = sorted(p.name for p in (tmp_path / "out" / "plots").glob("*.png"))
    assert pngs == ["all_entries.png", "model_smollm2-135m.png"]
    for name in pngs:
        data = (tmp_path / "out" / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


# ---------------------------------------------------------------- W&B

class FakeRun:
    def __init__(self, ident, cfg, summary):
        self.id, self.name, self.path = ident, f"name-{ident}", ["ent", "proj", ident]
        self.config = {**cfg, "model_info": {"name": cfg["model"]}, "versions": {}, "_wandb": {"x": 1}}
        self.summary_metrics = summary


def wandb_summary(rows, cfg):
    """What harness.backends.wandb_logger puts in run.summary: numeric summary keys plus per_k lists."""
    s = summarize(loaded(rows), cfg["k_attack"], cfg["k_sweep"])
    return {k: v for k, v in s.items() if isinstance(v, (int, float)) or v is None or k.endswith("per_k")}


def test_from_wandb_builds_entries_from_summary_counts(tmp_path, capsys, monkeypatch):
    c0, c1 = config(seed=0), config(seed=1)
    r0, r1 = make_rows(10, {2: 5, 4: 2, 8: 1}, natural={4: 1}), make_rows(6, {2: 3, 4: 3, 8: 0})
    runs = [FakeRun("a", c0, wandb_summary(r0, c0)), FakeRun("b", c1, wandb_summary(r1, c1)),
            FakeRun("c", config(method="window"), {"_runtime": 3})]  # unfinished: no per_k
    fake = types.ModuleType("wandb")
    calls = []

    class Api:
        def __init__(self, timeout=None):
            calls.append(timeout)

        def runs(self, path):
            calls.append(path)
            return runs

    fake.Api = Api
    monkeypatch.setitem(sys.modules, "wandb", fake)
    local = make_run(tmp_path / "runs", "local", make_rows(4, {4: 4}), method="oracle")
    status, err = build([local, "--from-wandb", "ent/proj", "--out", tmp_path / "out"], capsys)
    assert status == 0, err
    assert "ent/proj" in calls
    entries = by_method(board_of(tmp_path / "out"))
    stream = entries["stream"]
    assert stream["runs"] == ["wandb:ent/proj/a (name-a)", "wandb:ent/proj/b (name-b)"]
    assert (stream["n_flipped"], stream["n"]) == (5, 16)
    assert (stream["ci_low"], stream["ci_high"]) == wilson(5, 16)
    assert stream["natural_flip_rate"] == pytest.approx(1 / 16)
    assert stream["median_steps_to_flip"] is None  # per-item steps are not on W&B
    assert entries["oracle"]["n_flipped"] == 4
    assert "skipped wandb:ent/proj/c" in err and "per_k" in err


def test_from_wandb_argument_and_availability_errors(tmp_path, capsys, monkeypatch):
    line = _one_line_error(*build(["--from-wandb", "no-slash", "--out", tmp_path / "o"], capsys))
    assert "ENTITY/PROJECT" in line
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    line = _one_line_error(*build(["--from-wandb", "ent/proj", "--out", tmp_path / "o"], capsys))
    assert "pip install wandb" in line
    failing = types.ModuleType("wandb")

    class Api:
        def __init__(self, timeout=None):
            raise ConnectionError("Name or service not known\nmore detail")

    failing.Api = Api
    monkeypatch.setitem(sys.modules, "wandb", failing)
    line = _one_line_error(*build(["--from-wandb", "ent/proj", "--out", tmp_path / "o"], capsys))
    assert "ent/proj" in line and "ConnectionError" in line


# ---------------------------------------------------------------- the page in a real browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _browser_or_skip(profile_dir):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"headless browser test needs {CHROMIUM} and {CHROMEDRIVER} "
                    "(apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("headless browser test needs selenium (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}", "--window-size=1600,1000"):
        options.add_argument(flag)
    # An explicit driver path: selenium-manager must never try to download a driver.
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_page_sorts_in_headless_chromium(three_entries, tmp_path, capsys):
    make_run(three_entries, "gcg", make_rows(20, {2: 9, 4: 4, 8: 1}, natural={2: 1}), method="stream", attack="gcg")
    assert build([three_entries, "--out", tmp_path / "out", "--title", "Robustness leaderboard (test data)"],
                 capsys)[0] == 0
    board = board_of(tmp_path / "out")
    driver = _browser_or_skip(tmp_path / "profile")
    try:
        from selenium.webdriver.common.by import By

        driver.get((tmp_path / "out" / "index.html").as_uri())

        def labels():
            return [tr.get_attribute("data-label") for tr in driver.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr")]

        def header(name):
            return next(th for th in driver.find_elements(By.CSS_SELECTOR, "#leaderboard thead th")
                        if th.text.replace("↕", "").replace("▲", "").replace("▼", "").strip() == name)

        ranked = [e["label"] for e in board["entries"]]
        assert labels() == ranked
        assert len(driver.find_elements(By.CSS_SELECTOR, "#leaderboard svg.plot")) == len(ranked)

        header("Flipped/n").click()  # ascending n
        by_n = [e["label"] for e in sorted(board["entries"], key=lambda e: (e["n"], e["rank"]))]
        assert labels() == by_n and labels() != ranked
        assert header("Flipped/n").get_attribute("aria-sort") == "ascending"

        header("Flipped/n").click()  # again: reversed
        by_n_desc = [e["label"] for e in sorted(board["entries"], key=lambda e: (-e["n"], e["rank"]))]
        assert labels() == by_n_desc
        assert header("Flipped/n").get_attribute("aria-sort") == "descending"

        header("Natural").click()
        by_natural = [e["label"] for e in sorted(board["entries"], key=lambda e: (e["natural_flip_rate"], e["rank"]))]
        assert labels() == by_natural

        header("Flip rate [95% CI]").click()
        header("Flip rate [95% CI]").click()  # most flipped first
        assert labels() == list(reversed(ranked))
        header("Rank").click()
        assert labels() == ranked

        shot = tmp_path / "leaderboard.png"
        assert driver.save_screenshot(str(shot))
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
        keep = os.environ.get("FLIPBENCH_SCREENSHOT")
        if keep:
            shutil.copy(shot, keep)
    finally:
        driver.quit()


# ---------------------------------------------------------------- paired comparisons

def test_mcnemar_exact_matches_hand_computed_values():
    from leaderboard.paired import mcnemar_exact

    assert mcnemar_exact(1, 8) == pytest.approx(2 * (1 + 9) / 2**9)  # 0.0390625
    assert mcnemar_exact(8, 1) == mcnemar_exact(1, 8)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 4) == pytest.approx(2 / 16)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_entries_on_the_same_items_are_compared_and_others_are_not(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "stream", make_rows(10, {2: 6, 4: 6, 8: 1}), method="stream")
    make_run(runs, "window", make_rows(10, {2: 2, 4: 2, 8: 0}), method="window")
    make_run(runs, "other-items", make_rows(10, {2: 1, 4: 1, 8: 0}, prefix="x"), method="oracle")
    status, _ = build([runs, "--out", tmp_path / "site"], capsys)
    assert status == 0
    entries = by_method(board_of(tmp_path / "site"))
    stream = entries["stream"]["paired"]["flip"]
    assert (stream["b"], stream["c"], stream["n"]) == (4, 0, 10)
    assert stream["diff"] == pytest.approx(0.4) and stream["p"] == pytest.approx(0.125)
    assert entries["window"]["paired"]["flip"]["vs"] == entries["stream"]["label"]
    assert entries["oracle"]["paired"] is None
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert "not comparable" in md and "p = 0.125" in md
    # old rows are reclassified from their scores: every flip of these is a strict one
    assert (entries["stream"]["strict"]["count"], entries["stream"]["breakdown"]["count"]) == (6, 0)


def test_strict_flips_breakdowns_and_density_are_pooled_from_rows(tmp_path, capsys):
    rows = make_rows(8, {2: 4, 4: 4, 8: 0})
    collapse = {"p_correct": 0.02, "p_wrong": 0.01, "correct": False, "token": "The", "argmax": "other"}
    for i, r in enumerate(rows):
        for k in KS:  # odd flipped items stop answering yes/no: breakdowns; even ones say no: strict flips
            if r["flipped"][str(k)] and i % 2 == 1:
                r["scores"][str(k)] = collapse
        r["density"] = {"2": 0.1, "4": 0.2, "8": 0.4}
    runs = tmp_path / "runs"
    make_run(runs, "a", rows[:4], seed=0)
    make_run(runs, "b", rows[4:], seed=1)
    assert build([runs, "--out", tmp_path / "site"], capsys)[0] == 0
    entry = board_of(tmp_path / "site")["entries"][0]
    assert (entry["strict"]["count"], entry["strict"]["n"]) == (2, 8)
    assert (entry["breakdown"]["count"], entry["breakdown"]["n"]) == (2, 8)
    assert entry["density"] == pytest.approx(0.1)  # the default reference density: each item at k = 2 here
    assert entry["strict"]["ci_high"] == pytest.approx(wilson(2, 8)[1])


def test_entries_are_ranked_at_equal_density_and_others_are_not_comparable(tmp_path, capsys):
    """The drop-one null keeps 97% of the blocks: it must not outrank a method at 10%."""
    runs = tmp_path / "runs"
    make_run(runs, "stream", make_rows(10, {2: 6, 4: 5, 8: 1}), method="stream")
    near_full = make_rows(10, {2: 0, 4: 0, 8: 0})
    for r in near_full:
        r["density"] = {"2": 0.95, "4": 0.97, "8": 0.99}
    make_run(runs, "drop-one", near_full, method="drop-one")
    swept = make_rows(10, {2: 3, 4: 7, 8: 9})  # a density sweep chose k = 8 for half the items
    for i, r in enumerate(swept):
        r["density_ks"] = {"0.1": 8 if i % 2 else 4}
        r["density"] = {"2": 0.05, "4": 0.1 if i % 2 == 0 else 0.05, "8": 0.1 if i % 2 else 0.2}
    make_run(runs, "adaptive", swept, method="adaptive")
    status, err = build([runs, "--out", tmp_path / "site"], capsys)
    assert status == 0
    board = board_of(tmp_path / "site")
    entries = by_method(board)
    assert board["ref_density"] == 0.1 and board["density_tolerance"] == 0.025
    assert entries["drop-one"]["rank"] is None and not entries["drop-one"]["comparable"]
    assert entries["drop-one"]["flip_rate"] is None and "not comparable at density 0.1" in err
    assert (entries["stream"]["rank"], entries["stream"]["n_flipped"]) == (1, 5)
    # each item at its own k: items 0, 2, 4, 6, 8 at k = 4 (flip iff i < 7), the odd ones at k = 8 (i < 9)
    assert entries["adaptive"]["n_flipped"] == 4 + 4 and entries["adaptive"]["rank"] == 2
    assert entries["adaptive"]["density"] == pytest.approx(0.1)
    assert "| n.c. |" in (tmp_path / "site" / "leaderboard.md").read_text()
    status, err = build([runs, "--out", tmp_path / "k", "--ref-k", "4", "--ref-density", "0.1"], capsys)
    assert status == 2 and "not both" in err
    assert build([runs, "--out", tmp_path / "k", "--ref-density", "1.5"], capsys)[0] == 2
