"""`python -m harness.run` end to end on a tiny local model: CLI errors, results schema,
determinism, resume, report and W&B offline files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import save_tiny_pair

from harness.config import resolve
from harness.results.report import render
from harness.results import SKIP_FULL_WRONG, ResultRow
from harness.run import main
from tasks.contexts import sentences
from tasks.outcomes import Score

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model that answers yes or no (a random one answers neither, so every item would
    be skipped): with seed 11 it answers 4 of the 8 suite items right, and random search flips
    2 of those within 12 candidates, so attacked, skipped, succeeded and failed rows all occur."""
    path = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_pair(path, "llama", layers=3, seed=11, answering=True)
    return path


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "suite.jsonl"
    questions = ["Is fire hot?", "Is ice cold?", "Is the sun a star?", "Is Rome in Belgium?",
                 "Is 100 an even number?", "Do fish swim?", "Can dogs fly?", "Is water wet?"]
    lines = [json.dumps({"question": q, "answer": a}) for q, a in zip(questions, ["yes", "no"] * 4)]
    path.write_text("\n".join(lines) + "\n")
    return path


def base_args(model_dir, suite_file, out):
    return ["--model", str(model_dir), "--suite", str(suite_file), "--out", str(out), "--steps", "12",
            "--k-sweep", "1,2,8", "--k-attack", "1", "--block-size", "4", "--dense-layers", "1",
            "--context-tokens", "24", "--batch-size", "4", "--wandb", "disabled"]


def read_rows(out):
    return [json.loads(line) for line in (Path(out) / "results.jsonl").read_text().splitlines()]


def without_timing(rows):
    return [{k: v for k, v in r.items() if k != "timing"} for r in rows]


# A confident item's sparse answer class -> its outcome class (tasks/outcomes.py, "Partition").
OUTCOME_OF = {"correct": "kept", "wrong": "strict", "other": "breakdown"}
OUTCOME_KEYS = {"class", "strict", "breakdown", "paper_criterion"}


def answers_right(score: dict) -> bool:
    """The protocol-v1 rule, restated: P(a) is strictly the largest of P(a), P(ā) and
    neither = 1 - P(a) - P(ā) (ties are not right)."""
    pc, pw = score["p_correct"], score["p_wrong"]
    return pc > pw and pc > 1 - pc - pw


def check_partition(scores: dict, flipped: dict, outcomes: dict, ks) -> None:
    """The flags of one sweep against its scores: flip = confident and the sparse class is not
    correct; each confident score is exactly one of kept / strict / breakdown; strict + breakdown
    = flip; paper_criterion = the greedy token is not a correct-answer token."""
    confident = answers_right(scores["full"])  # --full-margin 0
    for k in ks:
        score = scores[k]
        assert score["correct"] == answers_right(score)
        answer = Score.from_dict(score).answer_class
        assert flipped[k] == (confident and answer != "correct")
        record = outcomes[k]
        assert set(record) == OUTCOME_KEYS  # the first release's "seed" key is gone
        if not confident:
            assert record == {"class": None, "strict": False, "breakdown": False, "paper_criterion": False}
            continue
        assert record["class"] == OUTCOME_OF[answer]
        assert record["strict"] == (answer == "wrong") and record["breakdown"] == (answer == "other")
        assert record["strict"] + record["breakdown"] == flipped[k]
        assert record["paper_criterion"] == (score["argmax"] != "correct")


def test_run_writes_schema_and_is_deterministic(model_dir, suite_file, tmp_path, capsys):
    assert main(base_args(model_dir, suite_file, tmp_path / "a")) == 0
    printed = capsys.readouterr().out
    assert "flip rate" in printed and "results:" in printed
    assert main(base_args(model_dir, suite_file, tmp_path / "b")) == 0
    rows_a, rows_b = read_rows(tmp_path / "a"), read_rows(tmp_path / "b")
    assert len(rows_a) == 8 and without_timing(rows_a) == without_timing(rows_b)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["config"]["k_sweep"] == [1, 2, 8]
    assert manifest["config"]["attack_params"]["steps"] == 12
    assert set(manifest["versions"]) >= {"python", "torch", "transformers"}
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    attacked = [r for r in rows_a if r["status"] == "attacked"]
    assert summary["n_attacked"] == len(attacked)
    assert summary["n_items"] == 8
    ks = ("1", "2", "8")
    for r in rows_a:
        assert set(r["natural"]) == {"full", *ks}
        # reading a fresh row back (reclassified at the run's margin) changes nothing
        assert ResultRow.from_dict(r, full_margin=0.0).to_dict() == r
        assert r["confident"] == answers_right(r["natural"]["full"])
        check_partition(r["natural"], r["natural_flipped"], r["natural_outcomes"], ks)
        if r["status"] == "skipped":
            assert not r["confident"] and r["skip_reason"] == SKIP_FULL_WRONG
            assert r["scores"] is None and r["flipped"] is None and "draws" not in r
            assert not any(r["natural_flipped"].values())
            continue
        assert r["confident"] and r["skip_reason"] is None
        check_partition(r["scores"], r["flipped"], r["outcomes"], ks)
        assert r["success"] == r["flipped"]["1"]  # the returned prompt flips at k_attack
        assert len(r["adv_ids"]) == 3 and 1 <= r["steps"] <= 12
        # every candidate of every batch of 4 scored is one draw; a success is a sparse-only draw
        draws = r["draws"]
        assert set(draws) == {"n", "sparse_only", "full_wrong", "both_right"}
        assert draws["n"] == min(12, -(-r["steps"] // 4) * 4)
        assert draws["sparse_only"] + draws["full_wrong"] + draws["both_right"] == draws["n"]
        assert (draws["sparse_only"] > 0) == r["success"]
        # the answer position has more than 8 key blocks of 4 tokens, so k = 8 is still sparse
        assert r["answer_blocks"] > 8 and r["density"]["8"] == pytest.approx(8 / r["answer_blocks"])
        if r["success"]:
            assert r["verified_status"] == ("verified" if r["scores"]["8"]["correct"] else "not verified")
            assert r["verified"] == (r["verified_status"] == "verified")
            assert r["monotone"] == (not r["scores"]["1"]["correct"])
        else:
            assert not r["verified"] and "verified_status" not in r and "monotone" not in r
    # items were attacked, some skipped; some attacks succeeded, and a failed attack used its
    # whole budget of 12 candidates
    assert len(attacked) >= 3 and summary["n_skipped"] == 8 - len(attacked) >= 1
    assert any(r["success"] for r in attacked) and not all(r["success"] for r in attacked)
    assert all(r["steps"] == 12 for r in attacked if not r["success"])
    assert summary["n_not_confident"] == 0  # unconfident items are skipped, not attacked
    assert summary["n_success"] == summary["success"]["count"] == sum(r["success"] for r in attacked)
    assert summary["success"]["n"] == len(attacked) and summary["success"]["clusters"] == len(attacked)
    for name in ("n", "sparse_only", "full_wrong", "both_right"):
        total = sum(r["draws"][name] for r in attacked)
        assert (summary["draws"][name] if name == "n" else summary["draws"][name]["count"]) == total
    margins = summary["full_margin_of_counted"]
    assert margins["n"] == len(attacked) and margins["min"] == pytest.approx(
        min(r["natural"]["full"]["p_correct"] - r["natural"]["full"]["p_wrong"] for r in attacked))
    for gold in ("yes", "no"):
        mine = [r for r in attacked if r["answer"] == gold]
        table = summary["direction"]["adversarial"][gold]
        assert (table["n"], table["count"]) == (len(mine), sum(r["flipped"]["1"] for r in mine))
    for i, k in enumerate(ks):
        entry = summary["per_k"][i]
        assert entry["k"] == int(k) and entry["n_flipped"] == sum(r["flipped"][k] for r in attacked)
        assert entry["n"] == len(attacked) and entry["clusters"] == len(attacked)
        strict, breakdown = (summary["outcomes_per_k"][c][i]["count"] for c in ("strict", "breakdown"))
        assert strict + breakdown == entry["n_flipped"]
    table = render(tmp_path / "a")
    assert table.count("\n| ") == 9  # header + 8 items


def test_resume_after_interruption_gives_the_same_rows(model_dir, suite_file, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(base_args(model_dir, suite_file, full)) == 0
    assert main(base_args(model_dir, suite_file, cut) + ["--limit", "3"]) == 0
    # simulate a kill mid-write of the fourth row
    with open(cut / "results.jsonl", "a") as fh:
        fh.write('{"item_id": "suite-003", "quest')
    assert main(base_args(model_dir, suite_file, cut)) == 0
    assert without_timing(read_rows(cut)) == without_timing(read_rows(full))
    # the manifest describes the rows now in the directory: the wider limit of the resume
    assert json.loads((cut / "manifest.json").read_text())["config"]["limit"] == \
        json.loads((full / "manifest.json").read_text())["config"]["limit"]
    assert main(base_args(model_dir, suite_file, cut) + ["--limit", "2"]) == 0  # a narrower resume adds nothing
    assert json.loads((cut / "manifest.json").read_text())["config"]["limit"] == \
        json.loads((full / "manifest.json").read_text())["config"]["limit"]
    assert main(base_args(model_dir, suite_file, cut)) == 0  # nothing left: no duplicates
    assert len(read_rows(cut)) == 8


def test_resume_with_different_config_is_refused(model_dir, suite_file, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(base_args(model_dir, suite_file, out) + ["--limit", "1"]) == 0
    capsys.readouterr()
    assert main(base_args(model_dir, suite_file, out) + ["--limit", "1", "--seed", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different config" in err[0] and "seed: 0 -> 5" in err[0]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--attack", "nope"], "unknown attack 'nope'"),
        (["--method", "nope"], "unknown sparse method 'nope'"),
        (["--suite", "nope"], "nope"),
        (["--k-attack", "0"], "--k-attack must be an integer >= 1"),
        (["--k-sweep", ""], "--k-sweep must list at least one k"),
        (["--k-sweep", "2,x"], "comma-separated integers"),
        (["--block-size", "0"], "--block-q must be an integer >= 1"),
        (["--steps", "-1"], "--steps must be an integer >= 1"),
        (["--context", "poem"], "unknown context 'poem'"),
        (["--config", "/nonexistent.yaml"], "cannot read config file"),
        (["--full-margin", "1.5"], "--full-margin must be a number in [0, 1)"),
        (["--balance", "maybe"], "--balance: expected true/false, got 'maybe'"),
        (["--balance", "true", "--suite", "facts"], "--balance applies to generated suites (needle) only"),
        (["--absent", "9"], "--absent must be an integer in [0, 8], got 9"),
        (["--density-sweep", "0"], "--density-sweep values must be numbers in (0, 1]"),
        (["--limt", "3"], "unrecognized arguments: --limt 3; did you mean --limit?"),
        (["--k-atack=4"], "unrecognized arguments: --k-atack=4; did you mean --k-attack?"),
    ],
)
def test_bad_input_exits_2_with_one_line(model_dir, suite_file, tmp_path, extra, message):
    done = subprocess.run([sys.executable, "-m", "harness.run", *base_args(model_dir, suite_file, tmp_path / "x"), *extra],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "WANDB_MODE": "offline"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr


def test_unknown_model_exits_2(suite_file, tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness.run", "--model", str(tmp_path / "missing-model"),
                           "--suite", str(suite_file), "--out", str(tmp_path / "o"), "--wandb", "disabled"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "missing-model" in done.stderr.strip().splitlines()[-1]


def test_yaml_config_is_read_and_flags_override_it(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("k-attack: 6\nsteps: 7\nk_sweep: [3, 5]\nblock_size: 16\n")
    opts = resolve(["--config", str(cfg), "--steps", "9"])
    assert (opts.k_attack, opts.steps, opts.k_sweep, opts.block_q, opts.block_k) == (6, 9, [3, 5, 6], 16, 16)
    bad = tmp_path / "bad.yaml"
    bad.write_text("colour: red\n")
    with pytest.raises(ValueError, match="unknown option 'colour'"):
        resolve(["--config", str(bad)])


def test_wandb_offline_writes_run_files(model_dir, suite_file, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "w"
    args = base_args(model_dir, suite_file, out)
    args[args.index("--wandb") + 1] = "auto"
    assert main(args + ["--limit", "2"]) == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))
    table = json.loads(next((runs[0] / "files" / "media" / "table").glob("adversarial_examples_*.json")).read_text())
    rows = read_rows(out)
    assert [r[0] for r in table["data"]] == [r["item_id"] for r in rows]
    assert "p_correct_k1" in table["columns"]
    curve = json.loads(next((runs[0] / "files" / "media" / "table").glob("flip_rate_vs_k_*.json")).read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert curve["data"] == [[e["k"], e["flip_rate"], e["ci_low"], e["ci_high"]] for e in summary["per_k"]]


def test_plugin_registers_a_sparse_method_for_the_run(model_dir, suite_file, tmp_path):
    plugin = tmp_path / "my_methods.py"
    plugin.write_text(
        "import torch\n"
        "from sparse import register_sparse_method\n"
        "@register_sparse_method('test_plugin_recent')\n"
        "def recent(ctx):\n"
        "    kb = torch.arange(ctx.layout.n_kblocks, dtype=torch.float32)\n"
        "    return ctx.keep_top(slice(None), kb.expand(ctx.layout.n_qblocks, -1)[None, None])\n"
    )
    out = tmp_path / "p"
    args = base_args(model_dir, suite_file, out) + ["--limit", "2", "--plugin", str(plugin), "--method", "test_plugin_recent"]
    assert main(args) == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["method"] == "test_plugin_recent"
    assert main(args) == 0  # resuming imports the plugin again without a double registration
    assert main(base_args(model_dir, suite_file, tmp_path / "q") + ["--plugin", str(tmp_path / "none.py")]) == 2


def test_minimal_k_records_the_seed_k_and_the_flip_there(model_dir, suite_file, tmp_path):
    out = tmp_path / "mk"
    assert main(base_args(model_dir, suite_file, out) + ["--limit", "4", "--minimal-k"]) == 0
    rows = read_rows(out)
    attacked = [r for r in rows if r["status"] == "attacked"]
    assert attacked
    for r in rows:
        seed_k = r["minimal_k"]
        assert 1 <= seed_k["clean"] <= r["answer_blocks"]
        if r["status"] == "attacked":
            assert 1 <= seed_k["adversarial"] <= r["answer_blocks"]
            assert seed_k["flip_at_clean_k"] or not seed_k["strict_at_clean_k"]  # a strict flip is a flip
            if str(seed_k["clean"]) in r["flipped"]:  # scored in the sweep too: the same verdict
                assert seed_k["flip_at_clean_k"] == r["flipped"][str(seed_k["clean"])]
                assert seed_k["strict_at_clean_k"] == r["outcomes"][str(seed_k["clean"])]["strict"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["minimal_k"]["flip_at_clean_k"]["n"] == len(attacked)


def test_attack_none_measures_natural_flips_only(model_dir, suite_file, tmp_path):
    out = tmp_path / "none"
    assert main(base_args(model_dir, suite_file, out) + ["--attack", "none"]) == 0
    rows = read_rows(out)
    assert any(r["status"] == "attacked" for r in rows)
    for r in rows:
        if r["status"] == "attacked":
            assert r["adv_ids"] == [] and r["steps"] == 0 and not r["success"]
            assert r["scores"] == r["natural"] and r["flipped"] == r["natural_flipped"]
            assert r["outcomes"] == r["natural_outcomes"] and r["draws"]["n"] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_k"] == summary["natural_per_k"]


def test_density_sweep_scores_each_item_at_the_k_of_each_density(model_dir, suite_file, tmp_path):
    out = tmp_path / "dens"
    args = base_args(model_dir, suite_file, out) + ["--limit", "4", "--density-sweep", "0.1,0.25,0.5"]
    assert main(args) == 0
    rows = read_rows(out)
    for r in rows:
        assert set(r["density_ks"]) == {"0.1", "0.25", "0.5"}
        for d, k in r["density_ks"].items():
            got = r["density"][str(k)]
            # the closest density any k can give: k/n within half a block of the target
            assert abs(got - float(d)) <= 0.5 / r["answer_blocks"] + 1e-12
            assert str(k) in r["natural_flipped"]
    summary = json.loads((out / "summary.json").read_text())
    assert [e["density"] for e in summary["per_density"]] == [0.1, 0.25, 0.5]
    assert summary["k_sweep"] == [1]  # only k_attack as a fixed k
    attacked = [r for r in rows if r["status"] == "attacked"]
    assert attacked
    for e in summary["per_density"]:
        ks = [str(r["density_ks"][str(e["density"])]) for r in attacked]
        assert e["n"] == len(attacked)
        assert e["n_flipped"] == sum(r["flipped"][k] for r, k in zip(attacked, ks))
        assert e["strict"]["count"] == sum(r["outcomes"][k]["strict"] for r, k in zip(attacked, ks))
        assert e["breakdown"]["count"] == sum(r["outcomes"][k]["breakdown"] for r, k in zip(attacked, ks))
        assert e["strict"]["count"] + e["breakdown"]["count"] == e["n_flipped"]
        assert e["density_achieved"] == pytest.approx(sum(r["density"][k] for r, k in zip(attacked, ks)) / len(ks))
        assert e["direction"]["yes"]["n"] + e["direction"]["no"]["n"] == len(attacked)


def test_bad_density_sweep_is_refused(model_dir, suite_file, tmp_path, capsys):
    assert main(base_args(model_dir, suite_file, tmp_path / "x") + ["--density-sweep", "0.5,1.5"]) == 2
    assert "(0, 1]" in capsys.readouterr().err


def needle_args(model_dir, out):
    return ["--model", str(model_dir), "--suite", "needle", "--limit", "6", "--depth", "0.2,0.8",
            "--context-tokens", "96", "--attack", "none", "--k-sweep", "1,2", "--k-attack", "1", "--block-size", "4",
            "--dense-layers", "1", "--wandb", "disabled", "--out", str(out)]


def test_needle_suite_runs_with_its_own_contexts_and_records_the_needle(model_dir, tmp_path):
    out = tmp_path / "needle"
    args = needle_args(model_dir, out)
    assert main(args) == 0
    rows = read_rows(out)
    # each context: a needle per depth, then one absent-needle question (default --absent 1)
    assert [r["needle"]["depth"] for r in rows] == [0.2, 0.8, None] * 2
    assert len({r["needle"]["group"] for r in rows}) == 2
    # balanced by default for the needle suite: as many yes as no questions
    assert sum(r["answer"] == "yes" for r in rows) == sum(r["answer"] == "no" for r in rows) == 3
    for r in rows:
        attribution = r["attribution"]["natural"]
        assert attribution["layers"] == [1, 2]  # the sparse layers (layer 0 is dense)
        for k in ("1", "2"):
            assert len(attribution[k]["dropped_mass"]) == 2
            assert all(0 <= m <= 1 for m in attribution[k]["dropped_mass"])
        if r["needle"]["depth"] is None:  # absent: the context never mentions the person asked about
            assert r["needle"] == {"depth": None, "group": r["needle"]["group"], "token_span": None, "absent": True}
            assert r["answer"] == "no" and r["item_id"].endswith("-absent0")
            assert all("needle_kept" not in attribution[k] for k in ("1", "2"))
            continue
        start, end = r["needle"]["token_span"]
        assert 0 <= start < end
        for k in ("1", "2"):
            assert len(attribution[k]["needle_kept"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    natural = summary["attribution"]["natural"]
    assert natural["n_flipped"] + natural["n_not_flipped"] == summary["n_attacked"] >= 1
    assert len(natural["needle_kept_by_layer"]) == 2
    # items sharing a context are one cluster
    assert summary["per_k"][0]["clusters"] == len({r["needle"]["group"] for r in rows if r["status"] == "attacked"})
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert (config["depth"], config["absent"], config["balance"]) == ([0.2, 0.8], 1, True)
    assert main(args[:-1] + [str(tmp_path / "bad"), "--depth", "0.5,2"]) == 2


def test_needle_suite_without_absent_and_balance_gives_the_first_release_items(model_dir, tmp_path):
    out = tmp_path / "needle-v0"
    assert main(needle_args(model_dir, out) + ["--absent", "0", "--balance", "false"]) == 0
    rows = read_rows(out)
    assert [r["needle"]["depth"] for r in rows] == [0.2, 0.8] * 3
    assert len({r["needle"]["group"] for r in rows}) == 3
    # the first release's rule: needle j of group g asks yes when g + j is even
    assert [r["answer"] for r in rows] == ["yes", "no", "no", "yes", "yes", "no"]
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert (config["absent"], config["balance"]) == (0, False)


def test_filler_null_without_a_context_draws_from_the_filler_pool(model_dir, tmp_path):
    """attacks/nulls.py `filler_text`: with no context (--context none) the filler text is the
    whole filler pool joined by spaces, so every draw is a window of its tokens."""
    from transformers import AutoTokenizer

    out = tmp_path / "filler"
    args = ["--model", str(model_dir), "--suite", "facts", "--limit", "4", "--attack", "filler",
            "--context", "none", "--steps", "8", "--k-sweep", "1,2", "--k-attack", "1", "--block-size", "4",
            "--dense-layers", "1", "--batch-size", "4", "--wandb", "disabled", "--out", str(out)]
    assert main(args) == 0
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert (config["attack"], config["context"], config["balance"]) == ("filler", "none", False)
    rows = read_rows(out)
    attacked = [r for r in rows if r["status"] == "attacked"]
    assert attacked
    tok = AutoTokenizer.from_pretrained(model_dir)
    pool = tok.encode(" ".join(sentences("filler")), add_special_tokens=False)
    windows = {tuple(pool[i:i + 3]) for i in range(len(pool) - 2)}
    for r in attacked:
        assert r["attack"] == "filler" and tuple(r["adv_ids"]) in windows
        assert r["draws"]["n"] == min(8, -(-r["steps"] // 4) * 4)
        assert r["success"] == r["flipped"]["1"] == (r["draws"]["sparse_only"] > 0)


def test_method_settings_reach_the_method_and_the_manifest(model_dir, suite_file, tmp_path):
    """--method-opt and YAML `method: {name: ...}` fill the method's settings; the selection uses
    them (stream-density keeps its share of every query block) and the manifest records them."""
    from harness.config import resolve
    from sparse import settings_of

    out = tmp_path / "adaptive"
    args = base_args(model_dir, suite_file, out) + ["--method", "stream-density", "--method-opt", "density=0.5",
                                                    "--attack", "none", "--limit", "2"]
    assert main(args) == 0
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["method"] == "stream-density" and config["method_options"] == {"density": 0.5}
    for r in read_rows(out):  # at k = 1 the kept share follows the setting, not k
        blocks = r["answer_blocks"]
        assert r["density"]["1"] == pytest.approx(min(blocks, -(-blocks // 2)) / blocks)
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("method: {name: stream-density, density: 0.25}\n")
    cfg = resolve(["--config", str(yaml_file)])
    assert (cfg.method, cfg.method_options) == ("stream-density", {"density": 0.25})
    from harness.run import sparse_config

    assert settings_of(sparse_config(cfg)).density == 0.25


def test_report_renders_runs_with_absent_needle_questions():
    """The committed make-run directory holds an absent-needle row (no needle span, no needle_kept)."""
    run = ROOT / "docs" / "runs" / "make-run-fresh-clone"
    absent = [r for r in read_rows(run) if r["item_id"].endswith("-absent0")]
    assert absent and absent[0]["needle"]["token_span"] is None
    table = render(run)
    assert absent[0]["question"] in table and table.count("\n| ") == 1 + len(read_rows(run))


@pytest.mark.parametrize("run", ["make-run-fresh-clone", "board-facts-qwen2.5-1.5b/qwen2.5-1.5b__hip__none"])
def test_report_names_a_suite_file_whose_path_has_braces(run, tmp_path):
    """The set-up line is plain text: a suite path like `suites/my{x}.yaml` is printed as is."""
    copy = tmp_path / "run"
    for name in ("manifest.json", "results.jsonl"):
        (copy / name).parent.mkdir(exist_ok=True)
        (copy / name).write_text((ROOT / "docs" / "runs" / run / name).read_text())
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["suite"] = "suites/my{x}.yaml"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert "suite=suites/my{x}.yaml, full margin=" in render(copy).splitlines()[0]


def test_report_of_a_natural_run_has_no_attack_columns_and_gives_each_items_outcome():
    """A board's natural cell (--attack none, --density-sweep): one column per density, each item
    read at its own k, and the natural outcome at k_attack instead of "attack failed"."""
    run = ROOT / "docs" / "runs" / "board-facts-qwen2.5-1.5b" / "qwen2.5-1.5b__hip__none"
    rows = read_rows(run)
    table = render(run)
    assert "attack failed" not in table and "Adv tokens" not in table
    header = next(line for line in table.splitlines() if line.startswith("| Question"))
    assert header == "| Question | Full attention | density 0.05 | density 0.1 | density 0.2 | Outcome (k=4) |"
    lines = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| Question")]
    assert len(lines) == len(rows)
    for row, line in zip(rows, lines):
        cells = line.split(" | ")
        if row["status"] == "skipped":
            assert cells[-1].startswith("skipped:")
            continue
        k = str(row["density_ks"]["0.1"])
        score = row["natural"][k]
        assert f"{score['p_correct']:.3f} / {score['p_wrong']:.3f}" in cells[3]
        assert cells[3].startswith("**") == row["natural_flipped"][k]
        expected = {"strict": "strict flip", "breakdown": "breakdown", "kept": "kept", None: "kept"}
        assert cells[-1].rstrip(" |") == expected[row["natural_outcomes"][str(row["k_attack"])]["class"]]


def test_a_model_that_cannot_be_fetched_is_one_line_even_when_the_hub_error_spans_several(tmp_path):
    """The hub's OSError quotes several lines; the user still gets `PROG: error: ...` on one."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "harness.run", "--model", "nobody/no-such-model",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 2
    last = done.stderr.splitlines()[-1]
    assert last.startswith("harness.run: error: Could not load 'nobody/no-such-model'"), done.stderr
    assert "Cause: OSError" in last and "error" not in done.stderr.replace(last, ""), done.stderr


def test_a_reader_that_stops_early_ends_a_command_without_a_traceback():
    """`python -m harness.report RUN | head`: the command stops quietly when its reader is gone
    (output larger than the pipe's buffer, so the write itself fails)."""
    code = ("import sys; from harness.cli import command; "
            "sys.exit(command('prog', lambda: print('x' * 100 + '\\n') or print('y' * 4_000_000)))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # like `| head -c 10`
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""


def test_a_second_writer_of_one_run_directory_is_refused_while_the_first_holds_it(tmp_path):
    from harness.errors import UsageError
    from harness.results.store import RunStore

    manifest = {"config": {"limit": 2}}
    first = RunStore(tmp_path / "run")
    first.open(manifest)
    with pytest.raises(UsageError, match="being written by another run"):
        RunStore(tmp_path / "run").open(manifest)
    del first  # the lock goes with the first writer
    assert RunStore(tmp_path / "run").open(manifest) == []
