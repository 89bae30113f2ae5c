"""harness.results.stats: Wilson intervals and summary.json as docs/results-schema.md defines it."""

import math
import random
import statistics

import pytest

from harness.results import ResultRow
from harness.results.intervals import wilson
from harness.results.stats import rate_with_ci, summarize

Z = 1.959964


def wilson_by_formula(x, n, z=Z):
    """Written out from the textbook form (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = x / n
    a = p + z * z / (2 * n)
    b = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    c = 1 + z * z / n
    return (a - b) / c, (a + b) / c


@pytest.mark.parametrize("x,n", [(0, 10), (5, 10), (10, 10), (1, 10), (3, 7), (17, 200)])
def test_wilson_matches_formula(x, n):
    low, high = wilson(x, n)
    exp_low, exp_high = wilson_by_formula(x, n)
    assert low == pytest.approx(max(0.0, exp_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, exp_high), abs=1e-12)


def test_wilson_known_values():
    # closed forms at the edges: upper(0/n) = z²/(n+z²), lower(n/n) = n/(n+z²)
    assert wilson(0, 10) == (0.0, pytest.approx(Z**2 / (10 + Z**2)))
    assert wilson(10, 10) == (pytest.approx(10 / (10 + Z**2)), 1.0)
    assert wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson(5, 10) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson(1, 10) == (pytest.approx(0.0179, abs=1e-4), pytest.approx(0.4042, abs=1e-4))


def test_wilson_bounds_and_edge_cases():
    assert wilson(0, 0) == (0.0, 1.0)
    rng = random.Random(0)
    for _ in range(500):
        n = rng.randint(1, 400)
        x = rng.randint(0, n)
        low, high = wilson(x, n)
        assert 0.0 <= low <= x / n <= high <= 1.0
    # symmetric: x of n successes mirrors n - x failures
    low, high = wilson(3, 11)
    low2, high2 = wilson(8, 11)
    assert low == pytest.approx(1 - high2) and high == pytest.approx(1 - low2)
    # more data, narrower interval at the same rate
    assert wilson(50, 100)[1] - wilson(50, 100)[0] < wilson(5, 10)[1] - wilson(5, 10)[0]
    for bad in [(-1, 5), (6, 5), (0, -1)]:
        with pytest.raises(ValueError):
            wilson(*bad)


def test_rate_with_ci_keys():
    entry = rate_with_ci(3, 12)
    assert entry == {"flip_rate": 0.25, "ci_low": wilson(3, 12)[0], "ci_high": wilson(3, 12)[1],
                     "n_flipped": 3, "n": 12}
    assert rate_with_ci(0, 0) == {"flip_rate": 0.0, "ci_low": 0.0, "ci_high": 1.0, "n_flipped": 0, "n": 0}


def row(item, *, flipped=None, natural=None, success=False, verified=False, steps=0, skipped=False):
    ks = ("2", "4", "8")
    natural = natural or {}
    r = {"item_id": item, "status": "skipped" if skipped else "attacked",
         "natural_flipped": {k: k in natural for k in ks}, "success": success, "verified": verified,
         "steps": steps}
    r["flipped"] = None if skipped else {k: k in (flipped or ()) for k in ks}
    return ResultRow.from_dict(r)


def test_summarize_hand_built_rows():
    rows = [
        row("a", flipped={"2", "4"}, success=True, verified=True, steps=10),
        row("b", flipped={"2"}, natural={"2"}, steps=50),
        row("c", flipped={"2", "4", "8"}, natural={"2", "4"}, success=True, verified=False, steps=3),
        row("d", flipped={"2", "4"}, success=True, verified=True, steps=30),
        row("e", steps=50),
        row("f", skipped=True),
        row("g", skipped=True),
    ]
    s = summarize(rows, k_attack=4, k_sweep=[8, 2, 4, 4])
    assert s["k_attack"] == 4 and s["k_sweep"] == [2, 4, 8]
    assert (s["n_items"], s["n_skipped"], s["n_attacked"]) == (7, 2, 5)
    assert [(e["k"], e["n_flipped"], e["n"]) for e in s["per_k"]] == [(2, 4, 5), (4, 3, 5), (8, 1, 5)]
    assert [(e["k"], e["n_flipped"]) for e in s["natural_per_k"]] == [(2, 2), (4, 1), (8, 0)]
    k4 = s["per_k"][1]
    assert k4["flip_rate"] == pytest.approx(0.6)
    assert (k4["ci_low"], k4["ci_high"]) == wilson(3, 5)
    assert s["natural_per_k"][0]["ci_high"] == wilson(2, 5)[1]
    assert s["n_success"] == 3 and s["attack_success_rate"] == pytest.approx(0.6)
    assert s["n_verified"] == 2
    assert s["natural_flip_rate"] == pytest.approx(0.2)
    assert s["median_steps_to_flip"] == statistics.median([10, 3, 30]) == 10
    assert set(s) == {"k_attack", "k_sweep", "per_k", "natural_per_k", "attack_success_rate", "n_success",
                      "n_verified", "natural_flip_rate", "median_steps_to_flip", "n_items", "n_skipped",
                      "n_attacked", "n_not_confident", "success", "direction"}
    assert s["success"]["count"] == 3 and s["success"]["clusters"] == 5  # no needle groups: one item, one cluster


def test_summarize_without_successes_or_rows():
    s = summarize([row("a"), row("b", skipped=True)], 4, [2, 4, 8])
    assert s["median_steps_to_flip"] is None and s["n_success"] == 0 and s["attack_success_rate"] == 0.0
    empty = summarize([], 4, [2, 4])
    assert empty["n_attacked"] == 0 and empty["per_k"][0] == {"k": 2, "flip_rate": 0.0, "ci_low": 0.0,
                                                              "ci_high": 1.0, "n_flipped": 0, "n": 0,
                                                              "cluster_low": 0.0, "cluster_high": 1.0, "clusters": 0}
    assert summarize([row("a", success=True, steps=4), row("b", success=True, steps=7)], 4, [4])[
        "median_steps_to_flip"] == 5.5
