"""Equal-compute comparisons: `total_kept` counts what the kept rules say, and
`matched_density` is the smallest rho whose adaptive selection keeps at least as many
blocks as fixed-k STREAM, checked against the selections a real run makes."""

import torch

from sparse import SparseConfig, select_blocks
from sparse.methods.stream_density import StreamDensitySettings, matched_density, total_kept


def adaptive(cfg, k, rho):
    return cfg.replace(method="stream-density", k=k, settings=StreamDensitySettings(rho))


def test_total_kept_counts_min_of_k_and_causal_blocks():
    cfg = SparseConfig(k=8)
    assert total_kept(cfg, "stream", 20) == sum(min(8, i + 1) for i in range(20))
    assert total_kept(cfg, "full", 20) == 20 * 21 // 2
    assert total_kept(adaptive(cfg, 2, 0.25), "stream-density", 20) == sum(min(i + 1, max(2, -(-(i + 1) // 4))) for i in range(20))


def test_matched_density_is_the_smallest_rho_reaching_the_fixed_total():
    cfg = SparseConfig(k=8)
    for n in (30, 70, 262):
        rho = matched_density(cfg, n, k_min=2)
        target = total_kept(cfg, "stream", n)
        assert total_kept(adaptive(cfg, 2, rho), "stream-density", n) >= target
        assert total_kept(adaptive(cfg, 2, rho - 2e-4), "stream-density", n) < target


def test_total_kept_equals_the_blocks_a_selection_keeps():
    torch.manual_seed(0)
    q, key = torch.randn(1, 2, 160, 16), torch.randn(1, 2, 160, 16)
    for cfg, method in ((SparseConfig(k=4), "stream"), (adaptive(SparseConfig(), 2, 0.3), "stream-density")):
        sel = select_blocks(q, key, cfg.replace(method=method))
        assert int((sel[0, 0] >= 0).sum()) == total_kept(cfg, method, 20)
