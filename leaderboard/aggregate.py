"""Entries: grouping runs, merging them, and reading an entry at a density.

An entry is one experimental condition, (model, method, attack, block_q, block_k,
dense_layers, context_tokens, suite, reserved blocks, method settings). Several runs of
one entry pool their items: counts add up and every rate and interval is recomputed from
the pooled items; averaging rates would weight a 4-item run like a 200-item one. Runs
pooled this way must be the same experiment: only `seed` (replicates) and `limit` (how
many items) may differ, anything else (n_adv, steps, k_attack, ...) is an error naming
both runs. An item measured twice with the same seed (overlapping `limit`s) counts once.

Methods keep their budget in different units (k blocks, a share, reserved sink and local
blocks), so entries are read at equal compute: every item at the k whose kept / causal
key blocks at the answer position is nearest the density (the k a `--density-sweep` run
scored for it, else the nearest swept k); an entry whose items cannot all be read within
the tolerance of it is *not comparable* there. Ranking them is `leaderboard.boards`.
"""

from __future__ import annotations

import json
import statistics

import pandas as pd

from harness.results import with_added_defaults
from harness.results.intervals import cluster_of
from harness.results.stats import COUNT_KEYS, flip_record, rate_with_ci, summarize

from .errors import LeaderboardError
from .runs import ENTRY_KEYS, Run

# Config fields that may differ between runs pooled into one entry.
MERGEABLE_KEYS = ("seed", "limit")
# More settings that make another entry: the suite, and sparse settings absent in older
# runs (read as 0 / {} there): reserved blocks and the method's own settings.
RESERVATION_KEYS = ("sink_blocks", "local_blocks")
EXTRA_ENTRY_KEYS = ("suite",) + RESERVATION_KEYS + ("method_options",)


def entry_key(config: dict) -> tuple:
    config = with_added_defaults(config)
    return tuple(json.dumps(config.get(k), sort_keys=True) for k in ENTRY_KEYS + EXTRA_ENTRY_KEYS)


def entry_label(config: dict) -> str:
    config = with_added_defaults(config)
    reserved = "".join(f" · {k.split('_')[0]} {config[k]}" for k in RESERVATION_KEYS if config[k])
    reserved += "".join(f" · {name} {value}" for name, value in sorted(config["method_options"].items()))
    return (f"{config['model']} · {config['method']} · {config['attack']} · "
            f"b{config['block_q']}×{config['block_k']} · dense {config['dense_layers']} · "
            f"ctx {config['context_tokens']} · {config.get('suite')}{reserved}")


def _shared(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in MERGEABLE_KEYS}


def _differences(a: dict, b: dict) -> list[str]:
    a, b = with_added_defaults(a), with_added_defaults(b)
    keys = sorted((set(a) | set(b)) - set(ENTRY_KEYS) - set(EXTRA_ENTRY_KEYS) - set(MERGEABLE_KEYS))
    missing = "(absent)"
    return [f"{k}: {a.get(k, missing)!r} vs {b.get(k, missing)!r}" for k in keys if a.get(k, missing) != b.get(k, missing)]


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Runs grouped by entry, in order of first appearance; conflicting configs raise LeaderboardError."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        group = groups.setdefault(entry_key(run.config), [])
        if group:
            first = group[0]
            diffs = _differences(first.config, run.config)
            if diffs:
                raise LeaderboardError(
                    f"runs {first.name} and {run.name} are the same entry ({entry_label(run.config)}) "
                    f"but their configs differ ({'; '.join(diffs)}); only {' and '.join(MERGEABLE_KEYS)} "
                    "may differ between runs of one entry")
        group.append(run)
    return list(groups.values())


def _dedupe(runs: list[Run], warnings: list[str]) -> pd.DataFrame:
    """The rows of the entry's directory runs, one per (seed, item): the first run that measured
    it wins. Columns run, seed (as JSON: the key paired entries match on), item_id and row."""
    items = pd.DataFrame([(r.name, json.dumps(r.config.get("seed")), row.item_id, row)
                          for r in runs if r.rows is not None for row in r.rows],
                         columns=["run", "seed", "item_id", "row"])
    repeated = items.duplicated(["seed", "item_id"])
    items["owner"] = items.groupby(["seed", "item_id"]).run.transform("first")
    for (run, owner), count in items[repeated].groupby(["run", "owner"], sort=False).size().items():
        where = "earlier in the same run" if owner == run else f"already counted from {owner}"
        warnings.append(f"{run}: {count} item(s) with the same seed {where}; counted once")
    return items[~repeated].drop(columns="owner")


def _add(summaries: list[dict], k_attack: int, ks: list[int]) -> dict:
    """Pool summary counts: counts add, rates are recomputed."""
    total = {key: sum(int(s[key]) for s in summaries) for key in COUNT_KEYS}
    pooled = {"k_attack": k_attack, "k_sweep": ks}
    for name in ("per_k", "natural_per_k"):
        by_k = {k: [0, 0] for k in ks}
        for s in summaries:
            for e in s[name]:
                if int(e["k"]) in by_k:
                    by_k[int(e["k"])][0] += int(e["n_flipped"])
                    by_k[int(e["k"])][1] += int(e["n"])
        pooled[name] = [{"k": k, **rate_with_ci(*by_k[k])} for k in ks]
    weighted = {k: [0.0, 0] for k in ks}  # mean density per k, weighted by items
    for s in summaries:
        n_items = int(s["n_attacked"])
        for e in s.get("density_per_k") or []:
            if int(e["k"]) in weighted and e.get("density") is not None:
                weighted[int(e["k"])][0] += e["density"] * n_items
                weighted[int(e["k"])][1] += n_items
    pooled["density_per_k"] = {k: (total_d / n_d if n_d else None) for k, (total_d, n_d) in weighted.items()}
    n = total["n_attacked"]
    pooled.update(total)
    pooled["attack_success_rate"] = total["n_success"] / n if n else 0.0
    natural = next((e for e in pooled["natural_per_k"] if e["k"] == k_attack), None)
    pooled["natural_flip_rate"] = natural["flip_rate"] if natural else None
    return pooled


def merge_entry(runs: list[Run], warnings: list[str]) -> dict:
    """The pooled summary of one entry's runs (same keys as summary.json) plus where it came from."""
    config = runs[0].config
    k_attack, ks = config["k_attack"], sorted(set(config["k_sweep"]))
    items = _dedupe(runs, warnings)
    summaries = [summarize(items.row[items.run == r.name].tolist(), k_attack, ks) if r.rows is not None
                 else r.summary for r in runs]
    pooled = _add(summaries, k_attack, ks)
    # Every item (deduplicated) and the counted ones; None when a W&B run has no rows.
    pooled["_all"] = pooled["_items"] = None
    if all(r.rows is not None for r in runs):
        steps = [row.steps for row in items.row if row.counted and row.success]
        pooled["median_steps_to_flip"] = statistics.median(steps) if steps else None
        pooled["_all"] = items
        pooled["_items"] = items[[row.counted for row in items.row]]
    elif len(runs) == 1:
        pooled["median_steps_to_flip"] = runs[0].summary.get("median_steps_to_flip")
    else:
        pooled["median_steps_to_flip"] = None
        warnings.append(f"{entry_label(config)}: median steps to first flip unknown when pooling W&B runs "
                        "(their per-item steps are not available)")
    pooled["runs"] = [r.name for r in runs]
    pooled["seeds"] = sorted({r.config.get("seed") for r in runs}, key=lambda s: json.dumps(s))
    pooled["config"] = _shared(config)
    return pooled


def k_at_density(row, density: float) -> int | None:
    """The k at which `row` was scored nearest `density`: the k its density sweep chose, else
    the swept k whose recorded density is nearest (None without recorded densities)."""
    chosen = (row.density_ks or {}).get(str(density))
    if chosen is not None:
        return int(chosen)
    if not row.density:
        return None
    return int(min(row.density, key=lambda k: (abs(row.density[k] - density), int(k))))


def _summary_at(pooled: dict, density: float, tolerance: float) -> dict:
    """Runs read from W&B carry summaries, not rows: the swept k whose pooled mean density is
    nearest `density` stands for every item (comparable only within `tolerance`); Wilson
    intervals only, since clusters and pairs need the items."""
    known = {k: d for k, d in (pooled.get("density_per_k") or {}).items() if d is not None}
    if not known:
        return {"comparable": False, "density": None, "items": None}
    k = min(known, key=lambda kk: (abs(known[kk] - density), kk))
    if abs(known[k] - density) > tolerance:
        return {"comparable": False, "density": known[k], "items": None}
    at = next(e for e in pooled["per_k"] if e["k"] == k)
    natural = next(e for e in pooled["natural_per_k"] if e["k"] == k)
    return {"comparable": True, "density": known[k], "items": None, "k_median": k,
            "adversarial": at, "natural": natural}


def at_density(pooled: dict, density: float, tolerance: float) -> dict:
    """An entry read at `density`: each counted item at its own k nearest it (`k_at_density`).

    Comparable when every item's achieved density is within `tolerance`; then the flip
    record (`harness.results.stats.flip_record`: Wilson and cluster intervals, strict and
    breakdown, directions) of the adversarial and the natural prompt, and `items`: per
    (seed, item id) its flip, strict flag, natural flip and cluster, for paired tests."""
    if pooled["_items"] is None:
        return _summary_at(pooled, density, tolerance)
    items = pooled["_items"]
    rows = list(items.row)
    ks = [k_at_density(row, density) for row in rows]
    achieved = [(row.density or {}).get(str(k)) for row, k in zip(rows, ks)]
    known = [d for d in achieved if d is not None]
    mean_density = sum(known) / len(known) if known else None
    comparable = bool(rows) and all(d is not None and abs(d - density) <= tolerance for d in achieved)
    if not comparable:
        return {"comparable": False, "density": mean_density, "items": None}
    k_of = {id(row): k for row, k in zip(rows, ks)}
    adversarial = flip_record(rows, "flipped", "outcomes", lambda r: k_of[id(r)])
    natural = flip_record(rows, "natural_flipped", "natural_outcomes", lambda r: k_of[id(r)])
    per_item = {}
    for run, seed, row, k in zip(items.run, items.seed, rows, ks):
        outcome = (row.outcomes or {}).get(str(k)) or {}
        per_item[(seed, row.item_id)] = {
            "flip": bool((row.flipped or {}).get(str(k))), "strict": bool(outcome.get("strict")),
            "natural_flip": bool((row.natural_flipped or {}).get(str(k))), "cluster": cluster_of(row),
            "k": k, "row": row, "run": run}
    return {"comparable": True, "density": mean_density, "k_median": statistics.median_low(ks),
            "adversarial": adversarial, "natural": natural, "items": per_item}


def entries(runs: list[Run], warnings: list[str]) -> list[dict]:
    """The pooled summary of every entry, in order of first appearance."""
    return [merge_entry(group, warnings) for group in group_runs(runs)]
