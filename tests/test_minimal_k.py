"""The seed's per-prompt k (minimal_k): the returned k reproduces full attention's next
tokens and no smaller k does, checked at every smaller k on tiny models."""

import pytest
import torch
from tiny_models import greedy, tiny_model, tiny_tokenizer

from attacks import FULL, Target
from sparse import SparseConfig
from tasks import TaskItem


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_target_minimal_k_binary_search_is_locally_minimal_and_never_below_the_minimum(seed):
    tok = tiny_tokenizer()
    model = tiny_model("llama", layers=3, vocab=len(tok), seed=seed)
    target = Target(model, tok, SparseConfig(k=1, block_q=4, block_k=4, dense_layers=1))
    prepared = target.prepare(TaskItem(id="t", question="Is fire hot?", answer="yes"), "Water boils. " * 6)
    adv = [5, 6, 7]
    reference = target.greedy_tokens(prepared, adv, FULL)
    ids = torch.tensor([prepared.prompt_ids(adv)])
    with torch.no_grad():
        assert reference == greedy(model, ids, 2)[0].tolist()  # cached greedy decoding equals plain decoding
    n_blocks = (len(prepared.prompt_ids(adv)) + 2 - 2) // 4 + 1  # causal blocks of the last decoded position
    agree = [target.greedy_tokens(prepared, adv, j) == reference for j in range(1, n_blocks + 1)]
    assert agree[-1]  # k = every block is full attention
    exact = agree.index(True) + 1  # the true minimum, by a plain linear scan
    seed_k = target.minimal_k(prepared, adv)  # the seed's binary search
    assert seed_k >= exact and target.greedy_tokens(prepared, adv, seed_k) == reference
    assert seed_k == 1 or target.greedy_tokens(prepared, adv, seed_k - 1) != reference
