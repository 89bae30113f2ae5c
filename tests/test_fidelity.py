"""harness.experiments.fidelity: metrics equal a direct computation from full logits, are exact when k
keeps every block, chunking changes nothing, the flex kernel agrees with the gather
kernel, texts are deterministic, the CLI writes its JSON and plots, and bad input is named."""

import json

import pytest
import torch
from tiny_models import save_tiny_pair, tiny_model, tiny_tokenizer

from harness.experiments import fidelity
from sparse import SparseConfig, select_blocks, sparse_attention


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", layers=3, seed=2)


def ids(n=96, seed=0):
    return torch.randint(0, 128, (1, n), generator=torch.Generator().manual_seed(seed))


def test_metrics_equal_a_direct_computation_from_full_logits(model):
    x = ids()
    full, _ = fidelity.final_hidden(model, x, None, "gather")
    cfg = SparseConfig(method="stream", k=2, block_q=8, block_k=8, dense_layers=1)
    sparse, selections = fidelity.final_hidden(model, x, cfg, "gather")
    (got,) = fidelity.compare(model, full, [sparse], chunk=32)
    with torch.no_grad():
        out_f = model(input_ids=x, output_hidden_states=True)
        with sparse_attention(model, cfg):
            out_s = model(input_ids=x, output_hidden_states=True)
    lf, ls = out_f.logits[0].log_softmax(-1), out_s.logits[0].log_softmax(-1)
    cos = torch.nn.functional.cosine_similarity
    assert torch.allclose(got["cosine"], cos(out_f.hidden_states[-1][0], out_s.hidden_states[-1][0], dim=-1), atol=1e-5)
    assert torch.allclose(got["prob_cosine"], cos(lf.exp(), ls.exp(), dim=-1), atol=1e-5)
    kl = torch.nn.functional.kl_div(ls, lf, log_target=True, reduction="none").sum(-1)
    assert torch.allclose(got["kl"], kl, atol=1e-5)
    assert torch.equal(got["top1"], (lf.argmax(-1) == ls.argmax(-1)).float())
    top_f, top_s = lf.topk(5).indices.tolist(), ls.topk(5).indices.tolist()
    assert got["top5"].tolist() == pytest.approx([len(set(a) & set(b)) / 5 for a, b in zip(top_f, top_s)])
    assert got["top1"].mean() < 1 and got["kl"].max() > 1e-3  # k = 2 of 12 blocks changes the model: not vacuous
    assert sorted(selections) == [1, 2]


def test_k_covering_every_block_is_exact(model):
    x = ids()
    full, _ = fidelity.final_hidden(model, x, None, "gather")
    cfg = SparseConfig(method="stream", k=12, block_q=8, block_k=8, dense_layers=1)  # 96 tokens = 12 blocks
    sparse, selections = fidelity.final_hidden(model, x, cfg, "gather")
    (got,) = fidelity.compare(model, full, [sparse], chunk=7)
    assert got["cosine"].min() > 1 - 1e-5 and got["prob_cosine"].min() > 1 - 1e-5 and got["kl"].max() < 1e-5
    assert got["top1"].min() == 1 and got["top5"].min() == 1
    assert torch.allclose(fidelity.position_density(selections, cfg, 96), torch.ones(96))


def test_chunked_equals_unchunked(model):
    x = ids(seed=3)
    full, _ = fidelity.final_hidden(model, x, None, "gather")
    sparse = [fidelity.final_hidden(model, x, SparseConfig(method=m, k=3, dense_layers=1), "gather")[0]
              for m in ("stream", "window")]
    whole = fidelity.compare(model, full, sparse, chunk=96)
    for chunk in (1, 7, 50):
        for a, b in zip(fidelity.compare(model, full, sparse, chunk=chunk), whole):
            for name in a:
                assert torch.allclose(a[name], b[name], atol=1e-6), (chunk, name)


def test_flex_kernel_gives_the_gather_kernel_metrics(model):
    x = ids(n=64, seed=4)
    cfg = SparseConfig(method="stream", k=3, block_q=8, block_k=8, dense_layers=1)
    flex, sel_flex = fidelity.final_hidden(model, x, cfg, "flex")
    gather, sel_gather = fidelity.final_hidden(model, x, cfg, "gather")
    assert torch.allclose(flex, gather, atol=1e-4)
    assert all(torch.equal(sel_flex[layer], sel_gather[layer]) for layer in sel_gather)


def test_position_density_of_a_known_selection_is_exact():
    cfg = SparseConfig(method="stream", k=2, block_q=4, block_k=4)
    q, k = torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 8)
    sel = select_blocks(q, k, cfg)  # query block i keeps min(2, i + 1) of its i + 1 blocks
    density = fidelity.position_density({3: sel, 5: sel}, cfg, 16)
    assert torch.allclose(density, torch.tensor([1.0, 1.0, 2 / 3, 0.5]).repeat_interleave(4))


def test_binned_means_cover_every_position_once():
    values = torch.arange(10, dtype=torch.float32)
    assert fidelity.binned(values, 2) == [2.0, 7.0]
    assert fidelity.binned(values, 10) == [float(v) for v in range(10)]


def test_density_methods_expand_over_densities_and_fixed_k_methods_do_not():
    got = fidelity.modes(["stream", "stream-density"], [4, 8], [0.05, 0.1])
    assert got == [("stream", 4, None), ("stream", 8, None), ("stream-density", 4, 0.05), ("stream-density", 4, 0.1),
                   ("stream-density", 8, 0.05), ("stream-density", 8, 0.1)]


def test_texts_are_deterministic_by_seed_and_exactly_t_tokens():
    tok = tiny_tokenizer()
    a, b, c = (fidelity.text_ids("haystack", tok, 300, seed=s) for s in (1, 1, 2))
    assert a.shape == (1, 300) and torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(fidelity.UsageError, match="unknown text source"):
        fidelity.text_ids("poems", tok, 10, seed=0)


def test_kjv_texts_are_consecutive_chapters_without_verse_numbers():
    chapters = fidelity.kjv_chapters()
    assert len(chapters) == 1189  # the KJV's chapter count
    assert chapters[0].startswith("In the beginning God created") and ":" not in chapters[0][:40]
    tok = tiny_tokenizer()
    x = fidelity.text_ids("kjv", tok, 500, seed=7)
    assert x.shape == (1, 500) and torch.equal(x, fidelity.text_ids("kjv", tok, 500, seed=7))


def test_cli_writes_json_and_plots(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    model_dir = tmp_path / "tiny"
    save_tiny_pair(model_dir, "llama", layers=3, seed=1)
    out = tmp_path / "fid"
    args = ["--model", str(model_dir), "--methods", "stream,stream-density", "--k", "2", "--density", "0.5",
            "--tokens", "64", "--texts", "2", "--bins", "4", "--source", "filler", "--kernel", "gather",
            "--dense-layers", "1", "--out", str(out), "--wandb", "offline"]
    assert fidelity.main(args) == 0
    data = json.loads((out / "fidelity.json").read_text())
    assert {"config", "model", "texts", "bin_edges", "modes", "versions", "forward_seconds"} <= set(data)
    assert data["config"]["tokens"] == 64 and data["model"]["name"] == str(model_dir) and len(data["texts"]) == 2
    assert [(m["method"], m["k"], m["density_param"]) for m in data["modes"]] == [("stream", 2, None),
                                                                                  ("stream-density", 2, 0.5)]
    for mode in data["modes"]:
        for name in fidelity.METRICS:
            entry = mode[name]
            assert len(entry["binned"]) == 4 and len(entry["per_text"]) == 2
            assert entry["mean"] == pytest.approx(sum(entry["binned"]) / 4, abs=1e-6)  # 4 equal bins of 16
    assert data["modes"][0]["density"]["binned"][0] > data["modes"][0]["density"]["binned"][-1]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{m}.png" for m in fidelity.METRICS)
    assert "| stream | 2 | - |" in capsys.readouterr().out
    run = next((out / "wandb").glob("offline-run-*"))
    assert list(run.glob("run-*.wandb")) and list((run / "files" / "media" / "table").glob("fidelity_*.json"))


@pytest.mark.parametrize("extra,message", [
    (["--methods", "nope"], "unknown sparse method 'nope'"),
    (["--methods", "snapkv"], "snapkv is a kv-cache method: fidelity measures block-sparse prefill"),
    (["--k", "0"], "every --k must be >= 1"),
    (["--tokens", "8"], "--tokens (8) is too small"),
    (["--density", "2"], "(0, 1]"),
    (["--methods", "stream-density"], "read the density: pass --density"),
    (["--source", "poems"], "unknown text source 'poems'"),
    (["--texts", "0"], "--texts must be >= 1"),
])
def test_bad_input_is_named(tmp_path, capsys, extra, message):
    assert fidelity.main(["--out", str(tmp_path / "x"), "--wandb", "disabled", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
