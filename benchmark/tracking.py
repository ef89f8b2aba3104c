"""The MLflow mirror of the result store.

Each finished record is mirrored as one MLflow run: params = the flattened spec, metrics = the
per-epoch history (step = epoch) and the final values, tags = run id, dataset fingerprint, method,
dataset; the record itself is attached as an artifact. The default tracking URI is an embedded
SQLite store under the working folder (no server needed); ``$MLFLOW_TRACKING_URI`` or
``--tracking-uri`` points anywhere else. A failing MLflow never loses a run: the record is already
in the result store, and a warning names the run MLflow missed (``benchmark mirror`` re-sends).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .paths import default_home

EXPERIMENT = "biasbench"
_WARNED_MISSING = False


def mlflow_installed() -> bool:
    """Whether ``import mlflow`` can succeed (checked without importing it)."""
    import importlib.util
    import sys
    if "mlflow" in sys.modules:
        return sys.modules["mlflow"] is not None  # None: blocked, as if not installed
    return importlib.util.find_spec("mlflow") is not None


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default_home() / 'mlflow.db'}"


class MLflowMirror:
    """Mirrors records to MLflow at ``uri`` (None = :func:`default_tracking_uri`)."""

    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT):
        self.uri = uri or default_tracking_uri()
        self.experiment = experiment

    def log_record(self, record: dict[str, Any]) -> str | None:
        """Log one record; returns the MLflow run id, or None (with a warning) if MLflow failed or
        is not installed (one warning per process then: the records stay in the result store)."""
        if not mlflow_installed():
            global _WARNED_MISSING
            if not _WARNED_MISSING:
                _WARNED_MISSING = True
                warnings.warn("MLflow is not installed: records stay in the result store only; mirror them later "
                              "with `python -m benchmark import DIR` or `mirror` where MLflow is installed",
                              RuntimeWarning, stacklevel=2)
            return None
        try:
            return self._log(record)
        except Exception as e:  # noqa: BLE001 - any MLflow failure must not lose the run
            warnings.warn(f"MLflow at {self.uri} missed run {record['run_id']} "
                          f"({type(e).__name__}: {e}); the record is safe in the result store",
                          RuntimeWarning, stacklevel=2)
            return None

    def _log(self, record: dict[str, Any]) -> str:
        artifacts = None
        if self.uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
            db = Path(self.uri[len("sqlite:///"):])
            db.parent.mkdir(parents=True, exist_ok=True)
            artifacts = (db.parent / "mlartifacts").resolve().as_uri()
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(self.experiment, artifact_location=artifacts)
        spec = record["spec"]
        tags = {"run_id": record["run_id"], "dataset_fingerprint": record.get("dataset_fingerprint", ""),
                "method": spec["method"], "dataset": spec["dataset"], "status": record.get("status", "done"),
                "code_commit": str((record.get("code") or {}).get("commit")), "device": str(record.get("device"))}
        run = client.create_run(exp_id, run_name=f"{spec['method']}/{spec['dataset']}/{record['run_id'][:8]}",
                                tags=tags)
        rid = run.info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in flatten_spec(spec).items()]
        ts = 0
        metrics = []
        for row in record.get("history", []):
            step = int(row["epoch"])
            for k, v in _numeric(row).items():
                if k != "epoch":
                    metrics.append(Metric(k, v, ts, step))
        for split, m in (record.get("final") or {}).items():
            for k, v in _numeric(m).items():
                metrics.append(Metric(f"final.{split}.{k}", v, ts, 0))
        if record.get("wall_time_s") is not None:
            metrics.append(Metric("wall_time_s", float(record["wall_time_s"]), ts, 0))
        for i in range(0, max(len(params), 1), 100):
            client.log_batch(rid, params=params[i:i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[i:i + 1000])
        client.log_batch(rid, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "record.json"
            p.write_text(json.dumps(record, indent=1, sort_keys=True))
            client.log_artifact(rid, str(p))
        client.set_terminated(rid, "FINISHED" if record.get("status", "done") == "done" else "FAILED")
        return rid


def flatten_spec(spec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k not in ("dataset_params", "hparams")}
    out.update({f"p.{k}": v for k, v in spec.get("dataset_params", {}).items()})
    out.update({f"hp.{k}": v for k, v in spec.get("hparams", {}).items()})
    return out


def _numeric(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten nested dicts of numbers into ``a.b`` keys; drops lists and NaN."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_numeric(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v)):
            out[key] = float(v)
    return out
