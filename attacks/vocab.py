"""Which token ids an attack may place in the adversarial slot: ordinary, trained tokens only.

Excluded, by kind (`vocabulary_exclusions` counts them for the run log and manifest):
- `special`: the tokenizer's special ids (BOS/EOS/PAD ...);
- `added`: tokens added on top of the base vocabulary (chat and tool markers such as
  Qwen's `<|im_start|>`, `<|fim_prefix|>`, `<|file_sep|>`): a flip caused by a
  control token says nothing about sparse attention on text;
- `out_of_range`: ids without an embedding row or beyond the tokenizer;
- `untrained`: ids whose input-embedding row is an exact copy of another row, or has
  a norm under 1% of the median: rows a model never learned (padding slots, byte
  tokens that never occur), whose effect on the model is an artefact.
With `ascii_only`, only tokens that decode to non-empty printable ASCII remain.
"""

from __future__ import annotations

import torch

UNTRAINED_NORM = 0.01  # share of the median row norm under which a row counts as untrained
PREFIX_COLUMNS = 8  # duplicates are looked for among rows that already agree on these columns


def _duplicated(rows: torch.Tensor) -> torch.Tensor:
    """Bool per row: exactly equal to another row.

    Rows that differ in their first columns cannot be equal, so the full comparison
    runs only on rows whose prefix repeats (a few thousand on Qwen): sorting the whole
    [151936, 1536] matrix instead takes seconds and a copy of it."""
    def repeated(part: torch.Tensor) -> torch.Tensor:
        _, inverse, counts = torch.unique(part, dim=0, return_inverse=True, return_counts=True)
        return counts[inverse] > 1

    out = torch.zeros(rows.shape[0], dtype=torch.bool)
    candidates = torch.nonzero(repeated(rows[:, :PREFIX_COLUMNS])).flatten()
    if len(candidates):
        out[candidates] = repeated(rows[candidates])
    return out


def _untrained(rows: torch.Tensor) -> torch.Tensor:
    """Bool per row: duplicated exactly elsewhere, or of near-zero norm."""
    norms = rows.norm(dim=1)
    return _duplicated(rows) | (norms < UNTRAINED_NORM * norms.median())


def _classify(tokenizer, embeddings: torch.Tensor) -> tuple[int, dict[str, set[int]]]:
    size = min(len(tokenizer), embeddings.shape[0])
    out_of_range = set(range(size, max(len(tokenizer), embeddings.shape[0])))
    special = set(tokenizer.all_special_ids) - out_of_range
    added = set(tokenizer.get_added_vocab().values()) - special - out_of_range
    untrained = set(torch.nonzero(_untrained(embeddings[:size].detach().float())).flatten().tolist())
    return size, {"special": special, "added": added, "out_of_range": out_of_range,
                  "untrained": untrained - special - added}


def vocabulary_exclusions(tokenizer, embeddings: torch.Tensor) -> dict[str, int]:
    """How many ids each rule excludes (an id is counted under the first rule that applies)."""
    return {kind: len(ids) for kind, ids in _classify(tokenizer, embeddings)[1].items()}


def attack_vocabulary(tokenizer, embeddings: torch.Tensor, ascii_only: bool = False) -> torch.Tensor:
    """Sorted LongTensor of the ids an attack may draw. `embeddings` is the model's
    input-embedding matrix [rows, hidden]."""
    size, excluded = _classify(tokenizer, embeddings)
    banned = set().union(*excluded.values())
    ids = [i for i in range(size) if i not in banned]
    if ascii_only:
        texts = tokenizer.batch_decode([[i] for i in ids])
        ids = [i for i, t in zip(ids, texts) if t.strip() and t.isascii() and t.isprintable()]
    if not ids:
        raise ValueError("the attack vocabulary is empty")
    return torch.tensor(ids, dtype=torch.long)
