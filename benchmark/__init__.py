"""biasbench: a reproducibility suite for learning from biased data.

The public API for plug-in authors: subclass :class:`Method` or :class:`DatasetFamily`, declare
typed hyperparameters with :func:`hp`, and register with :func:`register_method` /
:func:`register_dataset`. See README.md, "Plug-ins" (methods, datasets, backbones, suites and
report specs, each with its entry-point group).

The names below are loaded on first use (PEP 562), so commands that only read — ``list``,
``status``, ``report``, every ``--help`` — start without importing torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BiasedDataset": "data", "BiasHead": "data", "DatasetFamily": "data", "DatasetInfo": "data", "Split": "data",
    "hp": "hparams", "Batch": "method", "Method": "method",
    "DATASETS": "registry", "METHODS": "registry", "register_dataset": "registry", "register_method": "registry",
    "RunSpec": "spec", "make_spec": "spec",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from .data import BiasedDataset, BiasHead, DatasetFamily, DatasetInfo, Split
    from .hparams import hp
    from .method import Batch, Method
    from .registry import DATASETS, METHODS, register_dataset, register_method
    from .spec import RunSpec, make_spec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'benchmark' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
