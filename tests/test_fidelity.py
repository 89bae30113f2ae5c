"""harness.fidelity: metrics equal a direct computation from full logits, are exact when k
keeps every block, chunking changes nothing, kept density is exact, and bad input is named."""

import json

import pytest
import torch
from tiny_models import save_tiny_pair, tiny_model

from harness import fidelity
from sparse import SparseConfig, select_blocks


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama", layers=3, seed=2)


def ids(n=96, seed=0):
    return torch.randint(0, 128, (1, n), generator=torch.Generator().manual_seed(seed))


def test_metrics_equal_a_direct_computation(model):
    x = ids()
    full, _ = fidelity.final_hidden(model, x, None, "gather")
    cfg = SparseConfig(method="stream", k=2, block_q=8, block_k=8, dense_layers=1)
    sparse, selections = fidelity.final_hidden(model, x, cfg, "gather")
    got = fidelity.compare(model, full, sparse)
    with torch.no_grad():
        lf = model(input_ids=x).logits[0].log_softmax(-1)
        from sparse import sparse_attention

        with sparse_attention(model, cfg):
            ls = model(input_ids=x).logits[0].log_softmax(-1)
    assert torch.allclose(got["kl"], (lf.exp() * (lf - ls)).sum(-1).clamp_min(0), atol=1e-5)
    assert torch.equal(got["top1"], (lf.argmax(-1) == ls.argmax(-1)).float())
    top_f, top_s = lf.topk(5).indices.tolist(), ls.topk(5).indices.tolist()
    assert got["top5"].tolist() == pytest.approx([len(set(a) & set(b)) / 5 for a, b in zip(top_f, top_s)])
    assert got["top1"].mean() < 1  # k = 2 of 12 blocks changes the model: not vacuous
    assert sorted(selections) == [1, 2]


def test_k_covering_every_block_is_exact(model, monkeypatch):
    x = ids()
    monkeypatch.setattr(fidelity, "CHUNK", 7)  # chunked LM head: the same numbers
    full, _ = fidelity.final_hidden(model, x, None, "gather")
    cfg = SparseConfig(method="stream", k=12, block_q=8, block_k=8, dense_layers=1)
    sparse, selections = fidelity.final_hidden(model, x, cfg, "gather")
    got = fidelity.compare(model, full, sparse)
    assert got["cosine"].min() > 1 - 1e-5 and got["kl"].max() < 1e-5
    assert got["top1"].min() == 1 and got["top5"].min() == 1
    assert torch.allclose(fidelity.kept_density(selections, cfg, 96), torch.ones(96))


def test_kept_density_of_a_known_selection_is_exact():
    cfg = SparseConfig(method="stream", k=2, block_q=4, block_k=4)
    q, k = torch.randn(1, 2, 16, 8), torch.randn(1, 2, 16, 8)
    sel = select_blocks(q, k, cfg)  # query block i keeps min(2, i + 1) of its i + 1 blocks
    density = fidelity.kept_density({3: sel}, cfg, 16)
    want = torch.tensor([1.0, 1.0, 2 / 3, 0.5]).repeat_interleave(4)
    assert torch.allclose(density, want)


def test_cli_writes_json_and_plots(tmp_path, capsys, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    model_dir = tmp_path / "tiny"
    save_tiny_pair(model_dir, "llama", layers=3, seed=1)
    out = tmp_path / "fid"
    args = ["--model", str(model_dir), "--methods", "stream,stream-density", "--k", "2", "--density", "0.5",
            "--tokens", "64", "--texts", "1", "--bins", "4", "--kernel", "gather", "--dense-layers", "1", "--out", str(out), "--wandb", "offline"]
    assert fidelity.main(args) == 0
    data = json.loads((out / "fidelity.json").read_text())
    assert [(m["method"], m["k"], m["density_param"]) for m in data["modes"]] == [("stream", 2, None),
                                                                                  ("stream-density", 2, 0.5)]
    assert len(data["modes"][0]["cosine"]["binned"]) == 4
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{m}.png" for m in fidelity.METRICS)
    assert "| stream | 2 |" in capsys.readouterr().out
    run = next((out / "wandb").glob("offline-run-*"))
    assert list(run.glob("run-*.wandb")) and list((run / "files" / "media" / "table").glob("fidelity_*.json"))


@pytest.mark.parametrize("extra,message", [(["--methods", "nope"], "unknown sparse method"),
                                           (["--k", "0"], "k >= 1"), (["--tokens", "8"], "at least 4 blocks"),
                                           (["--density", "2"], "(0, 1]")])
def test_bad_input_is_named(tmp_path, capsys, extra, message):
    assert fidelity.main(["--out", str(tmp_path / "x"), *extra]) == 2
    assert message in capsys.readouterr().err
