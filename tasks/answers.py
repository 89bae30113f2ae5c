"""Answer token sets: which next tokens count as "yes" and which as "no".

Models answer with different spellings (" Yes", "yes", "YES" ...), and every
tokenizer splits them differently, so a set holds the *first* token of each
variant the tokenizer can encode. P(answer) is summed over its set, so the sets
must be disjoint: a shared token would count for both answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .items import normalise_answer

VARIANTS = {
    "yes": ("Yes", " Yes", "yes", " yes", "YES"),
    "no": ("No", " No", "no", " no", "NO"),
}


@dataclass(frozen=True)
class AnswerSets:
    """First-token ids of the yes and no spellings of one tokenizer."""

    yes: tuple[int, ...]
    no: tuple[int, ...]

    def correct(self, answer: str) -> tuple[int, ...]:
        return self.yes if _answer(answer) == "yes" else self.no

    def wrong(self, answer: str) -> tuple[int, ...]:
        return self.no if _answer(answer) == "yes" else self.yes


def _answer(answer) -> str:
    normalised = normalise_answer(answer)
    if normalised is None:
        raise ValueError(f"answer must be yes or no, got {answer!r}")
    return normalised


def _first_tokens(tokenizer, variants) -> tuple[int, ...]:
    """First ids of the variants, in order, without duplicates.

    Skipped: a variant the tokenizer only knows as its unknown token, and a first
    token that decodes to whitespace alone (SentencePiece may split " Yes" into
    "▁" + "Yes"); neither says anything about the answer, and the bare space
    would otherwise land in both sets.
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    out: list[int] = []
    for text in variants:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if not ids or ids[0] == unk or ids[0] in out:
            continue
        if not tokenizer.decode([ids[0]]).strip():
            continue
        out.append(ids[0])
    return tuple(out)


def answer_token_sets(tokenizer) -> AnswerSets:
    """The yes/no first-token sets of `tokenizer`; ValueError if one is empty or they overlap."""
    sets = AnswerSets(yes=_first_tokens(tokenizer, VARIANTS["yes"]), no=_first_tokens(tokenizer, VARIANTS["no"]))
    for name in ("yes", "no"):
        if not getattr(sets, name):
            raise ValueError(f"the tokenizer encodes none of the {name!r} variants {VARIANTS[name]} "
                             "to a known, non-blank first token")
    shared = sorted(set(sets.yes) & set(sets.no))
    if shared:
        shown = ", ".join(f"{i} ({tokenizer.decode([i])!r})" for i in shared)
        raise ValueError(f"the yes and no answer sets share first tokens {shown}: "
                         "this tokenizer cannot tell the answers apart by their first token")
    return sets
