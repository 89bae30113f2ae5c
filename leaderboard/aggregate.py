"""Entries: grouping runs, merging them by adding counts, and ranking by flip rate.

An entry is one experimental condition, (model, method, attack, block_q, block_k,
dense_layers, context_tokens). Several runs of one entry pool their items: the
counts (flipped items, attacked items, successes) add up, and every rate and
Wilson interval is recomputed from the pooled counts; averaging rates would
weight a 4-item run like a 200-item one. Runs pooled this way must be the same
experiment: only `seed` (replicates) and `limit` (how many items) may differ,
anything else (suite, n_adv, steps, k_attack, ...) is an error naming both runs.
An item measured twice with the same seed (overlapping `limit`s) counts once.

Ranking: lower flip rate at the reference density = more robust. Methods keep their
budget in different units (k blocks, a share, reserved sink and local blocks), so
entries are compared at equal compute: every item is read at the k whose kept / causal
key blocks at the answer position is nearest the reference density (the k a
`--density-sweep` run scored for it, else the nearest swept k), and an entry whose items
cannot all be read within `tolerance` of it is *not comparable* at that density: shown,
never ranked. (`--ref-k` compares at equal k instead, which is not equal compute.) Ties
go to the lower upper bound (more evidence), then to more items. Next to it every entry
carries its strict-flip and breakdown rates (docs/results-schema.md: they add up to the
flips), the achieved density, and a paired comparison with the best-ranked entry
measured on the same items (`leaderboard.paired`: McNemar's exact test).
"""

from __future__ import annotations

import json
import statistics

import pandas as pd

from harness.results import with_added_defaults
from harness.results.frame import rows_frame
from harness.results.stats import COUNT_KEYS, proportion, rate_with_ci, summarize

from .errors import LeaderboardError
from .paired import add_paired
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
    # The counted items and their frame (a row per item and k); None when a W&B run has no rows.
    pooled["_items"] = pooled["_frame"] = None
    if all(r.rows is not None for r in runs):
        steps = [row.steps for row in items.row if row.counted and row.success]
        pooled["median_steps_to_flip"] = statistics.median(steps) if steps else None
        pooled["_items"] = counted = items[[row.counted for row in items.row]]
        pooled["_frame"] = rows_frame((r.name, r.config, counted.row[counted.run == r.name]) for r in runs)
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


def _rate(flags: pd.Series) -> dict | None:
    """Rate with its interval over the items that record the flag (None when none does: runs
    written before outcome classes existed)."""
    known = flags.dropna()
    return proportion(int(known.sum()), len(known)) if len(known) else None


def _summary_columns(pooled: dict, density: float, tolerance: float) -> dict:
    """Runs read from W&B carry summaries, not rows: the swept k whose pooled mean density is
    nearest `density` stands for every item (comparable only within `tolerance`)."""
    known = {k: d for k, d in (pooled.get("density_per_k") or {}).items() if d is not None}
    empty = {"strict": None, "breakdown": None, "natural_strict": None, "natural_breakdown": None,
             "density": None, "_items": None, "at": None, "natural_at": None, "comparable": False}
    if not known:
        return empty
    k = min(known, key=lambda kk: (abs(known[kk] - density), kk))
    if abs(known[k] - density) > tolerance:
        return {**empty, "density": known[k]}
    at = next(e for e in pooled["per_k"] if e["k"] == k)
    nat = next(e for e in pooled["natural_per_k"] if e["k"] == k)
    return {**empty, "comparable": True, "density": known[k], "at": at, "natural_at": nat, "ref_k_median": k}


def _outcome_columns(pooled: dict, k: int | None, density: float | None, tolerance: float) -> dict:
    """Flip, strict, breakdown and natural rates, achieved density and per-item flags, each
    item at its own k: `k`, or the k nearest `density` (None: not comparable there)."""
    empty = {"strict": None, "breakdown": None, "natural_strict": None, "natural_breakdown": None,
             "density": None, "_items": None, "at": None, "natural_at": None, "comparable": density is None}
    if pooled["_frame"] is None:
        return _summary_columns(pooled, density, tolerance) if density is not None else empty
    items = pooled["_items"]
    item_k = k if density is None else [k_at_density(row, density) for row in items.row]
    # Each item's frame row at its own k; an item without one (a k off its sweep) has NA flags.
    at = (items.drop(columns="row").assign(k=item_k).astype({"k": "Int64"})
          .merge(pooled["_frame"].drop(columns="seed"), on=["run", "item_id", "k"], how="left"))
    achieved = at.density.dropna().tolist()
    # Python's sum in item order, not pandas' pairwise mean: the same last digits as ever.
    mean_density = sum(achieved) / len(achieved) if achieved else None
    comparable = density is None or (len(at) > 0 and bool(at.density.sub(density).abs().le(tolerance).all()))
    if density is not None and not comparable:
        return {**empty, "comparable": False, "density": mean_density}
    flips, natural = at.flip.fillna(False), at.natural_flip.fillna(False)  # no row at k: no flip there
    at_density = density is not None  # at a fixed k the pooled per-k counts say it (None off the sweep)
    return {
        "comparable": True,
        "at": rate_with_ci(int(flips.sum()), len(at)) if at_density else None,
        "natural_at": rate_with_ci(int(natural.sum()), len(at)) if at_density else None,
        "strict": _rate(at.strict),
        "breakdown": _rate(at.breakdown),
        "natural_strict": _rate(at.natural_class.dropna().eq("strict")),
        "natural_breakdown": _rate(at.natural_class.dropna().eq("breakdown")),
        "density": mean_density,
        "ref_k_median": statistics.median_low(at.k.tolist()) if len(at) else None,
        "_items": at.assign(flip=flips, strict=at.strict.astype(object).where(at.strict.notna(), None))
                    .set_index(["seed", "item_id"])[["flip", "strict"]].to_dict("index"),
    }


def _record(pooled: dict, ref_k: int | None, ref_density: float | None, tolerance: float) -> dict:
    config = pooled["config"]
    k = (pooled["k_attack"] if ref_k is None else ref_k) if ref_density is None else None
    columns = _outcome_columns(pooled, k, ref_density, tolerance)
    at = next((e for e in pooled["per_k"] if e["k"] == k), None) if columns["at"] is None else columns["at"]
    nat = next((e for e in pooled["natural_per_k"] if e["k"] == k), None) if columns["natural_at"] is None \
        else columns["natural_at"]
    if not columns["comparable"]:
        at = nat = None
    shown_k = columns.get("ref_k_median") if k is None else k
    record = {"rank": None, "label": entry_label(config), **{key: config[key] for key in ENTRY_KEYS},
              "ref_k": shown_k, "ref_density": ref_density, "comparable": columns["comparable"]}
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
    record.update({key: value for key, value in columns.items() if key not in ("at", "natural_at", "ref_k_median")})
    return record


def _sort_key(record: dict) -> tuple:
    unrankable = record["flip_rate"] is None or record["n"] == 0 or not record["comparable"]
    if unrankable:
        return (1, 0.0, 0.0, 0, record["label"])
    return (0, record["flip_rate"], record["ci_high"], -record["n"], record["label"])


def rank(runs: list[Run], ref_k: int | None, warnings: list[str], ref_density: float | None = None,
         tolerance: float = 0.025) -> list[dict]:
    """Ranked entry records, most robust first: at `ref_density` (within `tolerance`), or at
    `ref_k` when no density is given (None: each entry's own k_attack)."""
    records = [_record(merge_entry(group, warnings), ref_k, ref_density, tolerance) for group in group_runs(runs)]
    for r in records:
        if not r["comparable"]:
            achieved = "no recorded density" if r["density"] is None else f"its items reach {r['density']:.3f}"
            warnings.append(f"{r['label']}: not comparable at density {ref_density} ± {tolerance} ({achieved}); "
                            "shown, not ranked")
        elif r["flip_rate"] is None:
            warnings.append(f"{r['label']}: reference k={r['ref_k']} is not in its k_sweep "
                            f"{[e['k'] for e in r['k_sweep']]}; ranked last")
        elif r["n"] == 0:
            warnings.append(f"{r['label']}: no attacked items (full attention answered none correctly); ranked last")
    records.sort(key=_sort_key)
    for i, r in enumerate([r for r in records if r["comparable"]], start=1):
        r["rank"] = i
    add_paired(records)
    for r in records:
        del r["_items"]
    return records
