"""Attacks that look for adversarial tokens flipping answers under sparse attention."""

from . import gcg as _gcg  # noqa: F401  (registers "gcg")
from . import natural as _natural  # noqa: F401  (registers "none")
from . import nulls as _nulls  # noqa: F401  (registers "filler" and "far")
from . import random_search as _random_search  # noqa: F401  (registers "random")
from .registry import AttackResult, AttackSpec, UnknownAttackError, available_attacks, get_attack, register_attack
from .target import FULL, Mode, PreparedItem, Score, Target

__all__ = [
    "FULL",
    "Mode",
    "AttackResult",
    "AttackSpec",
    "PreparedItem",
    "Score",
    "Target",
    "UnknownAttackError",
    "available_attacks",
    "get_attack",
    "register_attack",
]
