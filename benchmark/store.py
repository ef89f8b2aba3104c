"""The result store: one immutable JSON record per finished run, the source of truth.

Records live in ``<root>/<run_id>.json``. A record is written to a temporary file and linked
into place, so a reader never sees half a record and an existing record is never replaced.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import pandas as pd

RESULTS_ENV = "BENCHMARK_RESULTS"


class RecordExists(FileExistsError):
    """A record with this run id is already stored; stored records are never overwritten."""


def default_results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV, "results/runs")).resolve()


class ResultStore:
    """Finished-run records under ``root`` (default ``$BENCHMARK_RESULTS`` or ``results/runs``)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root else default_results_dir()

    def path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def has(self, run_id: str) -> bool:
        return self.path(run_id).is_file()

    def get(self, run_id: str) -> dict[str, Any]:
        with open(self.path(run_id)) as fh:
            return json.load(fh)

    def put(self, record: dict[str, Any]) -> Path:
        """Store ``record`` atomically under its ``run_id``; raises :class:`RecordExists` if taken."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(record["run_id"])
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, indent=1, sort_keys=True, allow_nan=True)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, final)  # fails if the record exists: never overwrite
            except FileExistsError:
                raise RecordExists(f"run {record['run_id']} is already stored at {final}") from None
        finally:
            os.unlink(tmp)
        return final

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.root.is_dir():
            return
        for p in sorted(self.root.glob("*.json")):
            with open(p) as fh:
                yield json.load(fh)

    def query(self, **filters) -> pd.DataFrame:
        """One row per run: spec columns, dataset params (``p.<name>``), hparams (``hp.<name>``),
        final test metrics (``test.<metric>``, any other split ``<split>.<metric>``), and the record.

        Keyword filters match columns exactly, e.g. ``query(method="lnl", dataset="colored_mnist")``.
        """
        import pandas as pd  # here, not at the top: commands that never query start faster

        rows = [flatten_record(r) for r in self.records()]
        df = pd.DataFrame(rows)
        for k, v in filters.items():
            if df.empty:
                break
            if k not in df.columns:
                raise KeyError(f"no column {k!r}; columns: {sorted(df.columns)}")
            df = df[df[k] == v]
        return df.reset_index(drop=True)


def flatten_record(r: dict[str, Any]) -> dict[str, Any]:
    spec = r["spec"]
    row = {"run_id": r["run_id"], "status": r.get("status", "done"), "method": spec["method"],
           "dataset": spec["dataset"], "seed": spec["seed"], "epochs": spec["epochs"],
           "max_train": spec.get("max_train"), "wall_time_s": r.get("wall_time_s"),
           "fingerprint": r.get("dataset_fingerprint"), "created": r.get("created")}
    row.update({f"p.{k}": _scalar(v) for k, v in spec["dataset_params"].items()})
    row.update({f"hp.{k}": _scalar(v) for k, v in spec["hparams"].items()})
    row.update({f"tag.{k}": _scalar(v) for k, v in (r.get("tags") or {}).items()})
    row["label_noise"] = spec.get("label_noise", 0.0)
    for split, metrics in (r.get("final") or {}).items():
        for k, v in metrics.items():
            if isinstance(v, (int, float)) or v is None:
                row[f"{split}.{k}"] = v
    row["record"] = r
    return row


def _scalar(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def code_version() -> dict[str, Any]:
    """The git commit of the code that ran (and whether the tree had local changes)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", None
    if not re.fullmatch(r"[0-9a-f]{40}", commit or ""):  # e.g. a copy of the tree without .git (a GPU machine)
        commit, dirty = os.environ.get("BENCHMARK_CODE_COMMIT", ""), None
    from importlib import metadata
    try:
        version = metadata.version("biasbench")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"commit": commit or None, "dirty": dirty, "package": version}


def library_versions() -> dict[str, str]:
    import numpy
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import torchvision
        out["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return out
