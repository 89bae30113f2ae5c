"""A board file: the models, methods, densities and attacks of one leaderboard, as cells.

    out: runs/board-needle              # cells go to <out>/<model>__<method>__<attack>
    models: [qwen2.5-1.5b]
    suite: needle
    densities: [0.05, 0.1, 0.2]         # the board's comparison densities
    methods: [stream, oracle, {name: snapkv, compress: prompt}]
    attacks: [none, {name: random, density: 0.1}, {name: filler, density: 0.1, methods: [stream]}]
    options: {context_tokens: 256, limit: 100, steps: 16}   # any harness.run option
    transfer: true                      # re-score each attack's tokens under every method

A cell is one ordinary `harness.run` configuration (model x method x attack): it scores
every board density (`--density-sweep`), and an attacked cell searches at its attack's
density (the attack's `density`, default the board density nearest 0.1), whose k the
runner derives from the suite's first item. An attack's `methods` (labels of the board's
methods) attacks only those, so a board can spend its searches on a few sources while the
transfer matrix still re-scores their tokens under every method. Every cell is resolved by `harness.run`'s
own parser before anything loads, so a bad board stops at once and names the cell.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UsageError
from harness.results.board_rules import DEFAULT_DENSITIES
from harness.yaml_file import read_mapping
from tasks import SuiteError, check_suite

KEYS = {"out", "models", "suite", "densities", "methods", "attacks", "options", "transfer"}
REQUIRED = ("out", "models", "methods")
# Options the board sets per cell; a board's `options` may not set them.
CELL_OPTIONS = {"model", "method", "method_options", "attack", "density_sweep", "k_attack", "k_sweep", "out",
                "suite", "workers", "ray_address"}


@dataclass(frozen=True)
class Entry:
    """A method (with its settings) or an attack (with its options and target density)."""

    name: str
    options: tuple[tuple[str, object], ...] = ()
    density: float | None = None
    methods: tuple[str, ...] = ()  # an attack's sources (method labels); empty: every method

    @property
    def label(self) -> str:
        """The entry's directory label: its name, its density and options (a hash when long)."""
        parts = [self.name] + ([f"d{self.density:g}"] if self.density is not None else [])
        parts += [f"{k}{_flag_value(v)}" for k, v in self.options]
        label = re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(parts))
        if len(label) <= 48:
            return label
        digest = hashlib.sha1(json.dumps([self.options, self.density], default=str).encode()).hexdigest()[:8]
        return f"{self.name}-{digest}"


@dataclass(frozen=True)
class Cell:
    """One run directory of the board."""

    model: str
    method: Entry
    attack: Entry
    out: Path
    argv: tuple[str, ...] = field(default=())

    @property
    def attacked(self) -> bool:
        return self.attack.name != "none"


@dataclass(frozen=True)
class BoardSpec:
    path: str
    out: Path
    models: tuple[str, ...]
    suite: str
    densities: tuple[float, ...]
    methods: tuple[Entry, ...]
    attacks: tuple[Entry, ...]
    options: tuple[tuple[str, object], ...]
    transfer: bool

    def cells(self) -> list[Cell]:
        """Cells in run order: models, then attacks (natural first), then methods."""
        out = []
        for model in self.models:
            for attack in self.attacks:
                for method in self.methods:
                    if attack.methods and method.label not in attack.methods:
                        continue
                    name = f"{_model_label(model)}__{method.label}__{attack.label}"
                    cell = Cell(model, method, attack, self.out / name)
                    out.append(Cell(model, method, attack, cell.out, tuple(self.argv(cell, k_attack=None))))
        return out

    def argv(self, cell: Cell, k_attack: int | None) -> list[str]:
        """`python -m harness.run` arguments of `cell` (k_attack chosen by the runner)."""
        args = ["--model", cell.model, "--suite", self.suite, "--method", cell.method.name,
                "--attack", cell.attack.name, "--density-sweep", ",".join(map(str, self.densities)),
                "--out", str(cell.out)]
        for name, value in cell.method.options:
            args += ["--method-opt", f"{name}={_flag_value(value)}"]
        for name, value in self.options + cell.attack.options:
            args += [f"--{name.replace('_', '-')}", _flag_value(value)]
        if k_attack is not None:
            args += ["--k-attack", str(k_attack)]
        return args

    def attack_density(self, attack: Entry) -> float:
        """The density an attack searches at (natural cells: the same, for their k_attack)."""
        if attack.density is not None:
            return attack.density
        return min(self.densities, key=lambda d: (abs(d - 0.1), d))


def _model_label(model: str) -> str:
    """A preset or hub id as itself ("/" -> "_"); a local directory by its last component."""
    path = Path(model)
    return path.name if path.is_dir() else model.replace("/", "_")


def _flag_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _entry(path: str, what: str, value, takes_density: bool) -> Entry:
    if isinstance(value, str) and value:
        return Entry(value)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        raise UsageError(f"board file {path}: each of {what} is a name or a mapping with a name, got {value!r}")
    options = {str(k).replace("-", "_"): v for k, v in value.items() if k != "name"}
    density = options.pop("density", None) if takes_density else None
    methods = options.pop("methods", []) if takes_density else []
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, list) or not all(isinstance(m, str) and m for m in methods):
        raise UsageError(f"board file {path}: {value['name']}: methods must list method labels, got {methods!r}")
    if density is not None and (isinstance(density, bool) or not isinstance(density, (int, float))
                                or not 0 < density <= 1):
        raise UsageError(f"board file {path}: {value['name']}: density must be a number in (0, 1], got {density!r}")
    return Entry(value["name"], tuple(sorted(options.items())), None if density is None else float(density),
                 tuple(methods))


def _names(path: str, key: str, value) -> list:
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise UsageError(f"board file {path}: {key} must list at least one entry")
    return value


def load_board(path: str) -> BoardSpec:
    """The board file at `path`, checked (one-line UsageError naming what is wrong)."""
    data = read_mapping(path, "board file", "a mapping with out, models, methods, ...")
    unknown = sorted(set(map(str, data)) - KEYS)
    if unknown:
        from plugins import unknown_name_message

        raise UsageError(f"board file {path}: {unknown_name_message('key', unknown[0], sorted(KEYS))}")
    for key in REQUIRED:
        if key not in data:
            raise UsageError(f"board file {path}: missing {key!r}")
    models = _names(path, "models", data["models"])
    if not all(isinstance(m, str) and m for m in models):
        raise UsageError(f"board file {path}: models must be names, got {models!r}")
    densities = data.get("densities", list(DEFAULT_DENSITIES))
    if not isinstance(densities, list) or not densities or any(
            isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 < d <= 1 for d in densities):
        raise UsageError(f"board file {path}: densities must list numbers in (0, 1], got {densities!r}")
    options = data.get("options", {}) or {}
    if not isinstance(options, dict):
        raise UsageError(f"board file {path}: options must be a mapping of harness.run option: value")
    options = {str(k).replace("-", "_"): v for k, v in options.items()}
    clash = sorted(set(options) & CELL_OPTIONS)
    if clash:
        raise UsageError(f"board file {path}: options may not set {clash[0]!r}: the board sets it per cell")
    transfer = data.get("transfer", True)
    if not isinstance(transfer, bool):
        raise UsageError(f"board file {path}: transfer must be true or false, got {transfer!r}")
    methods = [_entry(path, "methods", m, False) for m in _names(path, "methods", data["methods"])]
    attacks = [_entry(path, "attacks", a, True) for a in _names(path, "attacks", data.get("attacks", ["none"]))]
    for kind, entries in (("method", methods), ("attack", attacks)):
        labels = [e.label for e in entries]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise UsageError(f"board file {path}: {kind} {twice[0]!r} is listed twice")
    labels = [m.label for m in methods]
    for attack in attacks:
        unknown = [m for m in attack.methods if m not in labels]
        if unknown:
            raise UsageError(f"board file {path}: attack {attack.name}: methods lists {unknown[0]!r}, which is not "
                             f"a method of this board ({', '.join(labels)})")
        if attack.density is not None and not any(abs(attack.density - d) < 1e-9 for d in densities):
            # The board ranks and transfers at its densities; a search at another one would
            # report a success no board row can show.
            raise UsageError(f"board file {path}: attack {attack.name}: density {attack.density:g} is not one of "
                             f"the board's densities ({', '.join(f'{d:g}' for d in sorted(densities))}); "
                             f"add it to densities or search at one of them")
    suite = str(data.get("suite", "needle"))
    try:
        check_suite(suite)  # now, not after the first model has loaded
    except SuiteError as exc:
        raise UsageError(f"board file {path}: {exc}") from None
    spec = BoardSpec(path=str(path), out=Path(str(data["out"])), models=tuple(models),
                     suite=suite, densities=tuple(sorted(float(d) for d in densities)),
                     methods=tuple(methods), attacks=tuple(sorted(attacks, key=lambda a: a.name != "none")),
                     options=tuple(sorted(options.items())), transfer=transfer)
    _check_cells(spec)
    return spec


def _check_cells(spec: BoardSpec) -> None:
    """Resolve every cell with harness.run's parser: the first bad one stops the board, named."""
    from harness.config import resolve

    for cell in spec.cells():
        try:
            resolve(list(cell.argv) + ["--k-attack", "1"])
        except UsageError as exc:
            raise UsageError(f"board file {spec.path}: cell {cell.out.name}: {exc}") from None
