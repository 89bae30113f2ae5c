"""The `picture` of a flipped item: which prompt tokens the answer position still sees.

A flip page (`harness.report`) colours each token of the prompt by the share of (sparse
layer, query head) pairs whose answer-position query keeps that token's key, so a reader
sees whether sparsity dropped the needle or kept the adversarial tokens. The shares come
from the controller hook `observe_answer` (sparse/hf.py: `visible` [B, Hq, Tk] is what the
last query attends to, for block-sparse and kv-cache methods alike), and the selection
heatmap from the hook `observe_selection`, both read during the very forwards that score
the prompt (`attacks.Target.traced_sweep`): no forward of its own.
Recorded for flipped items only: a picture is as long as the prompt.
"""

from __future__ import annotations


def selection_matrix(heatmaps: dict, k: int, n_tokens: int, block_q: int, block_k: int) -> dict | None:
    """One head's block selection over the whole prompt at k (the seed paper's Figure 2):
    head 0 of the middle sparse layer, 0/1 per (query block, key block), from
    `Target.traced_sweep`'s `heatmaps` of the prompt (None when it has none at k: kv-cache
    methods select tokens of a region, not blocks)."""
    heatmap = heatmaps.get(str(k))
    if not heatmap:
        return None
    n_kblocks = -(-n_tokens // block_k)
    blocks = []
    for row in heatmap["blocks"][0].tolist():
        kept = set(row)
        blocks.append([1 if b in kept else 0 for b in range(n_kblocks)])
    return {"k": int(k), "layer": heatmap["layer"], "head": 0, "block_q": block_q, "block_k": block_k,
            "blocks": blocks}


def picture(target, prepared, adv_ids, needle: tuple[int, int] | None, prompt: str, kept: dict,
            selection_k: int, heatmaps: dict) -> dict:
    """The row's `picture` (docs/results-schema.md): decoded tokens, needle and adversarial
    spans, `kept`, per k the kept shares at the answer position (`Target.traced_sweep`'s
    `shares`, from the forward that scored the prompt), and one head's selection at
    `selection_k` (from the same forwards' `heatmaps`)."""
    ids = prepared.prompt_ids(adv_ids)
    start = len(prepared.prefix_ids)
    cfg = target.sparse
    return {"prompt": prompt, "tokens": [target.tokenizer.decode([i]) for i in ids],
            "needle_span": list(needle) if needle else None,
            "adversarial_span": [start, start + len(adv_ids)] if adv_ids else None,
            "kept": kept, "selection": selection_matrix(heatmaps, selection_k, len(ids), cfg.block_q, cfg.block_k)}
