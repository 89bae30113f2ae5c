"""The one-pass board runner (harness/board): its cells are ordinary runs, equal to each
cell's own `harness.run` command; transfer records agree with the source rows; resume and
bad board files."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.board.__main__ import main as board_main
from harness.run import main as run_main
from tiny_models import save_tiny_pair

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["stream", "oracle"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-board")
    save_tiny_pair(path, "llama", layers=3, seed=11, answering=True)
    return path


def board_file(tmp_path, model_dir, **changes) -> Path:
    board = {"out": str(tmp_path / "board"), "models": [str(model_dir)], "suite": "needle",
             "densities": [0.2, 0.5], "methods": METHODS,
             "attacks": ["none", {"name": "random", "density": 0.2, "steps": 6}],
             "options": {"limit": 6, "depth": [0.2, 0.8], "context_tokens": 96, "block_size": 4,
                         "dense_layers": 1, "batch_size": 4, "wandb": "disabled"}}
    board.update(changes)
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board))
    return path


def rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "timing"}
            for line in (run_dir / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def board_run(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("board-run")
    path = board_file(tmp, model_dir)
    assert board_main([str(path)]) == 0
    return tmp / "board"


def test_every_cell_equals_its_own_harness_run(board_run, tmp_path):
    cells = json.loads((board_run / "board-cells.json").read_text())
    assert {name.split("__", 1)[1] for name in cells} == {f"{m}__{a}" for m in METHODS for a in ("none", "random-d0.2-steps6")}
    for name, cmd in cells.items():
        argv = shlex.split(cmd)[3:]  # after "python -m harness.run"
        argv[argv.index("--out") + 1] = str(tmp_path / name)
        assert run_main(argv) == 0
        assert rows(board_run / name) == rows(tmp_path / name), name
        board_config = json.loads((board_run / name / "manifest.json").read_text())["config"]
        alone_config = json.loads((tmp_path / name / "manifest.json").read_text())["config"]
        assert board_config == alone_config


def test_transfer_records_agree_with_the_source_rows(board_run):
    for cell in board_run.glob("*__random-*"):
        source = {r["item_id"]: r for r in rows(cell)}
        records = [json.loads(line) for line in (cell / "transfer.jsonl").read_text().splitlines()]
        assert {r["item_id"] for r in records} == set(source)
        per_item = {}
        for r in records:
            per_item.setdefault(r["item_id"], []).append(r)
        for item_id, recs in per_item.items():
            assert sorted(r["target"]["method"] for r in recs) == sorted(METHODS + ["full"])
            row = source[item_id]
            if not row.get("adv_ids"):
                assert all(not r["confident"] and r["outcome"] is None for r in recs)
                continue
            own = next(r for r in recs if r["target"]["method"] == cell.name.split("__")[1])
            k = str(own["target"]["k"])
            if k in row["outcomes"]:  # the source method at the attack density: the row's own verdict
                assert own["outcome"] == row["outcomes"][k]["class"]
                assert own["scores"]["sparse"]["p_correct"] == pytest.approx(row["scores"][k]["p_correct"], abs=1e-6)
            full = next(r for r in recs if r["target"]["method"] == "full")
            assert full["scores"]["sparse"]["p_correct"] == pytest.approx(row["scores"]["full"]["p_correct"], abs=1e-6)


def test_an_interrupted_board_resumes_to_the_same_files(model_dir, tmp_path, board_run):
    path = board_file(tmp_path, model_dir)
    assert board_main([str(path)]) == 0
    out = tmp_path / "board"
    cell = next(out.glob("*__stream__random-*"))
    lines = (cell / "results.jsonl").read_text().splitlines(keepends=True)
    (cell / "results.jsonl").write_text("".join(lines[:-2]))
    transfer = (cell / "transfer.jsonl").read_text().splitlines(keepends=True)
    (cell / "transfer.jsonl").write_text("".join(transfer[:-4]) + transfer[-4][:10])  # torn last line
    assert board_main([str(path)]) == 0
    for done in out.glob("*__*"):
        assert rows(done) == rows(board_run / done.name)
    assert sorted((cell / "transfer.jsonl").read_text().splitlines()) == \
        sorted((board_run / cell.name / "transfer.jsonl").read_text().splitlines())


@pytest.mark.parametrize("change,message", [
    ({"densities": [0]}, "densities must list numbers in (0, 1]"),
    ({"methods": ["strem"]}, "did you mean 'stream'"),
    ({"colour": "red"}, "key 'colour'"),
    ({"options": {"method": "stream"}}, "options may not set 'method'"),
    ({"attacks": [{"name": "random", "density": 2}]}, "density must be a number in (0, 1]"),
    ({"methods": ["stream", "stream"]}, "listed twice"),
    ({"attacks": [{"name": "random", "methods": ["hip"]}]}, "attack random: methods lists 'hip', which is not a method"),
    ({"attacks": [{"name": "random", "methods": [3]}]}, "random: methods must list method labels"),
    ({"attacks": [{"name": "random", "density": 0.3}]}, "attack random: density 0.3 is not one of the board's densities (0.2, 0.5)"),
])
def test_bad_board_files_exit_2_with_one_line(model_dir, tmp_path, change, message):
    path = board_file(tmp_path, model_dir, **change)
    done = subprocess.run([sys.executable, "-m", "harness.board", str(path)], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


@pytest.mark.parametrize("suite,message", [
    ("neddle", "unknown suite 'neddle'; did you mean 'needle'"),
    ("{tmp}/missing.jsonl", "missing.jsonl: no such suite file"),
    ("{tmp}/bad.jsonl", "bad.jsonl, line 1: missing field 'answer'"),
])
def test_a_bad_suite_stops_the_board_before_any_model_loads(tmp_path, suite, message):
    """Even --dry-run, which loads no model, rejects it: the check runs when the file is read."""
    (tmp_path / "bad.jsonl").write_text('{"question": "Is it?"}\n')
    board = {"out": str(tmp_path / "board"), "models": ["no-such-model-dir"],
             "suite": suite.format(tmp=tmp_path), "densities": [0.1], "methods": ["stream"]}
    path = tmp_path / "board.yaml"
    path.write_text(yaml.safe_dump(board))
    done = subprocess.run([sys.executable, "-m", "harness.board", str(path), "--dry-run"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_an_attack_restricted_to_one_source_still_transfers_to_every_method(model_dir, tmp_path, board_run):
    """`methods` on an attack runs it against those methods only; their cells, rows and
    transfer records (targets: every method of the board, and full attention) equal the
    unrestricted board's."""
    attacks = ["none", {"name": "random", "density": 0.2, "steps": 6, "methods": ["stream"]}]
    assert board_main([str(board_file(tmp_path, model_dir, attacks=attacks))]) == 0
    out = tmp_path / "board"
    cells = {p.name.split("__", 1)[1] for p in out.glob("*__*")}
    assert cells == {"stream__none", "oracle__none", "stream__random-d0.2-steps6"}
    for cell in out.glob("*__*"):
        assert rows(cell) == rows(board_run / cell.name)
    source = next(out.glob("*__stream__random-*"))
    assert (source / "transfer.jsonl").read_text() == (board_run / source.name / "transfer.jsonl").read_text()


def test_a_pass_with_a_context_budget_scores_the_first_contexts_and_the_next_pass_the_rest(model_dir, tmp_path,
                                                                                          board_run):
    """`--contexts 1` writes, in every cell, the full pass's rows of the suite's first context and
    nothing else (the cell's config is the board's); a pass without it then completes every cell
    to the full pass's files."""
    path = board_file(tmp_path, model_dir)
    assert board_main([str(path), "--contexts", "1"]) == 0
    out = tmp_path / "board"
    for cell in board_run.glob("*__*"):
        full = rows(cell)
        first = [r for r in full if r["needle"]["group"] == full[0]["needle"]["group"]]
        assert 0 < len(first) < len(full)
        assert rows(out / cell.name) == first, cell.name
    assert board_main([str(path)]) == 0
    for cell in board_run.glob("*__*"):
        assert rows(out / cell.name) == rows(cell)
        assert json.loads((out / cell.name / "manifest.json").read_text())["config"] == \
            json.loads((cell / "manifest.json").read_text())["config"]
        if (cell / "transfer.jsonl").exists():
            assert (out / cell.name / "transfer.jsonl").read_text() == (cell / "transfer.jsonl").read_text()


@pytest.mark.parametrize("flag", ["0", "-2"])
def test_a_context_budget_below_one_exits_2_with_one_line(model_dir, tmp_path, flag):
    done = subprocess.run([sys.executable, "-m", "harness.board", str(board_file(tmp_path, model_dir)),
                           "--contexts", flag], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--contexts must be an integer >= 1" in done.stderr, done.stderr


def test_the_printed_build_command_builds_the_cells_at_the_boards_densities(board_run, model_dir, tmp_path, capsys):
    from harness.board.__main__ import build_command
    from harness.board.spec import load_board

    board = load_board(str(board_file(tmp_path, "unused", out=str(board_run))))
    command = build_command(board)
    assert command == f"python -m leaderboard build {board_run} --out {board_run}/leaderboard --densities 0.2,0.5"
    done = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    site = json.loads((board_run / "leaderboard" / "leaderboard.json").read_text())
    assert [t["density"] for t in site["boards"][0]["tables"]] == [0.2, 0.5]
    assert {e["method"] for e in site["entries"]} == set(METHODS)
    # a finished board's pass says what the leaderboard will say of its model's accuracy
    model = site["boards"][0]["models"][0]
    capsys.readouterr()
    assert board_main([str(board_file(tmp_path, model_dir, out=str(board_run)))]) == 0
    expected = (f"{model_dir} on needle: full attention right on {model['correct']}/{model['n']} items "
                f"({model['accuracy']:.0%}); the leaderboard's bar is 70%")
    printed = [line for line in capsys.readouterr().out.splitlines() if "full attention right on" in line]
    assert printed == [expected + ("" if model["admitted"] else ": below it, the board lists this model as skipped")]


def test_dry_run_lists_every_cell_command(model_dir, tmp_path, capsys):
    assert board_main([str(board_file(tmp_path, model_dir)), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(METHODS) * 2 and all("python -m harness.run --model" in line for line in lines)


def test_ray_executor_writes_the_local_rows(ray_session, model_dir, tmp_path, board_run):
    """Contexts sharded over two Ray actors (each loading the model once) give the local pass's
    rows and transfer records, written by the driver alone."""
    path = board_file(tmp_path, model_dir)
    assert board_main([str(path), "--executor", "ray", "--workers", "2"]) == 0
    out = tmp_path / "board"
    for cell in out.glob("*__*"):
        assert rows(cell) == rows(board_run / cell.name)
        if (cell / "transfer.jsonl").exists():
            assert (cell / "transfer.jsonl").read_text() == (board_run / cell.name / "transfer.jsonl").read_text()


def test_a_density_no_k_reaches_is_one_warning_per_cell(model_dir, tmp_path, capsys):
    """A kv-cache method cannot keep less than the question: density 0.01 is out of reach."""
    path = board_file(tmp_path, model_dir, methods=["snapkv"], densities=[0.01, 0.5], attacks=["none"])
    assert board_main([str(path)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "cannot reach" in line]
    assert len(warnings) == 1 and "__snapkv__none cannot reach density 0.01 (nearest" in warnings[0]


def test_transfer_to_a_run_attacked_alone_writes_the_board_cells_records(model_dir, tmp_path, board_run):
    """`--transfer-to` a run that `harness.run` attacked alone with a board cell's options but
    its own k sweep (as the protocol's runs were): its transfer records equal those the board
    pass wrote for that cell, and a run stopped mid-way resumes to the same file."""
    cells = json.loads((board_run / "board-cells.json").read_text())
    name = next(n for n in cells if "__stream__random-" in n)
    argv = shlex.split(cells[name])[3:]
    del argv[argv.index("--density-sweep"):argv.index("--density-sweep") + 2]
    alone = tmp_path / "alone"
    argv[argv.index("--out") + 1] = str(alone)
    assert run_main(argv) == 0 and not (alone / "transfer.jsonl").exists()
    path = board_file(tmp_path, model_dir)
    assert board_main([str(path), "--transfer-to", str(alone)]) == 0
    want = (board_run / name / "transfer.jsonl").read_text()
    assert (alone / "transfer.jsonl").read_text() == want
    lines = want.splitlines(keepends=True)
    (alone / "transfer.jsonl").write_text("".join(lines[:-5]) + lines[-5][:7])  # killed mid-item
    assert board_main([str(path), "--transfer-to", str(alone)]) == 0
    assert (alone / "transfer.jsonl").read_text() == want
    assert not (tmp_path / "board").exists()  # the board's own cells are not run


@pytest.mark.parametrize("cell,extra,message", [
    ("stream__none", [], "attack 'none' has no transfer records"),
    (None, [], "not a run directory (no manifest.json)"),
    ("stream__random-*", ["--dry-run"], "it takes neither --dry-run, --executor ray nor --contexts"),
    ("stream__random-*", ["--contexts", "2"], "it takes neither --dry-run, --executor ray nor --contexts"),
])
def test_transfer_to_refuses_what_it_cannot_score_in_one_line(model_dir, tmp_path, board_run, cell, extra, message):
    run = next(board_run.glob(f"*__{cell}")) if cell else tmp_path / "missing"
    done = subprocess.run([sys.executable, "-m", "harness.board", str(board_file(tmp_path, model_dir)),
                           "--transfer-to", str(run), *extra], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
