"""Code-aware provenance: which code produced a record, and whether that code still exists.

A run's identity is the hash of its spec (:attr:`benchmark.spec.RunSpec.run_id`), so editing a
method and rerunning would otherwise find the old record and show numbers from code that no longer
exists. Every record therefore carries a *code fingerprint*: a hash of each Python module that
defines the classes the run used — the method (and its ``HParams``), the dataset family (and its
``Params``), the backbone, and their base classes except torch's and the plug-in contracts'
(``benchmark.method``/``data``/``nets``/``hparams``, whose changes are engine changes that the
record's commit tells) — plus the name and version of each out-of-tree plug-in distribution among
them. A module is hashed through its syntax tree with
docstrings dropped (``ast.dump``), so editing a comment or a docstring changes nothing, while any
change to what runs does.

Checking a record reads the source files of the modules its fingerprint names first, without
importing them: when every one still hashes the same (and every plug-in distribution has the same
version), the record is current and no plug-in (no torch) is loaded; otherwise the fingerprint is
recomputed from the loaded classes, which also catches a run whose classes moved to other modules.

A record whose fingerprint differs from the current code's is *stale*: ``status`` and the reports
show it as such, paper cells exclude it, and ``run --rerun-stale`` trains it again (the stale record
is kept under ``<results>/_stale/``).
"""
from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import sys
from typing import Any, Iterable

from .spec import RunSpec

_SKIP_ROOTS = {"builtins", "torch", "abc", "typing", "dataclasses", "enum", "collections"}
# The plug-in contracts (base classes every plug-in derives from): a change there is an engine
# change, recorded by the commit, not a change of one method's, dataset's or backbone's code.
_CONTRACT_MODULES = {"benchmark.method", "benchmark.data", "benchmark.nets", "benchmark.hparams"}


def _modules_of(cls: type) -> list[str]:
    """The module of ``cls`` and of its bases, except torch, the standard library and the contracts."""
    out = [cls.__module__]
    for c in cls.__mro__[1:]:
        root = c.__module__.split(".")[0]
        if root not in _SKIP_ROOTS and c.__module__ not in _CONTRACT_MODULES and c.__module__ not in out:
            out.append(c.__module__)
    return out


def _ast_hash(source: str) -> str:
    """SHA-256 (16 hex digits) of a module's syntax tree without docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def _module_hash(module_name: str) -> str:
    """:func:`_ast_hash` of a loaded module's source ("no-source" when it has none)."""
    module = sys.modules[module_name]
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):  # no source (e.g. a compiled module): hash nothing we can check
        return "no-source"
    return _ast_hash(source)


@functools.lru_cache(maxsize=None)
def _source_hash(module_name: str) -> str | None:
    """:func:`_ast_hash` of a module's source file found without importing the module (its parent
    packages are imported: plain namespaces and ``benchmark``, which loads no torch); None when it
    cannot be found."""
    import importlib.util

    if module_name in sys.modules:
        return _module_hash(module_name)
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return None
    try:
        with open(found.origin, encoding="utf-8") as fh:
            return _ast_hash(fh.read())
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None


def _unchanged_on_disk(stored: dict[str, Any]) -> bool:
    """Whether every module a stored fingerprint names still hashes the same and every plug-in
    distribution it names has the same version, read from the files and the installed metadata
    without importing the plug-ins (so ``status`` and ``report`` load no torch on an unchanged
    tree). False means "look closer" (:func:`fingerprint` imports and compares), not "stale"."""
    from importlib import metadata

    modules = stored.get("modules") or {}
    if not modules or any(_source_hash(m) != h for m, h in modules.items()):
        return False
    for dist, version in (stored.get("plugins") or {}).items():
        try:
            if metadata.version(dist) != version:
                return False
        except metadata.PackageNotFoundError:
            return False
    return True


@functools.lru_cache(maxsize=None)
def _distribution(top_level: str) -> tuple[str, str] | None:
    """(name, version) of the installed distribution that provides the top-level package, if any."""
    from importlib import metadata

    names = metadata.packages_distributions().get(top_level) or []
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    for dist in metadata.distributions():  # a plug-in without RECORD/top_level.txt: its entry points tell
        for ep in dist.entry_points:
            if ep.group.startswith("benchmark.") and ep.value.split(":")[0].split(".")[0] == top_level:
                return dist.metadata["Name"], dist.version
    return None


def _classes_for(spec: RunSpec) -> Iterable[type]:
    from .hparams import from_dict
    from .nets import BACKBONES
    from .registry import DATASETS, METHODS

    method = METHODS.get(spec.method)
    yield method
    yield method.HParams
    inner = spec.hparams.get("inner")  # a wrapper method (denoise) runs another registered method
    if isinstance(inner, str) and inner in METHODS:
        yield METHODS.get(inner)
        yield METHODS.get(inner).HParams
    family = DATASETS.get(spec.dataset)
    yield family
    yield family.Params
    backbones = {spec.backbone or family().info(from_dict(family.Params, spec.dataset_params)).backbone}
    backbones |= {v for v in spec.hparams.values() if isinstance(v, str) and v in BACKBONES}
    for name in sorted(b for b in backbones if b):
        yield BACKBONES.get(name)


def fingerprint(spec: RunSpec | dict) -> dict[str, Any]:
    """The code fingerprint of ``spec`` under the code loaded now.

    Returns:
        ``{"digest": <16 hex>, "modules": {module: hash}, "plugins": {distribution: version}}``;
        ``plugins`` lists the distributions other than this package (biasbench) that provide a
        module of the run.
    """
    if isinstance(spec, dict):
        spec = RunSpec.from_dict(spec)
    modules: dict[str, str] = {}
    for cls in _classes_for(spec):
        for module in _modules_of(cls):
            modules.setdefault(module, _module_hash(module))
    plugins: dict[str, str] = {}
    for module in modules:
        dist = _distribution(module.split(".")[0])
        if dist is not None and dist[0] != "biasbench":
            plugins[dist[0]] = dist[1]
    text = "\n".join(f"{m}={h}" for m, h in sorted(modules.items()))
    text += "\n" + "\n".join(f"{d}=={v}" for d, v in sorted(plugins.items()))
    return {"digest": hashlib.sha256(text.encode()).hexdigest()[:16], "modules": dict(sorted(modules.items())),
            "plugins": plugins}


def stale_reason(record: dict[str, Any]) -> str | None:
    """Why ``record`` no longer describes the current code, or None when it still does."""
    stored = (record.get("code") or {}).get("fingerprint")
    if not stored:
        return "no code fingerprint (recorded before provenance was kept)"
    if _unchanged_on_disk(stored):
        return None
    try:
        now = fingerprint(record["spec"])
    except Exception as e:  # the method, dataset or backbone is gone or no longer builds this spec
        return f"its code no longer loads ({type(e).__name__}: {e})"
    if now["digest"] == stored.get("digest"):
        return None
    old_mods, new_mods = stored.get("modules", {}), now["modules"]
    changed = sorted(m for m in set(old_mods) | set(new_mods) if old_mods.get(m) != new_mods.get(m))
    plugins = sorted(d for d in set(stored.get("plugins", {})) | set(now["plugins"])
                     if stored.get("plugins", {}).get(d) != now["plugins"].get(d))
    parts = ([f"code changed: {', '.join(changed)}"] if changed else []) + (
        [f"plug-in version changed: {', '.join(plugins)}"] if plugins else [])
    return "; ".join(parts) or "code fingerprint differs"


def is_stale(record: dict[str, Any]) -> bool:
    return stale_reason(record) is not None


def mark_stale(runs):
    """Add a ``stale`` column (the reason, or None) to a ``ResultStore.query()`` frame."""
    runs = runs.copy()
    runs["stale"] = [stale_reason(r) for r in runs["record"]] if not runs.empty else []
    return runs
