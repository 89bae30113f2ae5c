"""Attack transfer: the adversarial tokens found against one method, re-scored under every
method of the board at the same density and under full attention.

`transfer.jsonl` in an attacked cell's directory holds one record per (item, target):

    {"item_id", "cluster", "source": {"method", "settings", "density"},
     "target": {"method", "settings", "density"}, "confident": bool, "outcome": "kept" |
     "strict" | "breakdown" | null, "scores": {"full": Score, "sparse": Score} | null}

For a target method, `outcome` classifies its score on the adversarial prompt against full
attention's on the same prompt (the rule of the source cell's own rows). The target
"full" asks whether the tokens disturb full attention itself: its outcome classifies full
attention on the adversarial prompt against the clean prompt. Items the attack never ran
on (full attention wrong on the clean prompt) get records with `confident` false, so a
resumed pass knows they are done. Append-only and fsynced, like results.jsonl.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from harness.results.intervals import cluster_of
from tasks.outcomes import FULL, classify

FILENAME = "transfer.jsonl"


class TransferStore:
    """The records of one attacked cell; an item counts as done only when all its
    `per_item` records (one per target) are on disk: a pass killed mid-item, or a torn last
    line, leaves that item's records out, and they are written again on resume."""

    def __init__(self, run_dir: str | Path, per_item: int):
        self.path = Path(run_dir) / FILENAME
        self._items: set = set()
        if not self.path.exists():
            return
        records, torn = [], False
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                torn = True
                break
        counts = Counter(r["item_id"] for r in records)
        complete = [r for r in records if counts[r["item_id"]] == per_item]
        self._items = {r["item_id"] for r in complete}
        if torn or len(complete) < len(records):
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in complete), encoding="utf-8")
            os.replace(tmp, self.path)

    def has(self, item_id: str) -> bool:
        return item_id in self._items

    def append(self, records: list[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._items.update(r["item_id"] for r in records)


def _method(sparse, density: float) -> dict:
    from sparse import settings_of
    from sparse.settings import settings_dict

    return {"method": sparse.method, "settings": settings_dict(settings_of(sparse)), "density": density}


def transfer_records(target, prepared, row, cfg, density: float, targets: list) -> list[dict]:
    """The records of one attacked row: one per target method (label, SparseConfig) and one
    for full attention. `target.sparse` is swapped per method and restored."""
    from harness.run import densities_to_ks

    source = _method(target.sparse, density)
    base = {"item_id": row.item_id, "cluster": cluster_of(row), "source": source}
    full_target = {"method": FULL, "settings": {}, "density": 1.0}
    if not row.adv_ids or row.scores is None:
        return [{**base, "target": _method(sparse, density), "confident": False, "outcome": None, "scores": None}
                for _, sparse in targets] + [{**base, "target": full_target, "confident": False, "outcome": None,
                                                "scores": None}]
    own = target.sparse
    full_adv = row.scores[FULL]
    out = []
    try:
        for _, sparse in targets:
            target.sparse = sparse
            k = densities_to_ks(target, prepared, len(row.adv_ids), [density])[str(density)]
            score = target.score(prepared, [row.adv_ids], k)[0]
            outcome = classify(full_adv, score, cfg.full_margin)
            out.append({**base, "target": {**_method(sparse, density), "k": k}, "confident": outcome.confident,
                        "outcome": outcome.cls, "scores": {"full": asdict(full_adv), "sparse": asdict(score)}})
    finally:
        target.sparse = own
    outcome = classify(row.natural[FULL], full_adv, cfg.full_margin)
    out.append({**base, "target": full_target, "confident": outcome.confident, "outcome": outcome.cls,
                "scores": {"full": asdict(row.natural[FULL]), "sparse": asdict(full_adv)}})
    return out


def transfer_targets_for(board, cfg) -> list[tuple[str, object]]:
    """(label, SparseConfig) of every method of `board`, with the shared options (blocks, dense
    layers, seed) of the run config `cfg`."""
    from harness.run import sparse_config

    return [(m.label, sparse_config(cfg.replace(method=m.name, method_options=dict(m.options))))
            for m in board.methods]
