"""Name -> attack registry and the result every attack returns."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Callable

from plugins import Registry, UnknownNameError

if TYPE_CHECKING:
    from .target import PreparedItem


@dataclass
class AttackResult:
    """What an attack found for one item.

    `steps` counts candidates (random search, the nulls) or optimisation steps (GCG)
    used up to and including the first success, or all of them on failure. `trace`
    holds per-step records (loss, margins) for attacks that have them.

    `draws` has one record per candidate scored under both modes, in draw order:
    {"full": answer class under full attention, "sparse": answer class under sparse
    attention at k_attack} (`Score.answer_class`), so an attack's flip rate per draw can
    be compared with a null's (random search and the nulls record every candidate they
    scored, GCG only those it verified: see `attacks.gcg`).

    `prepared` is the prompt `adv_ids` belong to when it is not the one the attack was
    given (the `far` null puts them before the context): sweeps and attributions of the
    result must use it. None means the caller's own prepared item.
    """

    adv_ids: list[int]
    adv_text: str
    steps: int
    success: bool
    seconds: float
    trace: list[dict] = field(default_factory=list)
    draws: list[dict] = field(default_factory=list)
    prepared: PreparedItem | None = None


@dataclass(frozen=True)
class AttackSpec:
    name: str
    run: Callable  # run(target, prepared, config, rng_seed) -> AttackResult
    config_cls: type

    def make_config(self, **values):
        """Build the attack's config from the subset of `values` it declares."""
        names = {f.name for f in fields(self.config_cls)}
        return self.config_cls(**{k: v for k, v in values.items() if k in names and v is not None})


# Attacks of installed distributions register themselves through this entry point group.
ATTACKS: Registry[AttackSpec] = Registry("attack", entry_point_group="flipbench.attacks")

UnknownAttackError = UnknownNameError  # the name earlier releases raised


def register_attack(name: str, config_cls: type, *, overwrite: bool = False):
    """Decorator registering `run(target, prepared, config, rng_seed) -> AttackResult`."""

    def decorator(fn):
        ATTACKS.register(name, AttackSpec(name=name, run=fn, config_cls=config_cls), overwrite)
        return fn

    return decorator


def get_attack(name: str) -> AttackSpec:
    return ATTACKS.get(name)


def available_attacks() -> list[str]:
    return ATTACKS.names()
