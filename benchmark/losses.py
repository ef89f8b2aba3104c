"""Losses shared by several methods."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def generalized_cross_entropy(logits: torch.Tensor, y: torch.Tensor, q: float = 0.7,
                              reduction: str = "mean") -> torch.Tensor:
    """GCE (Zhang & Sabuncu, 2018): (1 − p_y^q) / q. Emphasises easy samples, so a model trained
    with it latches onto the bias (LfF official module/loss.py:10, PGD learner.py:263: q = 0.7)."""
    p_y = F.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1).clamp_min(1e-8)
    loss = (1.0 - p_y ** q) / q
    return loss.mean() if reduction == "mean" else loss
