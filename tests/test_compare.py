"""harness.results.compare on synthetic run directories (docs/results-schema.md): pairing by item id,
known discordances and their exact McNemar / Holm p-values, the three measures, and
one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results.compare import compare_runs, main
from harness.results.intervals import wilson

KS = [2, 4, 8]


def score(correct):
    return {"p_correct": 0.8 if correct else 0.2, "p_wrong": 0.2 if correct else 0.8, "correct": correct,
            "token": "Yes" if correct else "No"}


def row(item_id, success, flipped=None, group=None, density_ks=None, skipped=False):
    """An attacked (or skipped) row as harness.run writes it; `flipped` maps k -> flag (default: success at 4)."""
    flipped = {str(k): bool((flipped or {4: success}).get(k, False)) for k in KS}
    out = {"item_id": item_id, "question": f"{item_id}?", "answer": "yes", "status": "attacked", "skip_reason": None,
           "natural": {"full": score(True), **{str(k): score(True) for k in KS}},
           "natural_flipped": {str(k): False for k in KS}, "attack": "random", "k_attack": 4,
           "adv_ids": [1, 2, 3], "adv_text": "a b c", "steps": 5, "success": success, "verified": success,
           "scores": {"full": score(True), **{str(k): score(not flipped[str(k)]) for k in KS}},
           "flipped": flipped, "timing": {"seconds": 0.1}}
    if skipped:
        out.update(status="skipped", skip_reason="full attention answers wrongly without adversarial tokens",
                   adv_ids=None, adv_text=None, steps=0, success=False, verified=False, scores=None, flipped=None)
    if group is not None:
        out["needle"] = {"depth": 0.5, "group": group, "token_span": [0, 1]}
    if density_ks is not None:
        out["density_ks"] = density_ks
    return out


def make_run(root: Path, name: str, rows: list[dict], attack="random", density_sweep=None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    config = {"attack": attack, "k_attack": 4, "k_sweep": KS, "method": "stream", "block_q": 8, "block_k": 8,
              "dense_layers": 2, "model": "smollm2-135m", "suite": "needle", "limit": None, "n_adv": 3,
              "steps": 200, "context": "filler", "context_tokens": 256, "seed": 0, "batch_size": 16,
              "ascii_only": False, "attack_params": {}, "density_sweep": density_sweep}
    (d / "manifest.json").write_text(json.dumps({"config": config, "model": {"name": "smollm2-135m"},
                                                 "git_commit": None, "created": "2026-01-01T00:00:00Z"}))
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def ids(n):
    return [f"needle-g{i // 2:02d}-d{i % 2}" for i in range(n)]  # two items (depths) per context


@pytest.fixture
def runs(tmp_path):
    """random: 9 of 12 items succeed; filler succeeds on 2 of them (7:0 discordant); far on 6 plus 1 other (3:1).
    random also has a skipped item and an item the others lack; neither is paired."""
    items = ids(12)
    group = {i: i.rsplit("-", 1)[0] for i in items}
    attack = [i < 9 for i in range(12)]
    filler = [i < 2 for i in range(12)]
    far = [i < 6 or i == 11 for i in range(12)]
    extra = [row("needle-g99-d0", True, group="needle-g99"), row("needle-g98-d0", False, skipped=True)]
    return {
        "random": make_run(tmp_path, "random", [row(i, s, group=group[i]) for i, s in zip(items, attack)] + extra),
        "filler": make_run(tmp_path, "filler", [row(i, s, group=group[i]) for i, s in zip(items, filler)]
                           + [row("needle-g98-d0", True, group="needle-g98")], attack="filler"),
        "far": make_run(tmp_path, "far", [row(i, s, group=group[i]) for i, s in zip(reversed(items), reversed(far))],
                        attack="far"),
    }


def test_an_attack_against_its_nulls(runs):
    result = compare_runs([runs["random"], runs["filler"], runs["far"]])
    assert result["measure"] == "attack success" and result["first"]["attack"] == "random"
    filler, far = result["comparisons"]
    assert (filler["attack"], filler["n"], filler["clusters"]) == ("filler", 12, 6)
    assert (filler["b10"], filler["b01"]) == (7, 0)
    assert filler["p"] == pytest.approx(0.015625)
    assert (far["b10"], far["b01"]) == (3, 1)
    assert far["p"] == pytest.approx(2 * (1 + 4) / 16)  # 0.625
    # Holm over the two comparisons: 2 * 0.015625, then max(0.03125, 0.625)
    assert (filler["p_holm"], far["p_holm"]) == (pytest.approx(0.03125), pytest.approx(0.625))
    first, other = filler["first"], filler["other"]
    assert (first["count"], first["n"], other["count"], other["n"]) == (9, 12, 2, 12)
    assert (first["wilson_low"], first["wilson_high"]) == wilson(9, 12)
    assert first["cluster_low"] <= first["rate"] <= first["cluster_high"]
    assert filler["diff"] == pytest.approx(7 / 12) and filler["diff_low"] <= filler["diff"] <= filler["diff_high"]
    assert far["diff"] == pytest.approx(2 / 12)


def test_flip_at_k_and_at_density(tmp_path):
    items = ids(6)
    a = make_run(tmp_path, "a", [row(i, True, flipped={2: True, 4: j < 5}, density_ks={"0.25": 2})
                                 for j, i in enumerate(items)], density_sweep=[0.25])
    b = make_run(tmp_path, "b", [row(i, False, flipped={2: j < 1, 4: False}, density_ks={"0.25": 2})
                                 for j, i in enumerate(items)], density_sweep=[0.25])
    at_k = compare_runs([a, b], k=4)["comparisons"][0]
    assert (at_k["n"], at_k["b10"], at_k["b01"]) == (6, 5, 0)
    at_density = compare_runs([a, b], density=0.25)
    assert at_density["measure"] == "flip at density 0.25"
    assert (at_density["comparisons"][0]["b10"], at_density["comparisons"][0]["b01"]) == (5, 0)


def test_table_and_json_output(runs, capsys):
    assert main([str(runs["random"]), str(runs["filler"]), str(runs["far"])]) == 0
    table = capsys.readouterr().out
    assert "7:0" in table and "0.01562" in table and "0.03125" in table and "9/12 = 0.750" in table
    assert main([str(runs["random"]), str(runs["filler"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["comparisons"][0]["p_holm"] == pytest.approx(0.015625)  # one comparison: nothing to adjust


def _error(argv, capsys) -> str:
    assert main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("harness.results.compare: error: ")
    return lines[0]


def test_bad_input_is_one_line_and_exit_2(runs, tmp_path, capsys):
    (tmp_path / "no-results").mkdir()
    (tmp_path / "no-results" / "manifest.json").write_text(json.dumps({"config": {}}))
    other = make_run(tmp_path, "other", [row("other-000", True)])
    assert "is not a directory" in _error([runs["random"], tmp_path / "missing"], capsys)
    assert "results.jsonl missing" in _error([runs["random"], tmp_path / "no-results"], capsys)
    assert "no counted item in common" in _error([runs["random"], other], capsys)
    assert "k=16" in _error([runs["random"], runs["filler"], "--k", "16"], capsys)
    assert "density 0.5" in _error([runs["random"], runs["filler"], "--density", "0.5"], capsys)
    _error([runs["random"]], capsys)  # one run: nothing to compare
    _error([runs["random"], runs["filler"], "--k", "4", "--density", "0.5"], capsys)


def test_robust_only_leaves_out_items_sparsity_flips_without_the_attack(tmp_path):
    """An attack is not credited with flips the clean prompt already has at k_attack."""
    items = ids(8)
    fragile = []
    for j, i in enumerate(items):
        r = row(i, j < 6)
        if j < 3:  # the clean prompt already flips at k = 4
            r["natural"]["4"] = score(False)
        fragile.append(r)
    a = make_run(tmp_path, "a", fragile)
    b = make_run(tmp_path, "b", [row(i, j < 3) for j, i in enumerate(items)], attack="filler")
    everything = compare_runs([a, b])["comparisons"][0]
    assert (everything["n"], everything["first"]["count"], everything["other"]["count"]) == (8, 6, 3)
    robust = compare_runs([a, b], robust_only=True)
    entry = robust["comparisons"][0]
    assert "not flipped without the attack" in robust["measure"]
    assert (entry["n"], entry["first"]["count"], entry["other"]["count"], entry["b10"], entry["b01"]) == (5, 3, 0, 3, 0)
