"""Random search: the seed paper's attack (section 5), with one correction.

Algorithm (x starts random; T = `steps` candidates in all):

    for each step: if SparseLLM(k_attack, c+x+p) is wrong and LLM(c+x+p) is right:
                       success, stop
                   x <- Uniform(V)^n_adv

The seed checks full attention once, before the loop, on the prompt without x; we
also require full attention to stay correct on the same prompt with x (by at least
`full_margin` in P(a) - P(ā), the run's `--full-margin`), so a success is a flip
caused by sparsity, not a prompt the model gets wrong anyway
(`tasks.outcomes.classify(...).success`).
(The harness skips items full attention gets wrong without x, as the seed does.)

Candidates are drawn `batch_size` at a time from one seeded generator and scored
in a batch under both modes; the first success in draw order wins, so the outcome
equals drawing and scoring them one at a time from the same stream. Every scored
candidate is recorded in `AttackResult.draws` (answer class under full and sparse
attention), which is what the perturbation nulls (`attacks.nulls`) are compared on.
`run_draws` is that loop; random search and the nulls differ only in what they draw
and where the draws go.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from tasks.outcomes import classify

from .config import AttackConfig
from .registry import AttackResult, register_attack
from .target import FULL, PreparedItem, Target


@dataclass(frozen=True)
class RandomSearchConfig(AttackConfig):
    """Random search has the shared budget only; the nulls subclass it."""

    label: ClassVar[str] = "random search"


def draw_candidates(gen: torch.Generator, vocab: torch.Tensor, count: int, n_adv: int) -> torch.Tensor:
    """Next `count` candidates of the stream, each n_adv ids drawn uniformly from `vocab`."""
    return vocab[torch.randint(len(vocab), (count, n_adv), generator=gen)]


def run_draws(target: Target, prepared: PreparedItem, config: RandomSearchConfig,
              draw: Callable[[int], torch.Tensor], progress=None) -> AttackResult:
    """Score `config.steps` candidates from `draw(count)` ([count, n_adv] ids), `batch_size`
    at a time, under sparse attention at k_attack and full attention (one batched call
    each); stop at the first success in draw order. Every candidate of every batch scored
    goes in `draws`."""
    start = time.perf_counter()
    draws: list[dict] = []
    tried = 0
    last = None

    def result(adv: torch.Tensor, steps: int, success: bool) -> AttackResult:
        ids = adv.tolist()
        return AttackResult(adv_ids=ids, adv_text=target.tokenizer.decode(ids), steps=steps, success=success,
                            seconds=time.perf_counter() - start, draws=draws)

    while tried < config.steps:
        count = min(config.batch_size, config.steps - tried)
        cands = draw(count)
        sparse = target.score(prepared, cands, config.k_attack)
        full = target.score(prepared, cands, FULL)
        draws.extend({"full": f.answer_class, "sparse": s.answer_class} for f, s in zip(full, sparse))
        for i, (f, s) in enumerate(zip(full, sparse)):
            if classify(f, s, config.full_margin).success:
                return result(cands[i], tried + i + 1, True)
        tried += count
        last = cands[-1]
        if progress is not None:
            progress.update(count)
    return result(last, tried, False)


@register_attack("random", RandomSearchConfig)
def random_search(target: Target, prepared: PreparedItem, config: RandomSearchConfig, rng_seed: int,
                  progress=None) -> AttackResult:
    vocab = target.vocabulary(config.ascii_only)
    gen = torch.Generator().manual_seed(rng_seed)
    return run_draws(target, prepared, config, lambda count: draw_candidates(gen, vocab, count, config.n_adv),
                     progress)
