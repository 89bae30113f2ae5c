"""flipbench's KV-cache compression keeps exactly the tokens NVIDIA's kvpress keeps.

kvpress 0.5.5 pins transformers < 5.3 and flipbench needs >= 5.5.4, so kvpress runs in a
venv of its own (`make test-kvpress`: tests/kvpress/export_model.py exports smollm2-135m
and a 256-token prompt, tests/kvpress/kvpress_side.py records which tokens five presses
leave in the cache). Here, in the project's venv, `sparse.kv_cache.kept_token_indices`
must keep the same tokens per press, compression ratio, layer and KV head, on the same
weights and ids. Without kvpress's record (any `make test`) every test skips.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from sparse.kv_cache import kept_token_indices
from sparse.registry import make_settings

ROOT = Path(__file__).resolve().parents[1]
KVPRESS_DIR = ROOT / "build" / "kvpress"
RECORD = KVPRESS_DIR / "kept_indices.json"
RATIOS = (0.25, 0.5, 0.75)
# kvpress press -> (flipbench kv method, settings beyond the press's own fields, which share
# their names: n_sink, window_size, kernel_size). ObservedAttentionPress is H2O's score as a
# mean over the queries that see each key, with no recent window reserved.
METHODS = {
    "StreamingLLMPress": ("streamingllm", {}),
    "SnapKVPress": ("snapkv", {}),
    "TOVAPress": ("tova", {}),
    "KnormPress": ("knorm", {}),
    "ObservedAttentionPress": ("h2o", {"recent_ratio": 0.0, "normalize": True}),
}
SHOWN_ROWS = 12  # differing (layer, head) rows spelt out in a failure message

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not RECORD.exists(), reason=f"no kvpress record {RECORD.relative_to(ROOT)}: "
                       "`make test-kvpress` runs kvpress 0.5.5 in .venv-kvpress and writes it"),
]


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text())


def press_run(record, press: str, ratio: float) -> dict:
    runs = [r for r in record["runs"] if r["press"] == press and r["compression_ratio"] == ratio]
    assert len(runs) == 1, f"{RECORD} holds {len(runs)} runs of {press} at ratio {ratio}, expected 1"
    return runs[0]


def kvpress_n_kept(n_tokens: int, ratio: float) -> int:
    """kvpress.utils.compute_n_kept (0.5.5) for ratios below 1: int(T * (1 - ratio)), at least 1."""
    return max(1, int(n_tokens * (1 - ratio)))


def differences(press: str, ratio: float, run: dict, ours: dict) -> tuple[list[str], list[str]]:
    """(real, tied): one line per (layer, head) whose kept tokens differ, split by whether the
    tokens only one side keeps all tie exactly in kvpress's score at the cut. A tie is not a
    disagreement: both sides keep a top-n set; torch.topk's order among equal scores is
    unspecified, flipbench keeps the earliest (deterministic)."""
    real, tied_lines = [], []
    for layer, heads in enumerate(run["kept"]):
        for head, theirs in enumerate(heads):
            mine = ours[layer][head].tolist()
            if mine != theirs:
                only_kvpress = sorted(set(theirs) - set(mine))
                only_ours = sorted(set(mine) - set(theirs))
                tied = run["ties"][layer][head]
                line = (f"{press} ratio {ratio} layer {layer} head {head}: kvpress only {only_kvpress}, "
                        f"flipbench only {only_ours}")
                if set(only_kvpress + only_ours) <= set(tied):
                    tied_lines.append(f"{line} (exact tie at the cut among {tied})")
                else:
                    real.append(line)
    return real, tied_lines


def test_record_covers_every_press_and_ratio_at_kvpress_budget(record):
    n_tokens = len(record["input_ids"])
    assert n_tokens == 256
    assert sorted((r["press"], r["compression_ratio"]) for r in record["runs"]) == \
        sorted((press, ratio) for press in METHODS for ratio in RATIOS)
    for run in record["runs"]:
        assert run["n_kept"] == kvpress_n_kept(n_tokens, run["compression_ratio"])
        assert all(len(row) == run["n_kept"] and row == sorted(set(row)) for layer in run["kept"] for row in layer)


def test_record_is_of_the_same_weights_and_prompt(record, smollm2):
    """The exported model is flipbench's converted smollm2-135m and the ids are export_model.py's prompt."""
    spec = importlib.util.spec_from_file_location("export_model", ROOT / "tests" / "kvpress" / "export_model.py")
    export_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_model)
    from harness.experiments.fidelity import text_ids

    model, tokenizer = smollm2
    assert export_model.weights_sha256(model) == record["weights_sha256"]
    expected = text_ids(export_model.SOURCE, tokenizer, export_model.N_TOKENS, seed=export_model.SEED)
    assert record["input_ids"] == expected[0].tolist()


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("press", list(METHODS))
def test_kept_tokens_equal_kvpress(record, smollm2, press, ratio):
    run = press_run(record, press, ratio)
    method, extra = METHODS[press]
    settings = make_settings(method, {**run["settings"], **extra})
    model, _ = smollm2
    ours = kept_token_indices(model, torch.tensor([record["input_ids"]]), method, run["n_kept"], settings)
    n_kv = model.config.num_key_value_heads
    assert sorted(ours) == list(range(len(run["kept"])))
    assert all(tuple(kept.shape) == (n_kv, run["n_kept"]) for kept in ours.values())
    lines, _ = differences(press, ratio, run, ours)  # exact ties at the cut are not disagreements
    shown = "\n".join(lines[:SHOWN_ROWS]) + (f"\n... and {len(lines) - SHOWN_ROWS} more" if len(lines) > SHOWN_ROWS else "")
    assert not lines, (f"{method} keeps other tokens than kvpress's {press} at ratio {ratio} in {len(lines)} of "
                       f"{len(run['kept']) * n_kv} (layer, KV head) rows:\n{shown}")
