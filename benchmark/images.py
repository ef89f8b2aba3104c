"""Real-image datasets: decode and resize once into a memory-mapped uint8 cache, augment on the device.

Decoding JPEG/PNG files is the slowest part of training a ResNet-18 on a 2-core machine with a GPU:
the official pipelines decode every image every epoch in DataLoader workers. Here each image is
decoded and resized **once** into a ``uint8`` array of shape N×3×S×S stored as a raw memory map
``<cache>/<family>/<key>.u8`` with a JSON sidecar ``<key>.json`` (shape, content hash, timing).
The key is a SHA-256 of the file list (paths relative to the data root, their byte sizes and
modification times in whole seconds), the output size, the resize mode and :data:`CACHE_VERSION`, so renamed, added or changed files give a
new array. Both files are written under temporary names and renamed into place (data first,
sidecar last): a reader trusts an array only when its sidecar exists, so an interrupted build leaves
nothing that looks finished.

The arrays come back as ``torch.uint8`` tensors backed by the memory map (copy-on-write, so nothing
is ever written back). The engine's ``Loader`` keeps inputs larger than ``BENCHMARK_MAX_DEVICE_GB``
on the host and copies each gathered batch to the device; train-time augmentation then runs there,
batched and vectorised (:func:`random_resized_crop_flip`).

Families subclass :class:`ImageFamily` and implement :meth:`ImageFamily.image_lists`, which returns
for every split the image files and per-sample labels; :meth:`ImageFamily.build` does the rest.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import (BiasedDataset, DataRootError, DatasetFamily, Split, default_home, fingerprint_tensors,
                   resolve_data_root)
from .hparams import from_dict, to_dict

CACHE_VERSION = "1"  # bump when decoding/resizing changes, so every cached array is rebuilt
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision ImageNet statistics; LfF @ e66796e data/util.py:95, ReBias datasets/imagenet.py
IMAGENET_STD = (0.229, 0.224, 0.225)
CENTER_CROP_FRACTION = 0.875  # "resize 256, center crop 224" (ReBias datasets/imagenet.py get_imagenet_dataloader)
MIN_IMAGES_PER_WORKER = 256   # below this a process pool costs more than it saves
RESIZE_MODES = ("squash", "center")


@dataclass
class ImageList:
    """One split before decoding: image files (relative to the data root) and per-sample labels."""

    files: list[str]
    y: np.ndarray
    b: np.ndarray
    aligned: np.ndarray
    attrs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.files)
        for name, arr in (("y", self.y), ("b", self.b), ("aligned", self.aligned), *self.attrs.items()):
            if len(arr) != n:
                raise ValueError(f"ImageList: {name} has {len(arr)} entries for {n} files")


# ----------------------------------------------------------------------------------------------
# Decoding


def decode_image(path: str | Path, size: int, mode: str = "squash") -> np.ndarray:
    """Decode one image file to a 3×size×size uint8 array.

    ``squash`` resizes to size×size ignoring the aspect ratio (torchvision ``Resize((s, s))``, as LfF
    does for CelebA); ``center`` resizes the shorter side to size/0.875 and takes the central
    size×size crop (``Resize(256)`` + ``CenterCrop(224)``). Images with transparency are composited
    onto white; greyscale and palette images are converted to RGB. JPEGs are decoded at a reduced
    DCT scale when the file is much larger than needed (``Image.draft``), which is exact up to
    the final bilinear (anti-aliased) resize.
    """
    from PIL import Image

    with Image.open(path) as img:
        if img.format == "JPEG":
            target = size if mode == "squash" else math.ceil(size / CENTER_CROP_FRACTION)
            img.draft("RGB", (target, target))
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba).convert("RGB")
        else:
            img = img.convert("RGB")
        if mode == "squash":
            img = img.resize((size, size), Image.BILINEAR)
        elif mode == "center":
            w, h = img.size
            short = math.ceil(size / CENTER_CROP_FRACTION)
            scale = short / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
        else:
            raise ValueError(f"resize mode {mode!r}; use one of {RESIZE_MODES}")
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def _decode_chunk(args) -> int:
    """Worker: decode files[start:stop] into rows start:stop of the memory map at ``out``."""
    out, shape, paths, start, size, mode = args
    arr = np.memmap(out, dtype=np.uint8, mode="r+", shape=shape)
    for i, p in enumerate(paths):
        arr[start + i] = decode_image(p, size, mode)
    arr.flush()
    del arr
    return len(paths)


def default_workers(n: int) -> int:
    """Decode processes for ``n`` images: none for small sets, else one per core (at most 4).

    A pool for a few hundred files costs more to start than it saves. (The speed-up of two decode
    processes over one on 2 cores is not measured in a committed benchmark.)
    """
    env = os.environ.get("BENCHMARK_DECODE_WORKERS")
    if env is not None:
        return max(0, int(env))
    if n < 2 * MIN_IMAGES_PER_WORKER:
        return 0
    return max(0, min(4, os.cpu_count() or 1, n // MIN_IMAGES_PER_WORKER))


def cache_key(rel_files: Sequence[str], sizes: Sequence[str], size: int, mode: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "size": size, "mode": mode, "n": len(rel_files)}).encode())
    for f, s in zip(rel_files, sizes):
        h.update(f"{f}\0{s}\n".encode())
    return h.hexdigest()[:20]


def _sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def missing_files_error(dataset: str, root: Path, missing: list[str], total: int, layout: str) -> DataRootError:
    shown = "\n  ".join(missing[:5]) + (f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else "")
    return DataRootError(
        f"{dataset}: {len(missing)} of {total} image file(s) are missing under data root {root}:\n  {shown}\n"
        f"Expected layout:\n{layout}\nSet the data root with --data-root or $BENCHMARK_DATA_ROOT.")


def cached_images(root: Path, rel_files: Sequence[str], size: int, family: str, cache_dir: Path, *,
                  mode: str = "squash", workers: int | None = None, layout: str = "") -> tuple[torch.Tensor, dict]:
    """Decode ``root/f`` for every f into a cached N×3×size×size uint8 memory map (built once).

    Returns:
        (tensor backed by the memory map, the sidecar dict with ``sha256`` of the array bytes,
        ``decode_s`` and ``images_per_s`` of the build that wrote it).

    Raises:
        DataRootError: naming the missing image files.
    """
    paths = [root / f for f in rel_files]
    sizes, missing = [], []
    for rel, p in zip(rel_files, paths):
        try:
            st = p.stat()
            sizes.append(f"{st.st_size}:{int(st.st_mtime)}")
        except FileNotFoundError:
            missing.append(str(p))
    if missing:
        raise missing_files_error(family, root, missing, len(paths), layout)
    key = cache_key(rel_files, sizes, size, mode)
    folder = Path(cache_dir) / family
    data_path, meta_path = folder / f"{key}.u8", folder / f"{key}.json"
    shape = (len(paths), 3, size, size)
    meta = _read_meta(meta_path, data_path, shape)
    if meta is None:
        meta = _build(paths, shape, size, mode, data_path, meta_path, key, workers)
    if len(paths) == 0:
        return torch.zeros(shape, dtype=torch.uint8), meta
    arr = np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape)  # copy-on-write: never written back
    return torch.from_numpy(arr), meta


def _read_meta(meta_path: Path, data_path: Path, shape) -> dict | None:
    try:
        meta = json.loads(meta_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if tuple(meta.get("shape", ())) != shape or not data_path.is_file() or data_path.stat().st_size != math.prod(shape):
        return None
    return meta


def _build(paths: list[Path], shape, size: int, mode: str, data_path: Path, meta_path: Path, key: str,
           workers: int | None) -> dict:
    folder = data_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    n = shape[0]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".u8.tmp")
    os.close(fd)
    meta_tmp = None
    t0 = time.time()
    try:
        if n:
            np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape).flush()  # allocate the file
            workers = default_workers(n) if workers is None else workers
            str_paths = [str(p) for p in paths]
            if workers <= 1:
                _decode_chunk((tmp, shape, str_paths, 0, size, mode))
            else:
                step = math.ceil(n / (workers * 8))  # several chunks per worker balances uneven files
                jobs = [(tmp, shape, str_paths[s:s + step], s, size, mode) for s in range(0, n, step)]
                ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
                with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                    done = sum(pool.map(_decode_chunk, jobs))
                if done != n:
                    raise RuntimeError(f"decoded {done} of {n} images")
        seconds = time.time() - t0
        meta = {"key": key, "shape": list(shape), "dtype": "uint8", "size": size, "mode": mode,
                "version": CACHE_VERSION, "n_files": n, "sha256": _sha256_file(Path(tmp)),
                "decode_s": round(seconds, 3), "images_per_s": round(n / max(seconds, 1e-9), 1),
                "workers": workers if n else 0}
        fd, meta_tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".json.tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(meta, fh, indent=1)
        os.replace(tmp, data_path)        # data first ...
        os.replace(meta_tmp, meta_path)   # ... then the sidecar that marks it complete
        return meta
    finally:
        for t in (tmp, meta_tmp):
            if t and os.path.exists(t):
                os.unlink(t)


# ----------------------------------------------------------------------------------------------
# Augmentation on the device


def random_resized_crop_flip(scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                             flip: bool = True):
    """Batched RandomResizedCrop + RandomHorizontalFlip with per-sample random parameters.

    Each sample gets its own crop (area fraction ~ U(scale), log aspect ratio ~ U(log ratio),
    position uniform inside the image) resized back to the input size by bilinear sampling, and a
    horizontal flip with probability 1/2 — one ``affine_grid``/``grid_sample`` call for the whole
    batch, on whatever device the batch is. Unlike torchvision, which retries up to 10 times and
    then falls back to a central crop, a crop larger than the image is clamped to the image (so a
    scale above 1, as in PGD's ``(0.9, 1.1)``, means "sometimes the whole image"). Randomness comes
    from the global torch generator of the batch's device, which the engine seeds and checkpoints.

    Returns:
        A function of a float N×C×H×W batch in [0, 1] returning a batch of the same shape, or None
        when it would be the identity (scale (1, 1) and no flip).
    """
    lo, hi = float(scale[0]), float(scale[1])
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    if lo >= 1.0 and hi >= 1.0 and not flip:
        return None
    crop = not (lo >= 1.0 and hi >= 1.0)

    def augment(x: torch.Tensor) -> torch.Tensor:
        n, dev = x.shape[0], x.device
        if crop:
            area = lo + (hi - lo) * torch.rand(n, device=dev)
            r = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * torch.rand(n, device=dev))
            w = torch.sqrt(area * r).clamp(max=1.0)   # crop width / image width
            h = torch.sqrt(area / r).clamp(max=1.0)
            cx = (torch.rand(n, device=dev) * 2 - 1) * (1 - w)  # centre in [-1, 1] coordinates
            cy = (torch.rand(n, device=dev) * 2 - 1) * (1 - h)
        else:
            w = h = torch.ones(n, device=dev)
            cx = cy = torch.zeros(n, device=dev)
        sx = w
        if flip:
            sx = torch.where(torch.rand(n, device=dev) < 0.5, -w, w)
        theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2] = sx, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        if not crop:  # a pure flip needs no resampling
            flipped = sx < 0
            return torch.where(flipped.view(-1, 1, 1, 1), x.flip(-1), x)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return augment


# ----------------------------------------------------------------------------------------------
# The family base class


class ImageFamily(DatasetFamily):
    """Base class of real-image families: list files and labels; decoding and caching are shared.

    Subclasses set ``Params`` (with at least ``image_size``, ``crop_scale`` and ``hflip`` fields),
    ``layout`` (the expected files, for error messages), ``source`` (where to download), and
    implement :meth:`image_lists` and :meth:`info`.

    Class attributes:
        resize_mode: how files become size×size arrays ("squash" or "center", see :func:`decode_image`).
    """

    resize_mode: ClassVar[str] = "squash"
    source: ClassVar[str] = ""
    # Dataset parameters that ``run --quick`` sets unless given: ResNet-18 at 112×112 costs about a
    # quarter of the compute of 224×224 (FLOPs scale with the pixel count); throughput on a CPU is
    # not measured in a committed benchmark.
    quick_params: ClassVar[dict] = {"image_size": 112}

    def image_lists(self, params, data_root: Path) -> dict[str, ImageList]:
        raise NotImplementedError

    def augment(self, params):
        return random_resized_crop_flip(tuple(params.crop_scale), flip=bool(params.hflip))

    def missing(self, root: Path, what: str) -> DataRootError:
        """A :class:`DataRootError` naming the dataset, the expected layout and where to get it."""
        return DataRootError(
            f"{self.name}: {what} (data root {root}).\nExpected layout:\n{self.layout}\n"
            f"Where to get it: {self.source}\nSet the data root with --data-root or $BENCHMARK_DATA_ROOT.")

    def require(self, root: Path, *rel: str) -> list[Path]:
        paths = [root / r for r in rel]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise self.missing(root, "missing " + ", ".join(missing))
        return paths

    def check_data(self, data_root) -> bool:
        """Cheap presence check (the planner's hook): the metadata files parse and the first and
        last image of every split exist, for the default parameters. Raises DataRootError."""
        root = Path(data_root)
        for lst in self.image_lists(self.Params(), root).values():
            probe = [f for f in (lst.files[:1] + lst.files[-1:]) if not (root / f).is_file()]
            if probe:
                raise missing_files_error(self.name, root, [str(root / f) for f in probe], len(lst.files),
                                          f"{self.layout}\nWhere to get it: {self.source}")
        return True

    def generate(self, params, data_root: Path) -> dict[str, Split]:
        return self._splits(params, Path(data_root), default_home() / "cache")[0]

    def _splits(self, params, root: Path, cache: Path) -> tuple[dict[str, Split], dict[str, dict]]:
        lists = self.image_lists(params, root)
        splits, metas = {}, {}
        for name, lst in lists.items():
            x, meta = cached_images(root, lst.files, int(params.image_size), self.name, cache,
                                    mode=self.resize_mode, layout=f"{self.layout}\nWhere to get it: {self.source}")
            splits[name] = Split(
                x=x, y=torch.as_tensor(np.asarray(lst.y, dtype=np.int64)),
                b=torch.as_tensor(np.asarray(lst.b, dtype=np.int64)),
                aligned=torch.as_tensor(np.asarray(lst.aligned, dtype=bool)),
                attrs={k: torch.as_tensor(np.asarray(v)) for k, v in lst.attrs.items()})
            metas[name] = meta
        return splits, metas

    def build(self, params: dict | object | None = None, data_root: str | Path | None = None,
              cache_dir: str | Path | None = None) -> BiasedDataset:
        """Decode (once, cached) and label every split; inputs stay memory-mapped.

        Unlike :meth:`DatasetFamily.build` nothing is pickled: the labels are rebuilt from the
        release's metadata files (cheap), the images come from the memory-mapped cache. The
        fingerprint hashes the labels and each split's cached array hash.
        """
        if not dataclasses.is_dataclass(params):
            params = from_dict(self.Params, params)
        root = resolve_data_root(data_root)
        cache = Path(cache_dir) if cache_dir else default_home() / "cache"
        splits, metas = self._splits(params, root, cache)
        labels = {s: {k: v for k, v in sp.tensors().items() if k != "x"} for s, sp in splits.items()}
        h = hashlib.sha256(fingerprint_tensors(labels).encode())
        for s in sorted(metas):
            h.update(f"{s}:{metas[s]['sha256']}".encode())
        return BiasedDataset(self.info(params), splits, to_dict(params), h.hexdigest()[:16], self.augment(params))


def check_image_params(params) -> None:
    """Shared validation of ``image_size``, ``crop_scale`` and ``hflip``."""
    if not 8 <= int(params.image_size) <= 1024:
        raise ValueError(f"image_size={params.image_size} must be in [8, 1024]")
    lo, hi = params.crop_scale
    if not 0 < lo <= hi:
        raise ValueError(f"crop_scale={tuple(params.crop_scale)} must satisfy 0 < min <= max")


def stratified_split(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask choosing round(fraction × count) samples of every group value at random."""
    mask = np.zeros(len(groups), dtype=bool)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        k = int(round(fraction * len(idx)))
        mask[rng.choice(idx, size=k, replace=False)] = True
    return mask
