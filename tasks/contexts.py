"""Context builders: lengthen the prompt to a target token count.

The seed adds a context "to increase the length and the effect of sparsity":
with more key blocks, a fixed k drops a larger share of them. `filler` is
neutral prose, `haystack` unrelated true statements (none touches a question of
the `facts` or `seed4` suites, so the context never gives an answer away).
"""

from __future__ import annotations

import random
from functools import lru_cache
from importlib import resources

KINDS = ("none", "filler", "haystack")
SEPARATOR = "\n\n"  # a blank line between the context and the adversarial tokens


def available_contexts() -> list[str]:
    return list(KINDS)


@lru_cache(maxsize=None)
def sentences(kind: str) -> tuple[str, ...]:
    """The sentence pool of a context kind (one sentence per line in tasks/data/<kind>.txt)."""
    text = (resources.files("tasks") / "data" / f"{kind}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _draws(kind: str, seed: int):
    """Sentences in a seeded order: the whole pool without repeats, then reshuffled, forever."""
    rng = random.Random(seed)
    while True:
        pool = list(sentences(kind))
        rng.shuffle(pool)
        yield from pool


def _render(chosen: list[str]) -> str:
    return " ".join(chosen) + SEPARATOR


def build_context(kind: str, tokenizer, n_tokens: int, seed: int = 0) -> str:
    """Sentences of `kind` drawn with `seed`, the fewest that reach `n_tokens` tokens.

    The result (which ends with a blank line) tokenises to at least `n_tokens`
    ids and exceeds it by at most the last sentence; "" for "none" or 0 tokens.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown context kind {kind!r}; available: {', '.join(KINDS)}")
    if n_tokens < 0:
        raise ValueError(f"n_tokens must be >= 0, got {n_tokens}")
    if kind == "none" or n_tokens == 0:
        return ""

    def length(m: int) -> int:
        return len(tokenizer.encode(_render(chosen[:m]), add_special_tokens=False))

    # Draw by an estimate (sum of per-sentence lengths), then find the shortest
    # prefix of the draws that is long enough by bisection: a handful of encodes
    # of the whole text instead of one per sentence.
    draws = _draws(kind, seed)
    chosen: list[str] = []
    estimate = 0
    while True:
        while estimate < n_tokens:
            sentence = next(draws)
            chosen.append(sentence)
            estimate += len(tokenizer.encode(" " + sentence, add_special_tokens=False))
        estimate = length(len(chosen))  # exact; below target if tokens merged across sentences
        if estimate >= n_tokens:
            break
    lo, hi = 1, len(chosen)  # invariant: length(hi) >= n_tokens
    while lo < hi:
        mid = (lo + hi) // 2
        if length(mid) >= n_tokens:
            hi = mid
        else:
            lo = mid + 1
    return _render(chosen[:hi])
