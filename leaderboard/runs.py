"""Finding and reading run directories, and refusing the ones that cannot be trusted.

A run directory is written by `python -m harness.run` (docs/results-schema.md):
manifest.json, results.jsonl, summary.json. Runs may be read while still going
or after being killed, so a run without a manifest, with no rows or with a broken
row is skipped with a reason, and a torn last line (killed mid-write) is dropped
with a warning: `harness.results.read_rows`, the reader the harness uses too. summary.json is not read:
the leaderboard recomputes every number from the rows so that runs can merge.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.results import ResultRow, RowError, read_rows

RUN_FILES = ("manifest.json", "results.jsonl", "summary.json")
# The leaderboard entry of a run (docs/results-schema.md).
ENTRY_KEYS = ("model", "method", "attack", "block_q", "block_k", "dense_layers", "context_tokens")
REQUIRED_CONFIG = ENTRY_KEYS + ("k_attack", "k_sweep")


class SkipRun(Exception):
    """This run cannot be used; the message says why."""


@dataclass
class Run:
    """One run as the aggregation needs it.

    Directory runs carry their rows (counts are recomputed from them); W&B runs
    carry only the summary counts the harness logged.
    """

    name: str  # how messages name it: the directory as found, or wandb:entity/project/id
    config: dict
    rows: list[ResultRow] | None = None
    summary: dict | None = None


@dataclass
class Loaded:
    runs: list[Run] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run, reason)
    warnings: list[str] = field(default_factory=list)


def _is_run_dir(path: Path) -> bool:
    return any((path / f).exists() for f in RUN_FILES)


def _walk_runs(root: Path) -> list[Path]:
    """Run directories at or under root; a run's own subfolders (e.g. wandb/) are not searched."""
    if _is_run_dir(root):
        return [root]
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found.extend(_walk_runs(child))
    return found


def find_run_dirs(args: list[str], warnings: list[str]) -> list[Path]:
    """Expand run directories, parent folders of runs and glob patterns, in order, without duplicates."""
    dirs: list[Path] = []
    for arg in args:
        if any(c in arg for c in "*?["):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                warnings.append(f"{arg}: no file or directory matches this pattern")
            candidates = [Path(m) for m in matches]
        else:
            candidates = [Path(arg)]
        for path in candidates:
            if path.is_file() and path.name in RUN_FILES:
                path = path.parent
            if not path.exists():
                warnings.append(f"{path}: no such file or directory")
            elif not path.is_dir():
                warnings.append(f"{path}: not a run directory (expected a folder holding {', '.join(RUN_FILES)})")
            else:
                try:
                    inside = _walk_runs(path)
                except OSError as exc:
                    warnings.append(f"{path}: cannot list ({exc.strerror or exc})")
                    continue
                if not inside:
                    warnings.append(f"{path}: holds no run directory")
                dirs.extend(inside)
    unique, seen = [], set()
    for d in dirs:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def check_config(config, where: str) -> dict:
    if not isinstance(config, dict):
        raise SkipRun(f"{where} has no config object")
    missing = [k for k in REQUIRED_CONFIG if k not in config]
    if missing:
        raise SkipRun(f"{where} config lacks {', '.join(missing)}")
    ks = config["k_sweep"]
    if not isinstance(ks, list) or not ks or not all(isinstance(k, int) for k in ks):
        raise SkipRun(f"{where} config k_sweep is not a list of integers: {ks!r}")
    if not isinstance(config["k_attack"], int):
        raise SkipRun(f"{where} config k_attack is not an integer: {config['k_attack']!r}")
    return config


def load_rows(path: Path, ks: list[int], warnings: list[str], name: str) -> list[ResultRow]:
    """Complete rows of results.jsonl (`harness.results.read_rows`: a torn last line is dropped,
    here with a warning)."""
    try:
        read = read_rows(path, ks)
    except FileNotFoundError:
        raise SkipRun("no results.jsonl") from None
    except RowError as exc:
        raise SkipRun(str(exc)) from None
    except OSError as exc:
        raise SkipRun(f"results.jsonl unreadable ({exc})") from None
    if read.torn:
        warnings.append(f"{name}: {read.torn}")
    if not read.rows:
        raise SkipRun("results.jsonl has no complete rows yet")
    return read.rows


def read_run(path: Path, warnings: list[str]) -> Run:
    """One run directory, or SkipRun with the reason it cannot be used."""
    name = str(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise SkipRun("no manifest.json (half-written run, or not written by harness.run)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SkipRun(f"manifest.json unreadable ({exc})") from None
    if not isinstance(manifest, dict):
        raise SkipRun("manifest.json is not a JSON object")
    config = check_config(manifest.get("config"), "manifest.json")
    rows = load_rows(path / "results.jsonl", sorted(set(config["k_sweep"])), warnings, name)
    return Run(name=name, config=config, rows=rows)


def load_runs(args: list[str]) -> Loaded:
    """Every usable run named by args; unusable ones are listed in `skipped` with their reason."""
    loaded = Loaded()
    for path in find_run_dirs(args, loaded.warnings):
        try:
            loaded.runs.append(read_run(path, loaded.warnings))
        except SkipRun as exc:
            loaded.skipped.append((str(path), str(exc)))
    return loaded
