"""kvpress's kept tokens on the exported smollm2-135m and prompt (kvpress venv).

Runs five of kvpress 0.5.5's presses at three compression ratios on the prompt of
export_model.py (the whole prompt is the compressed region, one prefill, every layer
compressed) and writes, per press, ratio, layer and KV head, the token positions left in
the compressed cache, and the positions whose scores tie exactly at the cut (recorded by
wrapping the press's `score`). tests/test_kvpress_parity.py compares them with
`sparse.kv_cache.kept_token_indices`. The positions are read from the cache itself:
each kept key is found among the keys of an uncompressed prefill (a press only gathers
rows, and compressing layer l after its attention leaves every later layer's input as
it was, so the keys match bit for bit).

    .venv-kvpress/bin/python tests/kvpress/kvpress_side.py build/kvpress
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from importlib.metadata import version
from pathlib import Path

import torch
from export_model import weights_sha256
from kvpress import KnormPress, ObservedAttentionPress, SnapKVPress, StreamingLLMPress, TOVAPress
from kvpress.utils import compute_n_kept
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

# ObservedAttentionPress reads the layer's attention weights, which only eager attention
# returns; the others compute what they need themselves, as they do in practice (sdpa).
PRESSES = {
    StreamingLLMPress: "sdpa",
    SnapKVPress: "sdpa",
    TOVAPress: "sdpa",
    KnormPress: "sdpa",
    ObservedAttentionPress: "eager",
}
RATIOS = (0.25, 0.5, 0.75)


def prefill_keys(model, ids: torch.Tensor, press=None) -> list[torch.Tensor]:
    """Each layer's cached keys [Hkv, n, head_dim] after one prefill of `ids` (under `press`)."""
    with torch.no_grad():
        if press is None:
            cache = model(ids, use_cache=True).past_key_values
        else:
            with press(model):
                cache = model(ids, use_cache=True).past_key_values
    return [layer.keys[0] for layer in cache.layers]


def record_scores(press) -> dict[int, torch.Tensor]:
    """Make `press` keep each layer's scores [Hkv, T] (the press's own `score`, called as before)."""
    scores = {}
    score = press.score

    def recording(module, *args):
        layer_scores = score(module, *args)
        scores[module.layer_idx] = layer_scores[0]
        return layer_scores

    press.score = recording
    return scores


def ties_at_cut(scores: torch.Tensor, n_kept: int) -> list[list[int]]:
    """Per KV head, the positions whose score equals the n_kept-th highest when they do not all
    fit (topk then chooses among them in an unspecified order); empty where the cut is clear."""
    rows = []
    for row in scores:
        cut = row.topk(n_kept).values.min()
        tied = (row == cut).nonzero().flatten()
        rows.append(tied.tolist() if int((row > cut).sum()) + len(tied) > n_kept else [])
    return rows


def kept_positions(kept: torch.Tensor, full: torch.Tensor) -> list[list[int]]:
    """Per KV head, the ascending positions of `full`'s keys [Hkv, T, d] that `kept` [Hkv, n, d] holds."""
    rows = []
    for head in range(full.shape[0]):
        match = (kept[head, :, None, :] == full[head, None, :, :]).all(-1)  # [n, T]
        if not bool((match.sum(-1) == 1).all()):
            raise RuntimeError(f"head {head}: a kept key matches no uncompressed key, or several")
        rows.append(sorted(match.int().argmax(-1).tolist()))
    return rows


def run(out: Path) -> None:
    hf_logging.disable_progress_bar()
    prompt = json.loads((out / "prompt.json").read_text())
    ids = torch.tensor([prompt["input_ids"]])
    n_tokens = ids.shape[1]
    runs = []
    for attn in sorted(set(PRESSES.values())):
        model = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32, attn_implementation=attn)
        model.eval()
        if weights_sha256(model) != prompt["weights_sha256"]:
            raise RuntimeError(f"{out / 'model'} does not hold the weights prompt.json was made with")
        full = prefill_keys(model, ids)
        for press_cls in (cls for cls, wanted in PRESSES.items() if wanted == attn):
            for ratio in RATIOS:
                press = press_cls(compression_ratio=ratio)
                scores = record_scores(press)
                n_kept = compute_n_kept(n_tokens, ratio)
                kept = [kept_positions(k, f) for k, f in zip(prefill_keys(model, ids, press), full)]
                if any(len(row) != n_kept for layer in kept for row in layer):
                    raise RuntimeError(f"{press_cls.__name__} at {ratio}: a head keeps other than {n_kept} tokens")
                settings = {k: v for k, v in dataclasses.asdict(press).items() if k != "compression_ratio"}
                ties = [ties_at_cut(scores[layer], n_kept) for layer in range(len(kept))]
                runs.append({"press": press_cls.__name__, "compression_ratio": ratio, "n_kept": n_kept,
                             "settings": settings, "attn_implementation": attn, "kept": kept, "ties": ties})
                print(f"{press_cls.__name__} ratio {ratio}: {n_kept} of {n_tokens} tokens kept", flush=True)
    result = {key: prompt[key] for key in ("model", "weights_sha256", "input_ids")}
    result["versions"] = {name: version(name) for name in ("kvpress", "transformers", "torch")}
    result["runs"] = runs
    (out / "kept_indices.json").write_text(json.dumps(result) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory with export_model.py's model/ and prompt.json")
    run(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
