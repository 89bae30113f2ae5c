"""`AttackConfig`: the budget every attack shares, validated in one place.

Random search, its nulls and GCG are compared at the same budget (adversarial
tokens, steps, the k they target, the counting margin), so those fields are one
declaration; each attack's config subclasses it and adds its own settings. The
harness generates a command-line flag for every field of every registered config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class SettingError(ValueError):
    """A bad value of one setting: `name` is the field, so the harness can name its flag."""

    def __init__(self, owner: str, name: str, problem: str):
        super().__init__(f"{owner}: {name} {problem}")
        self.owner, self.name, self.problem = owner, name, problem


@dataclass(frozen=True)
class AttackConfig:
    """Shared budget; `label` names the attack in validation errors."""

    label: ClassVar[str] = "attack"
    n_adv: int = 3
    steps: int = 200
    k_attack: int = 4
    batch_size: int = 16
    ascii_only: bool = False
    full_margin: float = 0.0  # success needs P(a) - P(ā) >= full_margin under full attention

    def __post_init__(self):
        for name in ("n_adv", "steps", "k_attack", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SettingError(self.label, name, f"must be an integer >= 1, got {value!r}")
        margin = self.full_margin
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
            raise SettingError(self.label, "full_margin", f"must be a number in [0, 1), got {margin!r}")
