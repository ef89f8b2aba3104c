"""ResNet-18 backbone for the real-image benchmarks, split as in Learning Not to Learn.

LNL Sec. 5.1: "In the case we used ResNet-18, g was implemented as two residual blocks on the top,
while f represents the rest." torchvision's ResNet-18 has four stages (``layer1``-``layer4``) of two
BasicBlocks each, so "the two residual blocks on the top" are the two BasicBlocks of ``layer4``:

- f = conv1 → bn1 → relu → maxpool → layer1 → layer2 → layer3, giving 256×(H/16)×(W/16)
  features (256×14×14 at 224×224);
- g = layer4 (two BasicBlocks, 256→512, stride 2) → global average pool → fc 512→classes.

A bias head on these features is, for one label per sample, a global average pool and a single
linear layer (LNL Sec. 5.1: "single fully connected layer for gender and age bias";
``benchmark.nets.VectorBiasHead``). PGD, LfF and ReBias use the same torchvision ResNet-18 with
the final fc replaced (PGD App. A.1: "pre-trained ResNet-18 provided by Pytorch torchvision,
without freezing feature extractor").

Pretrained weights: nothing is downloaded. ``pretrained`` (a backbone option, carried by the run
spec and so part of the run id) is either a path to a state dict (torchvision's
``resnet18-f37072fd.pth``, or timm ``resnet18.*`` weights as ``.pth``/``.bin``/``.safetensors``,
which use the same parameter names) or ``"imagenet"``, meaning torchvision's ImageNet-1k file in
the standard torch hub cache (``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``) or timm's
``resnet18.tv_in1k`` in the Hugging Face cache. Every weight but the final fc is loaded (LNL Sec.
5.1: "pretrained with Imagenet data except for the last fully connected layer").
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .data import DataRootError, DatasetInfo
from .nets import Backbone, register_backbone

TORCHVISION_FILE = "resnet18-f37072fd.pth"  # torchvision ResNet18_Weights.IMAGENET1K_V1
HF_REPO_DIR = "models--timm--resnet18.tv_in1k"  # the same weights as published by timm


class PretrainedWeightsError(DataRootError):
    """The requested pretrained weights are not on this machine (the CLI prints it without a traceback)."""


def find_imagenet_weights() -> Path:
    """torchvision's ImageNet ResNet-18 file in the torch hub cache, else timm's in the HF cache."""
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE]
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
    for snap in sorted((hub / HF_REPO_DIR / "snapshots").glob("*")):
        candidates += [snap / "model.safetensors", snap / "pytorch_model.bin"]
    for c in candidates:
        if c.is_file():
            return c
    raise PretrainedWeightsError(
        "resnet18: --pretrained imagenet found no ImageNet weights; looked for:\n  "
        + "\n  ".join(map(str, candidates[:2] or candidates))
        + f"\nNothing is downloaded. Copy torchvision's {TORCHVISION_FILE} (from a machine with internet: "
          "torchvision.models.resnet18(weights='IMAGENET1K_V1') puts it in the torch hub cache) to the "
          "first path, or pass --pretrained PATH.")


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .pth/.pt/.bin (torch, weights only) or .safetensors."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def resolve_pretrained(pretrained: str) -> Path:
    if pretrained == "imagenet":
        return find_imagenet_weights()
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(f"resnet18: pretrained weights file {path} does not exist")
    return path


@register_backbone("resnet18")
class ResNet18(Backbone):
    """torchvision ResNet-18; f = stem + layer1-3, g = layer4 (LNL's top two residual blocks) + fc."""

    takes_pretrained = True

    def __init__(self, info: DatasetInfo):
        super().__init__(info)
        from torchvision.models import resnet18

        pretrained = (getattr(info, "backbone_options", None) or {}).get("pretrained")
        path = resolve_pretrained(str(pretrained)) if pretrained else None  # fail before building
        net = resnet18(weights=None, num_classes=1000)
        self.pretrained_from = None
        if path is not None:
            state = {k: v for k, v in load_state_dict_file(path).items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise ValueError(f"resnet18: {path} is not a ResNet-18 state dict "
                                 f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
            self.pretrained_from = str(path)
        net.fc = nn.Linear(net.fc.in_features, info.num_classes)
        self.f = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
        self.g = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten(), net.fc)
        h, w = info.input_shape[1:]
        self.feat_shape = (256, _down16(h), _down16(w))


def _down16(n: int) -> int:
    """Spatial size after the stride-2 conv1, maxpool, layer2 and layer3: four ceil-halvings."""
    for _ in range(4):
        n = (n + 1) // 2
    return n
