"""Entries: grouping runs, merging them by adding counts, and ranking by flip rate.

An entry is one experimental condition, (model, method, attack, block_q, block_k,
dense_layers, context_tokens). Several runs of one entry pool their items: the
counts (flipped items, attacked items, successes) add up, and every rate and
Wilson interval is recomputed from the pooled counts; averaging rates would
weight a 4-item run like a 200-item one. Runs pooled this way must be the same
experiment: only `seed` (replicates) and `limit` (how many items) may differ,
anything else (suite, n_adv, steps, k_attack, ...) is an error naming both runs.
An item measured twice with the same seed (overlapping `limit`s) counts once.

Ranking: lower flip rate at the reference k = more robust. Ties go to the lower
upper bound (more evidence), then to more items. Next to it every entry carries its
strict-flip and breakdown rates (docs/results-schema.md), the mean density at the
reference k, and a paired comparison with the best-ranked entry measured on the same
items (`leaderboard.paired`: McNemar's exact test).
"""

from __future__ import annotations

import json
import statistics

from harness.results import with_added_defaults
from harness.stats import COUNT_KEYS, proportion, rate_with_ci, summarize

from .errors import LeaderboardError
from .paired import add_paired
from .runs import ENTRY_KEYS, Run

# Config fields that may differ between runs pooled into one entry.
MERGEABLE_KEYS = ("seed", "limit")
# More settings that make another entry: the suite, and sparse settings absent in older
# runs (read as 0 / None there).
RESERVATION_KEYS = ("sink_blocks", "local_blocks", "density")
EXTRA_ENTRY_KEYS = ("suite",) + RESERVATION_KEYS


def entry_key(config: dict) -> tuple:
    config = with_added_defaults(config)
    return tuple(json.dumps(config.get(k), sort_keys=True) for k in ENTRY_KEYS + EXTRA_ENTRY_KEYS)


def entry_label(config: dict) -> str:
    config = with_added_defaults(config)
    reserved = "".join(f" · {k.split('_')[0]} {config[k]}" for k in RESERVATION_KEYS if config[k])
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


def _dedupe(runs: list[Run], warnings: list[str]) -> dict[str, list[dict]]:
    """Rows per run, each (seed, item) kept once: the first run that measured it wins."""
    owner: dict[tuple, str] = {}
    kept: dict[str, list[dict]] = {}
    for run in runs:
        if run.rows is None:
            continue
        seed = json.dumps(run.config.get("seed"))
        rows, dropped = [], {}
        for row in run.rows:
            key = (seed, row.item_id)
            if key in owner:
                dropped[owner[key]] = dropped.get(owner[key], 0) + 1
                continue
            owner[key] = run.name
            rows.append(row)
        for other, count in dropped.items():
            where = "earlier in the same run" if other == run.name else f"already counted from {other}"
            warnings.append(f"{run.name}: {count} item(s) with the same seed {where}; counted once")
        kept[run.name] = rows
    return kept


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
    kept = _dedupe(runs, warnings)
    summaries = [summarize(kept[r.name], k_attack, ks) if r.rows is not None else r.summary for r in runs]
    pooled = _add(summaries, k_attack, ks)
    if all(r.rows is not None for r in runs):
        steps = [row.steps for r in runs for row in kept[r.name] if row.attacked and row.success]
        pooled["median_steps_to_flip"] = statistics.median(steps) if steps else None
    elif len(runs) == 1:
        pooled["median_steps_to_flip"] = runs[0].summary.get("median_steps_to_flip")
    else:
        pooled["median_steps_to_flip"] = None
        warnings.append(f"{entry_label(config)}: median steps to first flip unknown when pooling W&B runs "
                        "(their per-item steps are not available)")
    pooled["_rows"] = None if any(r.rows is None for r in runs) else \
        [(json.dumps(r.config.get("seed")), row) for r in runs for row in kept[r.name]]
    pooled["runs"] = [r.name for r in runs]
    pooled["seeds"] = sorted({r.config.get("seed") for r in runs}, key=lambda s: json.dumps(s))
    pooled["config"] = _shared(config)
    return pooled


def _class_rate(rows, k: int, field: str, name: str) -> dict | None:
    """Rate of an outcome class at k with its interval, over the rows that record classes
    (None when no row does: runs written before outcome classes existed)."""
    flags = [((getattr(row, field) or {}).get(str(k)) or {}).get(name) for row in rows]
    flags = [f for f in flags if f is not None]
    return proportion(sum(flags), len(flags)) if flags else None


def _outcome_columns(pooled: dict, k: int) -> dict:
    """Strict flips, breakdowns, density and per-item flags at k, from the pooled rows."""
    if pooled["_rows"] is None:
        return {"strict": None, "breakdown": None, "natural_strict": None, "natural_breakdown": None,
                "density": None, "_items": None}
    attacked = [(seed, row) for seed, row in pooled["_rows"] if row.attacked]
    rows = [row for _, row in attacked]
    densities = [row.density[str(k)] for row in rows if row.density and str(k) in row.density]
    return {
        "strict": _class_rate(rows, k, "outcomes", "strict"),
        "breakdown": _class_rate(rows, k, "outcomes", "breakdown"),
        "natural_strict": _class_rate(rows, k, "natural_outcomes", "strict"),
        "natural_breakdown": _class_rate(rows, k, "natural_outcomes", "breakdown"),
        "density": sum(densities) / len(densities) if densities else None,
        "_items": {(seed, row.item_id): {"flip": bool((row.flipped or {}).get(str(k))),
                                         "strict": ((row.outcomes or {}).get(str(k)) or {}).get("strict")}
                   for seed, row in attacked},
    }


def _record(pooled: dict, ref_k: int | None) -> dict:
    config = pooled["config"]
    k = pooled["k_attack"] if ref_k is None else ref_k
    at = next((e for e in pooled["per_k"] if e["k"] == k), None)
    nat = next((e for e in pooled["natural_per_k"] if e["k"] == k), None)
    record = {"rank": None, "label": entry_label(config), **{key: config[key] for key in ENTRY_KEYS}, "ref_k": k}
    record.update({
        "flip_rate": at["flip_rate"] if at else None,
        "ci_low": at["ci_low"] if at else None,
        "ci_high": at["ci_high"] if at else None,
        "n_flipped": at["n_flipped"] if at else None,
        "n": pooled["n_attacked"],
        "natural_flip_rate": nat["flip_rate"] if nat else None,
        "natural_ci_low": nat["ci_low"] if nat else None,
        "natural_ci_high": nat["ci_high"] if nat else None,
        "natural_n_flipped": nat["n_flipped"] if nat else None,
        "attack_success_rate": pooled["attack_success_rate"],
        "n_success": pooled["n_success"],
        "n_verified": pooled["n_verified"],
        "median_steps_to_flip": pooled["median_steps_to_flip"],
        "n_items": pooled["n_items"],
        "n_skipped": pooled["n_skipped"],
        "k_attack": pooled["k_attack"],
        "k_sweep": pooled["per_k"],
        "natural_k_sweep": pooled["natural_per_k"],
        "runs": pooled["runs"],
        "seeds": pooled["seeds"],
        "config": config,
    })
    record.update(_outcome_columns(pooled, k))
    return record


def _sort_key(record: dict) -> tuple:
    unrankable = record["flip_rate"] is None or record["n"] == 0
    if unrankable:
        return (1, 0.0, 0.0, 0, record["label"])
    return (0, record["flip_rate"], record["ci_high"], -record["n"], record["label"])


def rank(runs: list[Run], ref_k: int | None, warnings: list[str]) -> list[dict]:
    """Ranked entry records, most robust first. ref_k None means each entry's own k_attack."""
    records = [_record(merge_entry(group, warnings), ref_k) for group in group_runs(runs)]
    for r in records:
        if r["flip_rate"] is None:
            warnings.append(f"{r['label']}: reference k={r['ref_k']} is not in its k_sweep "
                            f"{[e['k'] for e in r['k_sweep']]}; ranked last")
        elif r["n"] == 0:
            warnings.append(f"{r['label']}: no attacked items (full attention answered none correctly); ranked last")
    records.sort(key=_sort_key)
    for i, r in enumerate(records, start=1):
        r["rank"] = i
    add_paired(records)
    for r in records:
        del r["_items"]
    return records
