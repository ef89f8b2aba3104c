"""Post-run re-evaluations: a finished run's kept weights tested on re-coloured test sets.

Some paper artefacts need predictions on inputs no training-time split holds:

* LNL Figure 5 re-colours the Colored MNIST test digits around one fixed mean colour ("We sampled
  with the same protocol, but with fixed mean color, which was assigned to one of the ten digit
  classes", LNL Sec. 5.2) and draws one confusion matrix per mean colour
  (``fixed_colour_confusion``, ``colored_mnist`` runs);
* PGD Table 12 tests Colored MNIST models on test digits re-coloured with RGB ~ U(0, 1)^3
  (Appendix H, "random color test"; ``random_colour``, ``colored_mnist_ratio`` runs).

Evaluating these sets every epoch would multiply the evaluation cost, so, like ``probe``, they run
once after training from the weights the engine keeps (``<home>/models/<run_id>.pt``): ``python -m
benchmark reeval`` (and ``run --suite`` at its end, for the runs its suites' report specs read). The
re-coloured sets come from the dataset family's :meth:`~benchmark.data.DatasetFamily.recoloured_test`
hook. Each output is stored beside the run in the result store
(``<results>/_outputs/reeval/<run_id>.<name>.json``, :meth:`benchmark.store.ResultStore.put_output`),
so it travels with the records; reports only read it (:mod:`benchmark.reporting.reevaluated`).
Outputs correspond to the final weights, i.e. the ``last`` selection. A run evaluated on a subset
(``max_eval``, smoke runs) is re-evaluated on the same fixed subset of the test set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch

from .data import DatasetFamily, default_home, resolve_data_root
from .engine import Loader, _fixed_subset, eval_batch_size, load_trained, model_path, pick_device
from .hparams import from_dict
from .method import Method
from .registry import DATASETS
from .reporting.reevaluated import STEP, needed
from .reporting.spec import ReportSpec
from .store import ResultStore


@torch.no_grad()
def _predictions(method: Method, family: DatasetFamily, params, spec: dict, colouring: str, data_root, device):
    """(predicted classes, true labels, the re-coloured test set) of ``method`` on ``family``'s ``colouring``
    (restricted to the run's fixed ``max_eval`` subset), all on the CPU."""
    test = family.recoloured_test(params, data_root, colouring)
    split = _fixed_subset(test.split, spec.get("max_eval"))
    info = method.info
    loader = Loader(split, info.mean, info.std, pick_device(device))
    order = torch.arange(len(split), device=loader.device)
    bf16 = spec.get("precision") == "bf16"  # as the run evaluated (engine.evaluate)
    with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=bf16):
        preds = [method.predict(b.x).argmax(1) for b in loader.batches(order, eval_batch_size(loader, method))]
    return torch.cat(preds).cpu(), split.y, test


def random_colour(method: Method, family: DatasetFamily, params, spec: dict, data_root, device) -> dict[str, Any]:
    """PGD Table 12: accuracy on the family's ``uniform`` re-colouring: ``{"acc", "n", "colouring"}``."""
    pred, y, test = _predictions(method, family, params, spec, "uniform", data_root, device)
    return {"acc": float((pred == y).float().mean()), "n": int(len(y)), "colouring": test.description}


def fixed_colour_confusion(method: Method, family: DatasetFamily, params, spec: dict, data_root,
                           device) -> dict[str, Any]:
    """LNL Figure 5: per fixed mean colour k, the (true × predicted) counts on the family's
    ``fixed_mean_<k>`` re-colouring: ``{"counts": K_colours×C×C, "colours": K_colours×3 RGB, "n", ...}``."""
    counts, colours, described = [], [], []
    k = method.info.num_classes
    for colouring in family.recolourings:
        if not colouring.startswith("fixed_mean_"):
            continue
        pred, y, test = _predictions(method, family, params, spec, colouring, data_root, device)
        counts.append(torch.bincount(y * k + pred, minlength=k * k).view(k, k).tolist())
        colours.append(list(test.colour) if test.colour is not None else None)
        described.append(test.description)
    if not counts:
        raise ValueError(f"dataset {family.name!r} offers no fixed_mean_<k> re-colourings")
    return {"counts": counts, "colours": colours, "n": int(sum(map(sum, counts[0]))), "colouring": described}


@dataclass(frozen=True)
class Reevaluation:
    """One re-evaluation: the datasets it applies to and how it is computed from a trained method."""

    name: str
    datasets: tuple[str, ...]
    compute: Callable[..., dict[str, Any]]


#: Every re-evaluation, by name (the names of :data:`benchmark.reporting.reevaluated.NAMES`).
REEVALUATIONS = {r.name: r for r in (Reevaluation("random_colour", ("colored_mnist_ratio",), random_colour),
                                     Reevaluation("fixed_colour_confusion", ("colored_mnist",), fixed_colour_confusion))}


class NoWeights(FileNotFoundError):
    """The run kept no final weights, so it cannot be re-evaluated."""


def reevaluate_run(store: ResultStore, record: dict[str, Any], name: str, *, home: Path | None = None,
                   data_root=None, device: str | None = "cpu") -> dict[str, Any]:
    """Compute re-evaluation ``name`` of a stored run and store it beside the run; returns the output.

    Raises:
        NoWeights: the run kept no weights.
        ValueError: ``name`` does not apply to the run's dataset.
    """
    reev = REEVALUATIONS[name]
    spec = record["spec"]
    if spec["dataset"] not in reev.datasets:
        raise ValueError(f"{name} applies to {', '.join(reev.datasets)} runs, not {spec['dataset']}")
    home = Path(home) if home else default_home()
    if not model_path(record["run_id"], home).is_file():
        raise NoWeights(f"run {record['run_id']} kept no weights under {home / 'models'}")
    method = load_trained(record, home, device)
    family = DATASETS.get(spec["dataset"])()
    params = from_dict(family.Params, spec["dataset_params"])
    output = {"name": name, **reev.compute(method, family, params, spec, resolve_data_root(data_root), device)}
    store.put_output(record["run_id"], STEP, name, output)
    return output


@dataclass
class Summary:
    """What :func:`reevaluate` did, per (run id, name)."""

    computed: list[tuple[str, str]] = field(default_factory=list)
    present: list[tuple[str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per (run, name) that could not be computed

    def render(self) -> str:
        text = f"re-evaluations: {len(self.computed)} computed, {len(self.present)} already stored, {len(self.failed)} failed"
        return "\n".join([text, *(f"  {line}" for line in self.failed)])


def wanted(runs: pd.DataFrame, specs: list[ReportSpec], suites: list[str] | None = None,
           run_ids: list[str] | None = None, names: list[str] | None = None) -> dict[str, set[str]]:
    """run id -> re-evaluations to compute: those the specs read from the runs of ``suites`` (all
    suites when None); for explicit ``run_ids``, every re-evaluation that applies to their dataset
    (or ``names``)."""
    if run_ids:
        by_id = runs.set_index("run_id")["dataset"] if not runs.empty else pd.Series(dtype=object)
        return {rid: {n for n in names or REEVALUATIONS if by_id.get(rid) in REEVALUATIONS[n].datasets}
                for rid in run_ids}
    if suites and not runs.empty:
        tags = runs["tag.suite"] if "tag.suite" in runs.columns else pd.Series(None, index=runs.index)
        runs = runs[tags.isin(suites)]
    out = needed(runs, specs)
    if names:
        out = {rid: ns & set(names) for rid, ns in out.items()}
    return {rid: ns for rid, ns in out.items() if ns}


def reevaluate(store: ResultStore, todo: dict[str, set[str]], *, home: Path | None = None, data_root=None,
               device: str | None = "cpu", force: bool = False, echo: Callable[[str], None] = print) -> Summary:
    """Compute and store the re-evaluations in ``todo`` (run id -> names) that are not stored yet
    (all of them with ``force``); a run without weights is reported, not fatal."""
    summary = Summary()
    current = store.query() if todo else pd.DataFrame()
    records = {r["run_id"]: r for r in current["record"]} if not current.empty else {}
    for run_id in sorted(todo):
        record = records.get(run_id)
        if record is None:
            summary.failed.append(f"{run_id}: not in the result store {store.root}")
            continue
        for name in sorted(todo[run_id]):
            if not force and (record.get(STEP) or {}).get(name) is not None:
                summary.present.append((run_id, name))
                continue
            try:
                out = reevaluate_run(store, record, name, home=home, data_root=data_root, device=device)
            except (NoWeights, ValueError) as e:
                summary.failed.append(f"{run_id} {name}: {e}")
                continue
            summary.computed.append((run_id, name))
            what = f"acc {out['acc']:.4f}" if "acc" in out else f"{len(out.get('counts', []))} matrices"
            echo(f"{run_id} {record['spec']['method']} on {record['spec']['dataset']}: {name} {what} "
                 f"(n={out['n']}) -> {store.output_path(run_id, STEP, name)}")
    return summary
