"""Synthetic run directories for the leaderboard tests, written per docs/results-schema.md,
so every expected number is known by construction."""

from __future__ import annotations

import json
from pathlib import Path

from harness.results import ResultRow, RowError
from harness.results.stats import summarize
from leaderboard.cli import main


KS = [2, 4, 8]
ROUNDING = 5e-4 + 1e-9  # three decimals in the Markdown table


def config(**overrides):
    cfg = {"attack": "random", "k_attack": 4, "k_sweep": list(KS), "method": "stream", "block_q": 8, "block_k": 8,
           "dense_layers": 2, "model": "smollm2-135m", "suite": "seed4", "limit": None, "n_adv": 3, "steps": 200,
           "context": "filler", "context_tokens": 256, "seed": 0, "batch_size": 16, "ascii_only": False,
           "attack_params": {"n_adv": 3, "steps": 200, "k_attack": 4, "batch_size": 16, "ascii_only": False}}
    cfg.update(overrides)
    return cfg


def score(correct):
    return {"p_correct": 0.8 if correct else 0.2, "p_wrong": 0.2 if correct else 0.8, "correct": correct,
            "token": "Yes" if correct else "No"}


DENSITY_OF_K = {1: 0.025, 2: 0.05, 4: 0.1, 8: 0.2, 16: 0.4}  # a 40-block answer position: k = 4 is the default density


def make_rows(n, flips, natural=None, skipped=0, prefix="item", k_attack=4, ks=KS):
    """n attacked items: item i flips at k iff i < flips[k] (natural likewise), then `skipped` skipped items."""
    natural = natural or {}
    rows = []
    for i in range(n):
        flipped = {str(k): i < flips.get(k, 0) for k in ks}
        nat = {str(k): i < natural.get(k, 0) for k in ks}
        success = flipped[str(k_attack)]
        rows.append({
            "item_id": f"{prefix}-{i:03d}", "question": f"Question {i}?", "answer": "yes", "status": "attacked",
            "skip_reason": None,
            "natural": {"full": score(True), **{str(k): score(not nat[str(k)]) for k in ks}},
            "natural_flipped": nat, "attack": "random", "k_attack": k_attack,
            "adv_ids": [1, 2, 3], "adv_text": "a b c", "steps": 10 + i if success else 200, "success": success,
            "verified": success and not flipped[str(max(ks))],
            "scores": {"full": score(True), **{str(k): score(not flipped[str(k)]) for k in ks}},
            "flipped": flipped, "density": {str(k): DENSITY_OF_K[k] for k in ks}, "timing": {"seconds": 0.1},
        })
    for j in range(skipped):
        rows.append({
            "item_id": f"{prefix}-s{j:03d}", "question": "Skipped?", "answer": "no", "status": "skipped",
            "skip_reason": "full attention answers wrongly without adversarial tokens",
            "natural": {"full": score(False), **{str(k): score(False) for k in ks}},
            "natural_flipped": {str(k): False for k in ks}, "attack": "random", "k_attack": k_attack,
            "adv_ids": None, "adv_text": None, "steps": 0, "success": False, "verified": False,
            "scores": None, "flipped": None, "timing": {"seconds": 0.1},
        })
    return rows


def loaded(rows):
    return [ResultRow.from_dict(r) for r in rows]


def make_run(root, name, rows, **cfg):
    """Write a run directory as harness.run does: manifest, one JSON line per item, summary."""
    d = Path(root) / name
    d.mkdir(parents=True)
    c = config(**cfg)
    (d / "manifest.json").write_text(json.dumps({
        "config": c, "model": {"name": c["model"], "source": "x", "sha256": None},
        "versions": {"python": "3.11.7", "torch": "2.13.0", "transformers": "5.0.0", "flipbench": "0.1.0"},
        "git_commit": None, "created": "2026-01-01T00:00:00Z"}))
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        summary = summarize(loaded(rows), c["k_attack"], c["k_sweep"])
    except RowError:  # a deliberately broken row: the harness would never have written a summary of it
        summary = {}
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def build(args, capsys):
    status = main(["build", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.err


def board_of(out):
    return json.loads((Path(out) / "leaderboard.json").read_text())


def by_method(board):
    return {e["method"]: e for e in board["entries"]}



def with_groups(rows, size):
    """Put every `size` consecutive items in one context (a needle group: one cluster)."""
    for i, r in enumerate(rows):
        r["needle"] = {"depth": 0.5, "group": f"g{i // size}", "token_span": [1, 4]}
    return rows


def cells_at(site, suite, attack, density):
    board = next(b for b in site["boards"] if (b["suite"], b["attack"]) == (suite, attack))
    return next(t for t in board["tables"] if t["density"] == density)
