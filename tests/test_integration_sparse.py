"""The sparse backend on the real bundled model (smollm2-135m, Llama architecture)."""

import pytest
import torch
from tiny_models import greedy

from sparse import SparseConfig, minimal_k, sparse_attention

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prompt(smollm2):
    _, tok = smollm2
    text = "The Eiffel Tower is in Paris. The Colosseum is in Rome. " * 6 + "The Eiffel Tower is in"
    return tok(text, return_tensors="pt").input_ids


def test_sparse_equals_full_at_large_k(smollm2, prompt):
    model, _ = smollm2
    with torch.no_grad():
        full = model(input_ids=prompt).logits
        with sparse_attention(model, SparseConfig(k=10_000, block_q=8, block_k=8, dense_layers=2)):
            sparse = model(input_ids=prompt).logits
        with sparse_attention(model, SparseConfig(k=1, block_q=8, block_k=8, dense_layers=2)):
            tiny_k = model(input_ids=prompt).logits
    assert (sparse - full).abs().max() < 1e-4
    assert (tiny_k - full).abs().max() > 1e-2


def test_minimal_k_matches_full_attention_greedy_tokens(smollm2, prompt):
    model, _ = smollm2
    cfg = SparseConfig(method="stream", k=1, block_q=8, block_k=8, dense_layers=2)
    k = minimal_k(model, prompt, cfg, n_tokens=2)
    reference = greedy(model, prompt, 2)
    with sparse_attention(model, cfg.replace(k=k)):
        assert torch.equal(greedy(model, prompt, 2), reference)
    assert 1 <= k <= -(-(prompt.shape[1] + 2) // 8)
