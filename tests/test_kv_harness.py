"""KV-cache methods through the scoring oracle and the harness: the region Target hands the
controller, scores equal to a plain uncached forward, the density rows record, attribution
from observe_answer, and one-line errors for bad settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import answer_mostly_yes_or_no, save_tiny_pair, tiny_model, tiny_tokenizer

from attacks import Target
from harness.run import main
from sparse import SparseConfig, make_settings, sparse_attention
from sparse.geometry import answer_density
from tasks import TaskItem

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = "The weather was mild and the afternoon passed quietly in the small town. " * 2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama-kv")
    save_tiny_pair(path, "llama", layers=3, seed=11, answering=True)
    return path


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite-kv") / "suite.jsonl"
    questions = ["Is fire hot?", "Is ice cold?", "Is the sun a star?", "Is Rome in Belgium?"]
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n"
                            for q, a in zip(questions, ["yes", "no"] * 2)))
    return path


def args(model_dir, suite_file, out, *extra):
    return ["--model", str(model_dir), "--suite", str(suite_file), "--out", str(out), "--steps", "4",
            "--k-sweep", "1,2", "--k-attack", "1", "--block-size", "4", "--dense-layers", "1",
            "--context-tokens", "32", "--batch-size", "4", "--wandb", "disabled", *extra]


def target_for(method, **values):
    tok = tiny_tokenizer()
    model = answer_mostly_yes_or_no(tiny_model("llama", vocab=len(tok), seed=3), tok)
    cfg = SparseConfig(method=method, k=1, block_q=4, block_k=4, dense_layers=1,
                       settings=make_settings(method, values))
    return Target(model, tok, cfg, batch_size=4)


@pytest.mark.parametrize("compress", ["context", "prompt"])
def test_target_scores_equal_an_uncached_forward_over_its_region(compress):
    target = target_for("snapkv", compress=compress, window_size=4)
    item = TaskItem(id="q", question="Is fire hot?", answer="yes")
    prepared = target.prepare(item, CONTEXT)
    adv = [[5, 6, 7], [8, 9, 10]]
    region = target.region_length(prepared, 3)
    prompt = len(prepared.prompt_ids(adv[0]))
    assert region == (len(prepared.prefix_ids) + 3 if compress == "context" else prompt - 1)
    got = target.answer_logits(prepared, 2, adv_ids=torch.tensor(adv))
    ids = torch.tensor([prepared.prompt_ids(a) for a in adv])
    with torch.no_grad(), sparse_attention(target.model, target.sparse.replace(k=2)) as ctl:
        ctl.region = region
        want = target.model(input_ids=ids).logits[:, -1]
    assert torch.allclose(got, want, atol=1e-5)
    full = target.answer_logits(prepared, "full", adv_ids=torch.tensor(adv))  # full mode keeps its prefix cache
    assert torch.allclose(full, target.model(input_ids=ids).logits[:, -1], atol=1e-4)


@pytest.mark.parametrize("method,compress", [("snapkv", "context"), ("h2o", "prompt"), ("tova", "context")])
def test_the_shared_full_prefix_with_its_queries_equals_uncached_forwards(method, compress):
    """One full-attention prefix (keys, values and per-layer queries) serves every kv method:
    logits and GCG's gradients equal whole-prompt forwards without any cache."""
    cached = target_for(method, compress=compress, window_size=4) if "snap" in method else \
        target_for(method, compress=compress)
    uncached = Target(cached.model, cached.tokenizer, cached.sparse, use_cache=False)
    item = TaskItem(id="q", question="Is fire hot?", answer="yes")
    adv = torch.tensor([[5, 6, 7], [8, 9, 10]])
    a, b = cached.prepare(item, CONTEXT), uncached.prepare(item, CONTEXT)
    for k in (1, 3):
        assert torch.allclose(cached.answer_logits(a, k, adv_ids=adv), uncached.answer_logits(b, k, adv_ids=adv),
                              atol=1e-5)
    embed = cached.model.get_input_embeddings().weight[adv].detach()
    grads = []
    for target, prepared in ((cached, a), (uncached, b)):
        x = embed.clone().requires_grad_(True)
        target.answer_logits(prepared, 1, adv_embeds=x)[:, 3].sum().backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_one_prefix_forward_serves_full_attention_and_every_kv_method():
    target = target_for("knorm")
    item = TaskItem(id="q", question="Is fire hot?", answer="yes")
    prepared = target.prepare(item, CONTEXT)
    adv = torch.tensor([[5, 6]])
    target.answer_logits(prepared, 1, adv_ids=adv)
    target.answer_logits(prepared, "full", adv_ids=adv)
    target.sparse = SparseConfig(method="tova", k=2, block_q=4, block_k=4, dense_layers=1)
    target.answer_logits(prepared, 2, adv_ids=adv)
    assert target.prefix_forwards == 1


def test_controller_refuses_a_cached_prefix_without_its_queries():
    model = tiny_model("llama")
    ids = torch.randint(0, 128, (1, 20))
    from transformers import DynamicCache

    from attacks.target import _cache_argument

    cache = DynamicCache(config=model.config)
    kw = _cache_argument(model)  # the cache keyword of the installed transformers
    with torch.no_grad():
        model(input_ids=ids[:, :12], use_cache=True, **{kw: cache})
        with sparse_attention(model, SparseConfig(method="knorm", k=1, block_k=4, dense_layers=1)) as ctl:
            ctl.region = 16
            with pytest.raises(ValueError, match="set prefix_queries for the 12 cached tokens"):
                model(input_ids=ids[:, 12:], **{kw: cache})


def test_the_context_slot_keeps_the_context_in_the_region():
    """With the adversarial slot before the context (the `far` null) the context is in the suffix,
    still before the question, so it stays in the compressed region."""
    target = target_for("knorm")
    item = TaskItem(id="q", question="Is fire hot?", answer="yes")
    near, far = target.prepare(item, CONTEXT), target.prepare(item, CONTEXT, slot="context")
    assert far.region_tail > 0
    assert abs(target.region_length(far, 2) - target.region_length(near, 2)) <= 1  # one boundary token at most


def test_attribution_reads_evicted_tokens_from_observe_answer():
    target = target_for("streamingllm", n_sink=1)
    item = TaskItem(id="q", question="Is fire hot?", answer="yes")
    prepared = target.prepare(item, CONTEXT)
    region = target.region_length(prepared, 0)
    out = target.attribution(prepared, [], [1, 100], needle=(region - 3, region))  # the latest region tokens
    assert out["layers"] == [1, 2]
    assert all(m > 0 for m in out["1"]["dropped_mass"]) and out["100"]["dropped_mass"] == [0.0, 0.0]
    assert out["1"]["needle_kept"] == [1.0, 1.0]  # streamingllm keeps the most recent tokens
    early = target.attribution(prepared, [], [1], needle=(2, 4))
    assert early["1"]["needle_kept"] == [0.0, 0.0]


def test_harness_runs_snapkv_query_aware_with_a_density_sweep(model_dir, suite_file, tmp_path):
    out = tmp_path / "snap"
    assert main(args(model_dir, suite_file, out, "--method", "snapkv", "--method-opt", "compress=prompt",
                     "--method-opt", "window_size=4", "--density-sweep", "0.5,0.8,0.01")) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["method_options"] == {"compress": "prompt", "window_size": 4, "kernel_size": 5}
    for r in rows:
        ks = r["density_ks"]
        assert set(ks) == {"0.5", "0.8", "0.01"}
        assert ks["0.01"] == 1  # unreachable: the nearest k, recorded at the density it achieves
        assert r["density"]["1"] > 0.01
        assert r["density"][str(ks["0.5"])] == pytest.approx(0.5, abs=2 / r["answer_blocks"])
        assert r["attribution"]["natural"]["layers"] == [1, 2]


@pytest.mark.parametrize("extra,message", [
    (["--method-opt", "window_size=0"], "sparse method 'snapkv': window_size must be an integer >= 1"),
    (["--method-opt", "compress=maybe"], "sparse method 'snapkv': compress must be one of context, prompt"),
    (["--sink-blocks", "1"], "--sink-blocks and --local-blocks apply to block-sparse methods; 'snapkv' is a kv-cache"),
])
def test_bad_kv_settings_exit_2_with_one_line(model_dir, suite_file, tmp_path, extra, message):
    done = subprocess.run([sys.executable, "-m", "harness.run", *args(model_dir, suite_file, tmp_path / "x"),
                           "--method", "snapkv", *extra], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "WANDB_MODE": "offline"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr


def test_recorded_density_is_the_share_the_answer_sees(model_dir, suite_file, tmp_path):
    out = tmp_path / "knorm"
    assert main(args(model_dir, suite_file, out, "--method", "knorm", "--attack", "none", "--limit", "2")) == 0
    tok = tiny_tokenizer()
    target = Target(tiny_model("llama", vocab=len(tok)), tok, SparseConfig(method="knorm", block_q=4, block_k=4))
    from harness.config import resolve
    from harness.run import item_context
    from tasks import load_suite

    cfg = resolve(args(model_dir, suite_file, out, "--method", "knorm", "--attack", "none", "--limit", "2"))
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for item, r in zip(load_suite(str(suite_file), 2), rows):
        prepared = target.prepare(item, item_context(cfg, tok, item))
        T, region = len(prepared.prompt_ids([])), target.region_length(prepared, 0)
        for k in ("1", "2"):
            assert r["density"][k] == pytest.approx((T - region + min(region, 4 * int(k))) / T)
            assert r["density"][k] == pytest.approx(answer_density(target.sparse, int(k), T, region))
