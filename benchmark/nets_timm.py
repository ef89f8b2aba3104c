"""Any `timm <https://huggingface.co/docs/timm>`_ model as a backbone: ``--backbone timm:<model>``.

``timm:resnet18``, ``timm:convnext_atto``, ``timm:efficientnet_b0``, ... (``timm.list_models()``
lists the names). f is the timm model without its classifier (``num_classes=0``: pooled features
of shape ``(model.num_features,)``), g a fresh linear layer to the dataset's classes, so methods
that train f and g apart (LNL, Blind Eye) keep working with vector bias heads; map-shaped bias
heads (LNL's per-pixel colour label) need a feature map and fail with a message saying so.

Nothing is downloaded: the model starts from random weights, or from ``--pretrained PATH``, a
state-dict file of that timm model (``.pth``/``.pt``/``.bin`` read with ``weights_only=True``, or
``.safetensors``); its classifier weights are dropped. ``--pretrained imagenet`` means
torchvision's ResNet-18 file and is refused here. The model is built for the dataset's input
channels (``in_chans``); models with a fixed input size (most ViTs) need images of that size.
"""
from __future__ import annotations

import functools
from pathlib import Path

from torch import nn

from ._registry import RegistryError
from .data import DatasetInfo
from .nets import Backbone
from .nets_resnet import load_state_dict_file

PREFIX = "timm:"  # see benchmark._registry.PREFIXED


class TimmBackbone(Backbone):
    """A timm model split into f (the model, classifier removed) and g (a linear classifier).

    Subclasses made by :func:`timm_backbone` set ``model_name``.
    """

    takes_pretrained = True
    model_name: str = ""

    def __init__(self, info: DatasetInfo):
        super().__init__(info)
        import timm

        pretrained = (info.backbone_options or {}).get("pretrained")
        if pretrained == "imagenet":
            raise ValueError(f"{PREFIX}{self.model_name}: --pretrained imagenet is torchvision's ResNet-18 file; pass "
                             f"a state-dict file of the timm model {self.model_name!r} (nothing is downloaded)")
        self.f = timm.create_model(self.model_name, pretrained=False, num_classes=0, in_chans=info.input_shape[0])
        self.pretrained_from = None
        if pretrained:
            self._load(Path(str(pretrained)).expanduser())
        self.feat_shape = (int(self.f.num_features),)
        self.g = nn.Linear(self.feat_shape[0], info.num_classes)

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise ValueError(f"{PREFIX}{self.model_name}: pretrained weights file {path} does not exist")
        classifier = self.f.pretrained_cfg.get("classifier") or ""
        heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        state = {k: v for k, v in load_state_dict_file(path).items()
                 if not any(h and (k == h or k.startswith(h + ".")) for h in heads)}
        missing, unexpected = self.f.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{PREFIX}{self.model_name}: {path} is not a state dict of this model "
                             f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        self.pretrained_from = str(path)


@functools.lru_cache(maxsize=None)
def timm_backbone(model_name: str) -> type[TimmBackbone]:
    """The backbone class of timm model ``model_name`` (one class per name, so a run's backbone
    has a name like any registered one: ``timm:<model_name>``).

    Raises:
        RegistryError: timm is not installed, or has no model of that name.
    """
    try:
        import timm
    except ImportError:
        raise RegistryError(f"backbone {PREFIX}{model_name} needs timm: pip install timm") from None
    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name.split('_')[0]}*")[:8]
        raise RegistryError(f"unknown timm model {model_name!r} (backbone {PREFIX}{model_name}); similar names: "
                            f"{', '.join(close) or 'none'}; timm.list_models() lists them all")
    cls = type(f"Timm_{model_name}", (TimmBackbone,), {"model_name": model_name, "__module__": __name__,
                                                        "__doc__": f"timm model {model_name!r} (f) + a linear g."})
    cls.name = PREFIX + model_name
    return cls
