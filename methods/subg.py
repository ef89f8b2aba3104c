"""SUBG — group-balanced subsampling (Idrissi et al., "Simple data balancing achieves competitive
worst-group-accuracy", CLeaR 2022): train ERM on a random subset of the training set in which
every (label × bias) group has as many samples as the smallest one.

The subset is drawn once, before training, and kept for every epoch (BalancingGroups @ 5b6d540
datasets.py ``GroupDataset.subsample_``: one random permutation, each group capped at the smallest
group's size). Epochs are therefore short: ``groups × min group size`` samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark import register_method
from benchmark_methods._subpop import GroupERMHParams, group_counts, group_ids
from benchmark_methods.pgd import ResizableBuffers
from benchmark_methods.vanilla import Vanilla


@dataclass(frozen=True)
class SUBGHParams(GroupERMHParams):
    pass


@register_method("subg")
class SUBG(ResizableBuffers, Vanilla):
    """SUBG (Idrissi et al. 2022): ERM on a group-balanced random subsample of the training set."""

    HParams = SUBGHParams
    uses_bias_labels = True
    paper = "Idrissi et al., Simple data balancing achieves competitive worst-group-accuracy, CLeaR 2022"
    resizable = ("keep",)

    def __init__(self, hparams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.register_buffer("keep", torch.zeros(0, dtype=torch.long))

    def prepare(self, loader):
        s = loader.split
        nb = self.info.num_bias_classes
        counts = group_counts(s.y, s.b, self.info.num_classes, nb)
        present = counts[counts > 0]
        min_size = int(present.min())
        g = group_ids(s.y, s.b, nb).cpu()
        perm = torch.randperm(len(g))  # the run's seeded global generator
        rank = torch.zeros(len(g), dtype=torch.long)
        for gi in g.unique():
            members = perm[g[perm] == gi]
            rank[members] = torch.arange(len(members))
        self.keep = (rank < min_size).nonzero().flatten().to(self.keep.device)
        return {"subg.min_group_size": min_size, "subg.kept": int(self.keep.numel())}

    def sample_indices(self, n, generator):
        keep = self.keep.cpu()
        return keep[torch.randperm(len(keep), generator=generator)]
