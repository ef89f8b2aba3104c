"""The public registries of methods and datasets (backbones live in ``benchmark.nets``)."""
from __future__ import annotations

from ._registry import Registry, RegistryError, describe
from .data import DatasetFamily
from .method import Method

METHODS: Registry[Method] = Registry("method", "benchmark.methods", Method, config_attr="HParams",
                                     required_fields=("batch_size",))
DATASETS: Registry[DatasetFamily] = Registry("dataset", "benchmark.datasets", DatasetFamily, config_attr="Params")

register_method = METHODS.register
register_dataset = DATASETS.register

__all__ = ["METHODS", "DATASETS", "register_method", "register_dataset", "RegistryError", "describe"]
