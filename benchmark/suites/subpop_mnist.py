"""Subpopulation shift on MNIST: the group-robustness baselines beside LfF and PGD, by worst-group
accuracy, under a hyperparameter sweep (``python -m benchmark sweep --suite subpop.mnist``).

Dataset: ``colored_mnist_groups`` (label = digit ≥ 5, bias = red/green colour, 95 % aligned in
train; see datasets/colored_mnist_groups.py). The methods are those of the subpopulation-shift
peers (BalancingGroups, SubpopBench) — ERM (``vanilla``), GroupDRO, JTT, DFR, SUBG, RWG — and the
two bias-label-free methods this suite reproduces elsewhere, LfF and PGD.

Training recipe: :data:`benchmark.recipes.SUBPOP_MNIST` (SGD with momentum 0.9, batch 128,
constant rate; lr 0.01 and weight decay 1e-4 are ours) for every row; LfF and PGD keep their own
published optimiser settings, listed as the suite's exceptions. A sweep replaces the fields each
method's ``space`` declares.
"""
from __future__ import annotations

from benchmark.recipes import SUBPOP_MNIST
from benchmark.suites import Profile, Setting, Suite, register_suite

_OWN = "the method's own published recipe (LfF official config.py:37-40: Adam lr 1e-3, no weight decay, batch 256)"
_PGD = "the method's own published recipe (PGD Table 4, Colored MNIST column)"


@register_suite("subpop.mnist")
class SubpopMNIST(Suite):
    """Group shift on binary Colored MNIST: ERM, GroupDRO, JTT, DFR, SUBG, LfF, PGD by worst-group accuracy."""

    title = "Subpopulation shift on Colored MNIST (digit ≥ 5 × colour): worst-group test accuracy"
    paper = ("Sagawa et al. 2020 (GroupDRO); Liu et al. 2021 (JTT); Kirichenko et al. 2023 (DFR); "
             "Idrissi et al. 2022 (SUBG/RWG)")
    methods = ("vanilla", "group_dro", "jtt", "dfr", "subg", "lff", "pgd")
    settings = (Setting("colored_mnist_groups", {"train_aligned_ratio": 0.95}),)
    recipe = SUBPOP_MNIST
    exceptions = {"lff": {"optimizer": ("adam", _OWN), "lr": (1e-3, _OWN), "weight_decay": (0.0, _OWN),
                          "batch_size": (256, _OWN)},
                  "pgd": {"momentum": (0.8, _PGD), "weight_decay": (1e-3, _PGD), "batch_size": (256, _PGD),
                          "lr_milestones": ((0.2, 0.4, 0.6, 0.8), _PGD), "lr_gamma": (0.001, _PGD)}}
    hparams = {"jtt": {"jtt_epochs": 2, "jtt_up": 20.0},  # ours: T ≈ early ERM on this set; λ_up from BalancingGroups' grid
               "pgd": {"biased_epochs": 5}}  # ours: PGD's biased phase at this suite's scale
    profiles = {
        "paper": Profile(seeds=(0, 1, 2), epochs=20, max_train=None,
                         source="ours: 20 epochs on the full training split (no paper runs this dataset)"),
        "quick": Profile(seeds=(0,), epochs=2, max_train=1000, max_eval=1000,
                         hparams={"*": {"batch_size": 64, "lr": 0.05}, "lff": {"lr": 1e-3},
                                  "pgd": {"biased_epochs": 1}, "jtt": {"jtt_epochs": 1, "jtt_up": 20.0},
                                  "dfr": {"dfr_retrains": 5}},
                         source="ours: a CPU smoke budget (2 epochs on 1000 training samples, batch 64, lr 0.05 "
                                "for the SGD methods, 1000 evaluation samples per split, DFR averages 5 re-fits "
                                "instead of 20); sweeps replace the searched fields"),
    }
    notes = "No reference numbers: the suite compares methods under one tuning budget; read it with `sweep --report`."
