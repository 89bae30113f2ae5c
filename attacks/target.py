"""The scoring oracle every attack calls (TextAttack's "goal function").

A prompt is `prefix + adversarial ids + suffix` (see `tasks.build_prompt`). The
prefix is long (template head + context) and identical for every candidate, so it
is run once per item and attention mode, and its KV cache is reused. The cache is
cut at a multiple of `block_q`: the query blocks after the cut are then exactly
the blocks of the uncached pass, so sparse selections are identical with and
without the cache. Each mode (full attention, or sparse at some k) has its own
prefix cache because sparse attention changes the prefix's hidden states too.

Candidates of equal length are scored in batches, logits only at the answer
position, in the model's dtype (float32 on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from sparse import SparseConfig, sparse_attention
from tasks import AnswerSets, TaskItem, answer_token_sets, build_prompt

FULL = "full"


@dataclass(frozen=True)
class Score:
    """Next-token outcome for one prompt under one attention mode."""

    p_correct: float
    p_wrong: float
    token: str

    @property
    def correct(self) -> bool:
        return self.p_correct > self.p_wrong

    def to_dict(self) -> dict:
        return {"p_correct": self.p_correct, "p_wrong": self.p_wrong, "correct": self.correct, "token": self.token}


@dataclass
class PreparedItem:
    """One item's token ids, answer sets and per-mode prefix caches."""

    item: TaskItem
    prefix_ids: list[int]
    suffix_ids: list[int]
    correct_ids: tuple[int, ...]
    wrong_ids: tuple[int, ...]
    cut: int  # prefix tokens held in the KV cache (a multiple of block_q)
    caches: dict = field(default_factory=dict)  # mode -> list of (key, value) per layer

    def full_ids(self, adv_ids) -> list[int]:
        return list(self.prefix_ids) + list(adv_ids) + list(self.suffix_ids)


class Target:
    """Scores adversarial candidates under full attention and under sparse attention at k.

    `sparse` fixes the method, block sizes, dense layers and seed; k varies per call.
    """

    def __init__(self, model, tokenizer, sparse: SparseConfig, batch_size: int = 16, use_cache: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.sparse = sparse
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.answers: AnswerSets = answer_token_sets(tokenizer)
        self.device = next(model.parameters()).device

    def config_for(self, mode) -> SparseConfig | None:
        return None if mode == FULL else self.sparse.replace(k=int(mode))

    def prepare(self, item: TaskItem, context_text: str = "") -> PreparedItem:
        parts = build_prompt(self.tokenizer, item, context_text)
        if not parts.suffix_ids:
            raise ValueError(f"item {item.id}: the prompt has no question tokens after the adversarial slot")
        cut = (len(parts.prefix_ids) // self.sparse.block_q) * self.sparse.block_q if self.use_cache else 0
        return PreparedItem(
            item=item,
            prefix_ids=list(parts.prefix_ids),
            suffix_ids=list(parts.suffix_ids),
            correct_ids=tuple(self.answers.correct(item.answer)),
            wrong_ids=tuple(self.answers.wrong(item.answer)),
            cut=cut,
        )

    # -- caches -------------------------------------------------------------------------

    def _forward(self, mode, **kwargs):
        cfg = self.config_for(mode)
        if cfg is None:
            return self.model(**kwargs)
        with sparse_attention(self.model, cfg):
            return self.model(**kwargs)

    @torch.no_grad()
    def prefix_cache(self, prepared: PreparedItem, mode, batch: int) -> DynamicCache | None:
        """A fresh cache holding the first `cut` prefix tokens, repeated `batch` times."""
        if prepared.cut == 0:
            return None
        if mode not in prepared.caches:
            ids = torch.tensor([prepared.prefix_ids[: prepared.cut]], device=self.device)
            cache = DynamicCache(config=self.model.config)
            self._forward(mode, input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            prepared.caches[mode] = [(layer.keys, layer.values) for layer in cache.layers]
        layers = prepared.caches[mode]
        return DynamicCache(
            ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in layers],
            config=self.model.config,
        )

    def tail_ids(self, prepared: PreparedItem, adv_batch: torch.Tensor) -> torch.Tensor:
        """[N, tail] ids after the cache: rest of prefix, adversarial ids, suffix."""
        n = adv_batch.shape[0]
        head = torch.tensor(prepared.prefix_ids[prepared.cut :], dtype=torch.long, device=self.device)
        tail = torch.tensor(prepared.suffix_ids, dtype=torch.long, device=self.device)
        return torch.cat([head.expand(n, -1), adv_batch.to(self.device), tail.expand(n, -1)], dim=1)

    # -- scoring ------------------------------------------------------------------------

    def answer_probs(self, logits: torch.Tensor, prepared: PreparedItem) -> tuple[torch.Tensor, torch.Tensor]:
        """P(correct set), P(wrong set) from last-position logits [N, vocab]."""
        probs = torch.softmax(logits.float(), dim=-1)
        return probs[:, list(prepared.correct_ids)].sum(-1), probs[:, list(prepared.wrong_ids)].sum(-1)

    @torch.no_grad()
    def score(self, prepared: PreparedItem, adv_batch, mode) -> list[Score]:
        """Scores of every candidate (rows of `adv_batch`, equal lengths) under `mode`
        (`"full"` or an int k)."""
        adv = torch.as_tensor(adv_batch, dtype=torch.long)
        if adv.dim() == 1:
            adv = adv[None]
        scores: list[Score] = []
        for start in range(0, adv.shape[0], self.batch_size):
            chunk = adv[start : start + self.batch_size]
            ids = self.tail_ids(prepared, chunk)
            cache = self.prefix_cache(prepared, mode, chunk.shape[0])
            logits = self._forward(mode, input_ids=ids, past_key_values=cache, use_cache=cache is not None,
                                   logits_to_keep=1).logits[:, -1]
            p_correct, p_wrong = self.answer_probs(logits, prepared)
            tokens = logits.argmax(-1).tolist()
            for pc, pw, tok in zip(p_correct.tolist(), p_wrong.tolist(), tokens):
                scores.append(Score(pc, pw, self.tokenizer.decode([tok])))
        return scores

    def sweep(self, prepared: PreparedItem, adv_ids, ks) -> dict[str, Score]:
        """{"full": Score, "<k>": Score, ...} for one candidate."""
        adv = torch.as_tensor([list(adv_ids)], dtype=torch.long).reshape(1, -1)
        out = {FULL: self.score(prepared, adv, FULL)[0]}
        for k in ks:
            out[str(k)] = self.score(prepared, adv, int(k))[0]
        return out

