"""`TaskItem`: one yes/no question with its correct answer.

Answers are normalised to "yes"/"no" at construction so that everything
downstream (answer token sets, flip detection) compares two fixed strings.
"""

from __future__ import annotations

from dataclasses import dataclass

_SPELLINGS = {"yes": "yes", "true": "yes", "1": "yes", "no": "no", "false": "no", "0": "no"}
ACCEPTED = "yes/no/true/false/1/0"


def normalise_answer(value) -> str | None:
    """'yes' or 'no' for yes/no/true/false/1/0 in any case (or a bool), else None."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return None
    return _SPELLINGS.get(str(value).strip().lower())


@dataclass(frozen=True)
class TaskItem:
    """A yes/no question; `context` is an optional passage shown before it (BoolQ).

    Needle items (`tasks.needle`) also carry the character span of the sentence that
    answers them inside `context`, its relative depth, and the `group` of items that
    share the same context.
    """

    id: str
    question: str
    answer: str
    context: str | None = None
    needle_span: tuple[int, int] | None = None
    depth: float | None = None
    group: str | None = None

    def __post_init__(self):
        answer = normalise_answer(self.answer)
        if answer is None:
            raise ValueError(f"item {self.id!r}: answer must be one of {ACCEPTED}, got {self.answer!r}")
        object.__setattr__(self, "answer", answer)
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError(f"item {self.id!r}: empty question")
        if self.needle_span is not None:
            start, end = self.needle_span
            if self.context is None or not 0 <= start < end <= len(self.context):
                raise ValueError(f"item {self.id!r}: needle_span {self.needle_span} is not a span of its context")
