"""Name → implementation registries, one per kind of stage (cf. mmsegmentation's registries)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """Raised when a name is not registered; the message lists the known names."""


class Registry(Generic[T]):
    """A small named registry: ``@REG.register("name")`` then ``REG.get("name")``.

    ``loaders`` maps a name to a function that imports the module registering it, so a process imports only
    the implementation it uses (a stage running plain CAM never imports open_clip); each loader is a plain
    function with a static import, which the code closures of :mod:`pipeline.code_closure` follow.
    """

    def __init__(self, kind: str, loaders: dict[str, Callable[[], object]] | None = None) -> None:
        self.kind = kind
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
            self._loaders[name]()
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names()) or '(none)'}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._loaders))

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._loaders
