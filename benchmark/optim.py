"""The training fields every method shares, and the optimisers and schedules built from them.

A paper's training recipe (PGD Table 4, LNL Sec. 5.1, LfF's official config) is a set of values for
these fields (:mod:`benchmark.recipes`); because every built-in method's ``HParams`` derives from
:class:`TrainHParams`, one recipe applies to every row of a paper table the same way. A method
redeclares a field to give it its own published default and source; plug-ins may derive from
:class:`TrainHParams` too (then suites can apply recipes to them) or declare their own fields.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .hparams import hp

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class TrainHParams:
    """Optimiser, schedule and budget. Defaults are LNL's official baseline (see ``vanilla``);
    methods override them with their own published values."""

    optimizer: str = hp("sgd", "LNL official trainer.py:58-61", "adam | sgd", choices=OPTIMIZERS)
    lr: float = hp(0.01, "LNL official option.py:12", space=lambda r: 10 ** r.uniform(-3, -1))
    momentum: float = hp(0.9, "LNL official trainer.py:58-61", "SGD momentum (unused by Adam)")
    weight_decay: float = hp(5e-4, "LNL official trainer.py:58-61", space=lambda r: 10 ** r.uniform(-5, -3))
    batch_size: int = hp(128, "LNL official option.py", space=lambda r: r.choice([64, 128, 256]))
    epochs: int = hp(100, "LNL official option.py")
    lr_step: int = hp(40, "LNL official option.py:13-14", "epochs between ×lr_gamma decays (0 = none)")
    lr_milestones: tuple[float, ...] = hp((), "LNL official (a step schedule)",
                                          "decay at these fractions of the epochs (overrides lr_step)")
    lr_gamma: float = hp(0.1, "LNL official option.py:13-14", "learning-rate decay factor")


def make_optimizer(params, hp_: TrainHParams, lr: float | None = None) -> torch.optim.Optimizer:
    """Adam (no momentum) or SGD with momentum from ``hp_``; ``lr`` overrides ``hp_.lr``."""
    params = list(params)
    lr = hp_.lr if lr is None else lr
    if hp_.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=hp_.weight_decay)
    if hp_.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=hp_.momentum, weight_decay=hp_.weight_decay)
    raise ValueError(f"unknown optimizer {hp_.optimizer!r}; choose from {OPTIMIZERS}")


def make_scheduler(opt: torch.optim.Optimizer, hp_: TrainHParams, epochs: int):
    """Per-epoch schedule: MultiStepLR at ``lr_milestones`` (fractions of ``epochs``), else StepLR
    every ``lr_step`` epochs, else None (constant rate)."""
    if hp_.lr_milestones:
        milestones = sorted({max(1, int(round(f * epochs))) for f in hp_.lr_milestones})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones, hp_.lr_gamma)
    if hp_.lr_step:
        return torch.optim.lr_scheduler.StepLR(opt, hp_.lr_step, hp_.lr_gamma)
    return None


def add_optimizer(method, name: str, params, epochs: int, lr: float | None = None) -> torch.optim.Optimizer:
    """Create optimiser ``name`` and its schedule on ``method`` (kept in ``method.optimizers`` /
    ``method.schedulers`` so the engine checkpoints them); returns the optimiser."""
    opt = make_optimizer(params, method.hparams, lr)
    method.optimizers[name] = opt
    sched = make_scheduler(opt, method.hparams, epochs)
    if sched is not None:
        method.schedulers[name] = sched
    return opt
