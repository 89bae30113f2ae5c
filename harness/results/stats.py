"""Flip-rate statistics shared by the harness (summary.json) and the leaderboard.

Both sides must compute the same numbers from the same rows, so the formulas live
here once. No torch: the leaderboard imports this without a model. Outcomes are
classified once, when a row is written (tasks.outcomes.classify); this module only counts.

Wilson score intervals rather than the normal approximation: flip counts are
small and often 0 or n, where the normal interval collapses to a point.
"""

from __future__ import annotations

import statistics

from .intervals import cluster_bootstrap, cluster_of, direction_table, wilson
from .schema import SKIPPED, UNVERIFIABLE, ResultRow

# Counts of summary.json that add up when runs are pooled (the leaderboard, W&B summaries).
COUNT_KEYS = ("n_success", "n_verified", "n_items", "n_skipped", "n_attacked")


def rate_with_ci(n_success: int, n: int) -> dict:
    """A `per_k` entry of summary.json without its `k`: rate, Wilson 95% bounds and counts."""
    low, high = wilson(n_success, n)
    return {"flip_rate": n_success / n if n else 0.0, "ci_low": low, "ci_high": high,
            "n_flipped": n_success, "n": n}


def proportion(count: int, n: int) -> dict:
    """Rate of an outcome class with its Wilson 95% bounds and counts."""
    low, high = wilson(count, n)
    return {"rate": count / n if n else 0.0, "ci_low": low, "ci_high": high, "count": count, "n": n}


def _flag(mapping, k: int) -> bool:
    return bool((mapping or {}).get(str(k), False))


# Outcome classes counted per k (tasks.outcomes.Outcome): strict + breakdown = flips;
# paper_criterion is the seed paper's greedy-token column.
CLASS_COLUMNS = ("strict", "breakdown", "paper_criterion")


def _class_rates(rows: list[ResultRow], ks: list[int], field: str) -> dict:
    """{class: [{k, rate, ci_low, ci_high, count, n}]} over rows whose `field` records outcomes."""
    known = [r for r in rows if getattr(r, field)]
    out = {}
    for name in CLASS_COLUMNS:
        entries = []
        for k in ks:
            flags = [(getattr(r, field).get(str(k)) or {}).get(name) for r in known]
            flags = [f for f in flags if f is not None]
            entries.append({"k": k, **proportion(sum(flags), len(flags))})
        out[name] = entries
    return out


def _mean_density(rows: list[ResultRow], k: int) -> float | None:
    values = [r.density[str(k)] for r in rows if r.density and r.density.get(str(k)) is not None]
    return sum(values) / len(values) if values else None


def clustered(flags: list[bool], rows: list[ResultRow]) -> dict:
    """Cluster-bootstrap 95% bounds of a rate (items sharing a context are one cluster)."""
    interval = cluster_bootstrap(flags, [cluster_of(r) for r in rows])
    return {"cluster_low": interval.low, "cluster_high": interval.high, "clusters": interval.clusters}


def _class_flag(outcomes, k, name: str) -> bool:
    return bool(((outcomes or {}).get(str(k)) or {}).get(name))


def directions(flags: list[bool], rows: list[ResultRow]) -> dict:
    """`direction_table` over the rows with a yes/no gold answer (every suite's; hand-built rows may lack one)."""
    return direction_table([(f, r.answer, cluster_of(r)) for f, r in zip(flags, rows) if r.answer in ("yes", "no")])


def flip_record(rows: list[ResultRow], flips_field: str, outcomes_field: str, k_of) -> dict:
    """Flip rate with Wilson and cluster intervals, its strict/breakdown split and the
    direction table, each item at its own k (`k_of(row)`)."""
    flags = [_flag(getattr(r, flips_field), k_of(r)) for r in rows]
    strict = [_class_flag(getattr(r, outcomes_field), k_of(r), "strict") for r in rows]
    breakdown = [_class_flag(getattr(r, outcomes_field), k_of(r), "breakdown") for r in rows]
    return {**rate_with_ci(sum(flags), len(rows)), **clustered(flags, rows),
            "strict": proportion(sum(strict), len(rows)), "breakdown": proportion(sum(breakdown), len(rows)),
            "direction": directions(flags, rows)}


def _per_density(rows: list[ResultRow], densities: list[float]) -> list[dict]:
    """Flip and natural flip rates at each density, each item scored at its own k for it."""
    out = []
    for d in densities:
        ks = {r.item_id: r.density_ks[str(d)] for r in rows if r.density_ks and str(d) in r.density_ks}
        measured = [r for r in rows if r.item_id in ks]
        achieved = [r.density[str(ks[r.item_id])] for r in measured if r.density and str(ks[r.item_id]) in r.density]
        out.append({"density": d, "k_median": statistics.median(ks.values()) if ks else None,
                    "density_achieved": _mean(achieved),
                    **flip_record(measured, "flipped", "outcomes", lambda r: ks[r.item_id]),
                    "natural": flip_record(measured, "natural_flipped", "natural_outcomes",
                                           lambda r: ks[r.item_id])})
    return out


def _draws(rows: list[ResultRow]) -> dict | None:
    """Per-draw classes of the attack, summed over items: how often one insertion flips
    sparse attention only, breaks full attention too, or leaves both right."""
    records = [r.draws for r in rows if r.draws]
    if not records:
        return None
    n = sum(d["n"] for d in records)
    return {"n": n, **{name: proportion(sum(d[name] for d in records), n)
                       for name in ("sparse_only", "full_wrong", "both_right")}}


def _margins(rows: list[ResultRow]) -> dict | None:
    """Full attention's P(a) - P(ā) on the counted items: a near-tie is not a confident answer."""
    values = sorted(r.natural["full"].margin for r in rows if "full" in (r.natural or {}))
    if not values:
        return None
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"min": values[0], "q1": quartiles[0], "median": quartiles[1], "q3": quartiles[2],
            "below_0.2": sum(v < 0.2 for v in values), "n": len(values)}


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _attribution(rows: list[ResultRow], k: int) -> dict:
    """Retained attention mass at the answer position (1 - dropped share, averaged over
    sparse layers) for flipped and not flipped items, natural and adversarial prompts,
    and the needle-kept rate per layer, at k."""
    out = {}
    for prompt, flags in (("natural", "natural_flipped"), ("adversarial", "flipped")):
        records = [(r, (r.attribution or {}).get(prompt, {}).get(str(k))) for r in rows]
        records = [(r, a) for r, a in records if a]
        if not records:
            continue
        retained = {True: [], False: []}
        for r, a in records:
            retained[_flag(getattr(r, flags), k)].append(1 - _mean(a["dropped_mass"]))
        entry = {"retained_mass_flipped": _mean(retained[True]), "n_flipped": len(retained[True]),
                 "retained_mass_not_flipped": _mean(retained[False]), "n_not_flipped": len(retained[False])}
        needles = [(r, a["needle_kept"]) for r, a in records if "needle_kept" in a]
        if needles:
            layers = records[0][0].attribution[prompt]["layers"]
            entry["layers"] = layers
            entry["needle_kept_by_layer"] = [_mean(kept[i] for _, kept in needles) for i in range(len(layers))]
            flipped = [kept for r, kept in needles if _flag(getattr(r, flags), k)]
            entry["needle_kept_by_layer_flipped"] = [_mean(kept[i] for kept in flipped) for i in range(len(layers))]
        out[prompt] = entry
    return out


def summarize(rows: list[ResultRow], k_attack: int, k_sweep: list[int],
              density_sweep: list[float] | None = None) -> dict:
    """summary.json from results.jsonl rows, as docs/results-schema.md defines it.

    Rates are over counted rows only (attacked, and full attention answers them right
    by the run's --full-margin without adversarial tokens); skipped rows count in
    n_items and n_skipped. Densities are summarised over the rows that record them.
    """
    ks = sorted({int(k) for k in k_sweep})
    attacked = [r for r in rows if r.counted]
    n = len(attacked)
    per_k, natural_per_k = [], []
    for k in ks:
        flags = [_flag(r.flipped, k) for r in attacked]
        natural = [_flag(r.natural_flipped, k) for r in attacked]
        per_k.append({"k": k, **rate_with_ci(sum(flags), n), **clustered(flags, attacked)})
        natural_per_k.append({"k": k, **rate_with_ci(sum(natural), n), **clustered(natural, attacked)})
    successes = [r for r in attacked if r.success]
    steps = [r.steps for r in successes if r.steps is not None]
    n_natural = sum(_flag(r.natural_flipped, k_attack) for r in attacked)
    summary = {
        "k_attack": k_attack,
        "k_sweep": ks,
        "per_k": per_k,
        "natural_per_k": natural_per_k,
        "attack_success_rate": len(successes) / n if n else 0.0,
        "n_success": len(successes),
        "n_verified": sum(1 for r in attacked if r.verified),
        "natural_flip_rate": n_natural / n if n else 0.0,
        "median_steps_to_flip": statistics.median(steps) if steps else None,
        "n_items": len(rows),
        "n_skipped": sum(1 for r in rows if r.status == SKIPPED),
        "n_attacked": n,
        "n_not_confident": sum(1 for r in rows if r.attacked and not r.counted),
        "success": {**proportion(len(successes), n), **clustered([r.success for r in attacked], attacked)},
        "direction": {"adversarial": directions([_flag(r.flipped, k_attack) for r in attacked], attacked),
                      "natural": directions([_flag(r.natural_flipped, k_attack) for r in attacked], attacked)},
    }
    draws = _draws(attacked)
    if draws:
        summary["draws"] = draws
    margins = _margins(attacked)
    if margins:
        summary["full_margin_of_counted"] = margins
    if any(r.outcomes or r.natural_outcomes for r in attacked):
        summary["outcomes_per_k"] = _class_rates(attacked, ks, "outcomes")
        summary["natural_outcomes_per_k"] = _class_rates(attacked, ks, "natural_outcomes")
    if any(r.density for r in rows):
        summary["density_per_k"] = [{"k": k, "density": _mean_density(rows, k)} for k in ks]
    if any(r.verified_status for r in successes):
        summary["n_unverifiable"] = sum(1 for r in successes if r.verified_status == UNVERIFIABLE)
        summary["n_monotone"] = sum(1 for r in successes if r.monotone)
    searched = [r.minimal_k for r in attacked if r.minimal_k and "adversarial" in r.minimal_k]
    if searched:
        summary["minimal_k"] = {
            "median_clean": statistics.median(m["clean"] for m in searched),
            "median_adversarial": statistics.median(m["adversarial"] for m in searched),
            "flip_at_clean_k": proportion(sum(bool(m["flip_at_clean_k"]) for m in searched), len(searched)),
            "strict_at_clean_k": proportion(sum(bool(m["strict_at_clean_k"]) for m in searched), len(searched)),
        }
    if any(r.attribution for r in attacked):
        summary["attribution"] = _attribution(attacked, k_attack)
    if density_sweep:
        summary["per_density"] = _per_density(attacked, density_sweep)
    blocks = [r.answer_blocks for r in rows if r.answer_blocks is not None]
    if blocks:
        summary["answer_blocks_median"] = statistics.median(blocks)
    return summary
