"""RWG — group-balanced reweighting (Idrissi et al., "Simple data balancing achieves competitive
worst-group-accuracy", CLeaR 2022): ERM on batches drawn with replacement with probability
inversely proportional to the size of each sample's (label × bias) group, so every group is drawn
equally often in expectation.

BalancingGroups @ 5b6d540 datasets.py: ``WeightedRandomSampler(wg, len(wg))`` with
``wg_i = N / n_{g(i)}``: N draws per epoch, with replacement.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark import register_method
from benchmark_methods._subpop import GroupERMHParams, group_counts, group_ids
from benchmark_methods.pgd import ResizableBuffers
from benchmark_methods.vanilla import Vanilla


@dataclass(frozen=True)
class RWGHParams(GroupERMHParams):
    pass


@register_method("rwg")
class RWG(ResizableBuffers, Vanilla):
    """RWG (Idrissi et al. 2022): ERM with group-balanced sampling (weights ∝ 1 / group size)."""

    HParams = RWGHParams
    uses_bias_labels = True
    paper = "Idrissi et al., Simple data balancing achieves competitive worst-group-accuracy, CLeaR 2022"
    resizable = ("sample_weight",)

    def __init__(self, hparams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.register_buffer("sample_weight", torch.zeros(0, dtype=torch.float64))

    def prepare(self, loader):
        s = loader.split
        nb = self.info.num_bias_classes
        counts = group_counts(s.y, s.b, self.info.num_classes, nb)
        weight = (len(s.y) / counts[group_ids(s.y, s.b, nb)]).double()
        self.sample_weight = weight.to(self.sample_weight.device)
        return {"rwg.train_group_n": counts.tolist()}

    def sample_indices(self, n, generator):
        if self.sample_weight.numel() != n:
            raise RuntimeError(f"rwg weighted {self.sample_weight.numel()} samples but the epoch has {n}; run prepare first")
        return torch.multinomial(self.sample_weight.cpu(), n, replacement=True, generator=generator)
