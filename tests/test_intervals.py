"""harness.results.intervals: Holm and McNemar against hand-computed values, the cluster bootstrap's
properties (bounds, determinism, wider under clustering) and the direction table's counts."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.intervals import (Interval, cluster_bootstrap, direction_table, holm, mcnemar_exact,
                               paired_difference)
from harness.results.intervals import wilson

ROOT = Path(__file__).resolve().parents[1]


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.4]) == [0.8, 0.8] and holm([0.7, 0.6]) == [1.0, 1.0]  # monotone, capped at 1
    assert holm([]) == [] and holm([0.2]) == [0.2]
    with pytest.raises(ValueError, match="holm"):
        holm([0.1, 1.5])


def test_mcnemar_exact_values():
    assert mcnemar_exact(7, 0) == pytest.approx(0.015625)  # 2 / 2**7
    assert mcnemar_exact(0, 7) == mcnemar_exact(7, 0)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 0)


def test_the_leaderboard_uses_the_same_paired_test():
    """Boards' paired differences (and their exact McNemar p) are the summaries' own."""
    from leaderboard import boards

    from harness.results.intervals import holm, paired_difference

    assert boards.paired_difference is paired_difference and boards.holm is holm


def test_empty_and_single_cluster_intervals_claim_nothing():
    assert cluster_bootstrap([], []) == Interval(0.0, 0.0, 1.0, 0, 0)
    one = cluster_bootstrap([1, 0, 1, 1], ["ctx"] * 4)
    assert (one.rate, one.low, one.high, one.n, one.clusters) == (0.75, 0.0, 1.0, 4, 1)
    with pytest.raises(ValueError, match="one entry per item"):
        cluster_bootstrap([1, 0], ["a"])


def test_one_item_per_cluster_is_close_to_wilson():
    flags = [1] * 30 + [0] * 70
    iv = cluster_bootstrap(flags, [f"c{i}" for i in range(100)])
    assert iv.clusters == 100 and 0.0 <= iv.low < iv.rate == 0.3 < iv.high <= 1.0
    w_low, w_high = wilson(30, 100)
    assert 0.8 < (iv.high - iv.low) / (w_high - w_low) < 1.25
    assert cluster_bootstrap(flags) == iv  # clusters=None: every item its own cluster


def test_correlated_clusters_widen_the_interval():
    # 10 contexts of 10 items; every item of a context has the same flag
    flags = [c < 3 for c in range(10) for _ in range(10)]
    clusters = [c for c in range(10) for _ in range(10)]
    clustered, independent = cluster_bootstrap(flags, clusters), cluster_bootstrap(flags)
    assert clustered.rate == independent.rate == 0.3 and clustered.clusters == 10
    assert clustered.high - clustered.low > 1.5 * (independent.high - independent.low)


def test_the_bootstrap_is_deterministic_by_seed():
    flags = [i % 3 == 0 for i in range(45)]
    clusters = [math.isqrt(i) for i in range(45)]  # clusters of 1, 3, 5, ... items
    assert cluster_bootstrap(flags, clusters, seed=5) == cluster_bootstrap(flags, clusters, seed=5)
    assert cluster_bootstrap(flags, clusters, seed=5) != cluster_bootstrap(flags, clusters, seed=6)


def test_paired_difference_counts_discordant_items():
    a = [True] * 7 + [False] * 3 + [True] * 2
    b = [False] * 7 + [False] * 3 + [True] * 2
    d = paired_difference(a, b, [f"i{i}" for i in range(12)])
    assert (d.n, d.clusters, d.b10, d.b01) == (12, 12, 7, 0)
    assert d.rate_a == pytest.approx(9 / 12) and d.rate_b == pytest.approx(2 / 12)
    assert d.diff == pytest.approx(7 / 12) and d.low <= d.diff <= d.high and d.low > 0
    assert d.p == pytest.approx(0.015625)
    same = paired_difference(a, a, None)
    assert (same.diff, same.low, same.high, same.p) == (0.0, 0.0, 0.0, 1.0)
    assert paired_difference(a, b, ["x"] * 12).low == -1.0
    assert paired_difference([], [], []).to_dict()["p"] == 1.0


def test_direction_table_on_a_hand_built_example():
    # yes-gold: 4 items, 3 flip (yes->no); no-gold: 5 items, 1 flips (no->yes)
    info = [(True, "yes", "g1"), (True, "yes", "g1"), (True, "yes", "g2"), (False, "yes", "g3"),
            (True, "no", "g1"), (False, "no", "g2"), (False, "No", "g3"), (False, "no", "g4"), (False, "no", "g4")]
    table = direction_table(info)
    yes, no, balanced = table["yes"], table["no"], table["balanced"]
    assert (yes["direction"], yes["count"], yes["n"], yes["clusters"]) == ("yes->no", 3, 4, 3)
    assert (no["direction"], no["count"], no["n"], no["clusters"]) == ("no->yes", 1, 5, 4)
    assert (yes["wilson_low"], yes["wilson_high"]) == wilson(3, 4)
    assert (no["wilson_low"], no["wilson_high"]) == wilson(1, 5)
    assert balanced["rate"] == pytest.approx((3 / 4 + 1 / 5) / 2)
    assert (balanced["n"], balanced["clusters"]) == (9, 4)
    assert 0.0 <= balanced["low"] <= balanced["rate"] <= balanced["high"] <= 1.0
    assert direction_table(info, seed=1)["balanced"] == direction_table(info, seed=1)["balanced"]


def test_direction_table_without_one_direction_has_no_balanced_rate():
    table = direction_table([(True, "yes", "a"), (False, "yes", "b")])
    assert table["no"]["n"] == 0 and (table["no"]["cluster_low"], table["no"]["cluster_high"]) == (0.0, 1.0)
    assert (table["balanced"]["rate"], table["balanced"]["low"], table["balanced"]["high"]) == (None, 0.0, 1.0)
    with pytest.raises(ValueError, match="yes or no"):
        direction_table([(True, "maybe", "a")])


def test_intervals_import_without_torch():
    code = "import harness.results.intervals, harness.results.compare, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
