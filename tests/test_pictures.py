"""harness.pictures: the kept share per prompt token at the answer position (read by
Target.traced_sweep from the scoring forward), through a tiny model."""

from __future__ import annotations

import pytest
from tiny_models import tiny_model, tiny_tokenizer

from attacks import Target
from harness.pictures import picture
from sparse import SparseConfig
from tasks import TaskItem


@pytest.fixture(scope="module")
def target():
    tok = tiny_tokenizer()
    return Target(tiny_model("qwen2", layers=3, vocab=len(tok), seed=1), tok,
                  SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1))


def test_kept_shares_follow_the_block_selection(target):
    prepared = target.prepare(TaskItem(id="p", question="Is fire hot?", answer="yes"), "Water boils. " * 6)
    adv = [5, 6, 7]
    ids = prepared.prompt_ids(adv)
    n_blocks = (len(ids) - 1) // 4 + 1
    shares, heatmaps = {}, {}
    target.traced_sweep(prepared, adv, [1, 2, n_blocks], (4, 9), shares=shares, heatmaps=heatmaps)
    pic = picture(target, prepared, adv, (4, 9), "adversarial", shares, selection_k=2, heatmaps=heatmaps)
    assert pic["tokens"] == [target.tokenizer.decode([i]) for i in ids]
    start = len(prepared.prefix_ids)
    assert pic["adversarial_span"] == [start, start + 3] and pic["needle_span"] == [4, 9]
    # every block kept: every (layer, head) pair sees every token
    assert pic["kept"][str(n_blocks)] == [1.0] * len(ids)
    # k = 1 keeps only the diagonal block: the answer position's own key block, in every layer and head
    last_block = (len(ids) - 1) // 4 * 4
    assert pic["kept"]["1"] == [1.0 if i >= last_block else 0.0 for i in range(len(ids))]
    assert set(pic["kept"]) == {"1", "2", str(n_blocks)}
    # the selection heatmap: k = 2 keeps the diagonal and one more block of every query block
    selection = pic["selection"]
    assert (selection["k"], selection["layer"], selection["head"]) == (2, 2, 0)  # sparse layers 1, 2
    assert all(sum(row) == min(q + 1, 2) and row[q] == 1 for q, row in enumerate(selection["blocks"]))


@pytest.mark.parametrize("method", ["stream", "oracle", "window", "quest", "hip"])
def test_heatmap_from_the_cached_forwards_equals_one_uncached_forward(method):
    """The scoring forwards (a cached sparse prefix, then the rest) record head 0's block
    selection over the whole prompt in the middle sparse layer as one uncached forward makes
    it (`sparse.layer_selections`), row by row, so a flip page's heatmap needs no forward of
    its own."""
    import torch

    from sparse import layer_selections

    tok = tiny_tokenizer()
    cfg = SparseConfig(method=method, k=3, block_q=4, block_k=4, dense_layers=1)
    target = Target(tiny_model("llama", layers=4, vocab=len(tok), seed=2), tok, cfg)
    prepared = target.prepare(TaskItem(id="s", question="Is ice cold?", answer="yes"), "Stones sink in water. " * 5)
    adv = [7, 8, 9]
    assert prepared.cut > 0 and target.heatmap_layer() == 2  # sparse layers 1, 2, 3
    heatmaps = {}
    target.traced_sweep(prepared, adv, [2, 3], shares={}, heatmaps=heatmaps)
    ids = torch.tensor([prepared.prompt_ids(adv)])
    rows = lambda sel: [sorted(b for b in row if b >= 0) for row in sel.tolist()]
    for k in (2, 3):
        reference = layer_selections(target.model, ids, cfg.replace(k=k))[2][0, 0]
        assert heatmaps[str(k)]["layer"] == 2
        assert rows(heatmaps[str(k)]["blocks"][0]) == rows(reference)


def test_kv_cache_methods_record_no_heatmap():
    tok = tiny_tokenizer()
    target = Target(tiny_model("qwen2", layers=3, vocab=len(tok), seed=1), tok,
                    SparseConfig(method="snapkv", k=2, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="kv", question="Is fire hot?", answer="yes"), "Water boils. " * 6)
    heatmaps, shares = {}, {}
    target.traced_sweep(prepared, [5, 6, 7], [2], shares=shares, heatmaps=heatmaps)
    pic = picture(target, prepared, [5, 6, 7], None, "adversarial", shares, selection_k=2, heatmaps=heatmaps)
    assert heatmaps == {} and pic["selection"] is None and len(pic["kept"]["2"]) == len(prepared.prompt_ids([5, 6, 7]))
