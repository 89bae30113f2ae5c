"""Transfer matrices: does an attack found against one method flip another?

A board run writes `transfer.jsonl` into an attacked run's directory: one line per
(attacked item, target), the adversarial prompt found against the source method scored
under the target (full attention, or another sparse method). A cell is the share of
confident items (full attention right on the clean prompt) the prompt flips under the
target, with a cluster-bootstrap interval: items of one context are one cluster
(`harness.results.intervals.cluster_of` of the item's row), since a context that breaks
a method breaks it for all of its items.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.results.intervals import cluster_bootstrap, cluster_of

from .errors import LeaderboardError

TRANSFER_FILE = "transfer.jsonl"
OUTCOMES = ("kept", "strict", "breakdown", None)
FLIPS = ("strict", "breakdown")


def _method(side, where: str, name: str) -> str:
    if not isinstance(side, dict) or not isinstance(side.get("method"), str):
        raise LeaderboardError(f"{where}: {name} is not an object with a method name")
    settings = side.get("settings") or {}
    if not isinstance(settings, dict):
        raise LeaderboardError(f"{where}: {name} settings is not an object")
    extra = " ".join(f"{k}={v}" for k, v in sorted(settings.items()))
    return side["method"] + (f" ({extra})" if extra else "")


def read_transfer(path: Path) -> list[dict]:
    """The lines of one transfer.jsonl as {item_id, source, target, confident, outcome, cluster}
    (the writer's `cluster`, when it records one);
    a malformed line is a LeaderboardError naming the file and line."""
    lines = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path} line {number}"
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise LeaderboardError(f"{where} is not valid JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("item_id"), str):
            raise LeaderboardError(f"{where} has no item_id")
        if not isinstance(data.get("confident"), bool):
            raise LeaderboardError(f"{where}: confident must be true or false")
        if data.get("outcome") not in OUTCOMES:
            raise LeaderboardError(f"{where}: outcome must be kept, strict, breakdown or null, "
                                   f"got {data.get('outcome')!r}")
        lines.append({"item_id": data["item_id"], "source": _method(data.get("source"), where, "source"),
                      "target": _method(data.get("target"), where, "target"), "confident": data["confident"],
                      "outcome": data["outcome"], "cluster": data.get("cluster"),
                      "source_name": data["source"]["method"], "target_name": data["target"]["method"]})
    return lines


def short_labels(lines: list[dict], side: str) -> dict[str, str]:
    """{label: short label}: the method name alone where one setting of it is listed, the whole
    label (with its settings) where several are, so 19 targets fit a page's width."""
    names: dict[str, set] = {}
    for line in lines:
        names.setdefault(line[f"{side}_name"], set()).add(line[side])
    return {label: label if len(labels) > 1 else name for name, labels in names.items() for label in labels}


def matrix(lines: list[dict], clusters: dict[str, str]) -> dict:
    """{sources, targets, cells, short}: cells[source][target] = flips / confident items with its
    cluster interval (a line's own cluster, else `clusters` by item id, else the item alone);
    `short` maps every source and target label to its short label."""
    sources = sorted({line["source"] for line in lines})
    targets = sorted({line["target"] for line in lines}, key=lambda t: (t != "full", t))
    cells: dict[str, dict] = {}
    for source in sources:
        for target in targets:
            counted = [line for line in lines if line["source"] == source and line["target"] == target
                       and line["confident"]]
            if not counted:
                continue
            flags = [line["outcome"] in FLIPS for line in counted]
            interval = cluster_bootstrap(flags, [line["cluster"] or clusters.get(line["item_id"], line["item_id"])
                                                 for line in counted])
            cells.setdefault(source, {})[target] = {"flips": sum(flags), **interval.to_dict()}
    return {"sources": sources, "targets": targets, "cells": cells,
            "short": {**short_labels(lines, "source"), **short_labels(lines, "target")}}


def board_transfer(runs: list[tuple[str, str | None]], rows_by_item: dict[str, object]) -> dict | None:
    """The matrix of every transfer.jsonl in the board's attacked runs (None without one).
    `runs` are (run directory, its null attack or None): a null's insertions are a source of
    their own ("oracle + filler (null)"), never pooled with the attack's tokens."""
    lines, files = [], []
    for name, null in runs:
        path = Path(name) / TRANSFER_FILE
        if path.is_file():
            read = read_transfer(path)
            if null:
                for line in read:
                    line["source"] += f" + {null} (null)"
                    line["source_name"] += f" + {null} (null)"
            lines += read
            files.append(str(path))
    if not lines:
        return None
    clusters = {item_id: cluster_of(row) for item_id, row in rows_by_item.items()}
    return {"files": files, **matrix(lines, clusters)}
