"""A torch-free index of the installed plug-ins, for the commands that only read.

Plug-in modules (methods, datasets, backbones) import torch, which takes seconds to load on a
small CPU. ``list`` and ``status`` need from them only plain data: each plug-in's name, first
docstring line, hyperparameter fields, and each suite's run ids per profile (a run id hashes the
resolved hyperparameters, whose defaults live in the plug-ins). The catalogue holds that data as
JSON in ``<home>/cache/catalogue/<key>.json``. The key is a SHA-256 over the entry-point
declarations of the four plug-in groups, every ``.py`` file of the packages they point into (and of
``benchmark`` itself) and the Python version: any edit to a plug-in, a suite or the spec code gives
a new key, and the next command rebuilds the catalogue by importing every plug-in once (torch
included). A command on an unchanged tree reads the file and never imports a plug-in.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

GROUPS = ("benchmark.methods", "benchmark.datasets", "benchmark.backbones", "benchmark.suites")
VERSION = 2  # bump when the catalogue's layout changes


def _entry_points() -> list[tuple[str, str, str]]:
    return sorted((g, ep.name, ep.value) for g in GROUPS for ep in metadata.entry_points(group=g))


def _source_files(modules: set[str]) -> list[Path]:
    """The ``.py`` files of the top-level packages (or single modules) named in ``modules``,
    located without importing them."""
    files: set[Path] = set()
    for top in sorted(modules):
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if spec.submodule_search_locations:
            for d in spec.submodule_search_locations:
                files.update(Path(d).rglob("*.py"))
        elif spec.origin and spec.origin.endswith(".py"):
            files.add(Path(spec.origin))
    return sorted(files)


def key() -> str:
    """The catalogue key of the installed plug-ins' current source (see the module docstring)."""
    eps = _entry_points()
    h = hashlib.sha256(json.dumps([VERSION, sys.version, eps]).encode())
    for path in _source_files({"benchmark"} | {v.split(":")[0].split(".")[0] for _, _, v in eps}):
        h.update(str(path).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()[:20]


def _fields(cls) -> list[list[Any]]:
    from .hparams import describe_fields
    return [[name, repr(default), source, help_] for name, default, source, help_ in describe_fields(cls)]


def _bias_heads(cls) -> dict[str, int]:
    """Bias-head name -> classes, at the family's default parameters (empty if they cannot be built)."""
    try:
        return {h.name: h.num_classes for h in cls().info(cls.Params()).bias_heads}
    except Exception:  # noqa: BLE001 - e.g. a family without defaults: reports then draw no chance line
        return {}


def build() -> dict[str, Any]:
    """Import every plug-in and collect what ``list`` and ``status`` show (slow: torch loads)."""
    from ._registry import RegistryError
    from .nets import BACKBONES
    from .planner import expand
    from .registry import DATASETS, METHODS, describe
    from .suites import SUITES

    out: dict[str, Any] = {"methods": [], "datasets": [], "backbones": [], "suites": []}
    for name, cls in METHODS.items():
        out["methods"].append({"name": name, "doc": describe(cls), "bias_labels": bool(cls.uses_bias_labels),
                               "fields": _fields(cls.HParams)})
    for name, cls in DATASETS.items():
        out["datasets"].append({"name": name, "doc": describe(cls), "fields": _fields(cls.Params),
                                 "bias_heads": _bias_heads(cls)})
    for name, cls in BACKBONES.items():
        out["backbones"].append({"name": name, "doc": describe(cls)})
    for name, cls in SUITES.items():
        suite = cls()
        plans = {}
        try:
            counts = {p: sum(1 for _ in suite.cells(p)) for p in suite.profiles}
        except RegistryError:  # a suite naming a broken plug-in is listed, not fatal
            counts = {}
        for p in counts:
            runs, skipped, _ = expand([suite], p)
            plans[p] = {"ids": [r.run_id for r in runs], "skipped": sum(s.runs for s in skipped)}
        out["suites"].append({
            "name": name, "doc": describe(cls), "counts": counts,
            "datasets": suite.datasets(), "paper": suite.paper,
            "sources": {p: prof.source for p, prof in suite.profiles.items()}, "notes": suite.notes,
            "plans": plans})
    out["broken"] = [msg for reg in (METHODS, DATASETS, BACKBONES, SUITES) for msg in reg.broken.values()]
    return out


def load(home: str | Path | None = None) -> dict[str, Any]:
    """The catalogue for the current source: read from ``<home>/cache/catalogue/`` (default home:
    ``$BENCHMARK_HOME`` or ``.benchmark``), else built and written there (written atomically;
    an unwritable home only costs the rebuild next time)."""
    from .paths import default_home
    home = Path(home) if home else default_home()
    path = home / "cache" / "catalogue" / f"{key()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except OSError:
        pass
    return data


def method_entry(catalogue: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((m for m in catalogue["methods"] if m["name"] == name), None)


def dataset_entry(catalogue: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((d for d in catalogue["datasets"] if d["name"] == name), None)
