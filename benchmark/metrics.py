"""Evaluation metrics on a split: unbiased accuracy, bias-aligned / bias-conflicting accuracy,
worst group, and the (target × bias class) accuracy matrix.

All counts are accumulated on the device as tensors and read back once per split.
"""
from __future__ import annotations

import torch


class SplitMeter:
    """Accumulates per-(target, bias) correct/total counts and method-specific extras."""

    def __init__(self, num_classes: int, num_bias_classes: int, device):
        self.correct = torch.zeros(num_classes, num_bias_classes, device=device)
        self.total = torch.zeros(num_classes, num_bias_classes, device=device)
        self.aligned = torch.zeros(2, 2, device=device)  # [aligned?][correct, total]
        self.extra: dict[str, torch.Tensor] = {}

    def add(self, pred: torch.Tensor, y: torch.Tensor, b: torch.Tensor, aligned: torch.Tensor) -> None:
        hit = (pred == y).float()
        a = aligned.long()
        self.aligned[:, 0] += torch.bincount(a, weights=hit, minlength=2)
        self.aligned[:, 1] += torch.bincount(a, minlength=2).float()
        nb = self.total.shape[1]
        flat = y * nb + b
        n = self.total.numel()
        self.total += torch.bincount(flat, minlength=n).view_as(self.total).float()
        self.correct += torch.bincount(flat, weights=hit, minlength=n).view_as(self.total)

    def add_extra(self, extra: dict[str, torch.Tensor]) -> None:
        for k, v in extra.items():
            self.extra[k] = self.extra.get(k, 0) + v.detach()

    def result(self) -> dict:
        """Metrics as plain Python numbers; aligned/conflicting follow the per-sample flags."""
        correct, total, al = self.correct.cpu(), self.total.cpu(), self.aligned.cpu()

        def ratio(c, t):
            return float(c / t) if t > 0 else float("nan")
        groups = total > 0
        group_acc = torch.where(groups, correct / total.clamp(min=1), torch.full_like(total, float("nan")))
        out = {
            "acc": ratio(correct.sum(), total.sum()),
            "aligned_acc": ratio(al[1, 0], al[1, 1]),
            "conflicting_acc": ratio(al[0, 0], al[0, 1]),
            "worst_group_acc": float(group_acc[groups].min()) if groups.any() else float("nan"),
            "n": int(total.sum()),
            "group_acc": [[None if v != v else round(float(v), 6) for v in row] for row in group_acc],
            "group_n": total.long().tolist(),
        }
        for k, v in self.extra.items():
            v = v.cpu()
            out[k] = ratio(v[0], v[1])
        return out
