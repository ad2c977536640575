"""Name → implementation registries, one per kind of stage (cf. mmsegmentation's registries)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """Raised when a name is not registered; the message lists the known names."""


class Registry(Generic[T]):
    """A small named registry: ``@REG.register("name")`` then ``REG.get("name")``.

    ``loaders`` maps a name to the dotted module that registers it, imported the first time the name is asked
    for, so a process imports only the implementation it uses (a stage running plain CAM never imports
    open_clip). The modules are named as strings, so the registry does not import its implementations (no
    import cycle with the modules that register into it); ``selected_by`` says which names a stage runs: a
    params key (``refine.method``) or ``cam``, the CAM methods the stage declares it runs. The code closures of
    :mod:`pipeline.code_closure` read both from the ``Registry(...)`` call and follow the selected loaders only.
    """

    def __init__(self, kind: str, loaders: dict[str, str] | None = None, selected_by: str | None = None) -> None:
        if loaders and selected_by is None:
            raise ValueError(f"{kind} registry: lazy loaders need selected_by (which names a stage runs)")
        self.kind = kind
        self.selected_by = selected_by
        self._items: dict[str, T] = {}
        self._loaders = dict(loaders or {})

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items and name in self._loaders:
            importlib.import_module(self._loaders[name])
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names()) or '(none)'}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._loaders))

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._loaders
