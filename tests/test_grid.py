"""harness.grid: the cross product, validation before running, failures isolated, reruns
skip finished cells, and Ray gives the same rows and leaderboard as the local executor."""

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from tiny_models import save_tiny_pair

from harness import grid
from harness.errors import UsageError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-grid")
    save_tiny_pair(path, "llama", layers=2, seed=3)
    return path


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "s.jsonl"
    items = [("Is fire hot?", "yes"), ("Is ice hot?", "no"), ("Do fish swim?", "yes")]
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in items))
    return path


def write_grid(path, model_dir, suite, methods=("stream", "window"), extra_models=()):
    spec = {"grid": {"model": [str(model_dir), *extra_models], "method": list(methods)},
            "fixed": {"suite": str(suite), "attack": "random", "steps": 4, "k_sweep": [1, 2], "k_attack": 1,
                      "block_size": 4, "dense_layers": 1, "context_tokens": 24, "wandb": "disabled"}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def rows_of(out):
    return {d.name: [{k: v for k, v in json.loads(line).items() if k != "timing"}
                     for line in (d / "results.jsonl").read_text().splitlines()]
            for d in sorted(Path(out).iterdir()) if (d / "results.jsonl").exists()}


def test_expand_crosses_the_grid_axes_in_order():
    spec = {"grid": {"model": ["a", "b"], "method": ["stream", "window", "random"]}, "fixed": {"limit": 4,
            "k_sweep": [2, 4]}, "resources": {}}
    cells = grid.expand(spec, Path("out"))
    assert [c.name for c in cells][:4] == ["model=a__method=stream", "model=a__method=window",
                                          "model=a__method=random", "model=b__method=stream"]
    assert len(cells) == 6
    argv = list(cells[0].argv)
    assert argv[argv.index("--limit") + 1] == "4" and argv[argv.index("--k-sweep") + 1] == "2,4"
    assert argv[-2:] == ["--out", str(Path("out") / "model=a__method=stream")]


@pytest.mark.parametrize("text,message", [
    ("grid: {model: []}", "non-empty list"),
    ("grid: {model: [a]}\ncolour: red", "unknown section"),
    ("fixed: {limit: 2}", "'grid' must map"),
    ("grid: {limit: [1]}\nfixed: {limit: 2}", "both a grid axis and fixed"),
    ("grid: {model: [a]}\nresources: {memory: 3}", "resources"),
])
def test_bad_grid_files_are_named(tmp_path, text, message):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        grid.load_grid(path)


def test_a_bad_cell_fails_the_grid_before_anything_runs(tmp_path, model_dir, suite, capsys):
    path = write_grid(tmp_path / "g.yaml", model_dir, suite, methods=("stream", "nope"))
    assert grid.main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "grid cell model=" in err and "method=nope" in err and "unknown sparse method" in err
    assert not (tmp_path / "out").exists()


def test_local_grid_runs_cells_isolates_failures_and_resumes(tmp_path, model_dir, suite, capsys):
    path = write_grid(tmp_path / "g.yaml", model_dir, suite, extra_models=(str(tmp_path / "missing-model"),))
    out = tmp_path / "out"
    assert grid.main([str(path), "--out", str(out)]) == 1  # the missing model's cells fail ...
    err = capsys.readouterr().err
    assert err.count("failed:") == 2 and "missing-model" in err
    done = rows_of(out)
    assert len(done) == 2 and all(len(rows) == 3 for rows in done.values())  # ... the others ran
    board = json.loads((out / "leaderboard" / "leaderboard.json").read_text())
    assert sorted(e["method"] for e in board["entries"]) == ["stream", "window"]
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/results.jsonl")}
    assert grid.main([str(path), "--out", str(out)]) == 1
    assert "2 already done" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/results.jsonl")} == before


def test_ray_executor_gives_the_local_rows_and_leaderboard(tmp_path, model_dir, suite, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    short = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", short)
    path = write_grid(tmp_path / "g.yaml", model_dir, suite)
    assert grid.main([str(path), "--out", str(tmp_path / "local")]) == 0
    assert grid.main([str(path), "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    assert rows_of(tmp_path / "local") == rows_of(tmp_path / "ray")

    def board(out):
        data = json.loads((Path(out) / "leaderboard" / "leaderboard.json").read_text())
        return [{k: v for k, v in e.items() if k not in ("runs", "label")} | {"runs": len(e["runs"])}
                for e in data["entries"]]

    local, ray_board = board(tmp_path / "local"), board(tmp_path / "ray")
    for entry in local + ray_board:
        entry.pop("config", None)
    assert local == ray_board
    shutil.rmtree(short, ignore_errors=True)


def test_ray_executor_without_ray_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from harness.executors import make_executor

    with pytest.raises(UsageError, match=r'pip install -e "\.\[ray\]"'):
        make_executor("ray", {})
