"""Intervals and tests that respect clustering and multiplicity.

Items are not independent when they share a context: the needle suite asks one
question per depth of one shared context (`row.needle["group"]`), so a context that
breaks sparse attention flips all of its items at once. A Wilson interval counts those
items as separate evidence and is too narrow; the percentile bootstrap here resamples
whole clusters instead. Paired comparisons of two runs on the same items use the exact
McNemar test on the discordant items, and Holm's step-down adjustment keeps the
family-wise error of several comparisons of one call at the nominal level.

Pure functions on plain lists (flags, gold answers, cluster ids), no torch: the harness
summary, `harness.results.compare` and the leaderboard all use them. The exact McNemar test
lives here (not in the leaderboard) because the harness must not import the leaderboard.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr
from scipy.stats import binomtest


# Bound the memory of one block of resamples (resamples x clusters indices).
_BLOCK_CELLS = 1 << 20


# The 95% quantile every committed summary.json was computed with, rounded to 6 decimals;
# LEVEL95 is its two-sided confidence level (0.95 + 1.8e-9), so Wilson bounds written
# before scipy reproduce to 1e-15 (exactly 0.95 would move them by up to 4e-9).
Z95 = 1.959964
LEVEL95 = float(2 * ndtr(Z95) - 1)


def wilson(n_success: int, n: int, confidence_level: float = LEVEL95) -> tuple[float, float]:
    """Wilson score interval for n_success out of n (scipy's; exact 0 and 1 bounds at
    n_success 0 and n); (0.0, 1.0) when n == 0 (nothing known)."""
    if n < 0 or n_success < 0 or n_success > n:
        raise ValueError(f"wilson: need 0 <= n_success <= n, got n_success={n_success}, n={n}")
    if n == 0:
        return 0.0, 1.0
    ci = binomtest(n_success, n).proportion_ci(confidence_level=confidence_level, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Interval:
    """A rate with its cluster-bootstrap interval, and how many items and clusters it rests on."""

    rate: float
    low: float
    high: float
    n: int
    clusters: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """Rate of A minus rate of B on the same items, with its cluster-bootstrap interval,
    the discordant counts (b10: A yes and B no, b01: A no and B yes) and McNemar's exact p."""

    n: int
    clusters: int
    rate_a: float
    rate_b: float
    diff: float
    low: float
    high: float
    b10: int
    b01: int
    p: float

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant items (1.0 when there are none):
    under the null each discordant item is equally likely either way, so it is the
    two-sided binomial test of b successes in b + c trials at 1/2."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    return float(binomtest(b, b + c, 0.5).pvalue)


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the i-th smallest of m is
    multiplied by m - i + 1, made non-decreasing along the sorted order and capped at 1."""
    pvalues = [float(p) for p in pvalues]
    bad = [p for p in pvalues if not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"holm: p-values must lie in [0, 1], got {bad}")
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def cluster_of(row) -> str:
    """The cluster of a results row: its needle group (items sharing one context), else its item id."""
    return (row.needle or {}).get("group") or row.item_id


def _cluster_sums(clusters, columns: list) -> np.ndarray:
    """(clusters x columns) sums of each column per cluster; clusters numbered by first appearance."""
    index: dict = {}
    ids = np.array([index.setdefault(c, len(index)) for c in clusters], dtype=np.int64)
    sums = np.zeros((len(index), len(columns)))
    for j, column in enumerate(columns):
        np.add.at(sums[:, j], ids, np.asarray(column, dtype=float))
    return sums


def _resampled_totals(sums: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot x columns) column totals over resamples of the clusters with replacement."""
    n_clusters = len(sums)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n_clusters)
    totals = []
    for start in range(0, n_boot, block):
        picks = rng.integers(0, n_clusters, size=(min(block, n_boot - start), n_clusters))
        totals.append(sums[picks].sum(axis=1))
    return np.concatenate(totals)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _check(n_boot: int, level: float, *lengths: int) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if len(set(lengths)) > 1:
        raise ValueError(f"flags, answers and clusters must have one entry per item, got lengths {list(lengths)}")


def _own_clusters(flags, clusters):
    return range(len(flags)) if clusters is None else clusters


def cluster_bootstrap(flags, clusters=None, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """Rate of 0/1 `flags` with a percentile bootstrap interval that resamples whole clusters.

    `clusters[i]` names the context of item i (None: every item is its own cluster).
    No items: rate 0 and (0, 1). One cluster: (0, 1) too, since nothing is known about
    the variation between contexts, and resampling one cluster would return its own rate.
    """
    flags = [bool(f) for f in flags]
    clusters = _own_clusters(flags, clusters)
    _check(n_boot, level, len(flags), len(clusters))
    n = len(flags)
    if n == 0:
        return Interval(0.0, 0.0, 1.0, 0, 0)
    sums = _cluster_sums(clusters, [flags, [1] * n])
    rate = sum(flags) / n
    if len(sums) == 1:
        return Interval(rate, 0.0, 1.0, n, 1)
    totals = _resampled_totals(sums, n_boot, seed)
    low, high = _percentiles(totals[:, 0] / totals[:, 1], level)
    return Interval(rate, low, high, n, len(sums))


def paired_difference(a_flags, b_flags, clusters=None, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> PairedDifference:
    """Rate of A minus rate of B on aligned items (item i is the same item in both).

    The interval resamples clusters and recomputes the difference, so it keeps the
    pairing and the clustering; McNemar's exact test uses the discordant items only.
    No items or one cluster: the interval is (-1, 1) (see `cluster_bootstrap`).
    """
    a_flags, b_flags = [bool(f) for f in a_flags], [bool(f) for f in b_flags]
    clusters = _own_clusters(a_flags, clusters)
    _check(n_boot, level, len(a_flags), len(b_flags), len(clusters))
    n = len(a_flags)
    b10 = sum(1 for a, b in zip(a_flags, b_flags) if a and not b)
    b01 = sum(1 for a, b in zip(a_flags, b_flags) if b and not a)
    p = mcnemar_exact(b10, b01)
    if n == 0:
        return PairedDifference(0, 0, 0.0, 0.0, 0.0, -1.0, 1.0, 0, 0, p)
    rate_a, rate_b = sum(a_flags) / n, sum(b_flags) / n
    sums = _cluster_sums(clusters, [a_flags, b_flags, [1] * n])
    low, high = -1.0, 1.0
    if len(sums) > 1:
        totals = _resampled_totals(sums, n_boot, seed)
        low, high = _percentiles((totals[:, 0] - totals[:, 1]) / totals[:, 2], level)
    return PairedDifference(n, len(sums), rate_a, rate_b, rate_a - rate_b, low, high, b10, b01, p)


# Gold answer -> the direction a flag of an item with that answer measures.
DIRECTIONS = {"yes": "yes->no", "no": "no->yes"}


def _direction(flags: list[bool], clusters: list, gold: str, n_boot: int, seed: int, level: float) -> dict:
    count, n = sum(flags), len(flags)
    w_low, w_high = wilson(count, n)
    interval = cluster_bootstrap(flags, clusters, n_boot, seed, level)
    return {"gold": gold, "direction": DIRECTIONS[gold], "count": count, "n": n, "rate": interval.rate,
            "wilson_low": w_low, "wilson_high": w_high, "cluster_low": interval.low,
            "cluster_high": interval.high, "clusters": interval.clusters}


def direction_table(rows_info, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Flips split by gold answer, and the balanced flip rate.

    `rows_info` is an iterable of (flag, gold answer "yes"/"no", cluster id) per item. A
    flag of a yes-gold item is a yes->no flip, of a no-gold item a no->yes flip (with the
    flip flag "no" means "not yes": strict flips and breakdowns; pass the strict flag for
    answers that really changed). A model biased towards one answer flips one direction
    far more than the other, so the overall rate depends on the suite's yes/no mix; the
    balanced rate, the mean of the two directions' rates, does not. Its interval resamples
    clusters and recomputes both rates (resamples missing a direction are left out); it is
    None with (0, 1) when a direction has no items, and (0, 1) for one cluster.
    """
    rows_info = [(bool(flag), str(gold).strip().lower(), cluster) for flag, gold, cluster in rows_info]
    _check(n_boot, level)
    unknown = sorted({gold for _, gold, _ in rows_info} - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"direction_table: gold answers must be yes or no, got {unknown}")
    table = {}
    for gold in DIRECTIONS:
        part = [(flag, cluster) for flag, g, cluster in rows_info if g == gold]
        table[gold] = _direction([f for f, _ in part], [c for _, c in part], gold, n_boot, seed, level)
    n = len(rows_info)
    clusters = [c for _, _, c in rows_info]
    balanced = {"rate": None, "low": 0.0, "high": 1.0, "n": n, "clusters": len(set(clusters))}
    if table["yes"]["n"] and table["no"]["n"]:
        balanced["rate"] = (table["yes"]["rate"] + table["no"]["rate"]) / 2
        yes = [g == "yes" for _, g, _ in rows_info]
        flips = [f for f, _, _ in rows_info]
        sums = _cluster_sums(clusters, [np.logical_and(flips, yes), yes,
                                        np.logical_and(flips, np.logical_not(yes)), np.logical_not(yes)])
        if len(sums) > 1:
            t = _resampled_totals(sums, n_boot, seed)
            both = (t[:, 1] > 0) & (t[:, 3] > 0)
            if both.any():
                means = (t[both, 0] / t[both, 1] + t[both, 2] / t[both, 3]) / 2
                balanced["low"], balanced["high"] = _percentiles(means, level)
    table["balanced"] = balanced
    return table
