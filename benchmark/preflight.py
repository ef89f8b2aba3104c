"""Checks a command makes before it trains anything, each failing with one line and its fix.

``run`` calls them after the specs are built and before any dataset is generated: the result
store and the working folder can be written, the device exists, and every ``--pretrained``
source resolves and is taken by the backbone it is meant for. A failure raises
:class:`PreflightError`, which the CLI prints as one ``error:`` line.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable


class PreflightError(Exception):
    """A check before training failed; the message says what and how to fix it."""


def check_writable(folder: str | Path, what: str, fix: str) -> Path:
    """Create ``folder`` if needed and write (then remove) a file in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise PreflightError(f"{what} {folder} is not writable ({type(e).__name__}: {e.strerror or e}); {fix}") from None
    return folder


def check_device(device: str | None) -> None:
    """``device`` names a device torch has here (None: the default, always fine)."""
    if not device:
        return
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise PreflightError(f"--device {device!r} is not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return
    if dev.type != "cuda":
        raise PreflightError(f"--device {device!r}: only cpu and cuda devices are supported; use cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise PreflightError(f"--device {device}: no CUDA device is visible on this machine; use --device cpu "
                             "(or leave --device out to use a GPU when there is one)")
    if dev.index is not None and dev.index >= count:
        raise PreflightError(f"--device {device}: only {count} CUDA device(s) visible (cuda:0 .. cuda:{count - 1})")


def check_pretrained(specs: Iterable, home: str | Path) -> None:
    """Every spec's ``pretrained`` resolves: ``run:ID`` to kept weights under ``home``, a path to a
    file, ``imagenet`` to the cached ImageNet weights; a file or ``imagenet`` also needs a backbone
    that loads them (``Backbone.takes_pretrained``)."""
    from .engine import RUN_PREFIX, model_path
    from .hparams import from_dict
    from .nets import BACKBONES
    from .registry import DATASETS

    seen = set()
    for spec in specs:
        ref = spec.pretrained
        if not ref or (ref, spec.dataset, spec.backbone) in seen:
            continue
        seen.add((ref, spec.dataset, spec.backbone))
        if ref.startswith(RUN_PREFIX):
            path = model_path(ref[len(RUN_PREFIX):], Path(home))
            if not path.is_file():
                raise PreflightError(f"--pretrained {ref}: no kept weights at {path}; run that spec first with this "
                                     "--home (`status` lists stored runs), or pass a state-dict file")
            continue
        family = DATASETS.get(spec.dataset)
        backbone = spec.backbone or family().info(from_dict(family.Params, spec.dataset_params)).backbone
        if not getattr(BACKBONES.get(backbone), "takes_pretrained", False):
            takers = [n for n, c in BACKBONES.items() if getattr(c, "takes_pretrained", False)]
            raise PreflightError(f"--pretrained {ref}: backbone {backbone!r} loads no weights files (backbones that do: "
                                 f"{', '.join(takers) or 'none'}); use --pretrained run:RUN_ID, --backbone, or leave "
                                 "--pretrained out")
        if ref == "imagenet":
            from .nets_resnet import find_imagenet_weights
            find_imagenet_weights()  # raises PretrainedWeightsError (a DataRootError) naming where it looked
        elif not Path(ref).expanduser().is_file():
            raise PreflightError(f"--pretrained {ref}: no such file; pass a state-dict file, 'imagenet' or run:RUN_ID")
