"""What an answer score means: the one place where kept answers, flips, strict flips and
breakdowns are defined (docs/results-schema.md, "Outcome classes").

A `Score` is the next-token outcome of one prompt under one attention mode:
P(a) and P(ā), the summed probabilities of the correct and wrong answer token
sets, and which of the two sets (or neither) holds the argmax token.

**Answer class.** The next token says one of three things: the correct answer (mass
P(a)), the wrong answer (P(ā)), or neither (1 - P(a) - P(ā): "The", "Based", ...). A
score's `answer_class` is the one of the three with the largest mass (ties go to the
wrong answer, then to "neither", so a tie is never counted as right). Sets, not single
tokens: "Yes", "yes" and " YES" are one answer.

**Partition.** For an item that full attention answers right by `full_margin`
(`confident`: class correct and P(a) - P(ā) >= full_margin), each sparse score is in
exactly one of

- *kept*: the sparse class is correct;
- *strict flip*: the sparse class is wrong (the model now gives the other answer);
- *breakdown*: the sparse class is neither (the model stopped answering yes/no);

and a *flip* is a strict flip or a breakdown, so strict + breakdown = flips everywhere.
Items full attention does not answer right by the margin have no outcome (every flag is
False) and are not counted in any rate.

The seed paper's greedy-token criterion (the sparse argmax token is not a correct-answer
token) is kept as the extra column `paper_criterion`; it is not a competing definition
of a flip. It is None for scores read from rows written before the argmax was recorded.

It lives in `tasks` (next to the answer sets it interprets) and imports nothing heavy,
so the results store and the leaderboard can use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# The key of full attention among the modes of a sweep ("full", "2", "4", ...).
FULL = "full"
# Class of an answer: the argmax token's set, or the answer class of a score.
CORRECT, WRONG, OTHER = "correct", "wrong", "other"
ARGMAX_CLASSES = (CORRECT, WRONG, OTHER)
# Outcome of a sparse score for a confident item.
KEPT, STRICT, BREAKDOWN = "kept", "strict", "breakdown"
OUTCOME_NAMES = {KEPT: "kept", STRICT: "strict flip", BREAKDOWN: "breakdown"}


def token_class(token: int, correct_ids, wrong_ids) -> str:
    """CORRECT, WRONG or OTHER: which answer set holds a (greedy) token id."""
    if token in correct_ids:
        return CORRECT
    return WRONG if token in wrong_ids else OTHER


@dataclass(frozen=True)
class Score:
    """Next-token outcome for one prompt under one attention mode.

    `argmax` is None only for scores read from rows written before it was recorded.
    """

    p_correct: float
    p_wrong: float
    token: str
    argmax: str | None = None

    def __post_init__(self):
        if self.argmax is not None and self.argmax not in ARGMAX_CLASSES:
            raise ValueError(f"Score.argmax must be one of {ARGMAX_CLASSES} or None, got {self.argmax!r}")

    @property
    def correct(self) -> bool:
        """The model answers correctly: the correct answer has the largest mass of the three."""
        return self.answer_class == CORRECT

    @property
    def margin(self) -> float:
        return self.p_correct - self.p_wrong

    @property
    def mass(self) -> float:
        """P(a) + P(ā): how much the model still answers yes/no at all."""
        return self.p_correct + self.p_wrong

    @property
    def answer_class(self) -> str:
        """CORRECT, WRONG or OTHER: which of P(a), P(ā), 1 - P(a) - P(ā) is largest
        (ties: wrong before other before correct)."""
        neither = max(0.0, 1.0 - self.mass)
        if self.p_wrong >= self.p_correct and self.p_wrong >= neither:
            return WRONG
        if neither >= self.p_correct:
            return OTHER
        return CORRECT

    def to_dict(self) -> dict:
        out = {"p_correct": self.p_correct, "p_wrong": self.p_wrong, "correct": self.correct, "token": self.token}
        if self.argmax is not None:
            out["argmax"] = self.argmax
            out["p_answer"] = self.mass
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Score":
        return cls(p_correct=float(data["p_correct"]), p_wrong=float(data["p_wrong"]), token=data.get("token", ""),
                   argmax=data.get("argmax"))


@dataclass(frozen=True)
class Outcome:
    """How sparse attention changed one answer: `cls` is KEPT, STRICT or BREAKDOWN for a
    confident item and None otherwise; `paper_criterion` is the seed paper's greedy-token
    criterion (None without an argmax)."""

    confident: bool
    cls: str | None
    paper_criterion: bool | None

    @property
    def flip(self) -> bool:
        """A confident item whose sparse answer is not the correct one (strict or breakdown)."""
        return self.cls in (STRICT, BREAKDOWN)

    @property
    def strict(self) -> bool:
        return self.cls == STRICT

    @property
    def breakdown(self) -> bool:
        return self.cls == BREAKDOWN

    @property
    def success(self) -> bool:
        """What attacks look for: a flip of a confident item."""
        return self.flip

    def to_dict(self) -> dict:
        return {"class": self.cls, "strict": self.strict, "breakdown": self.breakdown,
                "paper_criterion": self.paper_criterion}


def confident(full: Score, full_margin: float = 0.0) -> bool:
    """Full attention answers right (answer class correct) by at least `full_margin` in P(a) - P(ā)."""
    return full.correct and full.margin >= full_margin


def classify(full: Score, sparse: Score, full_margin: float = 0.0) -> Outcome:
    """The outcome of one prompt scored under full and under sparse attention."""
    if full_margin < 0:
        raise ValueError(f"full_margin must be >= 0, got {full_margin}")
    sure = confident(full, full_margin)
    if not sure:
        return Outcome(confident=False, cls=None, paper_criterion=None if sparse.argmax is None else False)
    cls = {CORRECT: KEPT, WRONG: STRICT, OTHER: BREAKDOWN}[sparse.answer_class]
    return Outcome(confident=True, cls=cls,
                   paper_criterion=None if sparse.argmax is None else sparse.argmax != CORRECT)


def draw_class(full_class: str, sparse_class: str) -> str:
    """One attack draw, from the answer classes of its full and sparse scores:
    "sparse_only" (full right, sparse not), "full_wrong" (full attention itself not
    right: the insertion broke the prompt, not the sparsity) or "both_right"."""
    if full_class != CORRECT:
        return "full_wrong"
    return "both_right" if sparse_class == CORRECT else "sparse_only"
