"""biasbench: a reproducibility suite for learning from biased data.

The public API for plug-in authors: subclass :class:`Method` or :class:`DatasetFamily`, declare
typed hyperparameters with :func:`hp`, and register with :func:`register_method` /
:func:`register_dataset`. See README.md, "Add your method".
"""
from .data import BiasedDataset, BiasHead, DatasetFamily, DatasetInfo, Split
from .hparams import hp
from .method import Batch, Method
from .registry import DATASETS, METHODS, register_dataset, register_method
from .spec import RunSpec, make_spec

__all__ = [
    "BiasedDataset", "BiasHead", "DatasetFamily", "DatasetInfo", "Split", "hp", "Batch", "Method",
    "DATASETS", "METHODS", "register_dataset", "register_method", "RunSpec", "make_spec",
]
