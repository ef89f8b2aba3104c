"""Name → class registries, filled by decorators and discovered through entry points.

Built-in methods and datasets live in ``methods/`` and ``datasets/`` and are declared in
``pyproject.toml`` under the entry-point groups ``benchmark.methods`` and
``benchmark.datasets``; a third-party package declares its own plug-ins in the same groups.
Loading an entry point imports its module, whose ``@register_*`` decorator adds the class.

A plug-in that fails to load (its import raises, it registers a name twice or under another
name) does not take the catalogue down: it is kept in :attr:`Registry.broken` with its error,
``list`` shows it as broken, asking for that name raises :class:`RegistryError` with the error,
and every other name keeps working.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")


#: Name families resolved on demand rather than registered one by one: (entry-point group, prefix)
#: → "module:function"; the function takes the rest of the name and returns the class, or raises
#: RegistryError. ``timm:<model>`` makes any timm model a backbone (``benchmark.nets_timm``).
PREFIXED = {("benchmark.backbones", "timm"): "benchmark.nets_timm:timm_backbone"}


class RegistryError(LookupError):
    """A name is unknown, taken twice, or bound to the wrong kind of class."""


class Registry(Generic[T]):
    """A registry of plug-in classes of one kind.

    Args:
        kind: what is registered, for messages ("method", "dataset").
        group: the entry-point group searched for plug-ins.
        base: the class every registered class must subclass.
        config_attr: the name of the class attribute that must hold a dataclass type
            (the plug-in's typed configuration), or None.
    """

    def __init__(self, kind: str, group: str, base: type, config_attr: str | None = None,
                 required_fields: tuple[str, ...] = ()):
        self.kind, self.group, self.base, self.config_attr = kind, group, base, config_attr
        self.required_fields = required_fields
        self._classes: dict[str, type[T]] = {}
        self._entry_points_loaded = False
        self.broken: dict[str, str] = {}  # entry-point name -> why it failed to load

    def register(self, name: str):
        """Class decorator registering a class as ``name`` (``@register_backbone("resnet18")``); fails
        loudly on misuse: a name taken by another class, the wrong base class, no config dataclass."""

        def decorator(cls: type[T]) -> type[T]:
            if not (inspect.isclass(cls) and issubclass(cls, self.base)):
                raise RegistryError(
                    f"{self.kind} {name!r}: {cls!r} must subclass {self.base.__module__}.{self.base.__qualname__}"
                )
            if self.config_attr is not None:
                config = getattr(cls, self.config_attr, None)
                if not (inspect.isclass(config) and dataclasses.is_dataclass(config)):
                    raise RegistryError(
                        f"{self.kind} {name!r} ({_where(cls)}) needs a dataclass in its "
                        f"{self.config_attr!r} attribute"
                    )
                have = {f.name for f in dataclasses.fields(config)}
                lacking = [f for f in self.required_fields if f not in have]
                if lacking:
                    raise RegistryError(
                        f"{self.kind} {name!r} ({_where(cls)}): its {self.config_attr} lacks the field(s) "
                        f"{', '.join(lacking)} that every {self.kind} needs; add them with hp(...)"
                    )
            previous = self._classes.get(name)
            if previous is not None and _where(previous) != _where(cls):
                raise RegistryError(
                    f"{self.kind} name {name!r} is registered twice: {_where(previous)} and {_where(cls)}"
                )
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorator

    def load_entry_points(self) -> None:
        """Import every plug-in declared in the entry-point group (once)."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.group):
            self._load(ep)

    def _load(self, ep) -> None:
        """Import one entry point; a failure is recorded in :attr:`broken`, never raised."""
        if ep.name in self.broken:
            return
        try:
            obj = ep.load()
        except RegistryError as e:
            self.broken[ep.name] = f"{self.kind} plug-in {ep.name!r} ({ep.value}): {e.args[0] if e.args else e}"
            return
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not take the others down
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self.broken[ep.name] = (f"{self.kind} plug-in {ep.name!r} ({ep.value}, group {self.group!r}) failed to "
                                    f"load: {type(e).__name__}: {first}")
            return
        if inspect.isclass(obj) and getattr(obj, "name", None) != ep.name:
            self.broken[ep.name] = (f"entry point {ep.name!r} in group {self.group!r} points to {ep.value}, "
                                    f"which is registered as {getattr(obj, 'name', None)!r}; the names must match")

    def get(self, name: str) -> type[T]:
        """Return the class registered as ``name``, loading plug-ins as needed (``prefix:rest``
        names of a :data:`PREFIXED` family are built by that family's function)."""
        prefix, sep, rest = name.partition(":")
        if sep and (self.group, prefix) in PREFIXED:
            module, function = PREFIXED[self.group, prefix].split(":")
            return getattr(importlib.import_module(module), function)(rest)
        if name not in self._classes:  # load the plug-in of that name only, then everything
            for ep in metadata.entry_points(group=self.group, name=name):
                self._load(ep)
        if name not in self._classes:
            self.load_entry_points()
        if name in self.broken:
            raise RegistryError(f"{self.broken[name]}; fix or uninstall that plug-in "
                                f"(`python -m benchmark list` shows every broken one)")
        try:
            return self._classes[name]
        except KeyError:
            broken = f" (broken plug-ins: {', '.join(sorted(self.broken))})" if self.broken else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names()) or '(none)'}{broken}"
            ) from None

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._classes)

    def items(self) -> list[tuple[str, type[T]]]:
        return [(n, self._classes[n]) for n in self.names()]

    def __contains__(self, name: str) -> bool:
        """True for a usable name (registered, and not claimed by a broken plug-in)."""
        if isinstance(name, str) and (self.group, name.partition(":")[0]) in PREFIXED:
            try:
                self.get(name)
            except RegistryError:
                return False
            return True
        self.load_entry_points()
        return name in self._classes and name not in self.broken


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(cls: type) -> str:
    """First line of a class docstring, for ``list`` output."""
    doc = inspect.getdoc(cls) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
