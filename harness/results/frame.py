"""Run directories as one pandas DataFrame: a row per (item, k).

For analyses summary.json does not hold (group-bys across runs, depths, densities).
Rows come through `harness.results.read_rows`, the one reader, so they are reclassified
at each run's --full-margin and count as `harness.results.stats.summarize` counts them (a
summary.json written under an earlier release's rule may differ); the columns are in
docs/results-schema.md, "DataFrame (`harness.results.frame.load_frame`)". No torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .intervals import cluster_of
from .schema import FULL, ResultRow, read_rows

COLUMNS = ("run", "model", "method", "attack", "suite", "seed", "context_tokens", "item_id", "group", "answer",
           "depth", "absent", "status", "counted", "k", "density", "natural_class", "adversarial_class",
           "natural_flip", "flip", "strict", "breakdown", "paper_criterion", "p_correct_full", "p_wrong_full",
           "margin_full", "p_correct", "p_wrong", "success", "k_attack")
# Nullable dtypes: a skipped row has no adversarial prompt, so its flags and scores are NA, not False.
DTYPES = {**dict.fromkeys(("absent", "counted", "natural_flip", "flip", "strict", "breakdown", "paper_criterion",
                           "success"), "boolean"),
          **dict.fromkeys(("seed", "context_tokens", "k_attack"), "Int64"), "k": "int64",
          **dict.fromkeys(("depth", "density", "p_correct_full", "p_wrong_full", "margin_full", "p_correct",
                           "p_wrong"), "float64")}

PathLike = str | os.PathLike


def _is_run(path: Path) -> bool:
    return (path / "manifest.json").is_file() and (path / "results.jsonl").is_file()


def run_dirs(paths: PathLike | Iterable[PathLike]) -> list[tuple[str, Path]]:
    """(name, directory) of every run in `paths`: a run directory is named by itself, one
    found under a searched folder by its path there (grid cells share their own names)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[Path, str] = {}
    for path in map(Path, paths):
        if _is_run(path):
            found.setdefault(path.resolve(), path.resolve().name)
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such run directory or folder")
        runs = sorted(m.parent for m in path.rglob("manifest.json") if _is_run(m.parent))
        if not runs:
            raise FileNotFoundError(f"{path}: no run directory (manifest.json + results.jsonl) under it")
        for run in runs:
            found.setdefault(run.resolve(), run.relative_to(path).as_posix())
    return [(name, run) for run, name in found.items()]


def _records(name: str, config: dict, row: ResultRow) -> list[dict]:
    """One record per k of the row's natural map."""
    needle = row.needle or {}
    full = (row.natural or {}).get(FULL)
    common = {"run": name, "model": config.get("model"), "method": config.get("method"),
              "attack": config.get("attack"), "suite": config.get("suite"), "seed": config.get("seed"),
              "context_tokens": config.get("context_tokens"), "item_id": row.item_id, "group": cluster_of(row),
              "answer": row.answer, "depth": needle.get("depth"), "absent": bool(needle.get("absent")),
              "status": row.status, "counted": row.counted,
              "p_correct_full": full.p_correct if full else None, "p_wrong_full": full.p_wrong if full else None,
              "margin_full": full.margin if full else None, "success": row.success, "k_attack": row.k_attack}
    out = []
    for k in sorted(row.natural_flipped, key=int):
        natural = (row.natural_outcomes or {}).get(k) or {}
        adversarial = (row.outcomes or {}).get(k) or {}
        score = (row.scores or {}).get(k)
        out.append({**common, "k": int(k), "density": (row.density or {}).get(k),
                    "natural_class": natural.get("class"), "adversarial_class": adversarial.get("class"),
                    "natural_flip": row.natural_flipped[k], "flip": (row.flipped or {}).get(k),
                    "strict": adversarial.get("strict"), "breakdown": adversarial.get("breakdown"),
                    "paper_criterion": adversarial.get("paper_criterion"),
                    "p_correct": score.p_correct if score else None, "p_wrong": score.p_wrong if score else None})
    return out


def rows_frame(runs: Iterable[tuple[str, dict, Iterable[ResultRow]]]) -> pd.DataFrame:
    """The frame of rows already read, given as (run name, manifest config, rows) per run:
    callers that hold rows (the leaderboard, after deduplicating them) need not read files again."""
    records = [record for name, config, rows in runs for row in rows for record in _records(name, config, row)]
    return pd.DataFrame.from_records(records, columns=list(COLUMNS)).astype(DTYPES)


def load_frame(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """Every (item, k) of the run directories in `paths` (run directories, or folders
    searched recursively for them), one row each; columns in `COLUMNS` order."""
    return rows_frame((name, json.loads((run / "manifest.json").read_text()).get("config") or {},
                       read_rows(run / "results.jsonl").rows) for name, run in run_dirs(paths))
