"""Optimiser and schedule construction shared by lff, rebias, rubi and learned_mixin, and the
training recipes of the PGD paper, which ran every baseline with its own shared settings.

Each method declares the fields (``optimizer``, ``lr``, ``momentum``, ``weight_decay``,
``lr_step``, ``lr_milestones``, ``lr_gamma``, ``batch_size``, ``epochs``) in its own ``HParams``
with the defaults and sources of its official code; the dictionaries below are overrides for
running the same method under PGD's protocol (use them as a suite setting's ``hparams``).
"""
from __future__ import annotations

import torch

# PGD App. A.1, Table 4 (Colored / Watermarked MNIST column): "We share basic hyperparameters
# (...) for all algorithms". The table prints "LR decay 0.001" at [0.2, 0.4, 0.6, 0.8] of
# training; taken literally that multiplies the rate by 1e-3 at 20 % of the epochs (the real-world
# columns print 0.1) — we keep the printed value and flag it here.
PGD_TABLE4 = {
    "optimizer": "sgd", "lr": 0.01, "momentum": 0.8, "weight_decay": 1e-3, "batch_size": 256,
    "epochs": 100, "lr_step": 0, "lr_milestones": (0.2, 0.4, 0.6, 0.8), "lr_gamma": 0.001,
}
# PGD official code `--reproduce` (sumyeongahn/PGD @ 0265520 trainer/utils/pre_conf.py:2-14,
# train.py:32), written for PGD itself; the released code has no baselines.
PGD_OFFICIAL = {
    "optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-3, "batch_size": 128,
    "epochs": 100, "lr_step": 40, "lr_milestones": (), "lr_gamma": 0.1,
}
PGD_PRESETS = {"pgd_table4": PGD_TABLE4, "pgd_official": PGD_OFFICIAL}

OPTIMIZERS = ("adam", "sgd")


def make_optimizer(params, hp) -> torch.optim.Optimizer:
    """Adam (no momentum field) or SGD with momentum, from a method's HParams."""
    params = list(params)
    if hp.optimizer == "adam":
        return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
    raise ValueError(f"unknown optimizer {hp.optimizer!r}; choose from {OPTIMIZERS}")


def make_scheduler(opt: torch.optim.Optimizer, hp, epochs: int):
    """Per-epoch schedule: MultiStepLR at ``lr_milestones`` (fractions of ``epochs``), else StepLR
    every ``lr_step`` epochs, else None (constant rate)."""
    if hp.lr_milestones:
        milestones = sorted({max(1, int(round(f * epochs))) for f in hp.lr_milestones})
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones, hp.lr_gamma)
    if hp.lr_step:
        return torch.optim.lr_scheduler.StepLR(opt, hp.lr_step, hp.lr_gamma)
    return None


def add(method, name: str, params, epochs: int) -> torch.optim.Optimizer:
    """Create optimiser ``name`` (and its scheduler) on ``method``; returns the optimiser."""
    opt = make_optimizer(params, method.hparams)
    method.optimizers[name] = opt
    sched = make_scheduler(opt, method.hparams, epochs)
    if sched is not None:
        method.schedulers[name] = sched
    return opt
