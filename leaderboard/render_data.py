"""leaderboard.json and leaderboard.csv: the same numbers as the tables, unrounded, for other tools.

The JSON keeps the structure (per-k lists, runs, config); the CSV is one flat row
per entry with a column group per k, so a spreadsheet or pandas reads it as is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

SCALARS = ["rank", "label", "model", "method", "attack", "block_q", "block_k", "dense_layers", "context_tokens",
           "ref_k", "flip_rate", "ci_low", "ci_high", "n_flipped", "n", "natural_flip_rate", "natural_ci_low",
           "natural_ci_high", "natural_n_flipped", "attack_success_rate", "n_success", "n_verified",
           "median_steps_to_flip", "n_items", "n_skipped", "k_attack", "density"]
# Outcome classes (stats.proportion entries) flattened as <name>_rate, <name>_ci_low, ...
CLASSES = ["strict", "breakdown", "natural_strict", "natural_breakdown"]
CLASS_FIELDS = ["rate", "ci_low", "ci_high", "count", "n"]
PER_K = ["flip_rate", "ci_low", "ci_high", "n_flipped", "n"]


def all_ks(records: list[dict]) -> list[int]:
    return sorted({e["k"] for r in records for e in r["k_sweep"]})


def csv_header(records: list[dict]) -> list[str]:
    header = SCALARS + [f"{c}_{f}" for c in CLASSES for f in CLASS_FIELDS]
    header += ["paired_vs", "paired_flip_diff", "paired_flip_p", "paired_strict_diff", "paired_strict_p"]
    header += ["runs", "seeds"]
    for k in all_ks(records):
        header += [f"{name}_k{k}" for name in PER_K] + [f"natural_flip_rate_k{k}"]
    return header


def csv_row(record: dict, ks: list[int]) -> list:
    row = [record[key] for key in SCALARS]
    row += [(record[c] or {}).get(f) for c in CLASSES for f in CLASS_FIELDS]
    paired = record["paired"]
    row += [None] * 5 if paired is None else [paired["flip"]["vs"], paired["flip"]["diff"], paired["flip"]["p"],
                                              paired["strict"]["diff"], paired["strict"]["p"]]
    row += [";".join(record["runs"]), ";".join(map(str, record["seeds"]))]
    sweep = {e["k"]: e for e in record["k_sweep"]}
    natural = {e["k"]: e for e in record["natural_k_sweep"]}
    for k in ks:
        e = sweep.get(k)
        row += [e[name] if e else None for name in PER_K]
        row.append(natural[k]["flip_rate"] if k in natural else None)
    return ["" if v is None else v for v in row]


def write_csv(records: list[dict], path: Path) -> None:
    ks = all_ks(records)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(csv_header(records))
        for r in records:
            writer.writerow(csv_row(r, ks))


def write_json(board: dict, path: Path) -> None:
    path.write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
