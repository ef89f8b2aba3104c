"""Colored MNIST under the Learning from Failure protocol: the benchmark later papers report.

Nam et al., Learning from Failure: Training Debiased Classifier from Biased Classifier, NeurIPS
2020: bias-conflicting ratios 0.5 / 1 / 2 / 5 % (official make_dataset.py:151), MLP backbone, Adam
lr 1e-3, batch 256, 100 epochs (config.py:37-40, 60; see datasets/colored_mnist_lff.py and
shared/PROTOCOL-FACTS.md). None of the three papers reproduced here prints this table, so no
reference numbers are stored: the suite places PGD and LfF beside the baseline on the protocol the
PGD issue uses for its headline check (minority accuracy of pgd and lff above vanilla).
"""
from __future__ import annotations

from dataclasses import replace

from benchmark.suites import QUICK, Profile, Setting, Suite, register_suite

CONFLICTING_RATIOS = (0.005, 0.01, 0.02, 0.05)  # LfF official make_dataset.py:151


@register_suite("lff.colored_mnist")
class LfFColoredMNIST(Suite):
    """Colored MNIST, LfF protocol: vanilla, LfF and PGD at 0.5/1/2/5 % bias-conflicting samples."""

    title = "Colored MNIST (LfF protocol): unbiased test accuracy at 0.5/1/2/5 % bias-conflicting training samples"
    paper = "Nam et al., Learning from Failure: Training Debiased Classifier from Biased Classifier, NeurIPS 2020"
    methods = ("vanilla", "lff", "pgd")
    settings = tuple(Setting("colored_mnist_lff", {"conflicting_ratio": r}) for r in CONFLICTING_RATIOS)
    hparams = {"vanilla": {"batch_size": 256}}  # LfF config.py:37-40 (LfF's vanilla uses Adam lr 1e-3; ours keeps its SGD)
    profiles = {
        "paper": Profile(seeds=(0, 1, 2), source="LfF official config (100 epochs); three seeds (ours)"),
        "quick": replace(QUICK, keep={"conflicting_ratio": (0.01,)}),
    }
    notes = "No reference numbers in results/papers (LfF is not one of the three papers)."
