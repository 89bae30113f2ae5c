"""Per-method settings: each sparse method declares its own frozen dataclass.

What every method shares (the budget k, block sizes, dense layers, seed, reserved
blocks) lives in `SparseConfig`; what only one method reads (stream-density's share,
a page size, a window) lives in that method's settings class, registered with it, the
way KVPress declares a press. `build_settings` turns user values (a YAML mapping, or
`--method-opt name=value` strings) into the class, and every mistake names the method
and the setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """Settings of a method that has none of its own."""


def setting_names(settings_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(settings_cls)]


def _coerce(method: str, name: str, kind, value):
    """A command-line string as the field's type (YAML values arrive typed already)."""
    if not isinstance(value, str) or kind is str:
        return value
    if kind is bool:
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"sparse method {method!r}: setting {name} must be true or false, got {value!r}")
    for cast in (int, float):
        if kind is cast or (typing.get_origin(kind) is typing.Union and cast in typing.get_args(kind)):
            try:
                return cast(value)
            except ValueError:
                raise ValueError(f"sparse method {method!r}: setting {name} must be a {cast.__name__}, "
                                 f"got {value!r}") from None
    return value


def build_settings(method: str, settings_cls: type, values: typing.Mapping):
    """`settings_cls(**values)`, with one-line errors naming `method` and the setting."""
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    hints = typing.get_type_hints(settings_cls)
    for name in values:
        if name not in fields:
            close = difflib.get_close_matches(str(name), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(fields) or "none"
            raise ValueError(f"sparse method {method!r} has no setting {name!r}{hint} (its settings: {known})")
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"sparse method {method!r} needs setting {missing[0]} (--method-opt {missing[0]}=VALUE)")
    typed = {name: _coerce(method, name, hints.get(name), value) for name, value in values.items()}
    try:
        return settings_cls(**typed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sparse method {method!r}: {exc}") from None


def settings_dict(settings) -> dict:
    """The settings as a plain mapping (manifests, results, the leaderboard, W&B)."""
    return dataclasses.asdict(settings)
