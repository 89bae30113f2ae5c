"""GCG: its cached one-hot gradients equal plain autograd, its scoring equals the
oracle's, it flips a tiny model deterministically, and it runs through the CLI."""

import json
import math

import pytest
import torch
from tiny_models import save_tiny_pair, tiny_model, tiny_tokenizer

from attacks import FULL, Target, available_attacks, get_attack
from attacks.gcg import GCGConfig, GCGSearch
from harness.config import resolve
from harness.run import main
from sparse import SparseConfig, sparse_attention
from tasks import TaskItem

SPARSE = SparseConfig(k=2, block_q=4, block_k=4, dense_layers=1)
CONTEXT = "The weather was mild and the afternoon passed quietly. " * 2


@pytest.fixture(scope="module")
def flippable():
    """A tiny model and item where full and sparse attention (k=2) both answer correctly
    without adversarial tokens and GCG can reach a flip; a sharper output layer gives
    margins far from zero, and the answer rows raised along the answer position's hidden
    state put most of the mass on yes/no (their differences, hence the margins, unchanged)."""
    tok = tiny_tokenizer()
    model = tiny_model("llama", layers=3, vocab=len(tok), seed=3)
    with torch.no_grad():
        model.lm_head.weight.mul_(10)
    target = Target(model, tok, SPARSE, batch_size=8)
    prepared = target.prepare(TaskItem(id="t-0", question="Is fire hot?", answer="yes"), CONTEXT)
    with torch.no_grad():
        hidden = model.model(input_ids=torch.tensor([prepared.prompt_ids([])])).last_hidden_state[0, -1]
        answers = list(prepared.correct_ids) + list(prepared.wrong_ids)
        model.lm_head.weight[answers] += 30 * hidden / hidden.dot(hidden)
    natural = target.sweep(prepared, [], [2])
    assert natural[FULL].correct and natural["2"].correct
    return target, prepared


def reference_gradient(target, prepared, adv, mode):
    """d margin / d one-hot from a plain uncached forward with inputs_embeds requiring grad."""
    model = target.model
    ids = torch.tensor([prepared.prompt_ids(adv)])
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    if mode == FULL:
        logits = model(inputs_embeds=embeds).logits[0, -1]
    else:
        with sparse_attention(model, target.sparse.replace(k=mode)):
            logits = model(inputs_embeds=embeds).logits[0, -1]
    margin = (torch.logsumexp(logits[list(prepared.correct_ids)], -1)
              - torch.logsumexp(logits[list(prepared.wrong_ids)], -1))
    (grad,) = torch.autograd.grad(margin, embeds)
    start = len(prepared.prefix_ids)
    return grad[0, start : start + len(adv)] @ model.get_input_embeddings().weight.T, margin.item()


@pytest.mark.parametrize("context", [CONTEXT, CONTEXT + "Water"])
@pytest.mark.parametrize("mode", [FULL, 1, 2])
def test_cached_one_hot_gradient_equals_plain_autograd(flippable, context, mode):
    target, _ = flippable
    prepared = target.prepare(TaskItem(id="t-g", question="Is ice cold?", answer="yes"), context)
    search = GCGSearch(target, prepared, GCGConfig(n_adv=4, k_attack=2), rng_seed=0)
    adv = [int(i) for i in torch.randint(5, len(target.tokenizer), (4,), generator=torch.Generator().manual_seed(1))]
    grad, margin = search.token_gradient(torch.tensor(adv), mode)
    want, want_margin = reference_gradient(target, prepared, adv, mode)
    assert grad.shape == want.shape == (4, target.model.get_input_embeddings().weight.shape[0])
    assert margin == pytest.approx(want_margin, abs=1e-5)
    assert torch.allclose(grad, want, atol=1e-5, rtol=1e-4)
    assert grad.abs().max() > 1e-4  # not vacuous


def test_contexts_cover_a_cache_cut_inside_the_prefix(flippable):
    target, _ = flippable
    cuts = [target.prepare(TaskItem(id="t-g", question="Is ice cold?", answer="yes"), c) for c in (CONTEXT, CONTEXT + "Water")]
    assert any(p.cut < len(p.prefix_ids) for p in cuts)


@pytest.mark.parametrize("mode", [FULL, 2])
def test_margins_equal_the_oracles_scores(flippable, mode):
    target, prepared = flippable
    search = GCGSearch(target, prepared, GCGConfig(n_adv=3, k_attack=2, batch_size=3), rng_seed=0)
    cands = torch.randint(5, len(target.tokenizer), (7, 3), generator=torch.Generator().manual_seed(2))
    got = search.margins(cands, mode)
    for m, s in zip(got.tolist(), target.score(prepared, cands, mode)):
        assert m == pytest.approx(math.log(s.p_correct) - math.log(s.p_wrong), abs=1e-4)


def test_bounded_scoring_finds_the_exact_argmin(flippable):
    target, prepared = flippable
    cfg = GCGConfig(n_adv=3, k_attack=2, search_width=24, full_checks=24, hinge_margin=0.5)
    search = GCGSearch(target, prepared, cfg, rng_seed=0)
    cands = search.sample(search.x.ids, search.token_gradient(torch.tensor(search.x.ids), 2)[0])
    cands = torch.unique(cands, dim=0)
    ms, mf = search.margins(cands, 2), search.margins(cands, FULL)
    brute = (ms + cfg.full_weight * torch.relu(cfg.tau - mf)).min().item()
    found = min(e.loss for e in search._evaluate(cands))
    assert found == pytest.approx(brute, abs=1e-5)


def test_gcg_reaches_a_flip_monotonically_and_deterministically(flippable):
    target, prepared = flippable
    cfg = GCGConfig(n_adv=4, k_attack=2, steps=10, search_width=32, topk=32, batch_size=32)
    run = get_attack("gcg").run
    steps_seen = []

    class Progress:
        def update(self, n):
            steps_seen.append(n)

        def set_postfix(self, **kw):
            assert "loss" in kw

    a = run(target, prepared, cfg, 0, progress=Progress())
    b = run(target, prepared, cfg, 0)
    assert a.success and 1 <= a.steps <= cfg.steps and len(steps_seen) == a.steps
    losses = [t["loss"] for t in a.trace]
    assert len(a.trace) == a.steps + 1 and [t["step"] for t in a.trace] == list(range(a.steps + 1))
    assert all(later <= earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < losses[0]
    assert set(a.trace[0]) >= {"step", "loss", "margin_sparse", "margin_full", "best_text", "seconds"}
    # the harness's own verdict agrees: a flip at k_attack
    scores = target.sweep(prepared, a.adv_ids, [2])
    assert scores[FULL].correct and not scores["2"].correct
    assert a.adv_text == target.tokenizer.decode(a.adv_ids)
    assert (a.adv_ids, a.steps, losses) == (b.adv_ids, b.steps, [t["loss"] for t in b.trace])


def test_gcg_reports_failure_after_its_budget(flippable):
    target, prepared = flippable
    res = get_attack("gcg").run(target, prepared, GCGConfig(n_adv=1, k_attack=2, steps=2, search_width=4, topk=2), 0)
    assert (res.success, res.steps, len(res.adv_ids), len(res.trace)) == (False, 2, 1, 3)


@pytest.mark.parametrize(
    "field,value",
    [("n_adv", 0), ("steps", 0), ("k_attack", 0), ("batch_size", 0), ("search_width", 0), ("topk", 0),
     ("n_replace", 0), ("buffer_size", -1), ("full_checks", 0), ("full_weight", -1.0), ("hinge_margin", float("nan")),
     ("full_margin", -0.1), ("full_margin", 1.0)],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GCGConfig(**{field: value})


def test_config_rejects_more_replacements_than_tokens():
    with pytest.raises(ValueError, match="n_replace"):
        GCGConfig(n_adv=2, n_replace=3)


def test_gcg_is_registered_with_cli_flags():
    assert "gcg" in available_attacks()
    cfg = resolve(["--attack", "gcg", "--search-width", "8", "--hinge-margin", "0.3", "--full-margin", "0.2"])
    assert (cfg.attack_options["search_width"], cfg.attack_options["hinge_margin"], cfg.full_margin) == (8, 0.3, 0.2)
    built = get_attack("gcg").make_config(**cfg.attack_values())  # the flags reach the attack's config
    assert (built.search_width, built.hinge_margin, built.full_margin) == (8, 0.3, 0.2)
    assert cfg.result_config()["search_width"] == 8  # and the manifest, at the top level as before


def test_hinge_aims_at_least_at_the_counting_margin():
    assert GCGConfig(hinge_margin=0.2).tau == 0.2
    # P(a) - P(ā) >= 0.5 with P(a) + P(ā) = 1 needs P(a)/P(ā) >= 3: the hinge must aim there.
    assert GCGConfig(hinge_margin=0.2, full_margin=0.5).tau == pytest.approx(math.log(3))
    assert GCGConfig(hinge_margin=2.0, full_margin=0.5).tau == 2.0


def test_cli_gcg_writes_the_random_schema_and_resumes(tmp_path):
    model_dir = tmp_path / "tiny"
    save_tiny_pair(model_dir, "llama", layers=3, seed=3, answering=True)
    suite = tmp_path / "suite.jsonl"
    questions = [("Is fire hot?", "yes"), ("Is Rome in Belgium?", "no"), ("Is ice cold?", "yes")]
    suite.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in questions))
    common = ["--model", str(model_dir), "--suite", str(suite), "--k-sweep", "1,2,8", "--k-attack", "1",
              "--block-size", "4", "--dense-layers", "1", "--context-tokens", "24", "--batch-size", "8",
              "--wandb", "disabled", "--steps", "3"]
    gcg_out, random_out = tmp_path / "gcg", tmp_path / "random"
    gcg_args = common + ["--out", str(gcg_out), "--attack", "gcg", "--search-width", "8", "--topk", "16"]
    assert main(gcg_args) == 0
    assert main(common + ["--out", str(random_out)]) == 0

    def rows(out):
        return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]

    gcg_rows, random_rows = rows(gcg_out), rows(random_out)
    assert len(gcg_rows) == 3 and [set(r) for r in gcg_rows] == [set(r) for r in random_rows]
    assert set(json.loads((gcg_out / "summary.json").read_text())) == set(json.loads((random_out / "summary.json").read_text()))
    manifest = json.loads((gcg_out / "manifest.json").read_text())
    assert manifest["config"]["attack"] == "gcg" and manifest["config"]["attack_params"]["search_width"] == 8
    for r in gcg_rows:
        assert r["attack"] == "gcg"
        if r["status"] == "attacked":
            assert len(r["adv_ids"]) == 3 and 0 <= r["steps"] <= 3
            assert r["flipped"]["1"] or not r["success"]
    assert any(r["status"] == "attacked" for r in gcg_rows)
    before = (gcg_out / "results.jsonl").read_text()
    assert main(gcg_args) == 0  # resume: nothing left to do, nothing appended
    assert (gcg_out / "results.jsonl").read_text() == before
    cut = tmp_path / "cut"
    cut_args = [a if a != str(gcg_out) else str(cut) for a in gcg_args]
    assert main(cut_args + ["--limit", "1"]) == 0
    assert main(cut_args) == 0  # resumed after one item: the same rows as one uninterrupted run
    assert [{k: v for k, v in r.items() if k != "timing"} for r in rows(cut)] == \
        [{k: v for k, v in r.items() if k != "timing"} for r in gcg_rows]
