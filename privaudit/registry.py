"""Name → class registries, so configs and REST payloads can name a component.

Adding a component is one class plus one decorator::

    from privaudit.registry import mechanisms

    @mechanisms.register("grr")
    class GRR: ...

Three registries are shared by the whole project: :data:`mechanisms`,
:data:`attacks` and :data:`report_formats`. Capability packages may create their own
with :class:`Registry`.

Examples
--------
>>> from privaudit.registry import Registry
>>> shapes = Registry[type]("shape")
>>> @shapes.register("square")
... class Square: ...
>>> shapes.get("square") is Square, shapes.names()
(True, ['square'])
>>> shapes.get("squar")
Traceback (most recent call last):
...
privaudit.errors.NotFoundError: unknown shape 'squar' (did you mean 'square'?); known: square
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from privaudit.errors import ConflictError, NotFoundError, ParameterError

__all__ = ["Registry", "attacks", "mechanisms", "report_formats"]

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")


class Registry(Generic[T]):
    """A case-sensitive mapping from a short lowercase name to a component.

    Parameters
    ----------
    kind
        What the registry holds, used in error messages ("mechanism", "attack").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``.

        Raises
        ------
        ParameterError
            If ``name`` is not lowercase letters, digits, ``_``, ``-`` or ``.``.
        ConflictError
            If ``name`` is taken by another component and ``replace`` is false.
        """
        if not _NAME.match(name):
            raise ParameterError(
                f"{self.kind} name {name!r} must start with a lowercase letter and use only "
                "lowercase letters, digits, '_', '-' and '.' (at most 64 characters)"
            )

        def decorator(item: T) -> T:
            existing = self._items.get(name)
            if existing is not None and existing is not item and not replace:
                raise ConflictError(
                    f"{self.kind} {name!r} is already registered to {existing!r}; "
                    "choose another name or pass replace=True"
                )
            self._items[name] = item
            return item

        return decorator

    def add(self, name: str, item: T, *, replace: bool = False) -> T:
        """Register ``item`` under ``name`` (the non-decorator form)."""
        return self.register(name, replace=replace)(item)

    def get(self, name: str) -> T:
        """Return the component called ``name``.

        Raises
        ------
        NotFoundError
            If nothing is registered under ``name``; the message suggests close names.
        """
        try:
            return self._items[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(str(name), list(self._items), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(sorted(self._items)) or "none registered"
        raise NotFoundError(f"unknown {self.kind} {name!r}{hint}; known: {known}", name=name)

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._items)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (mainly for tests); a missing name is not an error."""
        self._items.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()!r})"


mechanisms: Registry[Any] = Registry("mechanism")
"""Privacy mechanisms by name (``"grr"``, ``"oue"``, ...)."""

attacks: Registry[Any] = Registry("attack")
"""Attacks by name (``"lira"``, ``"rmia"``, ...)."""

report_formats: Registry[Any] = Registry("report format")
"""Report renderers by name (``"json"``, ``"html"``, ``"md"``), registered when
:mod:`privaudit.reports` is imported."""
