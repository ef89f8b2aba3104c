"""The training data of a pack's runs, as a packed stage sees it (:meth:`Method.prepare_pack`).

A pack (:mod:`benchmark.pack`) trains K runs of equal training-set size; a packed batch holds the
K runs' batches one after another, run j's sample i at index ``j·n + i`` (the layout of a pack's
per-sample tables). Every random draw that belongs to run j (its sample order, its augmentation)
happens inside ``data.stream(j)``, run j's own RNG stream, so it is the draw a lone run makes.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from .method import Batch


class PackedData:
    """The K runs' training loaders and RNG streams.

    Args:
        loaders: each run's training :class:`benchmark.engine.Loader` (equal lengths); runs with the
            same data may share one object (then an un-augmented batch is one gather).
        streams: each run's RNG stream: a re-enterable context manager that makes the run's
            generator state current (CPU, and CUDA on a GPU) and keeps what it draws.
    """

    def __init__(self, loaders: list, streams: list[AbstractContextManager]):
        if len(loaders) != len(streams) or not loaders:
            raise ValueError("PackedData needs one stream per loader, and at least one loader")
        if len({len(loader) for loader in loaders}) > 1:
            raise ValueError(f"PackedData: the runs' training sets differ in size {[len(x) for x in loaders]}")
        self.loaders, self.streams = loaders, streams

    @classmethod
    def single(cls, loader) -> "PackedData":
        """One run drawing from the process's RNG (a lone run's :meth:`Method.prepare`)."""
        return cls([loader], [nullcontext()])

    @property
    def size(self) -> int:
        """The number of runs K."""
        return len(self.loaders)

    @property
    def device(self) -> torch.device:
        return self.loaders[0].device

    def __len__(self) -> int:
        """Training samples per run."""
        return len(self.loaders[0])

    def stream(self, j: int) -> AbstractContextManager:
        """Run ``j``'s RNG stream: ``with data.stream(j): order = torch.randperm(n)``."""
        return self.streams[j]

    def batch(self, idx: list[torch.Tensor], augment: bool = False) -> Batch:
        """The runs' batches at ``idx[j]`` (indices into run j's split) one after another, each
        augmented (``augment=True``, where its dataset augments) from its own stream; ``Batch.idx``
        is offset by run (``j·n + i``)."""
        n, first = len(self), self.loaders[0]
        if self.size == 1:
            with self.streams[0]:
                return first.batch(idx[0], augment=augment)
        offsets = [j * n for j in range(self.size)]
        if all(loader is first for loader in self.loaders) and (not augment or first.augment is None):
            batch = first.batch(torch.cat(idx))  # one gather for all runs
            batch.idx = torch.cat([i + o for i, o in zip(idx, offsets)])
            return batch
        parts = []
        for loader, stream, i in zip(self.loaders, self.streams, idx):
            with stream:
                parts.append(loader.batch(i, augment=augment))
        return Batch(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]), torch.cat([p.b for p in parts]),
                     torch.cat([p.aligned for p in parts]), torch.cat([p.idx + o for p, o in zip(parts, offsets)]),
                     {key: torch.cat([p.attrs[key] for p in parts]) for key in parts[0].attrs})
