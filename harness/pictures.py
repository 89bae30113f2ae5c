"""The `picture` of a flipped item: which prompt tokens the answer position still sees.

A flip page (`harness.report`) colours each token of the prompt by the share of (sparse
layer, query head) pairs whose answer-position query keeps that token's key, so a reader
sees whether sparsity dropped the needle or kept the adversarial tokens. The shares come
from the controller hook `observe_answer` (sparse/hf.py: `visible` [B, Hq, Tk] is what the
last query attends to, for block-sparse and kv-cache methods alike), one forward per k.
Recorded for flipped items only: a picture is as long as the prompt.
"""

from __future__ import annotations

import torch


def kept_shares(target, prepared, adv_ids, k: int) -> list[float]:
    """Per prompt token: the share of (sparse layer, query head) pairs that keep its key at k."""
    n_tokens = len(prepared.prompt_ids(adv_ids))
    per_layer: list[torch.Tensor] = []

    def observe(layer, query_row, key, visible, padding, scaling):
        if visible.shape[-1] != n_tokens:
            raise ValueError(f"observe_answer saw {visible.shape[-1]} keys for a {n_tokens}-token prompt")
        per_layer.append(visible[0].float().mean(0))

    adv = torch.as_tensor([list(adv_ids)], dtype=torch.long).reshape(1, -1)
    with torch.no_grad():
        target.answer_logits(prepared, int(k), adv_ids=adv, observe_answer=observe)
    return [round(v, 4) for v in torch.stack(per_layer).mean(0).tolist()]


def picture(target, prepared, adv_ids, ks, needle: tuple[int, int] | None, prompt: str) -> dict:
    """The row's `picture` (docs/results-schema.md): decoded tokens, needle and adversarial
    spans, and per k the kept shares at the answer position."""
    ids = prepared.prompt_ids(adv_ids)
    start = len(prepared.prefix_ids)
    return {"prompt": prompt, "tokens": [target.tokenizer.decode([i]) for i in ids],
            "needle_span": list(needle) if needle else None,
            "adversarial_span": [start, start + len(adv_ids)] if adv_ids else None,
            "kept": {str(k): kept_shares(target, prepared, adv_ids, int(k)) for k in ks}}
