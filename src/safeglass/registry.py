"""One registry for every pluggable stage: datasets, targets, attacks, defenses, judges, ...

Entries are lazy ``"module:attr"`` strings with a one-line description kept as data, so listing
never imports the implementation (and therefore never imports torch).  User code can add entries
with :func:`register` or a ``safeglass.plugins`` entry point that calls it.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from safeglass.options import Options, options_of

KINDS = ("datasets", "targets", "modifiers", "attacks", "defenses", "judges", "scorers")
# The kinds a run config lists at its top level (modifiers are listed under their target).
RUN_KINDS = ("datasets", "targets", "attacks", "defenses", "judges", "scorers")


class UnknownComponentError(KeyError):
    """A name that is not registered; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    target: str | Callable[..., Any]
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def load(self) -> Callable[..., Any]:
        if callable(self.target):
            return self.target
        module_name, _, attr = self.target.partition(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise ImportError(f"registry entry {self.kind}/{self.name} points at missing {self.target}") from exc


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: str | Callable[..., Any], description: str = "",
            tags: tuple[str, ...] = (), replace: bool = False) -> None:
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} '{name}' is already registered (pass replace=True to override)")
        self._entries[name] = Entry(self.kind, name, target, description, tuple(tags))

    def entry(self, name: str) -> Entry:
        """A registered name, or a ``package.module:attr`` path to a user's own component."""
        if name not in self._entries and ":" in name:
            return Entry(self.kind, name, name, "user component")
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=3, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownComponentError(
                f"unknown {self.kind[:-1]} '{name}'.{hint} Known: {', '.join(sorted(self._entries))}"
            ) from None

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).load()

    def options(self, name: str) -> Options:
        """What the component takes in a config's ``args`` (read from its code; see :mod:`safeglass.options`)."""
        return options_of(self.entry(name).target, exclude=CALLER_SUPPLIED.get(self.kind, ()))

    def check(self, name: str, args: dict[str, Any], where: str = "") -> None:
        """Raise :class:`~safeglass.options.UnknownOptionError` for an option ``name`` does not take (with the
        known ones and a "did you mean") or a required one missing, before anything is built or loaded."""
        self.options(name).check(args, where or f"{self.kind[:-1]} '{name}'")

    def build(self, name: str, /, **kwargs: Any) -> Any:
        # positional-only, so that a component's own `name` argument (a target's display name) passes through
        self.check(name, kwargs)
        return self.get(name)(**kwargs)

    def keyer(self, name: str) -> Callable[..., Any] | None:
        """The catalog's torch-free ``(name, args) -> key args`` function for `name`, or None."""
        from safeglass.catalog import KEYERS

        target = KEYERS.get((self.kind, name))
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return sorted(self._entries)


# Parameters the runner passes itself rather than from ``args`` (a dataset's ``limit`` is a field of its own).
CALLER_SUPPLIED: dict[str, tuple[str, ...]] = {"datasets": ("limit",)}

REGISTRIES: dict[str, Registry] = {kind: Registry(kind) for kind in KINDS}
_plugins_loaded = False


def registry(kind: str) -> Registry:
    _ensure_catalog()
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise UnknownComponentError(f"unknown component kind '{kind}'; known: {', '.join(KINDS)}") from None


def register(kind: str, name: str, description: str = "", tags: tuple[str, ...] = ()):
    """Decorator: ``@register("judges", "my-judge")`` on a class or factory."""

    def wrap(obj: Callable[..., Any]) -> Callable[..., Any]:
        registry(kind).add(name, obj, description or (obj.__doc__ or "").strip().split("\n")[0], tags)
        return obj

    return wrap


def _ensure_catalog() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from safeglass import catalog

    for kind, name, target, description, tags in catalog.BUILTINS:
        REGISTRIES[kind].add(name, target, description, tags)
    from importlib.metadata import entry_points

    for ep in entry_points(group="safeglass.plugins"):
        ep.load()
