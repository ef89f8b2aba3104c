"""Typed hyperparameters and protocol parameters that carry their provenance.

A method's hyperparameters (and a dataset's protocol parameters) are a frozen dataclass in the
plug-in's own file. Every field is declared with :func:`hp`, which records its default, where
the value comes from ("paper Sec. 5.1", "official code trainer.py:107"), a help line and an
optional search space. ``hparams_seed=0`` means the published defaults; other seeds draw each
field from its space with a generator seeded by ``hash(seed, field name)``, so adding a field
does not move the others (the DomainBed convention).
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import typing
from typing import Any, Callable


def hp(default: Any, source: str, help: str = "", space: Callable[[random.Random], Any] | None = None,
       choices: tuple | None = None, bounds: tuple[Any, Any] | None = None,
       check: Callable[[Any], str | None] | None = None):
    """Declare a dataclass field with its provenance.

    Args:
        default: the value used by ``hparams_seed=0``.
        source: where the default comes from (paper section/table, official code file:line).
        help: one line for ``--help`` and reports.
        space: a function of a ``random.Random`` drawing a value, for random search.
        choices: allowed values, checked by :func:`validate`.
        bounds: ``(low, high)``, both inclusive, either None for no limit; checked by
            :func:`validate` (for a tuple/list value, on every element).
        check: a function of the value returning None if it is fine, else what is wrong (one
            line); checked by :func:`validate` after ``bounds``.
    """
    return dataclasses.field(
        default=default,
        metadata={"source": source, "help": help, "space": space, "choices": choices, "bounds": bounds,
                  "check": check},
    )


def to_dict(obj) -> dict[str, Any]:
    """A dataclass as a plain JSON-able dict (tuples become lists)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def from_dict(cls, values: dict[str, Any] | None = None):
    """Build ``cls`` from a dict, converting strings (from the CLI) to the field types.

    Raises:
        ValueError: naming the unknown key and the known ones, or the field that failed to parse.
    """
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__qualname__}: unknown parameter(s) {unknown}; known: {sorted(names)}")
    kwargs = {}
    for key, value in values.items():
        try:
            kwargs[key] = _coerce(value, hints[key])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cls.__qualname__}.{key}: cannot use {value!r} ({e})") from None
    obj = cls(**kwargs)
    validate(obj)
    return obj


def _coerce(value, tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or value == "None":
            return None
        return _coerce(value, args[0])
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(tp) or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        out = [_coerce(v, inner) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true/false")
    if tp in (int, float, str, bool):
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        return tp(value)
    return value


REQUIRED_POSITIVE = ("batch_size", "epochs")  # framework fields: the engine divides and loops by them


def validate(obj) -> None:
    """Check ``choices``, ``bounds`` and ``check`` of every field (``batch_size`` and ``epochs``
    must be >= 1 wherever they appear), then the dataclass's own ``check()`` if it has one.

    Raises:
        ValueError: one line naming the field, its value and what is allowed.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        where = f"{type(obj).__qualname__}.{f.name}={value!r}"
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{where}; allowed: {choices}")
        bounds = f.metadata.get("bounds")
        if bounds is None and f.name in REQUIRED_POSITIVE and isinstance(value, int):
            bounds = (1, None)
        if bounds is not None:
            low, high = bounds
            for v in (value if isinstance(value, (tuple, list)) else (value,)):
                if v is None:
                    continue
                if (low is not None and v < low) or (high is not None and v > high):
                    allowed = (f"[{low}, {high}]" if low is not None and high is not None
                               else f">= {low}" if low is not None else f"<= {high}")
                    raise ValueError(f"{where} is out of range; allowed: {allowed}")
        checker = f.metadata.get("check")
        problem = checker(value) if checker is not None else None
        if problem:
            raise ValueError(f"{where}: {problem}")
    check = getattr(obj, "check", None)
    if callable(check):
        check()


def sample(cls, hparams_seed: int):
    """Defaults for ``hparams_seed=0``; otherwise each field with a space drawn independently."""
    if hparams_seed == 0:
        return cls()
    values = {}
    for f in dataclasses.fields(cls):
        space = f.metadata.get("space")
        if space is not None:
            digest = hashlib.sha256(f"{hparams_seed}:{f.name}".encode()).digest()
            values[f.name] = space(random.Random(int.from_bytes(digest[:8], "little")))
    return cls(**values)


def describe_fields(cls) -> list[tuple[str, Any, str, str]]:
    """(name, default, source, help) for every field, for docs and ``list --verbose``."""
    return [(f.name, f.default, f.metadata.get("source", ""), f.metadata.get("help", ""))
            for f in dataclasses.fields(cls)]
