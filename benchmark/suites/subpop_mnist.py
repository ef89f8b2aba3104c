"""Subpopulation shift on MNIST: the group-robustness baselines beside LfF and PGD, by worst-group
accuracy, under a hyperparameter sweep (``python -m benchmark sweep --suite subpop.mnist``).

Dataset: ``colored_mnist_groups`` (label = digit ≥ 5, bias = red/green colour, 95 % aligned in
train; see datasets/colored_mnist_groups.py). The methods are those of the subpopulation-shift
peers (BalancingGroups, SubpopBench) — ERM (``vanilla``), GroupDRO, JTT, DFR, SUBG, RWG — and the
two bias-label-free methods this suite reproduces elsewhere, LfF and PGD.

Training recipe (one object, :data:`SGD_RECIPE`, for every SGD method): SGD with momentum 0.9
(Sagawa et al. 2020 App. B; BalancingGroups models.py), lr 0.01 and weight decay 1e-4 (ours: a
from-scratch MLP needs a larger rate than the papers' pretrained ResNet-50s), batch 128 (Sagawa
et al. App. B), constant learning rate. LfF keeps its official Adam recipe and PGD its Table 4
recipe (their own defaults). A sweep replaces the fields each method's ``space`` declares.
"""
from __future__ import annotations

from benchmark.suites import Profile, Setting, Suite, register_suite

SGD_RECIPE = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128,
              "lr_step": 10**6, "lr_gamma": 1.0}
SGD_METHODS = ("vanilla", "group_dro", "jtt", "dfr", "subg", "rwg")


@register_suite("subpop.mnist")
class SubpopMNIST(Suite):
    """Group shift on binary Colored MNIST: ERM, GroupDRO, JTT, DFR, SUBG, LfF, PGD by worst-group accuracy."""

    title = "Subpopulation shift on Colored MNIST (digit ≥ 5 × colour): worst-group test accuracy"
    paper = ("Sagawa et al. 2020 (GroupDRO); Liu et al. 2021 (JTT); Kirichenko et al. 2023 (DFR); "
             "Idrissi et al. 2022 (SUBG/RWG)")
    methods = ("vanilla", "group_dro", "jtt", "dfr", "subg", "lff", "pgd")
    settings = (Setting("colored_mnist_groups", {"train_aligned_ratio": 0.95}),)
    hparams = {**{m: SGD_RECIPE for m in SGD_METHODS},
               "jtt": {**SGD_RECIPE, "jtt_epochs": 2, "jtt_up": 20.0},  # ours: T ≈ early ERM on this set; λ_up from BalancingGroups' grid
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
