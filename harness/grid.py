"""`python -m harness.grid grid.yaml`: a cross product of runs, then one leaderboard.

    out: runs/grid-example            # every cell is a run directory below it
    grid:                             # crossed: one cell per combination
      model: [smollm2-135m, qwen2.5-0.5b]
      method: [stream, window, random]
    fixed:                            # the same in every cell (any harness.run option)
      attack: random
      suite: facts
      limit: 4
    resources: {num_cpus: 1, num_gpus: 0}   # per cell, for --executor ray

Each cell is an ordinary `harness.run` run directory (named from its grid values), so
it resumes item by item; a cell that finished is marked and skipped on a rerun. Every
cell's options are validated before anything runs (a bad cell names itself). A cell
that fails is reported with its error at the end and does not stop the others (exit
status 1). Then the leaderboard of all cells is written to `<out>/leaderboard`.

Executors (harness/executors.py): `local` runs cells one after another in this
process; `ray` submits them as Ray tasks with the declared resources, on the cluster
at `--ray-address` or on a local one started for the grid.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import UsageError

SECTIONS = {"out", "grid", "fixed", "resources"}
RESOURCE_KEYS = {"num_cpus", "num_gpus"}


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its name, its run directory and its `harness.run` argv."""

    name: str
    out: Path
    argv: tuple[str, ...]


def _flag(key: str, value) -> list[str]:
    flag = "--" + str(key).replace("_", "-")
    if isinstance(value, bool):
        return [flag, "true" if value else "false"]
    if isinstance(value, list):
        return [flag, ",".join(map(str, value))]
    return [flag, str(value)]


def _slug(value) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return re.sub(r"[^A-Za-z0-9.,+-]+", "_", text).strip("_") or "_"


def load_grid(path: str | Path) -> dict:
    """The grid file, checked: known sections, non-empty lists on the grid axes."""
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read grid file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"grid file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"grid file {path} must be a mapping with 'grid' (and optionally out, fixed, resources)")
    unknown = set(spec) - SECTIONS
    if unknown:
        raise UsageError(f"grid file {path}: unknown section(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(sorted(SECTIONS))}")
    axes = spec.get("grid")
    if not isinstance(axes, dict) or not axes:
        raise UsageError(f"grid file {path}: 'grid' must map option names to lists of values")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"grid file {path}: grid axis {key!r} must be a non-empty list, got {values!r}")
    fixed = spec.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise UsageError(f"grid file {path}: 'fixed' must map option names to values")
    both = set(axes) & set(fixed)
    if both:
        raise UsageError(f"grid file {path}: {', '.join(sorted(both))} is both a grid axis and fixed")
    resources = spec.get("resources") or {}
    if not isinstance(resources, dict) or set(resources) - RESOURCE_KEYS:
        raise UsageError(f"grid file {path}: 'resources' may only set {', '.join(sorted(RESOURCE_KEYS))}")
    return {"out": spec.get("out"), "grid": axes, "fixed": fixed, "resources": resources}


def expand(spec: dict, out: Path) -> list[Cell]:
    """Cells of the cross product, in the order of the grid axes (the last varies fastest)."""
    keys = list(spec["grid"])
    cells = []
    for values in itertools.product(*(spec["grid"][k] for k in keys)):
        options = {**spec["fixed"], **dict(zip(keys, values))}
        name = "__".join(f"{k}={_slug(v)}" for k, v in zip(keys, values))
        cell_out = out / name
        argv = [a for key, value in options.items() for a in _flag(key, value)]
        argv += ["--out", str(cell_out)]
        cells.append(Cell(name=name, out=cell_out, argv=tuple(argv)))
    return cells


def validate(cells: list[Cell]) -> None:
    """Resolve every cell's options before running any; the first bad cell names itself."""
    from .options import resolve

    for cell in cells:
        try:
            resolve(list(cell.argv))
        except UsageError as exc:
            raise UsageError(f"grid cell {cell.name}: {exc}") from None


DONE_MARKER = ".grid-done"


def is_done(cell: Cell) -> bool:
    """A cell finished by an earlier grid run with the same options."""
    marker = cell.out / DONE_MARKER
    return marker.exists() and json.loads(marker.read_text()).get("argv") == list(cell.argv)


def mark_done(cell: Cell) -> None:
    (cell.out / DONE_MARKER).write_text(json.dumps({"argv": list(cell.argv)}) + "\n")


def run_cell(argv: tuple[str, ...]) -> dict:
    """Run one cell in this process (what every executor calls); returns its summary."""
    from .run import resolve, run

    return run(resolve(list(argv)))


def build_leaderboard(cells: list[Cell], out: Path) -> int:
    from leaderboard.cli import main as leaderboard_main

    dirs = [str(c.out) for c in cells if (c.out / "results.jsonl").exists()]
    if not dirs:
        print("harness.grid: no cell wrote results; no leaderboard", file=sys.stderr)
        return 1
    return leaderboard_main(["build", *dirs, "--out", str(out / "leaderboard"), "--title", f"Grid {out.name}"])


def main(argv=None) -> int:
    from .executors import EXECUTORS, make_executor

    p = argparse.ArgumentParser(prog="python -m harness.grid", description=__doc__.splitlines()[0])
    p.add_argument("grid", help="grid YAML file")
    p.add_argument("--executor", choices=sorted(EXECUTORS), default="local")
    p.add_argument("--ray-address", dest="ray_address", default=None,
                   help="join this Ray cluster (e.g. ray://head:10001 or auto); default: start a local one")
    p.add_argument("--out", type=Path, default=None, help="overrides the grid file's out")
    args = p.parse_args(argv)
    try:
        spec = load_grid(args.grid)
        out = args.out or Path(spec["out"] or f"runs/grid-{Path(args.grid).stem}")
        cells = expand(spec, out)
        validate(cells)
        executor = make_executor(args.executor, spec["resources"], args.ray_address)
    except UsageError as exc:
        print(f"harness.grid: error: {exc}", file=sys.stderr)
        return 2
    todo = [c for c in cells if not is_done(c)]
    print(f"harness.grid: {len(cells)} cells, {len(cells) - len(todo)} already done, executor {args.executor}",
          file=sys.stderr)
    failures = executor.run(todo)
    for cell in todo:
        if cell.name not in failures:
            mark_done(cell)
    for name, error in failures.items():
        print(f"harness.grid: cell {name} failed: {error}", file=sys.stderr)
    status = build_leaderboard(cells, out)
    return 1 if failures or status else 0


if __name__ == "__main__":
    sys.exit(main())
