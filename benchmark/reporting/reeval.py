"""Re-evaluations of finished runs from their saved final weights (``engine.run(keep_model=True)``).

Some paper artefacts need predictions on inputs no training-time split holds:

* LNL Figure 5 re-colours the Colored MNIST test digits around one fixed mean colour ("We sampled
  with the same protocol, but with fixed mean color, which was assigned to one of the ten digit
  classes", LNL Sec. 5.2) and draws one confusion matrix per mean colour.
* PGD Table 12 tests Colored MNIST models on test digits re-coloured with RGB ~ U(0, 1)^3
  (Appendix H, "random color test").

Evaluating these sets every epoch would multiply the evaluation cost, so they are computed once per
run, after training, from the weights the engine keeps, and cached as JSON next to the weights
(``<home>/models/<run_id>.<name>.json``). They read the final weights, so they correspond to the
``last`` selection whatever protocol a report uses. A run evaluated on a subset (``max_eval``,
smoke runs) is re-evaluated on the same fixed subset of test digits.

Tables read a re-evaluation through the metric path ``record:reeval.<name>.acc``: the report builder
computes what its specs ask for and attaches it to (a copy of) the run's record.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch and the engine load only when a run is actually re-evaluated
    import pandas as pd
    import torch

FIXED_COLOUR_SEED = 5    # fixes the colour noise of the re-coloured test sets (any constant; cached with them)
RANDOM_COLOUR_SEED = 12  # fixes the uniform colours of PGD's random colour test
REEVAL_PREFIX = "record:reeval."


class NoWeights(FileNotFoundError):
    """The run kept no final weights, so it cannot be re-evaluated."""


def _cached(record: dict, name: str, home: Path | None, compute: Callable[[], dict]) -> dict:
    from ..engine import model_path
    cache = model_path(record["run_id"], home).with_name(f"{record['run_id']}.{name}.json")
    if cache.is_file():
        with open(cache) as fh:
            return json.load(fh)
    result = {"run_id": record["run_id"], **compute()}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    tmp.replace(cache)
    return result


def _trained(record: dict, home: Path | None, device: str | None):
    from ..engine import load_trained
    try:
        return load_trained(record, home, device)
    except FileNotFoundError as e:
        raise NoWeights(str(e)) from None


def _test_digits(spec: dict, data_root) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test digits (grey) and labels, restricted to the run's fixed ``max_eval`` subset."""
    import torch

    from ..data import load_mnist, resolve_data_root
    from ..engine import SUBSET_SEED
    gray, y = load_mnist(resolve_data_root(data_root))["test"]
    if spec.get("max_eval") and spec["max_eval"] < len(y):  # the engine's fixed evaluation subset
        pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(SUBSET_SEED))[:spec["max_eval"]]
        idx = pick.sort().values.numpy()
        gray, y = gray[idx], y[idx]
    return gray, y


def _predict(method, images: torch.Tensor) -> torch.Tensor:
    """Predicted classes for uint8 N×C×H×W images, normalised as the engine's Loader does."""
    import torch

    from ..engine import EVAL_BATCH
    info = method.info
    dev = next(method.parameters()).device
    mean = torch.tensor(info.mean, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
    preds = []
    with torch.no_grad():
        for i in range(0, len(images), EVAL_BATCH):
            x = (images[i:i + EVAL_BATCH].to(dev).float() / 255.0 - mean) / std
            preds.append(method.predict(x).argmax(1).cpu())
    return torch.cat(preds)


def fixed_colour_confusions(record: dict, home: Path | None = None, data_root=None, device: str | None = "cpu") -> np.ndarray:
    """Confusion matrices of a ``colored_mnist`` run on the test digits re-coloured around each mean colour.

    Returns:
        counts of shape (10 mean colours, 10 true digits, 10 predicted digits). The colour of each
        digit is drawn from N(palette[k], σ²) with the run's σ², exactly as
        ``datasets/colored_mnist.py`` colours its test split, but with the mean colour fixed to k.

    Raises:
        NoWeights: the run kept no weights (it finished with ``keep_model=False``).
        ValueError: the run is not on ``colored_mnist``.
    """
    spec = record["spec"]
    if spec["dataset"] != "colored_mnist":
        raise ValueError(f"fixed-colour confusions need a colored_mnist run, not {spec['dataset']}")

    def compute() -> dict:
        import torch
        from benchmark_datasets.colored_mnist import colorize, sample_colors  # the dataset's own colouring
        method = _trained(record, home, device)
        params = spec["dataset_params"]
        sigma2 = float(params["sigma2"])
        gray, y = _test_digits(spec, data_root)
        rng = np.random.default_rng([int(params.get("seed", 0)), int(round(sigma2 * 1e6)), FIXED_COLOUR_SEED])
        k = method.info.num_classes
        counts = np.zeros((10, k, k), dtype=np.int64)
        y_t = torch.from_numpy(y)
        for c in range(10):
            img = torch.from_numpy(colorize(gray, sample_colors(np.full(len(y), c), sigma2, rng)))
            flat = y_t * k + _predict(method, img)
            counts[c] = torch.bincount(flat, minlength=k * k).view(k, k).numpy()
        return {"sigma2": sigma2, "noise_seed": FIXED_COLOUR_SEED, "n": int(len(y)), "counts": counts.tolist()}

    return np.array(_cached(record, "fixed_colour_confusion", home, compute)["counts"], dtype=np.int64)


def random_colour(record: dict, home: Path | None = None, data_root=None, device: str | None = "cpu") -> dict:
    """PGD Table 12: accuracy of a ``colored_mnist_ratio`` run on test digits coloured with RGB ~ U(0,1)^3,
    using the dataset's own (PGD official) colouring. Returns ``{"acc": ..., "n": ...}``."""
    spec = record["spec"]
    if spec["dataset"] != "colored_mnist_ratio":
        raise ValueError(f"the random colour test needs a colored_mnist_ratio run, not {spec['dataset']}")

    def compute() -> dict:
        import torch
        from benchmark_datasets.colored_mnist_ratio import colorize_official
        method = _trained(record, home, device)
        gray, y = _test_digits(spec, data_root)
        rng = np.random.default_rng([int(spec["dataset_params"].get("seed", 0)), RANDOM_COLOUR_SEED])
        img = colorize_official(gray, rng.uniform(0.0, 1.0, size=(len(y), 3)))
        acc = float((_predict(method, img) == torch.from_numpy(y)).float().mean())
        return {"acc": acc, "n": int(len(y)), "colour_seed": RANDOM_COLOUR_SEED}

    return _cached(record, "random_colour", home, compute)


#: Re-evaluations tables can ask for, by name (metric ``record:reeval.<name>.<key>``).
REEVALUATIONS: dict[str, Callable[..., dict]] = {"random_colour": random_colour}


def attach_reevaluations(runs: pd.DataFrame, names_by_run: dict[str, set[str]], home: Path | None = None,
                         data_root=None, device: str | None = "cpu") -> tuple[pd.DataFrame, list[str]]:
    """A copy of ``runs`` whose records carry ``record["reeval"][name]`` for the requested runs.

    Returns the frame and one note per run that could not be re-evaluated (no weights, wrong dataset).
    """
    if not names_by_run:
        return runs, []
    out = runs.copy()
    notes = []
    records = []
    for rec in out["record"]:
        wanted = names_by_run.get(rec["run_id"], set())
        if wanted:
            rec = {**rec, "reeval": dict(rec.get("reeval") or {})}
            for name in sorted(wanted):
                try:
                    rec["reeval"][name] = REEVALUATIONS[name](rec, home, data_root, device)
                except (NoWeights, ValueError) as e:
                    notes.append(f"{rec['run_id']}: no {name} re-evaluation ({e})")
        records.append(rec)
    out["record"] = records
    return out, notes
