"""One registry for everything chosen by name: corpus readers, feature extractors, models.

A base class registers each named subclass when it is defined (its ``__init_subclass__`` calls
:meth:`Registry.register`). Another package adds its own through an entry-point group, read on
the first lookup; e.g. in its ``pyproject.toml``::

    [project.entry-points."emolingua.models"]
    my-model = "my_package.models:MyModel"

Loading the entry point imports the module, which registers the class under its ``name``; an
object that did not register itself is registered under the entry point's name. A plugin that
fails to load is reported as a warning naming it, and the others stay usable.
"""

from __future__ import annotations

import importlib
import warnings
from importlib import metadata
from typing import Generic, TypeVar

from emolingua.errors import ConfigError, UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class Registry(Generic[T]):
    """Classes by name, for one kind of thing (``Registry("model", group="emolingua.models")``).

    Args:
        kind: what a name names, for messages ("corpus", "extractor", "model").
        group: the entry-point group third-party plugins register in.
        builtins: modules that define the built-in entries, imported on the first lookup; one
            whose optional dependency is missing is skipped, so it cannot hide the others.
        plural: the plural of ``kind`` when it is not ``kind + "s"``.
    """

    def __init__(self, kind: str, *, group: str, builtins: tuple[str, ...] = (), plural: str | None = None) -> None:
        self.kind, self.group, self.builtins = kind, group, builtins
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, type[T]] = {}
        self._plugins_loaded = False

    def register(self, name: str, cls: type[T]) -> type[T]:
        """Bind ``name`` to ``cls``; a name already bound to another class is a :class:`ConfigError`."""
        old = self._entries.get(name)
        # the same definition seen again (a reloaded module) replaces itself; a different one is a clash
        if old is not None and old is not cls and _path(old) != _path(cls):
            raise ConfigError(f"{self.kind} {name!r} is registered twice: by {_path(old)} and by {_path(cls)}; "
                              "rename one of them")  # fmt: skip
        self._entries[name] = cls
        return cls

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; :class:`UnknownNameError` lists the known names."""
        self._load()
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return [name for name, _ in self.items()]

    def items(self) -> list[tuple[str, type[T]]]:
        """(name, class) pairs, in registration order (built-ins, then plugins)."""
        self._load()
        return list(self._entries.items())

    def pop(self, name: str, default: type[T] | None = None) -> type[T] | None:
        """Forget ``name`` (tests remove what they registered)."""
        return self._entries.pop(name, default)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def _load(self) -> None:
        for module in self.builtins:
            try:
                importlib.import_module(module)  # cheap once imported; retried if it failed
            except ImportError as exc:
                if exc.name and exc.name.startswith("emolingua"):
                    raise
        if self._plugins_loaded:
            return
        self._plugins_loaded = True  # before loading: a plugin that looks names up must not recurse
        for ep in metadata.entry_points(group=self.group):
            try:
                obj = ep.load()
                if isinstance(obj, type) and obj not in self._entries.values():
                    self.register(ep.name, obj)
            except Exception as exc:  # a broken plugin must not take the built-ins down with it
                warnings.warn(f"{self.group} plugin {ep.name!r} ({ep.value}) was not loaded: "
                              f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)  # fmt: skip
