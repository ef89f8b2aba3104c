"""Noisy labels for any dataset (PGD paper Appendix B.3): flip a fraction of training labels
uniformly to a *wrong* class, and record per sample which labels were flipped."""
from __future__ import annotations

import torch

from .data import Split

NOISE_SEED = 12345  # noise draws are fixed by (ratio, dataset), not by the training seed


def flip_labels(split: Split, ratio: float, num_classes: int, seed: int = NOISE_SEED) -> Split:
    """Return a copy of ``split`` where ``round(ratio·N)`` labels moved to another class.

    ``attrs["noisy"]`` marks the flipped samples and ``attrs["clean_y"]`` keeps the true labels;
    ``aligned`` is recomputed against the noisy label only where the dataset's bias class shares
    the label space (bias class == label means aligned) — otherwise kept.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"label_noise={ratio} must be in [0, 1)")
    if ratio == 0.0:
        return split
    g = torch.Generator().manual_seed(seed)
    n = len(split)
    pick = torch.randperm(n, generator=g)[: int(round(ratio * n))]
    y = split.y.clone()
    shift = torch.randint(1, num_classes, (len(pick),), generator=g)  # never the true class
    y[pick] = (y[pick] + shift) % num_classes
    noisy = torch.zeros(n, dtype=torch.bool)
    noisy[pick] = True
    attrs = {**split.attrs, "noisy": noisy, "clean_y": split.y}
    return Split(split.x, y, split.b, split.aligned, attrs)
