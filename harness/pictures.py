"""The `picture` of a flipped item: which prompt tokens the answer position still sees.

A flip page (`harness.report`) colours each token of the prompt by the share of (sparse
layer, query head) pairs whose answer-position query keeps that token's key, so a reader
sees whether sparsity dropped the needle or kept the adversarial tokens. The shares come
from the controller hook `observe_answer` (sparse/hf.py: `visible` [B, Hq, Tk] is what the
last query attends to, for block-sparse and kv-cache methods alike), read during the very
forwards that score the prompt (`attacks.Target.traced_sweep`): no forward of its own.
Recorded for flipped items only: a picture is as long as the prompt.
"""

from __future__ import annotations


def selection_matrix(target, prepared, adv_ids, k: int) -> dict | None:
    """One head's block selection over the whole prompt at k (the seed paper's Figure 2):
    head 0 of the middle sparse layer, 0/1 per (query block, key block). One uncached sparse
    forward (the scoring forwards see only the queries after the cached prefix); None for
    kv-cache methods, which select tokens of a region, not blocks."""
    import torch

    from sparse import get_sparse_method, layer_selections

    cfg = target.config_for(int(k))
    if get_sparse_method(cfg.method).is_kv:
        return None
    ids = torch.tensor([prepared.prompt_ids(adv_ids)], device=target.device)
    selections = layer_selections(target.model, ids, cfg)
    layer = sorted(selections)[len(selections) // 2]
    rows = selections[layer][0, 0].tolist()
    n_kblocks = -(-ids.shape[1] // cfg.block_k)
    blocks = [[1 if b in set(row) else 0 for b in range(n_kblocks)] for row in rows]
    return {"k": int(k), "layer": layer, "head": 0, "block_q": cfg.block_q, "block_k": cfg.block_k, "blocks": blocks}


def picture(target, prepared, adv_ids, needle: tuple[int, int] | None, prompt: str, kept: dict,
            selection_k: int) -> dict:
    """The row's `picture` (docs/results-schema.md): decoded tokens, needle and adversarial
    spans, `kept`, per k the kept shares at the answer position (`Target.traced_sweep`'s
    `shares`, from the forward that scored the prompt), and one head's selection at
    `selection_k`."""
    ids = prepared.prompt_ids(adv_ids)
    start = len(prepared.prefix_ids)
    return {"prompt": prompt, "tokens": [target.tokenizer.decode([i]) for i in ids],
            "needle_span": list(needle) if needle else None,
            "adversarial_span": [start, start + len(adv_ids)] if adv_ids else None,
            "kept": kept, "selection": selection_matrix(target, prepared, adv_ids, selection_k)}
