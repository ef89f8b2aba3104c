"""What the subpopulation-shift baselines share: the ERM recipe they start from and group ids.

Groups are (target label × bias class) cells, ``g = y · num_bias_classes + b`` (Sagawa et al.
2020, Sec. 2: groups are (label, spurious attribute) pairs). The methods that use them
(``group_dro``, ``subg``, ``rwg``, ``dfr``) read bias labels; ``jtt`` does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark import hp
from benchmark.optim import OPTIMIZERS, TrainHParams

SGD_MOMENTUM_SOURCE = "Sagawa et al. 2020 App. B / BalancingGroups @ 5b6d540 models.py get_sgd_optim (SGD, momentum 0.9)"


@dataclass(frozen=True)
class GroupERMHParams(TrainHParams):
    """The ERM recipe every subpopulation baseline trains with (SGD with momentum, as in Sagawa et
    al. 2020 and Idrissi et al. 2022). Defaults are Sagawa et al.'s Waterbirds values; suites set
    their own recipe (e.g. ``subpop.mnist``). Search spaces are ours: log-uniform ranges shifted
    towards the larger learning rates a network trained from scratch needs (BalancingGroups' grid,
    lr ∈ {1e-5, 1e-4, 1e-3}, wd ∈ {1e-4, …, 1}, is for ImageNet-pretrained ResNet-50s)."""

    optimizer: str = hp("sgd", SGD_MOMENTUM_SOURCE, choices=OPTIMIZERS)
    lr: float = hp(1e-3, "Sagawa et al. 2020 App. B (Waterbirds, lr 0.001)", "SGD learning rate",
                   space=lambda r: 10 ** r.uniform(-3, -1))
    momentum: float = hp(0.9, SGD_MOMENTUM_SOURCE)
    weight_decay: float = hp(1e-4, "Sagawa et al. 2020 App. B (Waterbirds, standard l2 1e-4)",
                             space=lambda r: 10 ** r.uniform(-5, -3))
    batch_size: int = hp(128, "Sagawa et al. 2020 App. B (batch 128)", space=lambda r: r.choice([64, 128, 256]))
    epochs: int = hp(300, "Sagawa et al. 2020 App. B (Waterbirds, 300 epochs)")
    lr_step: int = hp(0, "Sagawa et al. 2020 (constant learning rate)", "epochs between ×lr_gamma decays (0 = none)")
    lr_milestones: tuple[float, ...] = hp((), "Sagawa et al. 2020 (constant learning rate)")
    lr_gamma: float = hp(0.1, "unused (constant learning rate)")


def group_ids(y: torch.Tensor, b: torch.Tensor, num_bias_classes: int) -> torch.Tensor:
    """The (label × bias) group of each sample: ``y · num_bias_classes + b``."""
    return y * num_bias_classes + b


def group_counts(y: torch.Tensor, b: torch.Tensor, num_classes: int, num_bias_classes: int) -> torch.Tensor:
    """Samples per group, a float tensor of length ``num_classes · num_bias_classes``."""
    return torch.bincount(group_ids(y, b, num_bias_classes), minlength=num_classes * num_bias_classes).float()
