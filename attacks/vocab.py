"""Which token ids an attack may place in the adversarial slot."""

from __future__ import annotations

import torch


def attack_vocabulary(tokenizer, embeddings: torch.Tensor, ascii_only: bool = False) -> torch.Tensor:
    """Sorted LongTensor of allowed ids: every token but special ones (and, with
    `ascii_only`, only tokens that decode to non-empty printable ASCII). `embeddings`
    is the model's input-embedding matrix: ids without a row are never drawn."""
    special = set(tokenizer.all_special_ids)
    size = min(len(tokenizer), embeddings.shape[0])
    ids = [i for i in range(size) if i not in special]
    if ascii_only:
        texts = tokenizer.batch_decode([[i] for i in ids])
        ids = [i for i, t in zip(ids, texts) if t.strip() and t.isascii() and t.isprintable()]
    if not ids:
        raise ValueError("the attack vocabulary is empty")
    return torch.tensor(ids, dtype=torch.long)
