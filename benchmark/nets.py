"""Backbones (split into a feature extractor f and a classifier g) and bias heads h.

Backbones are plug-ins like methods: ``@register_backbone("name")`` on a :class:`Backbone`
subclass, declared in the ``benchmark.backbones`` entry-point group when they live outside
this package. A dataset names its default backbone in ``DatasetInfo.backbone``. Any timm model
is a backbone too, by the name ``timm:<model>`` (:mod:`benchmark.nets_timm`).
"""
from __future__ import annotations

import math
import torch
from torch import nn

from ._registry import Registry
from .data import BiasHead, DatasetInfo


class Backbone(nn.Module):
    """``f`` maps inputs to features of shape ``feat_shape``; ``g`` maps features to class logits.

    A subclass's ``__init__(info)`` sets all three for ``info.input_shape`` and ``info.num_classes``.

    Attributes:
        f: the feature extractor (what LNL and Blind Eye unlearn the bias from, what probes read).
        g: the classifier on f's output.
        feat_shape: one sample's feature shape: ``(D,)`` for vectors, ``(C, H, W)`` for maps (map
            bias heads such as LNL's colour label need a map).
        takes_pretrained: True when the backbone loads ``info.backbone_options["pretrained"]``
            (``--pretrained PATH|imagenet``); a run asking a backbone without it for weights is refused.
    """

    takes_pretrained: bool = False
    f: nn.Module
    g: nn.Module
    feat_shape: tuple[int, ...]

    def __init__(self, info: DatasetInfo):
        super().__init__()

    def forward(self, x):
        return self.g(self.f(x))


BACKBONES: Registry[Backbone] = Registry("backbone", "benchmark.backbones", Backbone)
register_backbone = BACKBONES.register


def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, bn: bool = True) -> list[nn.Module]:
    """conv → BN → ReLU (``bn=False``: conv with bias → ReLU)."""
    if not bn:
        return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2), nn.ReLU(inplace=True)]
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@register_backbone("lnl_convnet")
class LNLConvNet(Backbone):
    """Learning Not to Learn's plain 4-conv MNIST network: f = 2 conv, g = 2 conv + fc.

    Paper Sec. 5.1: "both g and f consist of two convolution layers", "every convolution layer is
    followed by batch normalization and ReLU". Layer sizes from the official code
    (feidfoe/learning-not-to-learn @ fad2ec8, models.py:14-33, see shared/PROTOCOL-FACTS.md):
    input BatchNorm; f: conv5×5 3→32, maxpool 3/2, conv3×3 32→32 → 32×14×14;
    g: conv3×3/2 32→64, conv3×3 64→64, average pool 7, fc 64→classes. The official models.py has
    no BatchNorm after the convolutions of f and g: that reading is ``lnl_convnet_official``.
    """

    conv_bn: bool = True  # BatchNorm after every convolution (paper Sec. 5.1)

    def __init__(self, info: DatasetInfo):
        super().__init__(info)
        c, bn = info.input_shape[0], self.conv_bn
        self.f = nn.Sequential(
            nn.BatchNorm2d(c),
            *conv_bn_relu(c, 32, 5, bn=bn),
            nn.MaxPool2d(3, stride=2, padding=1),
            *conv_bn_relu(32, 32, 3, bn=bn),
        )
        self.g = nn.Sequential(
            *conv_bn_relu(32, 64, 3, stride=2, bn=bn),
            *conv_bn_relu(64, 64, 3, bn=bn),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, info.num_classes),
        )
        h, w = info.input_shape[1:]
        self.feat_shape = (32, math.ceil(h / 2), math.ceil(w / 2))


@register_backbone("lnl_convnet_official")
class LNLConvNetOfficial(LNLConvNet):
    """:class:`LNLConvNet` as the official models.py builds it: input BatchNorm only, convolutions
    with bias and ReLU, no BatchNorm after them (feidfoe/learning-not-to-learn @ fad2ec8,
    models.py:14-33); the paper's Sec. 5.1 says BatchNorm follows every convolution."""

    conv_bn = False


class MapBiasHead(nn.Module):
    """LNL's colour head: one predictor per label channel, each conv3×3 → BN → ReLU → conv3×3,
    giving per-position logits of shape N×classes×channels×H×W (official models.py:47-63: three
    predictors, conv 32→32 → BN → ReLU → conv 32→8, both 3×3 with padding 1; the paper says only
    "two convolution layers"). Each position of h thus sees a 5×5 neighbourhood of f's map.
    Features are average-pooled to the label grid when their resolution differs.
    """

    def __init__(self, feat_channels: int, head: BiasHead):
        super().__init__()
        channels, *grid = head.shape
        self.grid = tuple(grid)
        self.predictors = nn.ModuleList(
            nn.Sequential(*conv_bn_relu(feat_channels, feat_channels, 3),
                          nn.Conv2d(feat_channels, head.num_classes, 3, padding=1))
            for _ in range(channels)
        )

    def forward(self, feat):
        if tuple(feat.shape[-2:]) != self.grid:
            feat = nn.functional.adaptive_avg_pool2d(feat, self.grid)
        return torch.stack([p(feat) for p in self.predictors], dim=2)


class VectorBiasHead(nn.Module):
    """One class per sample: global average pool (for feature maps) and a single linear layer
    (LNL Sec. 5.1: "single fully connected layer for gender and age bias")."""

    def __init__(self, feat_shape: tuple[int, ...], head: BiasHead):
        super().__init__()
        self.pool = len(feat_shape) == 3
        self.fc = nn.Linear(feat_shape[0], head.num_classes)

    def forward(self, feat):
        if self.pool:
            feat = feat.mean(dim=(2, 3))
        return self.fc(feat)


def make_bias_head(feat_shape: tuple[int, ...], head: BiasHead) -> nn.Module:
    """The h network for one bias attribute, shaped by its label."""
    if head.shape:
        if len(feat_shape) != 3:
            raise ValueError(f"bias head {head.name!r} predicts a {head.shape} map but features are {feat_shape}")
        return MapBiasHead(feat_shape[0], head)
    return VectorBiasHead(feat_shape, head)


def bias_loss(logits: torch.Tensor, target: torch.Tensor, head: BiasHead, runs: int = 1) -> torch.Tensor:
    """Cross-entropy of h, one value per run of a packed batch (shape ``(runs,)``; see
    ``Method.per_run_mean``): the mean over labelled samples or positions. A map head with several
    label channels (N×classes×C×H×W) gets the sum over channels of each channel's mean over its
    labelled positions, as the official LNL trainer adds its R, G and B losses (trainer.py:144-148):
    a channel-mean would make h and the reversed gradient into f three times weaker."""
    target = target.long()
    ce = nn.functional.cross_entropy(logits, target, ignore_index=head.ignore_index, reduction="none")
    labelled = target != head.ignore_index
    if logits.dim() == 5:
        ce, labelled = ce.flatten(2).unflatten(0, (runs, -1)), labelled.flatten(2).unflatten(0, (runs, -1))
        return (ce.sum((1, 3)) / labelled.sum((1, 3)).clamp_min(1)).sum(1)  # per run: Σ over channels
    ce, labelled = ce.unflatten(0, (runs, -1)), labelled.unflatten(0, (runs, -1))
    return ce.sum(1) / labelled.sum(1).clamp_min(1)


def bias_correct(logits: torch.Tensor, target: torch.Tensor, head: BiasHead) -> torch.Tensor:
    """(correct, counted) over the labelled positions, as a shape-(2,) float tensor."""
    target = target.long()
    valid = target != head.ignore_index
    correct = (logits.argmax(1) == target) & valid
    return torch.stack([correct.sum().float(), valid.sum().float()])


def build_backbone(info: DatasetInfo, name: str | None = None) -> Backbone:
    """The backbone a method trains: ``name``, else the run's (``info.backbone``: the dataset's
    default, or ``run --backbone``), built for ``info``'s input shape and class count.

    A method calls it in ``__init__`` and should pass no ``name`` unless it needs a specific
    network (e.g. a small biased model beside the main one): then ``--backbone`` still reaches the
    main network. The result splits into ``f`` (features, shape ``feat_shape``) and ``g`` (logits).

    Raises:
        RegistryError: unknown or broken backbone name, listing the known ones.
    """
    return BACKBONES.get(name or info.backbone)(info)
