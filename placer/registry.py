"""The one extension mechanism: a named registry per kind of plug-in (solvers, importers, exporters).

A plug-in module calls ``REGISTRY.add(name, entry)`` (usually through a decorator its registry
offers) at import time. The registry knows the modules that ship with moe-place as a tuple of
module names and imports them on the first lookup, so ``import placer`` stays cheap and no
module imports a package that imports it back. Adding a plug-in is one new module plus its
name in that tuple; a test (or a user's own code) may call ``add`` directly.
"""

from __future__ import annotations

import importlib
from typing import Generic, Iterator, TypeVar

from placer.errors import PlacerError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name, in registration order (built-in modules first)."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...], hint: str = ""):
        self.kind = kind
        self.builtin_modules = builtin_modules
        self.hint = hint
        self._entries: dict[str, T] = {}
        self._rank: dict[str, int] = {}
        self._loaded = False

    def add(self, name: str, entry: T, module: str | None = None) -> T:
        """Register ``entry`` under ``name`` (a later registration replaces an earlier one).

        ``module``: the registering module. Entries keep the order of the built-in module list
        (whichever module happens to be imported first), then the order others registered in.
        """
        self._entries[name] = entry
        self._rank[name] = next((i for i, m in enumerate(self.builtin_modules)
                                 if module is not None and (module == m or module.startswith(m + "."))),
                                len(self.builtin_modules))
        order = sorted(self._entries, key=lambda n: self._rank[n])      # stable: registration order within a rank
        self._entries = {n: self._entries[n] for n in order}
        return entry

    def remove(self, name: str) -> None:
        self._load()
        self._entries.pop(name, None)
        self._rank.pop(name, None)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.builtin_modules:
            importlib.import_module(module)

    def get(self, name: str) -> T:
        """The entry ``name``, or a :class:`PlacerError` that lists the names there are."""
        self._load()
        if name not in self._entries:
            raise PlacerError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self._entries)}{self.hint}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def items(self) -> dict[str, T]:
        self._load()
        return dict(self._entries)
