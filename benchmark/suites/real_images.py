"""Paper artefacts on real images: PGD Tables 3 and 10, LNL Tables 1 and 2, Turning a Blind Eye
Table 1 and Section 6.2. Their data (BAR, CelebA, ImageNet-9/A, Dogs and Cats, IMDB face, the Blind
Eye face sets) is read from the data root in each release's own layout; where it is absent the
planner skips the settings with one line saying what to put where (``run --dry-run``).

Recipes, one per paper and dataset (:mod:`benchmark.recipes`): PGD's Table 4 columns (ImageNet-
pretrained ResNet-18, ``--pretrained imagenet`` read from the torch hub cache or a local file, see
``benchmark.nets_resnet``); LNL's released optimiser settings on an ImageNet ResNet-18 (Sec. 5.1);
Blind Eye's Sec. 5.5 settings.

Evaluation schedule: LNL Tables 1-2 and Blind Eye Table 1 / Sec. 6.2 evaluate every 10th epoch and
the last (``Suite.eval_every``): each suite's one report spec is a table read at the last epoch
(selection ``last``, no per-epoch curve) and no other suite shares its runs, so evaluating these
ResNet runs after the other epochs would only feed the run page's curve, which keeps a point every
10 epochs. PGD Tables 3 and 10 select by biased validation accuracy and evaluate every epoch.
"""
from __future__ import annotations

from dataclasses import replace

from benchmark.recipes import (BLIND_EYE_SEC5_5, LNL_SEC5_1_RESNET, PGD_TABLE4_BAR, PGD_TABLE4_CELEBA,
                               PGD_TABLE4_IMAGENET)
from benchmark.suites import QUICK, Profile, Setting, Suite, register_suite

_PGD = "Mitigating Dataset Bias Using Per-Sample Gradients from A Biased Classifier (PGD), ICLR 2022 submission"
_LNL = "Kim et al., Learning Not to Learn: Training Deep Neural Networks with Biased Data, CVPR 2019"
_BLIND = "Alvi et al., Turning a Blind Eye: Explicit Removal of Biases and Variation from Deep Neural Network Embeddings, ECCV Workshops 2018"
_THREE = {"paper": Profile(seeds=(0, 1, 2), source="three runs (the paper's tables: mean ± std of three)"),
          "quick": replace(QUICK, methods=("vanilla",), keep={"dataset": ("bar",)})}


@register_suite("pgd.table3")
class PGDTable3(Suite):
    """PGD Table 3: BAR, ImageNet-9 → ImageNet-A and CelebA (HeavyMakeup, bias Male)."""

    title = "PGD Table 3: real-world benchmarks (BAR, IN/IN-A, CelebA), test accuracy"
    paper = _PGD
    methods = ("vanilla", "lff", "repair", "pgd")  # Table 3 rows
    settings = (Setting("bar", recipe=PGD_TABLE4_BAR),
                Setting("imagenet9", recipe=PGD_TABLE4_IMAGENET),
                Setting("celeba", {"target": "Heavy_Makeup", "bias": "Male"}, recipe=PGD_TABLE4_CELEBA))
    profiles = _THREE
    notes = "Each dataset has its own Table 4 column as recipe; CelebA Avg. = mean of majority and minority accuracy."


@register_suite("pgd.table10")
class PGDTable10(Suite):
    """PGD Table 10: BAR per-class test accuracy (the BAR runs of Table 3)."""

    title = "PGD Table 10: BAR per-class and average test accuracy"
    paper = _PGD
    methods = ("vanilla", "lff", "repair", "pgd")  # Table 10 rows
    settings = (Setting("bar", recipe=PGD_TABLE4_BAR),)
    profiles = _THREE


@register_suite("lnl.table1")
class LNLTable1(Suite):
    """LNL Table 1: Dogs and Cats, trained on TB1 or TB2, tested on the other set and the test set."""

    title = "LNL Table 1: Dogs and Cats with a colour (brightness) bias, TB1/TB2"
    paper = _LNL
    methods = ("vanilla", "gray", "blind_eye", "grl", "blind_eye_grl", "lnl_adv", "lnl")  # Table 1 rows
    settings = tuple(Setting("dogs_cats", {"train_split": s}) for s in ("tb1", "tb2"))
    recipe = LNL_SEC5_1_RESNET
    profiles = {"paper": Profile(seeds=(0, 1, 2), source="LNL Sec. 5.1 ('All the evaluation results were averaged'): "
                                                         "three seeds (ours)"),
                "quick": replace(QUICK, methods=("vanilla", "lnl"), keep={"train_split": ("tb1",)})}
    eval_every = 10  # see the module docstring, 'Evaluation schedule'


@register_suite("lnl.table2")
class LNLTable2(Suite):
    """LNL Table 2: IMDB face, learn gender / unlearn age and the reverse, trained on EB1 or EB2."""

    title = "LNL Table 2: IMDB face with an age/gender bias, EB1/EB2"
    paper = _LNL
    methods = ("vanilla", "blind_eye", "lnl")  # Table 2 rows
    settings = tuple(Setting("imdb_face", {"task": t, "train_split": s}) for t in ("gender", "age")
                     for s in ("eb1", "eb2"))
    recipe = LNL_SEC5_1_RESNET
    profiles = {"paper": Profile(seeds=(0, 1, 2), source="three seeds (ours; the paper averages an unstated number)"),
                "quick": replace(QUICK, methods=("vanilla", "lnl"), keep={"task": ("gender",), "train_split": ("eb1",)})}
    eval_every = 10  # see the module docstring, 'Evaluation schedule'


_BLIND_EYE_ROW = {"blind_eye": {"confusion": "kl", "head_lr_mult": 10.0, "class_weighting": True,
                                "alpha": 0.1, "beta": 1.0}}  # Blind Eye Sec. 5.5 (KL confusion, ×10, weighted, α, β)


@register_suite("blind_eye.section6_2")
class BlindEyeSection62(Suite):
    """Turning a Blind Eye Sec. 6.2: gender classifiers trained on EB1 / EB2, tested gender-balanced."""

    title = "Turning a Blind Eye, Section 6.2: gender on IMDB EB1/EB2, gender-balanced test set"
    paper = _BLIND
    methods = ("vanilla", "blind_eye")  # Baseline, Blind
    settings = tuple(Setting("imdb_face", {"task": "gender", "train_split": s}) for s in ("eb1", "eb2"))
    recipe = BLIND_EYE_SEC5_5
    hparams = _BLIND_EYE_ROW
    profiles = {"paper": Profile(seeds=(0, 1, 2), source="three seeds (ours; the paper prints single numbers)"),
                "quick": replace(QUICK, keep={"train_split": ("eb1",)})}
    eval_every = 10  # see the module docstring, 'Evaluation schedule'


@register_suite("blind_eye.table1")
class BlindEyeTable1(Suite):
    """Turning a Blind Eye Table 1: each primary task, with the other attributes unlearned (bias probes)."""

    title = "Turning a Blind Eye, Table 1: primary accuracy and probe accuracy of every other attribute"
    paper = _BLIND
    methods = ("vanilla", "blind_eye")  # Baseline, Blind
    settings = tuple(Setting("blind_eye_faces", {"primary": p})
                     for p in ("age", "ancestral_origin", "gender", "pose"))
    recipe = BLIND_EYE_SEC5_5
    hparams = _BLIND_EYE_ROW
    profiles = {"paper": Profile(seeds=(0, 1, 2), source="three seeds (ours; the paper prints single numbers)"),
                "quick": replace(QUICK, keep={"primary": ("gender",)})}
    eval_every = 10  # see the module docstring, 'Evaluation schedule'
    notes = ("Needs a dataset plug-in 'blind_eye_faces' (cleaned IMDB + LAOFIW + AFLW with age, ancestral origin, "
             "gender and pose labels), which cannot be built here; probes run after training (`probe`).")
