"""`none`: no adversarial tokens, so a run measures natural flips only.

Natural flips (sparse attention alone changes the answer, the seed's "Is Rome in
Belgium?") need no search: this attack returns the empty candidate at once and the
harness's sweep scores the plain prompt. Used for needle-suite and sink/local
measurements where only sparsity is under test.
"""

from __future__ import annotations

from dataclasses import dataclass

from .registry import AttackResult, register_attack
from .target import PreparedItem, Target


@dataclass(frozen=True)
class NoAttackConfig:
    k_attack: int = 4

    def __post_init__(self):
        if self.k_attack < 1:
            raise ValueError(f"none: k_attack must be >= 1, got {self.k_attack}")


@register_attack("none", NoAttackConfig)
def no_attack(target: Target, prepared: PreparedItem, config: NoAttackConfig, rng_seed: int,
              progress=None) -> AttackResult:
    return AttackResult(adv_ids=[], adv_text="", steps=0, success=False, seconds=0.0)
