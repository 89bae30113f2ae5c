"""`python -m harness.grid GRID.yaml`: a cross product of `harness.run` configurations, then their leaderboard.

The grid file (docs/grid.md)::

    out: runs/grid-example        # cells go to <out>/<name>, leaderboards to <out>/leaderboard
    models: [smollm2-135m, qwen2.5-0.5b]
    methods: [stream, window, random]
    attacks: [random]
    k_attack: 4                   # a value is fixed; a list is crossed
    suites: [facts]
    limit: 4                      # any harness.run option, fixed or crossed
    num_cpus: 1                   # per cell, for --executor ray
    num_gpus: 0

Cells are the cross product of every list, in the order models, methods, attacks,
k_attack, suites, then the other lists in file order (the last varies fastest). A
cell is an ordinary run directory named from its varying values
(`model=smollm2-135m__method=stream`), so it resumes item by item. Every cell is
resolved by `harness.run.resolve` before any runs: a bad cell stops the grid at once
and names itself. A failed cell is reported at the end (exit status 1) and does not
stop the others; a finished cell is marked (`grid-cell.json`, its options) and skipped
when the grid is run again with the same options.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import itertools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from harness.cli import command
from harness.errors import UsageError
from harness.yaml_file import read_mapping

# Plural axis names (what the grid sweeps) and the harness.run option each one sets.
AXES = {"models": "model", "methods": "method", "attacks": "attack", "k_attack": "k_attack", "suites": "suite"}
GRID_KEYS = {"out", "num_cpus", "num_gpus"}
MARKER = "grid-cell.json"
# Cells that differ only in these share one leaderboard (model x method x attack entries,
# seeds pooled); any other crossed option gets a leaderboard per value combination.
BOARD_AXES = ("model", "method", "attack", "seed")


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its name, its varying values, its run directory and its argv."""

    name: str
    values: tuple[tuple[str, object], ...]
    out: Path
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Grid:
    cells: list[Cell]
    out: Path
    num_cpus: float
    num_gpus: float


@dataclass(frozen=True)
class _Option:
    flag: str
    sequence: bool  # takes a comma-separated list (k_sweep, density_sweep, depth)


def _options() -> dict[str, _Option]:
    """harness.run's options by name, from its own parser (plugins' attack flags included)."""
    from harness.config import build_parser

    found = {}
    for action in build_parser()._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest in ("help", "out"):
            continue
        sequence = False
        if callable(action.type):
            try:
                sequence = isinstance(action.type("1"), list)
            except (ValueError, TypeError, argparse.ArgumentTypeError):
                sequence = False
        found[action.dest] = _Option(longs[0], sequence)
    return found


def load_grid(path: str | Path) -> dict:
    shape = "a mapping of axis or option: value(s)"
    spec = read_mapping(path, "grid file", shape)
    if not spec:
        raise UsageError(f"grid file {path} must be {shape}")
    return spec


def _check_scalar(where: str, value) -> None:
    if value is None:
        raise UsageError(f"{where}: null is not a value; leave the key out to use harness.run's default")
    if not isinstance(value, (str, int, float, bool)):
        raise UsageError(f"{where}: expected a value or a list of values, got {value!r}")


def _values(where: str, value, sequence: bool) -> tuple[list, bool]:
    """(the values, crossed?) of one key: a list is crossed, anything else fixed. For options
    that take a list themselves (k_sweep), a list of lists is crossed and a flat list fixed."""
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{where}: empty list; give at least one value")
        if sequence and not all(isinstance(v, list) for v in value):
            if any(isinstance(v, list) for v in value):
                raise UsageError(f"{where}: mix of values and lists; use a list of lists to cross sweeps")
            value = [value]
            crossed = False
        else:
            crossed = True
        for v in value:
            for x in (v if sequence and isinstance(v, list) else [v]):
                _check_scalar(where, x)
            if sequence and isinstance(v, list) and not v:
                raise UsageError(f"{where}: empty list; give at least one value")
        seen = [json.dumps(v) for v in value]
        twice = sorted({s for s in seen if seen.count(s) > 1})
        if twice:
            raise UsageError(f"{where}: {', '.join(twice)} listed twice")
        return value, crossed
    _check_scalar(where, value)
    return [value], False


def _arg(option: _Option, value) -> list[str]:
    """`--flag=value` (the `=` form, so values starting with '-' stay values)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = ",".join(map(str, value))
    else:
        text = str(value)
    return [f"{option.flag}={text}"]


def _slug(value) -> str:
    """A directory-name-safe form of a value: itself when it is already safe and short, else a
    readable part (a path's last component) plus a hash of the whole value, so names never collide."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = "-".join(map(str, value)) if isinstance(value, list) else str(value)
    if re.fullmatch(r"[A-Za-z0-9._+-]{1,48}", text) and text not in (".", ".."):
        return text
    readable = re.sub(r"[^A-Za-z0-9._+-]+", "_", text.rstrip("/").rsplit("/", 1)[-1]).strip("._")[:32]
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest


def expand(spec: dict, source: str = "grid file", out: str | Path | None = None) -> Grid:
    """The cells of a grid spec (see the module docstring); raises UsageError naming the key."""
    spec = dict(spec)
    normal = {}
    for key in spec:
        name = str(key).replace("-", "_")
        if name in normal:
            raise UsageError(f"{source}: {normal[name]!r} and {key!r} are the same key")
        normal[name] = key
    spec = {name: spec[key] for name, key in normal.items()}
    for plural, option in AXES.items():
        if plural != option and plural in spec and option in spec:
            raise UsageError(f"{source}: give either {plural!r} or {option!r}, not both")
    out = out if out is not None else spec.get("out")
    if out is None:
        raise UsageError(f"{source}: no output directory; set 'out:' or pass --out")
    if any(c in str(out) for c in "*?["):
        raise UsageError(f"{source}: out {str(out)!r} contains glob characters (*?[), which the leaderboard "
                         "would expand")
    resources = {}
    for key in ("num_cpus", "num_gpus"):
        value = spec.get(key, 1 if key == "num_cpus" else 0)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not (value > 0 if key == "num_cpus" else value >= 0):
            raise UsageError(f"{source}: {key} must be a number {'> 0' if key == 'num_cpus' else '>= 0'}, "
                             f"got {value!r}")
        resources[key] = value
    plugins = spec.get("plugin", [])
    plugins = plugins if isinstance(plugins, list) else [plugins]
    for p in plugins:
        _check_scalar(f"{source}: plugin", p)
    from harness.config import load_plugins

    load_plugins([f"--plugin={p}" for p in plugins])  # their attacks' flags become known options
    options = _options()
    order = [k for k in AXES if k in spec] + [k for k in spec if k not in AXES and k not in GRID_KEYS]
    fixed: list[tuple[str, object]] = []
    axes: list[tuple[str, list]] = []
    for key in order:
        option = AXES.get(key, key)
        if option not in options:
            known = sorted(set(AXES) | GRID_KEYS | set(options))
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{source}: unknown key {key!r}{hint}; keys are the axes {', '.join(AXES)}, "
                             f"{', '.join(sorted(GRID_KEYS))} and any harness.run option")
        if option == "plugin":  # every cell loads every plugin
            fixed.extend((option, p) for p in plugins)
            continue
        values, crossed = _values(f"{source}: {key}", spec[key], options[option].sequence)
        if crossed:
            axes.append((option, values))
        else:
            fixed.append((option, values[0]))
    root = Path(out).absolute()
    varying = {option for option, values in axes if len(values) > 1}
    cells, names = [], {}
    for combo in itertools.product(*(values for _, values in axes)):
        chosen = tuple((option, value) for (option, _), value in zip(axes, combo))
        named = [(o, v) for o, v in chosen if o in varying]
        name = "__".join(f"{o}={_slug(v)}" for o, v in named) or "run"
        if name in names:
            raise UsageError(f"{source}: cells {names[name]} and {dict(named)} would share the run directory "
                             f"{name}; make the values differ")
        names[name] = dict(named)
        argv = [a for option, value in fixed + list(chosen) for a in _arg(options[option], value)]
        argv.append(f"--out={root / name}")
        cells.append(Cell(name=name, values=tuple(named), out=root / name, argv=tuple(argv)))
    return Grid(cells=cells, out=root, **resources)


def resolve_cells(grid: Grid) -> dict[str, dict]:
    """Every cell's validated options, before anything runs; a bad cell stops the grid, named."""
    from harness import run as runner

    resolved, bad = {}, []
    for cell in grid.cells:
        try:
            resolved[cell.name] = runner.resolve(list(cell.argv))
        except UsageError as exc:
            bad.append((cell.name, str(exc)))
    if bad:
        more = f" (and {len(bad) - 1} more bad cell{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise UsageError(f"cell {bad[0][0]}: {bad[0][1]}{more}")
    return resolved


def _result_options(cfg) -> dict:
    """The options that decide a cell's rows (not its directory or W&B mode), as JSON values."""
    return json.loads(json.dumps(cfg.result_config(), default=str))


def is_finished(cell: Cell, cfg) -> bool:
    """A cell an earlier grid run finished with these very options."""
    try:
        marker = json.loads((cell.out / MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return marker.get("options") == _result_options(cfg) and (cell.out / "results.jsonl").exists()


def mark_finished(cell: Cell, cfg) -> None:
    record = {"argv": list(cell.argv), "options": _result_options(cfg)}
    (cell.out / MARKER).write_text(json.dumps(record, indent=2) + "\n")


def board_groups(grid: Grid, cells: list[Cell]) -> dict[Path, list[Cell]]:
    """Leaderboard directory -> its cells: one board unless options outside BOARD_AXES vary."""
    groups: dict[Path, list[Cell]] = {}
    for cell in cells:
        split = [(o, v) for o, v in cell.values if o not in BOARD_AXES]
        sub = "__".join(f"{o}={_slug(v)}" for o, v in split)
        groups.setdefault(grid.out / "leaderboard" / sub if sub else grid.out / "leaderboard", []).append(cell)
    return groups


def build_leaderboards(grid: Grid, cells: list[Cell]) -> list[str]:
    """Build each leaderboard with `python -m leaderboard build` (the harness does not import the
    leaderboard: imports flow the other way); returns one line per failed build."""
    failures = []
    for board, members in board_groups(grid, cells).items():
        cmd = [sys.executable, "-m", "leaderboard", "build", *(str(c.out) for c in members), "--out", str(board)]
        done = subprocess.run(cmd, check=False)
        if done.returncode != 0:
            failures.append(f"leaderboard {board} failed (exit status {done.returncode}, see above)")
    return failures


def make_executor(name: str, grid: Grid, address: str | None = None, cluster_cpus: int | None = None):
    from .executors import LocalExecutor, RayExecutor

    if name == "local":
        return LocalExecutor()
    return RayExecutor(address=address, num_cpus=grid.num_cpus, num_gpus=grid.num_gpus, cluster_cpus=cluster_cpus)


def run_grid(grid: Grid, executor) -> tuple[list[Cell], list[str]]:
    """Run the cells not finished yet; returns (finished cells, one line per failure)."""
    resolved = resolve_cells(grid)
    finished = [c for c in grid.cells if is_finished(c, resolved[c.name])]
    todo = [c for c in grid.cells if c not in finished]
    by_name = {c.name: c for c in todo}
    print(f"harness.grid: {len(grid.cells)} cells, {len(finished)} already finished, {len(todo)} to run",
          file=sys.stderr)
    failures = []
    if not todo:
        return finished, failures
    with tqdm(total=len(grid.cells), initial=len(finished), desc="cells", unit="cell") as bar, executor:
        for outcome in executor.map(todo):
            cell = by_name[outcome.name]
            if outcome.error is None:
                mark_finished(cell, resolved[cell.name])
                finished.append(cell)
            else:
                failures.append(f"cell {cell.name} failed: {outcome.error}")
                bar.set_postfix(failed=len(failures))
            bar.update(1)
    finished.sort(key=grid.cells.index)
    return finished, failures


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.grid",
                                description="Run the cross product of a grid file's harness.run options, "
                                "then build the leaderboard of its cells.")
    p.add_argument("grid", help="grid YAML file (docs/grid.md)")
    p.add_argument("--out", default=None, help="grid directory (overrides the file's out:)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: cells one after another in this process (default); ray: cells as Ray tasks")
    p.add_argument("--ray-address", dest="ray_address", default=None,
                   help="join this Ray cluster (e.g. auto or ray://head:10001); default: start a local one")
    p.add_argument("--ray-cpus", dest="ray_cpus", type=int, default=None,
                   help="CPUs of the local Ray cluster (default: all cores)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="validate every cell and print its harness.run command, run nothing")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        if args.executor == "local" and (args.ray_address or args.ray_cpus):
            raise UsageError("--ray-address and --ray-cpus need --executor ray")
        grid = expand(load_grid(args.grid), source=f"grid file {args.grid}", out=args.out)
        if args.dry_run:
            resolve_cells(grid)
            for cell in grid.cells:
                print(f"{cell.name}: python -m harness.run {shlex.join(cell.argv)}")
            return 0
        executor = make_executor(args.executor, grid, args.ray_address, args.ray_cpus)
        finished, failures = run_grid(grid, executor)
        if finished:
            failures += build_leaderboards(grid, finished)
        print(f"harness.grid: {len(finished)} of {len(grid.cells)} cells finished; leaderboard: "
              f"{grid.out / 'leaderboard'}" if finished else "harness.grid: no cell finished; no leaderboard",
              file=sys.stderr)
        for line in failures:
            print(f"harness.grid: {line}", file=sys.stderr)
        return 1 if failures else 0

    return command("harness.grid", body,
                   interrupted="interrupted: finished cells and items are saved; rerun the same grid to resume")


if __name__ == "__main__":
    sys.exit(main())
