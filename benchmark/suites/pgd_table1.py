"""PGD Table 1: controlled benchmarks at bias ratios 99.5 / 99 / 95 % (biased validation).

Mitigating Dataset Bias Using Per-Sample Gradients from a Biased Classifier (ICLR 2022 submission),
Sec. 6 and Table 1 (p. 8): Vanilla, LearnedMixinH, RUBi, LfF, ReBias, AFLite, REPAIR and the
proposed method on Colored MNIST, Watermarked MNIST and Cartoon at |M|/|D| ∈ {99.5, 99, 95} %,
three runs each; majority (bias-aligned) and minority (bias-conflicting) test accuracy, and the
accuracy on a biased validation split (10 % of training, Appendix A.1).

Hyperparameters (``paper``): Table 4 says the basic ones are shared by all algorithms (Colored and
Watermarked MNIST: Simple ConvNet-1, lr 0.01, momentum 0.8, weight decay 1e-3, batch 256, 100
epochs, lr decayed at 20/40/60/80 % of training). The PGD-paper methods carry them as their own
defaults; ``vanilla``'s defaults are LNL's, so this suite sets Table 4's values for it (a StepLR
every 20 epochs reproduces decays at 20/40/60/80 of 100 epochs). Table 4's decay factor is printed
as "0.001" for the MNIST tasks; we keep ×0.1, the official code's (PGD @ 0265520
utils/pre_conf.py, shared/PROTOCOL-FACTS.md). Dataset difficulty: the datasets' defaults (Colored
MNIST α = 0.0001, Watermarked MNIST α = 8, the values Appendix A.2 and H name).

Cartoon is left out: its images are not available here and no loader is registered for it yet.
"""
from __future__ import annotations

from dataclasses import replace

from benchmark.suites import QUICK, Profile, Setting, Suite, register_suite

BIAS_RATIOS = (0.995, 0.99, 0.95)  # PGD Table 1 columns
TABLE4_MNIST = {"lr": 0.01, "momentum": 0.8, "weight_decay": 1e-3, "batch_size": 256, "epochs": 100,
                "lr_step": 20}  # PGD Table 4, Colored / Watermarked MNIST columns


@register_suite("pgd.table1")
class PGDTable1(Suite):
    """PGD Table 1: eight methods on Colored / Watermarked MNIST at bias ratios 99.5/99/95 %."""

    title = "PGD Table 1: Colored and Watermarked MNIST at bias ratios 99.5/99/95 %, majority/minority accuracy"
    paper = "Mitigating Dataset Bias Using Per-Sample Gradients from A Biased Classifier (PGD), ICLR 2022 submission"
    methods = ("vanilla", "learned_mixin", "rubi", "lff", "rebias", "aflite", "repair", "pgd")  # Table 1 rows
    settings = tuple(Setting(ds, {"bias_ratio": r}) for ds in ("colored_mnist_ratio", "watermarked_mnist")
                     for r in BIAS_RATIOS)
    hparams = {"vanilla": TABLE4_MNIST}
    profiles = {
        "paper": Profile(seeds=(0, 1, 2), source="PGD Table 1 (three runs) and Table 4"),
        "quick": replace(QUICK, keep={"bias_ratio": (0.99,)}),
    }
    notes = "Cartoon columns omitted (no data here); Val/Major/Minor read off the val and test splits."
