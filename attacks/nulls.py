"""Perturbation nulls for random search: how often do n_adv inserted tokens flip an
answer when they carry nothing an attacker chose?

- `filler`: each draw is n_adv consecutive tokens of neutral prose, taken at a
  uniformly random offset of the item's filler text (`filler_text`). If such tokens
  flip as often as random ones, random search finds no more than "any insertion".
- `far`: random search's own candidates (same vocabulary, same generator stream: the
  same rng_seed draws the same candidates), placed after the template head and before
  the context instead of before the question. If they flip as often there, the flips
  do not depend on the tokens sitting next to the question. Without a context the far
  prompt is random search's prompt.

Both have random search's budget (`n_adv`, `steps`, `k_attack`, `batch_size`,
`full_margin`), per-item seed, success rule and per-draw records: they run its loop
(`random_search.run_draws`) and differ only in what is drawn and where it goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch

from tasks.contexts import sentences

from .random_search import RandomSearchConfig, random_search, run_draws
from .registry import AttackResult, register_attack
from .target import PreparedItem, Target


@dataclass(frozen=True)
class FillerConfig(RandomSearchConfig):
    """Random search's fields; `ascii_only` is accepted and unused (draws are prose tokens)."""

    label: ClassVar[str] = "filler"


@dataclass(frozen=True)
class FarConfig(RandomSearchConfig):
    label: ClassVar[str] = "far"


@lru_cache(maxsize=1)
def _filler_pattern() -> re.Pattern:
    """Any sentence of the filler pool, longest first so no sentence matches inside another."""
    pool = sorted(sentences("filler"), key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in pool))


def filler_text(prepared: PreparedItem) -> str:
    """The filler prose of the item's prompt: the sentences of its context (the context
    text it was prepared with, then the item's own context, as a needle item's) that
    belong to the filler pool, in order, joined by spaces. Needle and distractor
    sentences are left out. Fallback when there are none (no context, as with
    `--context none`, or a passage without filler such as BoolQ's): the whole filler
    pool joined by spaces."""
    context = " ".join(t for t in (prepared.context_text, prepared.item.context) if t)
    return " ".join(_filler_pattern().findall(context) or sentences("filler"))


def filler_windows(gen: torch.Generator, tokens: torch.Tensor, count: int, n_adv: int) -> torch.Tensor:
    """`count` rows of n_adv consecutive ids of `tokens`, each at a uniformly random offset."""
    starts = torch.randint(len(tokens) - n_adv + 1, (count, 1), generator=gen)
    return tokens[starts + torch.arange(n_adv)]


@register_attack("filler", FillerConfig)
def filler(target: Target, prepared: PreparedItem, config: FillerConfig, rng_seed: int,
           progress=None) -> AttackResult:
    text = filler_text(prepared)
    tokens = torch.tensor(target.tokenizer.encode(text, add_special_tokens=False), dtype=torch.long)
    if len(tokens) < config.n_adv:
        raise ValueError(f"filler: item {prepared.item.id}: the filler text has {len(tokens)} tokens, "
                         f"fewer than n_adv={config.n_adv}")
    gen = torch.Generator().manual_seed(rng_seed)
    return run_draws(target, prepared, config, lambda count: filler_windows(gen, tokens, count, config.n_adv),
                     progress)


@register_attack("far", FarConfig)
def far(target: Target, prepared: PreparedItem, config: FarConfig, rng_seed: int, progress=None) -> AttackResult:
    """Random search on the item's prompt with the slot before the context; the result
    carries that prompt (`AttackResult.prepared`), since its ids belong there."""
    moved = target.prepare(prepared.item, prepared.context_text, slot="context")
    result = random_search(target, moved, config, rng_seed, progress)
    result.prepared = moved
    return result
