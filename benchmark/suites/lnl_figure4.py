"""LNL Figure 4: test accuracy against the colour variance σ² on Colored MNIST.

Kim et al., Learning Not to Learn, CVPR 2019, Sec. 5.2 and Fig. 4: "A network was trained for each
σ² value from 0.02 to 0.05 and was evaluated with the corresponding test set with the same σ²",
comparing the baseline, BlindEye (confusion loss), Gray (trained and tested on grayscale) and the
proposed method. The figure prints no numbers, so the report draws our curves alone.

Budget (``paper``): every method keeps its own published defaults (LNL official code: 100 epochs,
batch 128, SGD lr 0.01, ×0.1 every 40 epochs; see each method's file). The paper says only "All the
evaluation results were averaged" (Sec. 5.1) without the number of runs: we use three seeds.
"""
from __future__ import annotations

from dataclasses import replace

from benchmark.suites import QUICK, Profile, Setting, Suite, register_suite

SIGMA2_GRID = (0.020, 0.025, 0.030, 0.035, 0.040, 0.045, 0.050)  # LNL Sec. 5.2: 0.02 to 0.05, step 0.005


@register_suite("lnl.figure4")
class LNLFigure4(Suite):
    """LNL Figure 4: accuracy vs σ² on Colored MNIST — baseline, Gray, BlindEye, LNL."""

    title = "LNL Figure 4: unbiased test accuracy vs colour variance σ² on Colored MNIST"
    paper = "Kim et al., Learning Not to Learn: Training Deep Neural Networks with Biased Data, CVPR 2019"
    methods = ("vanilla", "gray", "blind_eye", "lnl")  # Fig. 4 legend: Baseline, Gray, BlindEye, Ours
    settings = tuple(Setting("colored_mnist", {"sigma2": s}) for s in SIGMA2_GRID)
    profiles = {
        "paper": Profile(seeds=(0, 1, 2), source="LNL Sec. 5.2 (σ² grid); methods' published defaults; "
                                                 "3 seeds (ours: the paper averages an unstated number of runs)"),
        "quick": replace(QUICK, keep={"sigma2": (0.020, 0.050)}),
    }
    notes = "Figure 4 prints no numbers: the report draws our curves without a paper reference."
