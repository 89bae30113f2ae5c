"""Wilson intervals and exact McNemar p-values pinned to numbers committed in the docs, so
swapping their implementation (now scipy's) cannot move a published figure."""

import pytest

from harness.results.intervals import mcnemar_exact, wilson


@pytest.mark.parametrize("count, n, low, high", [
    (12, 41, 0.176, 0.445),  # docs/leaderboard/leaderboard.md, needle stream: strict flips
    (13, 41, 0.196, 0.470),  # same row: flip rate
    (3, 41, 0.025, 0.194),  # same row: breakdowns
    (7, 31, 0.114, 0.398),  # leaderboard.md, facts stream: flip rate
    (2, 31, 0.018, 0.207),  # same row: breakdowns
])
def test_wilson_matches_the_leaderboard_to_three_decimals(count, n, low, high):
    assert tuple(round(x, 3) for x in wilson(count, n)) == (low, high)


@pytest.mark.parametrize("count, n, low, high", [
    # docs/runs/needle-qwen2.5-1.5b/summary.json, per_k and natural_per_k
    (17, 41, 0.27756549360403493, 0.5663289698091571),
    (35, 41, 0.7155654182993241, 0.9311575189888808),
    (2, 41, 0.013480945243651773, 0.16138978994036302),
    (16, 41, 0.25656144970045525, 0.5427314318307916),
    # docs/runs/make-run-fresh-clone/summary.json: small n, and k = 16 with no flips
    (3, 6, 0.1876163049804082, 0.8123836950195917),
    (5, 6, 0.4364971749742326, 0.969946630588185),
    (0, 6, 0.0, 0.39033429165637346),
    # docs/runs/null-qwen2.5-1.5b-facts-drop-one/summary.json
    (0, 31, 0.0, 0.11025539700802303),
])
def test_wilson_reproduces_committed_summaries(count, n, low, high):
    got_low, got_high = wilson(count, n)
    assert got_low == pytest.approx(low, abs=1e-9) and got_high == pytest.approx(high, abs=1e-9)


def test_wilson_edges_and_bad_counts():
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match="0 <= n_success <= n"):
        wilson(4, 3)


@pytest.mark.parametrize("b, c, p", [
    (7, 0, 0.015625),  # docs/replication.md: stream vs drop-one on facts, "7 : 0, p = 0.0156"
    (5, 0, 0.0625),  # docs/leaderboard/README.md: vs oracle "p = 0.06 (5 : 0)"
    (9, 10, 1.0),  # leaderboard.md: needle stream vs oracle "p = 1, 9:10"
    (1, 8, 0.0390625),  # 2 * (1 + 9) / 2**9
    (0, 0, 1.0),
])
def test_mcnemar_matches_the_docs(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, abs=1e-12)
    assert mcnemar_exact(c, b) == mcnemar_exact(b, c)
