"""A name -> object registry with suggestions for unknown names and entry-point plugins.

Installed plugins need no `--plugin` flag: a distribution declares, in its
pyproject.toml,

    [project.entry-points."flipbench.sparse_methods"]
    my-methods = "my_package.methods"

(or the group `flipbench.attacks`). The convention: an entry point names a module,
and importing it registers its methods or attacks with the usual decorators
(`register_sparse_method`, `register_attack`); the entry point's own name is only a
label for error messages. A registry with an `entry_point_group` imports every entry
point of its group once, on the first `get`, `names` or `in`.
"""

from __future__ import annotations

import difflib
from importlib import metadata
from typing import Generic, Iterable, TypeVar

T = TypeVar("T")


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """One line naming the unknown `name`, the closest known name if one is close, and all known names."""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {kind} {name!r}{hint} known {kind}s: {', '.join(known)}"


class UnknownNameError(KeyError):
    """A name nobody registered; str() is `unknown_name_message`."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        super().__init__(unknown_name_message(kind, name, known))
        self.kind = kind
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class PluginError(ValueError):
    """An installed plugin that cannot be loaded; the message names its distribution and entry point."""


class Registry(Generic[T]):
    """Named values of one kind (`kind` is used in messages, e.g. "sparse method")."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._loaded = entry_point_group is None
        self._error: PluginError | None = None

    def register(self, name: str, value: T, overwrite: bool = False) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if name in self._items and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered (pass overwrite=True to replace it)")
        self._items[name] = value
        return value

    def get(self, name: str) -> T:
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def _load_entry_points(self) -> None:
        """Import every entry point of the group, once; a failure is raised again on every later call,
        so a broken plugin cannot go unnoticed by a later caller."""
        if self._error is not None:
            raise self._error
        if self._loaded:
            return
        self._loaded = True  # first, so a plugin that lists the registry while it loads sees no recursion
        for ep in metadata.entry_points(group=self.entry_point_group):
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - any failure of plugin code is reported as one line
                dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
                first = (str(exc).splitlines() or [""])[0]
                self._error = PluginError(
                    f"cannot load the {self.kind} plugin {ep.name} = {ep.value} (entry point group "
                    f"{self.entry_point_group}) of {dist}: {type(exc).__name__}: {first}")
                raise self._error from None
