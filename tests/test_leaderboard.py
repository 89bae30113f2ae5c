"""leaderboard: boards per (suite, attack), pooling, rank bands, nulls, the model bar, output formats, errors.

Run directories are synthetic (tests/board_runs.py), so every expected number is known
by construction; intervals and tests are recomputed here with harness.results.intervals.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import types
from pathlib import Path

import pytest

from board_runs import (board_of, build, cells_at, config, loaded, make_rows, make_run, with_groups)
from harness.results.intervals import cluster_bootstrap, holm, mcnemar_exact
from harness.results.stats import summarize
from leaderboard.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def three_entries(tmp_path):
    """stream: two runs (seeds 0, 1) pooled; window and oracle: one run each, with different flip rates."""
    runs = tmp_path / "runs"
    make_run(runs, "stream-s0", make_rows(10, {2: 6, 4: 3, 8: 1}, natural={2: 2, 4: 1}, skipped=2, prefix="a"), seed=0)
    make_run(runs, "stream-s1", make_rows(6, {2: 4, 4: 3, 8: 0}, natural={2: 1}, skipped=1, prefix="a"), seed=1)
    make_run(runs, "window", make_rows(8, {2: 8, 4: 6, 8: 2}, natural={2: 3, 4: 2}), method="window")
    make_run(runs, "oracle", make_rows(12, {2: 3, 4: 1, 8: 0}), method="oracle")
    return runs


def _one_line_error(status, err):
    assert status == 2
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("leaderboard: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1]
    assert "Traceback" not in err
    return errors[0]


def by_method(table):
    return {c["method"]: c for c in table["ranked"] + table["references"] + table["not_comparable"]}


# ---------------------------------------------------------------- boards and pooling

def test_runs_of_one_entry_pool_their_items(three_entries, tmp_path, capsys):
    status, err = build([three_entries, "--out", tmp_path / "out"], capsys)
    assert status == 0, err
    site = board_of(tmp_path / "out")
    assert [(b["suite"], b["attack"]) for b in site["boards"]] == [("seed4", "random")]
    stream = by_method(cells_at(site, "seed4", "random", 0.1))["stream"]
    # each item at k = 4 (density 0.1): 3 + 3 flipped of 10 + 6 counted items, not the mean of 0.3 and 0.5
    assert (stream["flips"], stream["n"]) == (6, 16) and stream["flip_rate"] == pytest.approx(6 / 16)
    assert stream["natural_flips"] == 1
    entry = next(e for e in site["entries"] if e["method"] == "stream")
    assert entry["runs"] == [str(three_entries / "stream-s0"), str(three_entries / "stream-s1")]
    assert entry["seeds"] == [0, 1] and (entry["n_items"], entry["n_skipped"]) == (19, 3)
    assert entry["median_steps_to_flip"] == 11  # steps 10, 11, 12 in both seeds


def test_pooled_numbers_equal_a_single_run_of_all_rows(tmp_path, capsys):
    a = make_rows(7, {2: 5, 4: 2, 8: 1}, natural={2: 2}, skipped=1, prefix="x")
    b = make_rows(9, {2: 3, 4: 3, 8: 0}, natural={4: 1}, skipped=2, prefix="y")
    make_run(tmp_path / "split", "a", a, seed=0)
    make_run(tmp_path / "split", "b", b, seed=1)
    make_run(tmp_path / "whole", "ab", a + b)
    assert build([tmp_path / "split", "--out", tmp_path / "o1"], capsys)[0] == 0
    assert build([tmp_path / "whole", "--out", tmp_path / "o2"], capsys)[0] == 0
    for d in (0.05, 0.1, 0.2):
        split = cells_at(board_of(tmp_path / "o1"), "seed4", "random", d)["ranked"][0]
        whole = cells_at(board_of(tmp_path / "o2"), "seed4", "random", d)["ranked"][0]
        for key in ("flips", "n", "flip_rate", "low", "high", "strict", "breakdown", "natural_flips", "density"):
            assert split[key] == whole[key], (d, key)


def test_one_board_per_suite_and_attack(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "nat", make_rows(6, {4: 1}), attack="none")
    make_run(runs, "rand", make_rows(6, {4: 3}))
    make_run(runs, "gcg", make_rows(6, {4: 4}), attack="gcg")
    make_run(runs, "facts", make_rows(6, {4: 2}), suite="facts")
    assert build([runs, "--out", tmp_path / "out"], capsys)[0] == 0
    site = board_of(tmp_path / "out")
    assert [(b["suite"], b["attack"], b["natural"]) for b in site["boards"]] == [
        ("facts", "random", False), ("seed4", "none", True), ("seed4", "gcg", False), ("seed4", "random", False)]
    for board in site["boards"]:  # no entry of one board is ranked on another
        for table in board["tables"]:
            assert {c["attack"] for c in table["ranked"]} <= {board["attack"]}
            assert {c["suite"] for c in table["ranked"]} <= {board["suite"]}


def test_rank_bands_cluster_intervals_and_holm_adjusted_pairs(tmp_path, capsys):
    """Intervals are the cluster bootstrap over contexts; entries overlapping the band leader share its band;
    paired p-values are exact McNemar on the shared items, Holm-adjusted over the table."""
    runs = tmp_path / "runs"
    flips = {"oracle": 0, "window": 2, "stream": 14, "quest": 15}
    for method, count in flips.items():
        make_run(runs, method, with_groups(make_rows(18, {2: count, 4: count, 8: count}), 3), method=method)
    assert build([runs, "--out", tmp_path / "out"], capsys)[0] == 0
    table = cells_at(board_of(tmp_path / "out"), "seed4", "random", 0.1)
    ranked = table["ranked"]
    assert [c["method"] for c in ranked] == ["oracle", "window", "stream", "quest"]
    groups = [f"g{i // 3}" for i in range(18)]
    for c in ranked:
        flags = [i < flips[c["method"]] for i in range(18)]
        interval = cluster_bootstrap(flags, groups)
        assert (c["low"], c["high"], c["clusters"]) == (interval.low, interval.high, 6)
    # plain loop: a band is its leader and the following entries overlapping the leader
    expected, i = [], 0
    while i < len(ranked):
        j = i + 1
        while j < len(ranked) and ranked[j]["low"] <= ranked[i]["high"] and ranked[i]["low"] <= ranked[j]["high"]:
            j += 1
        expected += [str(i + 1) if j == i + 1 else f"{i + 1}-{j}"] * (j - i)
        i = j
    assert [c["band"] for c in ranked] == expected
    assert ranked[0]["band"] == "1-2" and ranked[2]["band"] == "3-4"  # 0/18 and 2/18 are not separated
    raw = [mcnemar_exact(flips[m], 0) for m in ("window", "stream", "quest")]
    for c, p in zip(ranked[1:], holm(raw)):
        assert c["paired"]["vs"] == ranked[0]["slug"]
        assert (c["paired"]["b10"], c["paired"]["b01"], c["paired"]["n"]) == (flips[c["method"]], 0, 18)
        assert c["paired"]["p_holm"] == pytest.approx(p)
    assert ranked[0]["paired"] is None


def test_nulls_are_reference_rows_never_ranked(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "stream", make_rows(10, {2: 6, 4: 5, 8: 1}), method="stream")
    make_run(runs, "random", make_rows(10, {2: 0, 4: 0, 8: 0}), method="random")
    near_full = make_rows(10, {2: 0, 4: 0, 8: 0})
    for r in near_full:
        r["density"] = {"2": 0.95, "4": 0.97, "8": 0.99}
    make_run(runs, "drop-one", near_full, method="drop-one")
    make_run(runs, "filler", make_rows(10, {2: 1, 4: 1, 8: 0}), attack="filler")
    status, err = build([runs, "--out", tmp_path / "out"], capsys)
    assert status == 0, err
    site = board_of(tmp_path / "out")
    assert [(b["suite"], b["attack"]) for b in site["boards"]] == [("seed4", "random")]  # filler joins it
    table = cells_at(site, "seed4", "random", 0.1)
    assert [c["method"] for c in table["ranked"]] == ["stream"] and table["ranked"][0]["band"] == "1"
    refs = {(c["method"], c["attack"]): c for c in table["references"]}
    assert set(refs) == {("random", "random"), ("drop-one", "random"), ("stream", "filler")}
    assert all(c["rank"] is None and c["band"] is None for c in refs.values())
    assert refs[("random", "random")]["flips"] == 0  # ranked last would be first: 0/10 beats 5/10
    assert not refs[("drop-one", "random")]["comparable"]
    assert refs[("drop-one", "random")]["density"] == pytest.approx(0.95)  # its nearest k, still far off
    assert refs[("stream", "filler")]["paired"]["b01"] == 4  # the null against the best entry, paired
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| ref | smollm2-135m | stream + filler (null) |" in md and "drop-one (reaches 0.950)" in md


def test_a_model_under_the_accuracy_bar_is_skipped_and_shown(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "good", make_rows(9, {4: 3}, skipped=1))  # full attention right on 9/10
    make_run(runs, "weak", make_rows(6, {4: 0}, skipped=4), model="tiny-weak")  # 6/10 < 70%
    status, err = build([runs, "--out", tmp_path / "out"], capsys)
    assert status == 0
    board = board_of(tmp_path / "out")["boards"][0]
    models = {m["model"]: m for m in board["models"]}
    assert (models["smollm2-135m"]["accuracy"], models["smollm2-135m"]["admitted"]) == (0.9, True)
    assert (models["tiny-weak"]["correct"], models["tiny-weak"]["n"], models["tiny-weak"]["admitted"]) == (6, 10, False)
    assert all(c["model"] == "smollm2-135m" for t in board["tables"] for c in t["ranked"])
    assert "tiny-weak skipped" in err and "6/10 = 60%" in err
    assert "skipped tiny-weak: full attention right on 6/10 = 60%" in (tmp_path / "out" / "leaderboard.md").read_text()
    assert build([runs, "--out", tmp_path / "o2", "--min-accuracy", "0.5"], capsys)[0] == 0
    assert all(m["admitted"] for m in board_of(tmp_path / "o2")["boards"][0]["models"])


def test_a_board_whose_only_model_fails_the_bar_says_so_not_that_no_density_is_reached(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "weak", make_rows(6, {4: 0}, skipped=4), model="tiny-weak")  # 6/10 < 70%
    status, err = build([runs, "--out", tmp_path / "out"], capsys)
    assert status == 0
    board = board_of(tmp_path / "out")["boards"][0]
    assert [t["note"] for t in board["tables"]] == ["no model passes the 70% bar on this suite: nothing to rank"] * 3
    assert "no entry reaches" not in err and "no entry reaches" not in (tmp_path / "out" / "leaderboard.md").read_text()


def test_a_density_no_entry_reaches_is_a_note_not_an_empty_table(three_entries, tmp_path, capsys):
    status, err = build([three_entries, "--out", tmp_path / "out", "--densities", "0.1,0.6"], capsys)
    assert status == 0
    table = cells_at(board_of(tmp_path / "out"), "seed4", "random", 0.6)
    assert table["ranked"] == [] and table["note"].startswith("no entry reaches density 0.6 ± 0.025")
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    section = md.split("### Density 0.6")[1].split("##")[0]
    assert "|" not in section and "no entry reaches density 0.6" in section
    assert "no entry reaches density 0.6" in err


def test_not_comparable_entries_of_one_method_are_told_apart_by_their_settings(tmp_path, capsys):
    """Two snapkv runs with different windows, neither reaching density 0.05: the note names
    each with its settings (the ranked rows already show them)."""
    runs = tmp_path / "runs"
    make_run(runs, "stream", make_rows(8, {2: 6, 4: 3, 8: 1}))
    for window in (64, 8):
        make_run(runs, f"snapkv-{window}", make_rows(8, {4: 3, 8: 1}, ks=[4, 8]), method="snapkv",
                 k_sweep=[4, 8], method_options={"window_size": window})
    assert build([runs, "--out", tmp_path / "out"], capsys)[0] == 0
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    note = next(line for line in md.split("### Density 0.05")[1].splitlines() if line.startswith("Not comparable"))
    assert "snapkv · " in note and "window_size 64" in note and "window_size 8" in note
    html = (tmp_path / "out" / "index.html").read_text()
    assert "window_size 64</a> (reaches 0.100)" in html and "window_size 8</a> (reaches 0.100)" in html


def test_entries_read_each_item_at_its_own_k(tmp_path, capsys):
    swept = make_rows(10, {2: 3, 4: 7, 8: 9})  # a density sweep chose k = 8 for the odd items
    for i, r in enumerate(swept):
        r["density_ks"] = {"0.1": 8 if i % 2 else 4}
        r["density"] = {"2": 0.05, "4": 0.1 if i % 2 == 0 else 0.05, "8": 0.1 if i % 2 else 0.2}
    make_run(tmp_path / "runs", "adaptive", swept, method="adaptive")
    assert build([tmp_path / "runs", "--out", tmp_path / "out"], capsys)[0] == 0
    cell = cells_at(board_of(tmp_path / "out"), "seed4", "random", 0.1)["ranked"][0]
    # even items at k = 4 flip iff i < 7 (0, 2, 4, 6), odd ones at k = 8 iff i < 9 (1, 3, 5, 7)
    assert cell["flips"] == 8 and cell["density"] == pytest.approx(0.1)


def test_conflicting_configs_name_both_runs(tmp_path, capsys):
    a = make_run(tmp_path / "runs", "a", make_rows(4, {4: 1}, prefix="a"), n_adv=3)
    b = make_run(tmp_path / "runs", "b", make_rows(4, {4: 1}, prefix="b"), n_adv=5, seed=1)
    line = _one_line_error(*build([a, b, "--out", tmp_path / "out"], capsys))
    assert str(a) in line and str(b) in line and "n_adv" in line
    assert not (tmp_path / "out").exists()


def test_same_seed_items_count_once(tmp_path, capsys):
    rows = make_rows(10, {4: 4})
    make_run(tmp_path / "runs", "first10", rows, limit=10)
    make_run(tmp_path / "runs", "first5", rows[:5], limit=5)
    status, err = build([tmp_path / "runs", "--out", tmp_path / "out"], capsys)
    assert status == 0
    cell = cells_at(board_of(tmp_path / "out"), "seed4", "random", 0.1)["ranked"][0]
    assert (cell["flips"], cell["n"]) == (4, 10)
    assert "counted once" in err and "first5" in err


# ---------------------------------------------------------------- unreadable runs and bad input

def test_truncated_last_line_uses_complete_rows_and_warns(tmp_path, capsys):
    run = make_run(tmp_path / "runs", "torn", make_rows(6, {4: 2}))
    with open(run / "results.jsonl", "a") as fh:
        fh.write('{"item_id": "item-006", "status": "attac')
    status, err = build([run, "--out", tmp_path / "out"], capsys)
    assert status == 0
    assert any("truncated" in line and str(run) in line for line in err.splitlines())
    cell = cells_at(board_of(tmp_path / "out"), "seed4", "random", 0.1)["ranked"][0]
    assert (cell["flips"], cell["n"]) == (2, 6)


def test_half_written_runs_are_skipped_with_a_warning_naming_them(tmp_path, capsys):
    runs = tmp_path / "runs"
    good = make_run(runs, "good", make_rows(5, {4: 1}))
    no_manifest = make_run(runs, "no-manifest", make_rows(5, {4: 5}), method="window")
    (no_manifest / "manifest.json").unlink()
    no_rows = make_run(runs, "no-rows", [], method="oracle")
    bad_middle = make_run(runs, "bad-middle", make_rows(3, {4: 1}), method="full")
    lines = (bad_middle / "results.jsonl").read_text().splitlines()
    (bad_middle / "results.jsonl").write_text(lines[0] + "\n{oops\n" + lines[1] + "\n")
    status, err = build([runs, "--out", tmp_path / "out"], capsys)
    assert status == 0
    for skipped, reason in [(no_manifest, "no manifest.json"), (no_rows, "no complete rows"), (bad_middle, "line 2")]:
        line = next((ln for ln in err.splitlines() if f"skipped {skipped}:" in ln), None)
        assert line is not None and reason in line, (skipped, err)
    site = board_of(tmp_path / "out")
    assert [e["runs"] for e in site["entries"]] == [[str(good)]]
    assert {s["run"] for s in site["skipped"]} == {str(p) for p in (no_manifest, no_rows, bad_middle)}


@pytest.mark.parametrize("args,words", [
    ([], "no runs"),
    (["--densities", "0.1,abc"], "--densities"),
    (["--densities", "0"], "(0, 1]"),
    (["--densities", "0.1,0.1"], "distinct"),
    (["--density-tolerance", "2"], "--density-tolerance"),
    (["--min-accuracy", "1.5"], "--min-accuracy"),
    (["--bogus"], "unrecognized"),
])
def test_bad_input_is_one_line_and_exit_2(three_entries, tmp_path, capsys, args, words):
    runs = [] if words == "no runs" else [three_entries]
    line = _one_line_error(*build([*runs, "--out", tmp_path / "out", *args], capsys))
    assert words in line
    assert not (tmp_path / "out").exists()


def test_empty_input_through_the_module_entry_point(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "leaderboard", "build", str(tmp_path / "empty"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("leaderboard: error: no runs found")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_leaderboard_never_imports_a_model_library(three_entries, tmp_path):
    code = ("import sys; from leaderboard.cli import main; "
            f"assert main(['build', {str(three_entries)!r}, '--out', {str(tmp_path / 'o')!r}]) == 0; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- output formats

def parse_markdown_tables(text):
    """Every Markdown table of the text as a list of {header: cell} rows."""
    tables, current = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line[2:-2].split(" | ")]
        if current is None:
            current = {"header": cells, "rows": []}
            tables.append(current)
        elif not set(line.replace("|", "").replace("-", "").replace(":", "")) <= {""}:
            current["rows"].append(dict(zip(current["header"], cells)))
    return tables


def test_markdown_headline_tables_have_eight_columns_and_the_board_numbers(three_entries, tmp_path, capsys):
    assert build([three_entries, "--out", tmp_path / "out", "--title", "My boards"], capsys)[0] == 0
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert md.startswith("# My boards\n")
    site = board_of(tmp_path / "out")
    tables = parse_markdown_tables(md)
    assert len(tables) == 3 and all(len(t["header"]) == 8 for t in tables)
    for t, table in zip(tables, site["boards"][0]["tables"]):
        assert [r["Method"] for r in t["rows"]] == [c["method"] for c in table["ranked"]]
        for row, c in zip(t["rows"], table["ranked"]):
            assert row["Rank"] == c["band"]
            assert row["Flip rate [95% CI] flips/n"] == f"{c['flip_rate']:.3f} [{c['low']:.3f}, {c['high']:.3f}] " \
                                                      f"{c['flips']}/{c['n']}"
            strict, breakdown = (int(x) for x in row["Strict / breakdown"].split(" / "))
            assert strict + breakdown == c["flips"]  # every flip is one or the other


def test_markdown_escapes_pipes(tmp_path, capsys):
    make_run(tmp_path / "runs", "odd", make_rows(4, {4: 1}), model="org/odd|name")
    assert build([tmp_path / "runs", "--out", tmp_path / "out"], capsys)[0] == 0
    rows = parse_markdown_tables((tmp_path / "out" / "leaderboard.md").read_text())[0]["rows"]
    assert rows[0]["Model"] == "org/odd\\|name"


def test_csv_has_a_row_per_board_density_and_entry_at_full_precision(three_entries, tmp_path, capsys):
    assert build([three_entries, "--out", tmp_path / "out"], capsys)[0] == 0
    site = board_of(tmp_path / "out")
    with open(tmp_path / "out" / "leaderboard.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cells = [(t["density"], c) for b in site["boards"] for t in b["tables"]
             for c in t["ranked"] + t["references"] + t["not_comparable"]]
    assert len(rows) == len(cells) == 9
    for row, (density, c) in zip(rows, cells):
        assert float(row["board_density"]) == density and row["slug"] == c["slug"]
        assert float(row["flip_rate"]) == c["flip_rate"] and float(row["low"]) == c["low"]
        assert row["band"] == c["band"]


def test_curve_pngs_per_board_and_model(tmp_path, capsys):
    runs = tmp_path / "runs"
    make_run(runs, "a", make_rows(8, {2: 4, 4: 2, 8: 1}))
    make_run(runs, "b", make_rows(8, {2: 5, 4: 3, 8: 1}), model="qwen2.5-0.5b")
    make_run(runs, "c", make_rows(8, {4: 1}), attack="none")
    assert build([runs, "--out", tmp_path / "out"], capsys)[0] == 0
    site = board_of(tmp_path / "out")
    pngs = sorted(p.name for p in (tmp_path / "out" / "plots").glob("*.png"))
    assert pngs == ["seed4-none_smollm2-135m.png", "seed4-random_qwen2.5-0.5b.png", "seed4-random_smollm2-135m.png"]
    assert [c["path"] for b in site["boards"] for c in b["plots"]["curves"]] == [f"plots/{p}" for p in
                                                                               sorted(pngs)]
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


def test_from_wandb_enters_boards_through_summary_counts(tmp_path, capsys, monkeypatch):
    c0, c1 = config(seed=0), config(seed=1)
    r0, r1 = make_rows(10, {2: 5, 4: 2, 8: 1}, natural={4: 1}), make_rows(6, {2: 3, 4: 3, 8: 0})
    runs = [FakeRun("a", c0, wandb_summary(r0, c0)), FakeRun("b", c1, wandb_summary(r1, c1)),
            FakeRun("c", config(method="window"), {"_runtime": 3})]  # unfinished: no per_k
    fake = types.ModuleType("wandb")

    class Api:
        def __init__(self, timeout=None):
            pass

        def runs(self, path):
            return runs

    fake.Api = Api
    monkeypatch.setitem(sys.modules, "wandb", fake)
    local = make_run(tmp_path / "runs", "local", make_rows(4, {4: 4}), method="oracle")
    status, err = build([local, "--from-wandb", "ent/proj", "--out", tmp_path / "out"], capsys)
    assert status == 0, err
    stream = by_method(cells_at(board_of(tmp_path / "out"), "seed4", "random", 0.1))["stream"]
    assert (stream["flips"], stream["n"], stream["interval"]) == (5, 16, "wilson")  # no items: no clusters
    assert "skipped wandb:ent/proj/c" in err and "per_k" in err


def test_from_wandb_argument_and_availability_errors(tmp_path, capsys, monkeypatch):
    assert "ENTITY/PROJECT" in _one_line_error(*build(["--from-wandb", "no-slash", "--out", tmp_path / "o"], capsys))
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    assert "pip install wandb" in _one_line_error(*build(["--from-wandb", "ent/proj", "--out", tmp_path / "o"],
                                                         capsys))
