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
    shares = {}
    target.traced_sweep(prepared, adv, [1, n_blocks], (4, 9), shares=shares)
    pic = picture(target, prepared, adv, (4, 9), "adversarial", shares, selection_k=2)
    assert pic["tokens"] == [target.tokenizer.decode([i]) for i in ids]
    start = len(prepared.prefix_ids)
    assert pic["adversarial_span"] == [start, start + 3] and pic["needle_span"] == [4, 9]
    # every block kept: every (layer, head) pair sees every token
    assert pic["kept"][str(n_blocks)] == [1.0] * len(ids)
    # k = 1 keeps only the diagonal block: the answer position's own key block, in every layer and head
    last_block = (len(ids) - 1) // 4 * 4
    assert pic["kept"]["1"] == [1.0 if i >= last_block else 0.0 for i in range(len(ids))]
    # the selection heatmap: k = 2 keeps the diagonal and one more block of every query block
    selection = pic["selection"]
    assert (selection["k"], selection["layer"], selection["head"]) == (2, 2, 0)  # sparse layers 1, 2
    assert all(sum(row) == min(q + 1, 2) and row[q] == 1 for q, row in enumerate(selection["blocks"]))
