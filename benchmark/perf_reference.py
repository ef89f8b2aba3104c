"""A reference training pipeline that works like the papers' official code, for ``benchmark perf``.

The official LNL, LfF and PGD trainers feed their networks through a ``torch.utils.data.DataLoader``
over a dataset whose ``__getitem__`` builds a PIL image and applies ``transforms.ToTensor()`` and
``Normalize`` to one sample at a time, in worker processes (here 2); each step moves the batch to
the device, steps the optimiser and reads the loss back with ``.item()``. PGD's scores take one
``backward`` per sample (:func:`benchmark.bench_per_sample.official_style_norms`). Nothing here is
used for training runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

WORKERS = 2


class PILDataset(Dataset):
    """uint8 N×C×H×W images served as the official code serves them: PIL image → ToTensor → Normalize,
    with the label and, when given, a per-sample label map (LNL's colour labels, official
    data_loader.py returns them beside the image)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std, maps: torch.Tensor | None = None):
        self.x = x.permute(0, 2, 3, 1).contiguous().numpy()  # N×H×W×C, as image files decode
        self.y = y.tolist()
        self.maps = maps
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = self.x[i]
        img = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        if self.maps is None:
            return self.transform(img), self.y[i]
        return self.transform(img), self.y[i], self.maps[i]


def loader(x: torch.Tensor, y: torch.Tensor, mean, std, batch_size: int, shuffle: bool,
           maps: torch.Tensor | None = None) -> DataLoader:
    return DataLoader(PILDataset(x, y, mean, std, maps), batch_size=batch_size, shuffle=shuffle, num_workers=WORKERS)


def train_steps(net: torch.nn.Module, opt: torch.optim.Optimizer, data: DataLoader, device: torch.device):
    """Endless training steps over ``data`` (epoch after epoch); yields the images of each step."""
    net.train()
    while True:
        for x, y in data:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # the official loops log the loss every step
            yield len(y)


def method_steps(method, data: DataLoader, device: torch.device, map_key: str):
    """Endless steps of a method's own ``update`` (the same arithmetic as ours) fed the official way:
    DataLoader batches moved to the device, and every logged loss read back with ``.item()``."""
    from .method import Batch

    method.train()
    while True:
        for x, y, maps in data:
            x, y, maps = x.to(device), y.to(device), maps.to(device)
            aligned = torch.ones_like(y, dtype=torch.bool)
            logs = method.update(Batch(x, y, y, aligned, torch.arange(len(y), device=device), {map_key: maps}))
            for v in logs.values():
                float(v.sum().item()) if torch.is_tensor(v) else v
            yield len(y)


def eval_steps(net: torch.nn.Module, data: DataLoader, device: torch.device):
    """Endless evaluation batches (accuracy counted on the host, as the official test loops do)."""
    net.eval()
    while True:
        with torch.no_grad():
            for x, y in data:
                x, y = x.to(device), y.to(device)
                (net(x).argmax(1) == y).sum().item()
                yield len(y)
