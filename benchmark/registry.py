"""The public registries of methods and datasets (backbones live in ``benchmark.nets``)."""
from __future__ import annotations

from ._registry import Registry, RegistryError, describe
from .data import DatasetFamily
from .method import Method

METHODS: Registry[Method] = Registry("method", "benchmark.methods", Method, config_attr="HParams",
                                     required_fields=("batch_size",))
DATASETS: Registry[DatasetFamily] = Registry("dataset", "benchmark.datasets", DatasetFamily, config_attr="Params")



def register_method(name: str):
    """Class decorator registering a :class:`Method` subclass as ``name`` (``@register_method("lnl")``).

    The class needs an ``HParams`` dataclass with at least ``batch_size``. A plug-in outside this
    package also declares the class in its ``pyproject.toml`` under ``[project.entry-points."benchmark.methods"]``
    with the same name, so ``list`` and ``run --method NAME`` find it without importing it first.

    Raises:
        RegistryError: ``name`` taken by another class, not a ``Method`` subclass, or ``HParams``
            missing or lacking ``batch_size``.
    """
    return METHODS.register(name)


def register_dataset(name: str):
    """Class decorator registering a :class:`DatasetFamily` subclass as ``name``
    (``@register_dataset("colored_mnist")``).

    The class needs a ``Params`` dataclass (its fields are the protocol parameters, e.g. ``sigma2``).
    A plug-in outside this package also declares the class under
    ``[project.entry-points."benchmark.datasets"]`` with the same name.

    Raises:
        RegistryError: ``name`` taken by another class, not a ``DatasetFamily`` subclass, or no
            ``Params`` dataclass.
    """
    return DATASETS.register(name)

__all__ = ["METHODS", "DATASETS", "register_method", "register_dataset", "RegistryError", "describe"]
