"""The dataset contract: bias-planted splits as tensors, their metadata, data roots and the cache.

A dataset family (one file in ``datasets/``) subclasses :class:`DatasetFamily`, declares its
protocol parameters as a dataclass ``Params`` and implements :meth:`DatasetFamily.generate`,
which returns the splits as tensors. :meth:`DatasetFamily.build` caches the result on disk under
a key derived from the parameters and the family's ``version``, and fingerprints the content.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from .failpoints import failpoint
from .hparams import from_dict, to_dict
from .paths import DATA_ROOT_ENV, HOME_ENV, DataRootError, default_home, resolve_data_root  # noqa: F401 (re-exported)


class DatasetContractError(ValueError):
    """A dataset plug-in broke the dataset contract (e.g. generated no ``test`` split)."""


@dataclass(frozen=True)
class BiasHead:
    """One bias attribute that methods may learn to predict (and unlearn).

    Attributes:
        name: attribute name ("color", "background").
        key: the per-sample tensor in ``Split.attrs`` holding the label ("b" means ``Split.b``).
        num_classes: classes per label position.
        shape: trailing label shape per sample: ``()`` for one class per sample, ``(3, 14, 14)``
            for LNL's per-channel colour map over a 14×14 grid.
        ignore_index: label value the loss ignores (LNL marks background pixels 255).
    """

    name: str
    key: str
    num_classes: int
    shape: tuple[int, ...] = ()
    ignore_index: int = -100


@dataclass
class Split:
    """One split as tensors of equal length N.

    Attributes:
        x: inputs, uint8 N×C×H×W (normalised on the device by the engine with ``mean``/``std``).
        y: target labels, int64 N.
        b: bias class per sample, int64 N (e.g. the index of the mean colour).
        aligned: True where the bias agrees with the target (bias-aligned samples).
        attrs: further per-sample tensors (dense bias maps, second attributes, noise flags).
    """

    x: torch.Tensor
    y: torch.Tensor
    b: torch.Tensor
    aligned: torch.Tensor
    attrs: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"x": self.x, "y": self.y, "b": self.b, "aligned": self.aligned, **self.attrs}

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.x[idx], self.y[idx], self.b[idx], self.aligned[idx],
                     {k: v[idx] for k, v in self.attrs.items()})

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device), self.b.to(device), self.aligned.to(device),
                     {k: v.to(device) for k, v in self.attrs.items()})


@dataclass
class DatasetInfo:
    """What a method needs to know to build its networks; :meth:`DatasetFamily.info` returns it.

    Attributes:
        name: the dataset's registered name.
        input_shape: one sample's shape, C×H×W (what ``Split.x`` holds after the batch axis).
        num_classes: number of target classes (labels ``0 .. num_classes - 1`` in ``Split.y``).
        num_bias_classes: number of values of the bias class ``Split.b``; evaluation counts
            accuracy per (target, bias) group with it.
        bias_heads: the bias attributes a method may predict and unlearn (LNL, Blind Eye); empty
            when the dataset offers none.
        backbone: the registered backbone built by default (``run --backbone`` overrides it).
        mean, std: per-channel normalisation the engine applies to ``x / 255`` on the device.
        backbone_options: options the engine passes to the backbone from the run spec (today
            ``{"pretrained": PATH | "imagenet" | "run:ID"}``); a dataset leaves it empty.
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    num_bias_classes: int
    bias_heads: tuple[BiasHead, ...]
    backbone: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    backbone_options: dict = field(default_factory=dict)


@dataclass
class RecolouredTest:
    """A test set re-coloured by a dataset family's own colouring, for post-run re-evaluations.

    Attributes:
        split: the family's test digits/images with new colours; ``b`` holds the bias class each
            sample's colour stands for, ``aligned`` whether it equals the target.
        colour: the mean colour (RGB in [0, 1]) when the re-colouring fixes one, else None; a
            figure labels its panels with it.
        description: one line saying how the colours were drawn (stored with the output).
    """

    split: Split
    colour: tuple[float, float, float] | None
    description: str


@dataclass
class BiasedDataset:
    """A generated dataset: splits plus metadata.

    Attributes:
        info: shapes, class counts, bias heads, default backbone and normalisation.
        splits: "train", "test" and any protocol split ("val", "tb2", ...).
        params: the protocol parameters it was built from.
        fingerprint: SHA-256 (first 16 hex digits) of the generated tensors.
        augment: the family's train-time augmentation (:meth:`DatasetFamily.augment`), or None.
    """

    info: DatasetInfo
    splits: dict[str, Split]
    params: dict
    fingerprint: str = ""
    augment: object = None

    def __getitem__(self, split: str) -> Split:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(f"{self.info.name} has no split {split!r}; splits: {sorted(self.splits)}") from None


class DatasetFamily:
    """Base class of a bias-planted dataset family. Subclass, set ``Params``, implement ``generate``.

    Class attributes:
        Params: frozen dataclass of protocol parameters (fields declared with ``hp``); each field
            becomes a ``run`` option (``--sigma2``; ``--data-NAME`` where ``run`` has ``--NAME``).
        version: bump when generation changes, so cached copies are rebuilt.
        layout: the files expected under the data root, for error messages.
        quick_params: optional dict of parameter overrides ``run --quick`` applies (e.g. smaller
            images); explicit options win.
    """

    name: ClassVar[str]
    Params: ClassVar[type]
    version: ClassVar[str] = "1"
    layout: ClassVar[str] = ""
    recolourings: ClassVar[tuple[str, ...]] = ()  # the names recoloured_test() accepts

    def info(self, params) -> DatasetInfo:
        """Shapes, class counts, bias heads, default backbone and normalisation for ``params``.

        Called without generating the data (the planner and ``list`` read it), so it must be cheap
        and must not read files under the data root.

        Args:
            params: an instance of ``Params``.
        """
        raise NotImplementedError

    def augment(self, params):
        """Optional train-time augmentation: a function of a float N×C×H×W batch in [0, 1] on the
        device returning one of the same shape (per-sample random, vectorised). None = no augmentation."""
        return None

    def generate(self, params, data_root: Path) -> dict[str, Split]:
        """Build every split from the files under ``data_root``; called only on a cache miss.

        Must be a pure function of ``params`` and the files: draw randomness from a generator seeded
        by the parameters (e.g. ``np.random.default_rng([params.seed, k])``), never from global state,
        so every machine builds the same tensors (their fingerprint is stored in each record).

        Args:
            params: an instance of ``Params``.
            data_root: the resolved data root; read files with :func:`require_files` (or
                :func:`load_mnist`) so a missing file names the expected ``layout``.

        Returns:
            Splits by name: ``"train"`` and ``"test"`` are required; others (``"val"``,
            ``"val_unbiased"``, ...) are evaluated with ``test``, at the epochs the spec evaluates
            (``RunSpec.eval_every``). Tensors stay on the CPU.
        """
        raise NotImplementedError

    def recoloured_test(self, params, data_root: Path, colouring: str) -> RecolouredTest:
        """Optional: the test split with its colours drawn anew, by this family's own colouring.

        Post-run re-evaluations (``python -m benchmark reeval``) test a finished run's weights on
        inputs no training-time split holds, e.g. LNL Figure 5 (every test digit coloured around
        one fixed mean colour) or PGD Table 12 (uniform random colours). The family owns its
        colouring and its random streams, so the re-coloured set comes from here, seeded by
        ``params`` and ``colouring`` alone (the same call gives the same images). Samples keep the
        order of the ``test`` split, so the engine's fixed ``max_eval`` subset applies unchanged.

        Args:
            params: the protocol parameters (a ``Params`` instance).
            data_root: where the source files are.
            colouring: one of ``recolourings`` (e.g. ``"fixed_mean_3"``, ``"uniform"``).

        Raises:
            ValueError: the family offers no such re-colouring (the default offers none).
        """
        raise ValueError(f"dataset {self.name!r} offers no re-coloured test sets (asked for {colouring!r})"
                         + (f"; it offers {', '.join(self.recolourings)}" if self.recolourings else ""))

    def check_data(self, data_root: Path) -> bool:
        """Optional and cheap: raise :class:`DataRootError` if files :meth:`generate` reads are
        missing under ``data_root``; return True when they are there. The planner calls it to skip
        runs whose data is absent. The default returns False ("not checked"): the planner then
        builds one dataset of the family to find out (which also warms the cache)."""
        return False

    def build(self, params: dict | object | None = None, data_root: str | Path | None = None,
              cache_dir: str | Path | None = None) -> BiasedDataset:
        """Generate (or load from the cache) the dataset for these parameters."""
        if not dataclasses.is_dataclass(params):
            params = from_dict(self.Params, params)
        key = cache_key(self.name, self.version, to_dict(params))
        cache = Path(cache_dir) if cache_dir else default_home() / "cache"
        path = cache / self.name / f"{key}.pt"
        memo = _MEMO.get(str(path))
        if memo is not None and path.exists():
            return memo
        loaded = _load_cache(path) if path.exists() else None
        if loaded is not None:
            splits, fingerprint = loaded
        else:
            splits = self.generate(params, resolve_data_root(data_root))
            missing = [s for s in ("train", "test") if s not in splits]
            if missing:
                raise DatasetContractError(
                    f"dataset {self.name!r} ({type(self).__module__}) generated splits {sorted(splits)} without "
                    f"{' and '.join(map(repr, missing))}: every dataset family must return 'train' and 'test' "
                    "(fix its generate())")
            fingerprint = fingerprint_tensors({s: sp.tensors() for s, sp in splits.items()})
            failpoint("data.generated")
            atomic_torch_save({"splits": {k: dataclasses.asdict(v) for k, v in splits.items()},
                               "fingerprint": fingerprint, "params": to_dict(params)}, path)
        dataset = BiasedDataset(self.info(params), splits, to_dict(params), fingerprint, self.augment(params))
        _MEMO[str(path)] = dataset
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        return dataset


def _load_cache(path: Path) -> tuple[dict[str, Split], str] | None:
    """A cached dataset's splits and fingerprint, read with ``weights_only=True`` (a cache file
    cannot run code); None, with a warning, when the file is damaged or unsafe (it is rebuilt)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        splits = {k: Split(**v) for k, v in blob["splits"].items()}
        fingerprint = str(blob["fingerprint"])
    except Exception as e:  # noqa: BLE001 - any damage: regenerate rather than trust the file
        warnings.warn(f"dataset cache {path} is damaged or not a plain tensor file "
                      f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                      "rebuilding it", RuntimeWarning, stacklevel=3)
        return None
    return splits, fingerprint


_MEMO: dict[str, BiasedDataset] = {}  # built datasets of this process (treated as read-only)
_MEMO_SIZE = 2


def cache_key(name: str, version: str, params: dict) -> str:
    blob = json.dumps({"name": name, "version": version, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint_tensors(tree: dict[str, dict[str, torch.Tensor]]) -> str:
    h = hashlib.sha256()
    for split in sorted(tree):
        for key in sorted(tree[split]):
            t = tree[split][key].contiguous().cpu()
            h.update(f"{split}/{key}/{tuple(t.shape)}/{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes())
    return h.hexdigest()[:16]


def atomic_torch_save(obj, path: Path) -> None:
    """Write with torch.save to a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        failpoint("checkpoint.tmp" if path.parent.name == "checkpoints" else "save.tmp")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def require_files(root: Path, files: list[str], dataset: str, layout: str) -> list[Path]:
    """Return ``root/f`` for each file, or raise :class:`DataRootError` naming what is missing."""
    paths = [root / f for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataRootError(
            f"{dataset}: missing data file(s) under data root {root}:\n  " + "\n  ".join(missing)
            + f"\nExpected layout:\n{layout}\nSet the data root with --data-root or ${DATA_ROOT_ENV}."
        )
    return paths


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (as MNIST and Fashion-MNIST ship it), gzip-compressed or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    fix = "replace it with an intact copy (e.g. the MNIST distribution's file)"
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (EOFError, OSError, zlib.error) as e:  # truncated or corrupt gzip
        raise DataRootError(f"{path} is damaged ({type(e).__name__}: {e}); {fix}") from None
    if len(data) < 4:
        raise DataRootError(f"{path} is damaged (only {len(data)} bytes); {fix}")
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise DataRootError(f"{path}: not an unsigned-byte IDX file; {fix}")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    need = 4 + 4 * ndim + int(np.prod(dims, dtype=np.int64))
    if len(data) != need:
        raise DataRootError(f"{path} is damaged: {len(data)} bytes where its header announces {need}; {fix}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


MNIST_LAYOUT = """  <data root>/MNIST/raw/train-images-idx3-ubyte.gz
  <data root>/MNIST/raw/train-labels-idx1-ubyte.gz
  <data root>/MNIST/raw/t10k-images-idx3-ubyte.gz
  <data root>/MNIST/raw/t10k-labels-idx1-ubyte.gz
(torchvision's MNIST layout; the .gz files from the MNIST distribution are read directly)"""


def load_mnist(root: Path, name: str = "MNIST", layout: str = MNIST_LAYOUT) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST-format images and labels: {"train": (N×28×28 uint8, N int64), "test": ...}.

    ``name`` selects the folder ("MNIST" or "FashionMNIST"); plain (unzipped) files are accepted too.
    """
    out = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        files = []
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            rel = f"{name}/raw/{stem}-{kind}"
            files.append(rel if (root / rel).is_file() else rel + ".gz")
        img, lab = require_files(root, files, name, layout.replace("MNIST", name) if name != "MNIST" else layout)
        out[split] = (read_idx(img), read_idx(lab).astype(np.int64))
    return out
