"""`python -m harness.grid`: the cross product and its names, validation before anything runs,
the local executor (rows equal to plain `harness.run`, failures isolated, reruns resume), the
Ray executor (same rows and leaderboard as local) and the Ray item pool (rows in item order)."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from tiny_models import save_tiny_pair

from harness import workers
from harness.grid import executors
from harness.grid import spec as grid
from harness.errors import UsageError
from harness.run import main as run_main
from tasks.items import TaskItem

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model that answers yes or no (a random one answers neither: every item would be
    skipped and no attack would run); with seed 11 it answers one suite item right under both
    methods, and random search attacks it, so the rows compared below hold an attack's result."""
    path = tmp_path_factory.mktemp("tiny-grid")
    save_tiny_pair(path, "llama", layers=2, seed=11, answering=True)
    return path


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "s.jsonl"
    items = [("Is fire hot?", "yes"), ("Is ice hot?", "no"), ("Do fish swim?", "yes")]
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in items))
    return path


def spec_for(model_dir, suite, **changes):
    spec = {"models": [str(model_dir)], "methods": ["stream", "window"], "attacks": ["random"], "k_attack": 1,
            "suites": [str(suite)], "steps": 6, "k_sweep": [1, 2], "block_size": 4, "dense_layers": 1,
            "context_tokens": 24, "batch_size": 4, "wandb": "disabled"}
    spec.update(changes)
    return spec


def write_grid(path, spec):
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def rows_of(cell_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "timing"}
            for line in (Path(cell_dir) / "results.jsonl").read_text().splitlines()]


def grid_rows(out):
    return {d.name: rows_of(d) for d in sorted(Path(out).iterdir()) if (d / "results.jsonl").exists()}


def board_of(board_dir):
    """leaderboard.json without what names the grid's directory or the build time."""
    data = json.loads((Path(board_dir) / "leaderboard.json").read_text())
    data.pop("generated")
    for entry in data["entries"]:
        entry["runs"] = [Path(r).name for r in entry["runs"]]
    return data


# ---- expansion -------------------------------------------------------------------------

def test_cells_cross_the_axes_in_order_and_are_named_by_what_varies():
    g = grid.expand({"out": "o", "suites": ["facts"], "attacks": "random", "methods": ["stream", "window", "random"],
                     "models": ["m1", "m2"], "seed": [0, 1], "limit": 4})
    names = [c.name for c in g.cells]
    # models, methods, attacks, k_attack, suites first, then other lists in file order; the last varies fastest
    assert names[:3] == ["model=m1__method=stream__seed=0", "model=m1__method=stream__seed=1",
                         "model=m1__method=window__seed=0"]
    assert len(names) == 12 and len(set(names)) == 12 and names[-1] == "model=m2__method=random__seed=1"
    first = g.cells[0]
    assert first.values == (("model", "m1"), ("method", "stream"), ("seed", 0))
    assert first.out == Path("o").absolute() / first.name
    # fixed values (scalars and one-element lists alike) are in every argv but not in the names
    assert set(first.argv) == {"--attack=random", "--limit=4", "--model=m1", "--method=stream", "--suite=facts",
                               "--seed=0", f"--out={first.out}"}
    assert g.num_cpus == 1 and g.num_gpus == 0


def test_list_options_are_fixed_as_a_list_and_crossed_as_a_list_of_lists():
    fixed = grid.expand({"out": "o", "models": ["m"], "k_sweep": [2, 4, 8], "ascii_only": True})
    assert [c.name for c in fixed.cells] == ["run"]
    assert "--k-sweep=2,4,8" in fixed.cells[0].argv and "--ascii-only=true" in fixed.cells[0].argv
    crossed = grid.expand({"out": "o", "k_sweep": [[2, 4], [8]], "depth": [0.1, 0.9]})
    assert [c.name for c in crossed.cells] == ["k_sweep=2-4", "k_sweep=8"]
    assert "--k-sweep=2,4" in crossed.cells[0].argv and "--depth=0.1,0.9" in crossed.cells[0].argv


def test_paths_get_readable_distinct_names():
    g = grid.expand({"out": "o", "models": ["/data/a/tiny", "/data/b/tiny", "Qwen/Qwen2.5-0.5B"]})
    names = [c.name for c in g.cells]
    assert all(n.startswith("model=tiny-") for n in names[:2]) and names[0] != names[1]
    assert names[2].startswith("model=Qwen2.5-0.5B-")
    assert names == [c.name for c in grid.expand({"out": "o", "models": ["/data/a/tiny", "/data/b/tiny",
                                                                        "Qwen/Qwen2.5-0.5B"]}).cells]


@pytest.mark.parametrize("spec,message", [
    ({"out": "o", "modles": ["m"]}, "unknown key 'modles' (did you mean 'models'?)"),
    ({"out": "o", "methods": []}, "methods: empty list"),
    ({"out": "o", "k_sweep": [[2], []]}, "k_sweep: empty list"),
    ({"out": "o", "k_sweep": [[2], 4]}, "mix of values and lists"),
    ({"out": "o", "models": ["m"], "model": "n"}, "either 'models' or 'model'"),
    ({"out": "o", "limit": None}, "limit: null is not a value"),
    ({"out": "o", "steps": {"a": 1}}, "steps: expected a value or a list"),
    ({"out": "o", "methods": ["stream", "stream"]}, '"stream" listed twice'),
    ({"methods": ["stream"]}, "no output directory"),
    ({"out": "o", "num_gpus": -1}, "num_gpus must be a number >= 0"),
    ({"out": "o", "num_cpus": "two"}, "num_cpus must be a number > 0, got 'two'"),
    ({"out": "o", "k-attack": 2, "k_attack": 4}, "are the same key"),
    ({"out": "o", "models": [1, "1"]}, "would share the run directory"),
])
def test_bad_grid_specs_are_refused_naming_the_key(spec, message):
    with pytest.raises(UsageError) as info:
        grid.expand(spec, source="g.yaml")
    assert message in str(info.value) and str(info.value).startswith("g.yaml: ")


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(UsageError, match="cannot read grid file"):
        grid.load_grid(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UsageError, match="must be a mapping"):
        grid.load_grid(tmp_path / "list.yaml")


def test_cells_differing_beyond_model_method_attack_get_one_leaderboard_each():
    g = grid.expand({"out": "o", "methods": ["stream", "window"], "k_attack": [2, 4], "seed": [0, 1]})
    groups = grid.board_groups(g, g.cells)
    root = Path("o").absolute() / "leaderboard"
    assert list(groups) == [root / "k_attack=2", root / "k_attack=4"]
    assert all(len(cells) == 4 and {dict(c.values)["k_attack"] for c in cells} == {int(b.name[-1])}
               for b, cells in groups.items())
    single = grid.expand({"out": "o", "methods": ["stream", "window"], "seed": [0, 1]})
    assert list(grid.board_groups(single, single.cells)) == [root]


# ---- validation and the local executor --------------------------------------------------

def test_a_bad_cell_fails_the_grid_before_anything_runs(tmp_path, model_dir, suite, capsys):
    path = write_grid(tmp_path / "g.yaml", spec_for(model_dir, suite, methods=["stream", "nosuch"],
                                                    out=str(tmp_path / "out")))
    assert grid.main([path]) == 2
    err = capsys.readouterr().err
    assert "harness.grid: error: cell method=nosuch: unknown sparse method 'nosuch'" in err
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_each_cell_command(tmp_path, model_dir, suite, capsys):
    path = write_grid(tmp_path / "g.yaml", spec_for(model_dir, suite, out=str(tmp_path / "out")))
    assert grid.main([path, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["method=stream", "method=window"]
    assert all("python -m harness.run " in line for line in lines) and not (tmp_path / "out").exists()
    assert grid.main([path, "--ray-address", "auto"]) == 2
    assert "--ray-address and --ray-cpus need --executor ray" in capsys.readouterr().err


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory, model_dir, suite):
    """The two-cell grid run once with the local executor: (grid file, out directory)."""
    root = tmp_path_factory.mktemp("local-grid")
    path = write_grid(root / "g.yaml", spec_for(model_dir, suite))
    assert grid.main([path, "--out", str(root / "out")]) == 0
    return path, root / "out"


def test_local_cells_are_plain_runs_and_feed_the_leaderboard(local_grid, tmp_path):
    path, out = local_grid
    cells = grid.expand(grid.load_grid(path), out=out).cells
    for cell in cells:  # the same options through harness.run's own entry point
        reference = tmp_path / cell.name
        assert run_main([a for a in cell.argv if not a.startswith("--out=")] + ["--out", str(reference)]) == 0
        assert rows_of(out / cell.name) == rows_of(reference) and len(rows_of(reference)) == 3
        assert any(r["status"] == "attacked" and r["adv_ids"] for r in rows_of(reference))
        assert json.loads((out / cell.name / grid.MARKER).read_text())["argv"] == list(cell.argv)
    board = board_of(out / "leaderboard")
    assert sorted((e["method"], e["runs"][0]) for e in board["entries"]) == [
        ("stream", "method=stream"), ("window", "method=window")]


def test_rerun_skips_finished_cells_and_resumes_unfinished_ones(local_grid, tmp_path, monkeypatch, capsys):
    path, done = local_grid
    out = tmp_path / "out"
    shutil.copytree(done, out)
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/results.jsonl")}

    def no_run(*args, **kwargs):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(executors, "run_cell", no_run)
    assert grid.main([path, "--out", str(out)]) == 0
    assert "2 already finished, 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/results.jsonl")} == before
    monkeypatch.undo()
    # an interrupted cell: no marker and one of its three rows
    cut = out / "method=window"
    (cut / grid.MARKER).unlink()
    results = cut / "results.jsonl"
    results.write_text(results.read_text().splitlines(keepends=True)[0])
    assert grid.main([path, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 already finished, 1 to run" in err and "1 of 3 items already done" in err
    assert grid_rows(out) == grid_rows(done)
    untouched = out / "method=stream" / "results.jsonl"
    assert untouched.stat().st_mtime_ns == before[untouched]


def test_a_failed_cell_is_reported_and_does_not_stop_the_others(tmp_path, model_dir, suite, local_grid, capsys):
    missing = tmp_path / "no-such-model"
    path = write_grid(tmp_path / "g.yaml", spec_for(model_dir, suite, models=[str(missing), str(model_dir)],
                                                    methods=["stream"]))
    out = tmp_path / "out"
    assert grid.main([path, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if line.startswith("harness.grid: cell ")]
    assert len(failed) == 1 and "model=no-such-model-" in failed[0] and " failed: " in failed[0]
    good = [d for d in out.iterdir() if d.name.startswith(f"model={model_dir.name}")]
    assert len(good) == 1 and rows_of(good[0]) == rows_of(local_grid[1] / "method=stream")
    assert [e["runs"] for e in board_of(out / "leaderboard")["entries"]] == [[good[0].name]]
    assert "1 of 2 cells finished" in err


# ---- Ray --------------------------------------------------------------------------------

def test_ray_executor_gives_the_local_rows_and_leaderboard(ray_session, local_grid, tmp_path):
    path, local_out = local_grid
    out = tmp_path / "ray"
    assert grid.main([path, "--out", str(out), "--executor", "ray"]) == 0
    assert grid_rows(out) == grid_rows(local_out) and len(grid_rows(out)) == 2
    assert board_of(out / "leaderboard") == board_of(local_out / "leaderboard")
    assert ray_session.is_initialized()  # a session the executor did not start is left running


def test_ray_executor_reports_a_failed_cell_and_runs_the_others(ray_session, local_grid, tmp_path, model_dir,
                                                                 suite, capsys):
    spec = spec_for(model_dir, suite, models=[str(tmp_path / "no-such-model"), str(model_dir)], methods=["stream"])
    path = write_grid(tmp_path / "g.yaml", spec)
    assert grid.main([path, "--out", str(tmp_path / "out"), "--executor", "ray"]) == 1
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("harness.grid: cell ")]
    assert len(failed) == 1 and "model=no-such-model-" in failed[0]
    assert "no-such-model" in failed[0].split(" failed: ")[1]  # the error names the model
    good = [d for d in (tmp_path / "out").iterdir() if d.name.startswith(f"model={model_dir.name}")]
    assert len(good) == 1 and rows_of(good[0]) == rows_of(local_grid[1] / "method=stream")


def items(n):
    return [TaskItem(id=f"q{i}", question="?" * (i + 1), answer="yes" if i % 2 else "no") for i in range(n)]


def test_item_pool_yields_rows_in_item_order_from_workers_built_once(ray_session):
    import grid_fake_worker

    opts = {"scale": 3, "slow": 1.0, "slow_items": ["q0"]}
    with workers.RayItemPool(opts, 2, factory=grid_fake_worker.make_item_worker) as pool:
        rows = list(pool.imap(items(7)))
    local = grid_fake_worker.make_item_worker(opts)
    strip = ("worker", "finished")
    assert [{k: v for k, v in r.items() if k not in strip} for r in rows] == \
           [{k: v for k, v in local(i).items() if k not in strip} for i in items(7)]
    builds = {r["worker"] for r in rows}
    assert len(builds) == 2 and len({pid for pid, _ in builds}) == 2  # both actors, one build each
    assert min(r["finished"] for r in rows[1:]) < rows[0]["finished"]  # later items finished first


def test_item_pool_raises_the_error_of_a_failing_item(ray_session):
    import grid_fake_worker

    opts = {"scale": 1, "slow": 0.0, "slow_items": [], "fail_on": "q2"}
    with workers.RayItemPool(opts, 2, factory=grid_fake_worker.make_item_worker) as pool:
        seen = []
        with pytest.raises(ValueError, match="cannot score q2"):
            for row in pool.imap(items(4)):
                seen.append(row["item_id"])
    assert seen == ["q0", "q1"]


def test_item_pool_raises_a_worker_build_error_when_created(ray_session):
    import grid_fake_worker

    with pytest.raises(ValueError, match="cannot load model-x"):
        workers.RayItemPool({"fail_build": "model-x"}, 2, factory=grid_fake_worker.make_item_worker)


def test_run_with_ray_workers_writes_the_local_rows_in_item_order(ray_session, local_grid, model_dir, suite,
                                                                   tmp_path):
    from harness import run as harness_run

    out = tmp_path / "workers"
    argv = ["--model", str(model_dir), "--method", "stream", "--attack", "random", "--k-attack", "1",
            "--suite", str(suite), "--steps", "6", "--k-sweep", "1,2", "--block-size", "4", "--dense-layers", "1",
            "--context-tokens", "24", "--batch-size", "4", "--wandb", "disabled", "--out", str(out),
            "--workers", "2"]
    assert harness_run.main(argv) == 0
    assert rows_of(out) == rows_of(local_grid[1] / "method=stream") and len(rows_of(out)) == 3
    assert harness_run.main(argv[:-1] + ["two"]) == 2
    assert harness_run.main(argv[:-1] + ["0"]) == 2


def test_impossible_resources_are_refused():
    workers.check_resources({"CPU": 2.0}, 1, 0, count=2)
    with pytest.raises(UsageError, match="num_gpus=1, but the Ray cluster has 2 CPUs and 0 GPUs"):
        workers.check_resources({"CPU": 2.0}, 1, 1)
    with pytest.raises(UsageError, match="3 workers of num_cpus=1"):
        workers.check_resources({"CPU": 2.0}, 1, 0, count=3)


def test_without_ray_the_error_names_the_extra(monkeypatch, tmp_path, model_dir, suite, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(UsageError, match=r'pip install -e "\.\[ray\]"'):
        workers.RayItemPool({}, 2, factory=lambda cfg: None)
    path = write_grid(tmp_path / "g.yaml", spec_for(model_dir, suite, out=str(tmp_path / "out")))
    assert grid.main([path, "--executor", "ray"]) == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err
