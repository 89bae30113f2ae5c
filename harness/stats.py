"""Flip-rate statistics shared by the harness (summary.json) and the leaderboard.

Both sides must compute the same numbers from the same rows, so the formulas live
here once. Standard library only: the leaderboard imports this without a model.

Wilson score intervals rather than the normal approximation: flip counts are
small and often 0 or n, where the normal interval collapses to a point.
"""

from __future__ import annotations

import math
import statistics

Z95 = 1.959964  # two-sided 95% normal quantile


def wilson(n_success: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for n_success out of n; (0.0, 1.0) when n == 0 (nothing known)."""
    if n < 0 or n_success < 0 or n_success > n:
        raise ValueError(f"wilson: need 0 <= n_success <= n, got n_success={n_success}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = n_success / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # At p = 0 or 1 the bound is exact in theory; clamp away the rounding error.
    low = 0.0 if n_success == 0 else max(0.0, center - half)
    high = 1.0 if n_success == n else min(1.0, center + half)
    return low, high


def rate_with_ci(n_success: int, n: int) -> dict:
    """A `per_k` entry of summary.json without its `k`: rate, Wilson 95% bounds and counts."""
    low, high = wilson(n_success, n)
    return {"flip_rate": n_success / n if n else 0.0, "ci_low": low, "ci_high": high,
            "n_flipped": n_success, "n": n}


def _flag(mapping, k: int) -> bool:
    return bool((mapping or {}).get(str(k), False))


def summarize(rows: list[dict], k_attack: int, k_sweep: list[int]) -> dict:
    """summary.json from results.jsonl rows, as docs/results-schema.md defines it.

    Rates are over attacked rows only (full attention answers those correctly
    without adversarial tokens); skipped rows count in n_items and n_skipped.
    """
    ks = sorted({int(k) for k in k_sweep})
    attacked = [r for r in rows if r.get("status") == "attacked"]
    n = len(attacked)
    per_k, natural_per_k = [], []
    for k in ks:
        per_k.append({"k": k, **rate_with_ci(sum(_flag(r.get("flipped"), k) for r in attacked), n)})
        natural_per_k.append({"k": k, **rate_with_ci(sum(_flag(r.get("natural_flipped"), k) for r in attacked), n)})
    successes = [r for r in attacked if r.get("success")]
    steps = [r["steps"] for r in successes if r.get("steps") is not None]
    n_natural = sum(_flag(r.get("natural_flipped"), k_attack) for r in attacked)
    return {
        "k_attack": k_attack,
        "k_sweep": ks,
        "per_k": per_k,
        "natural_per_k": natural_per_k,
        "attack_success_rate": len(successes) / n if n else 0.0,
        "n_success": len(successes),
        "n_verified": sum(1 for r in attacked if r.get("verified")),
        "natural_flip_rate": n_natural / n if n else 0.0,
        "median_steps_to_flip": statistics.median(steps) if steps else None,
        "n_items": len(rows),
        "n_skipped": sum(1 for r in rows if r.get("status") == "skipped"),
        "n_attacked": n,
    }
