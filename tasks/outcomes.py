"""What an answer score means: the one place where flips, strict flips and breakdowns are defined.

A `Score` is the next-token outcome of one prompt under one attention mode:
P(a) and P(ā), the summed probabilities of the correct and wrong answer token
sets, and which of the two sets (or neither) holds the argmax token. `classify`
turns a (full attention, sparse attention) pair of scores into an `Outcome`.
Attacks decide success with it, the harness writes its flags into results.jsonl
and the statistics only count them (docs/results-schema.md has the prose).

It lives in `tasks` (next to the answer sets it interprets) and imports nothing
heavy, so the results store and the leaderboard can use it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

# Class of the argmax token.
CORRECT, WRONG, OTHER = "correct", "wrong", "other"
ARGMAX_CLASSES = (CORRECT, WRONG, OTHER)


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
        """The model answers correctly: P(a) > P(ā)."""
        return self.p_correct > self.p_wrong

    @property
    def margin(self) -> float:
        return self.p_correct - self.p_wrong

    @property
    def mass(self) -> float:
        """P(a) + P(ā): how much the model still answers yes/no at all."""
        return self.p_correct + self.p_wrong

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
    """How sparse attention changed one answer (docs/results-schema.md, "Outcome classes").

    - `flip`: full attention right (P(a) > P(ā)), sparse attention not. The original
      definition, kept unchanged so that old runs compare with new ones.
    - `confident`: full attention right with P(a) - P(ā) >= `full_margin`.
    - `strict`: confident, and the sparse argmax token is in the wrong answer set.
    - `breakdown`: confident, and the sparse argmax token is in neither set (the model
      stopped answering yes/no).
    - `seed`: confident, and the sparse argmax is not in the correct set (the seed
      paper's criterion; strict + breakdown).
    - `success`: confident and sparse attention not right: what attacks look for.

    strict/breakdown/seed are None when a score has no argmax class (old rows).
    """

    flip: bool
    confident: bool
    success: bool
    strict: bool | None
    breakdown: bool | None
    seed: bool | None

    def to_dict(self) -> dict:
        return {"strict": self.strict, "breakdown": self.breakdown, "seed": self.seed}


def confident(full: Score, full_margin: float = 0.0) -> bool:
    """Full attention answers correctly, by at least `full_margin` in P(a) - P(ā)."""
    return full.correct and full.margin >= full_margin


def classify(full: Score, sparse: Score, full_margin: float = 0.0) -> Outcome:
    """The outcome of one prompt scored under full and under sparse attention."""
    if full_margin < 0:
        raise ValueError(f"full_margin must be >= 0, got {full_margin}")
    sure = confident(full, full_margin)
    known = sparse.argmax is not None
    return Outcome(
        flip=full.correct and not sparse.correct,
        confident=sure,
        success=sure and not sparse.correct,
        strict=(sure and sparse.argmax == WRONG) if known else None,
        breakdown=(sure and sparse.argmax == OTHER) if known else None,
        seed=(sure and sparse.argmax != CORRECT) if known else None,
    )
