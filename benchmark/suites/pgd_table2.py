"""PGD Table 2: bias ratio 99 % with 0 / 5 / 10 % noisy labels, with and without de-noising.

PGD ICLR 2022 submission, Sec. 6.2 and Table 2 (p. 9): Vanilla, LfF, ReBias, REPAIR and the
proposed method on Colored and Watermarked MNIST at |M|/|D| = 99 %, with a fraction of training
labels flipped uniformly to a wrong class (Appendix B.3), each without and with the de-noising
module of Sec. 5 (Algorithm 3) in front. Majority and minority test accuracy, three runs.

Label noise is the spec's ``label_noise``. "With de-noising" runs are the ``denoise`` method
wrapping the row's method (``inner=<method>``, the inner method's overrides in ``inner_set``), so a
report finds them as ``method == "denoise"`` and ``hp.inner == <row>``. Recipe: Table 4
(:data:`benchmark.recipes.PGD_TABLE4_MNIST`) for every row, as in ``pgd.table1``. The 0 %-noise "without de-noising" cells are the same runs as Table 1's 99 %
column (same specs, so they run once).
"""
from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Iterator

from benchmark.suites import QUICK, Cell, Profile, Setting, Suite, register_suite
from benchmark.recipes import PGD_TABLE4_MNIST, RECIPE_FIELDS

NOISE = (0.0, 0.05, 0.10)  # PGD Table 2 column groups


@register_suite("pgd.table2")
class PGDTable2(Suite):
    """PGD Table 2: five methods at bias ratio 99 % under 0/5/10 % label noise, ± de-noising."""

    title = "PGD Table 2: Colored and Watermarked MNIST, bias ratio 99 %, 0/5/10 % noisy labels, with/without de-noising"
    paper = "Mitigating Dataset Bias Using Per-Sample Gradients from A Biased Classifier (PGD), ICLR 2022 submission"
    methods = ("vanilla", "lff", "rebias", "repair", "pgd")  # Table 2 rows
    settings = tuple(Setting(ds, {"bias_ratio": 0.99}, label_noise=noise)
                     for ds in ("colored_mnist_ratio", "watermarked_mnist") for noise in NOISE)
    recipe = PGD_TABLE4_MNIST
    profiles = {
        "paper": Profile(seeds=(0, 1, 2), source="PGD Table 2 (three runs) and Table 4"),
        "quick": replace(QUICK, keep={"label_noise": (0.10,), "dataset": ("colored_mnist_ratio",)}),
    }
    notes = "'with de-noising' = method denoise with inner=<row method>."

    def cells(self, profile: str) -> Iterator[Cell]:
        """Each (method, setting, seed) twice: as is, and wrapped in ``denoise``."""
        from benchmark.registry import METHODS

        for cell in super().cells(profile):
            yield cell
            if cell.method not in METHODS:
                yield replace(cell, method=cell.method)  # the planner reports the missing method once more
                continue
            inner, _ = cell.resolved_hparams(METHODS.get(cell.method))
            outer = {"inner": cell.method}
            for name in RECIPE_FIELDS:  # denoise carries the recipe itself and passes it on
                inner.pop(name, None)
            outer["inner_set"] = ",".join(f"{k}={_text(v)}" for k, v in inner.items())
            label = f"{cell.setting.describe()} with de-noising ({cell.method})"
            yield dataclasses.replace(cell, method="denoise", setting=replace(cell.setting, label=label),
                                      hparams={}, profile_hparams={**cell.profile_hparams, **outer})


def _text(v) -> str:
    return ":".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
