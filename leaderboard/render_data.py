"""leaderboard.json and leaderboard.csv: the same numbers as the tables, unrounded, for other tools.

The JSON keeps the structure (boards, their tables, entry records); the CSV is one flat
row per (board, density, entry), so a spreadsheet or pandas reads it as is.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

CELL = ["rank", "band", "model", "method", "settings", "role", "density", "k_median", "n", "flips", "flip_rate",
        "low", "high", "interval", "clusters", "strict", "breakdown", "natural_flips", "natural_rate", "natural_low",
        "natural_high"]
PAIRED = ["vs", "diff", "low", "high", "b10", "b01", "p", "p_holm"]
HEADER = ["suite", "attack", "board_density", "comparable"] + CELL + [f"paired_{name}" for name in PAIRED] + ["slug"]


def rows(site: dict):
    for board in site["boards"]:
        for table in board["tables"]:
            for cell in table["ranked"] + table["references"] + table["not_comparable"]:
                paired = cell["paired"] or {}
                yield ([board["suite"], board["attack"], table["density"], cell["comparable"]]
                       + [cell.get(key) for key in CELL] + [paired.get(key) for key in PAIRED] + [cell["slug"]])


def write_csv(site: dict, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for row in rows(site):
            writer.writerow(["" if v is None else v for v in row])


def write_json(site: dict, path: Path) -> None:
    path.write_text(json.dumps(site, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
