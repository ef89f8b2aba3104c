"""The MLflow mirror of the result store.

Each finished record is mirrored as one MLflow run: params = the flattened spec, metrics = the
per-epoch history (step = epoch) and the final values, tags = run id, dataset fingerprint, method,
dataset; the record itself is attached as an artifact. The default tracking URI is an embedded
SQLite store under the working folder (no server needed); ``$MLFLOW_TRACKING_URI`` or
``--tracking-uri`` points anywhere else. A failing MLflow never loses a run: the record is already
in the result store, and a warning names the run MLflow missed (``benchmark mirror`` re-sends).

The mirror follows the store and is idempotent: an MLflow run is found by its ``run_id`` tag;
a finished one is left alone, a half-written one (its writer was killed) is completed, so each
record is one MLflow run however often it is sent. :meth:`MLflowMirror.sync` sends every stored
record MLflow lacks (``run``, ``mirror`` and ``ui`` call it). Against a server, requests time out
after ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (default here 5 s) with ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
(default here 1) retries, and after one failure the mirror stops trying for
:data:`RETRY_AFTER_S` seconds, so a dead server costs seconds, not minutes per record. The
embedded SQLite store is written under a file lock (``mlflow.db.lock``), so processes that
create it at the same time do not wedge its schema migration.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .failpoints import failpoint
from .paths import default_home

EXPERIMENT = "biasbench"
_WARNED_MISSING = False
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}  # MLflow's own: 120 s, 7 retries, factor 2
RETRY_AFTER_S = 120.0  # after a failure, records are not sent for this long (the store keeps them)
DONE_STATUSES = ("FINISHED", "FAILED", "KILLED")  # an MLflow run in one of these is complete


def mlflow_installed() -> bool:
    """Whether ``import mlflow`` can succeed (checked without importing it)."""
    import importlib.util
    import sys
    if "mlflow" in sys.modules:
        return sys.modules["mlflow"] is not None  # None: blocked, as if not installed
    return importlib.util.find_spec("mlflow") is not None


@dataclass
class SyncResult:
    """What :meth:`MLflowMirror.sync` did: run ids sent now, already in MLflow, and failed."""

    sent: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default_home() / 'mlflow.db'}"


class MLflowMirror:
    """Mirrors records to MLflow at ``uri`` (None = :func:`default_tracking_uri`)."""

    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT):
        self.uri = uri or default_tracking_uri()
        self.experiment = experiment
        self._down_until = 0.0
        if self.uri.startswith(("http://", "https://")):
            for k, v in HTTP_DEFAULTS.items():  # the user's own settings win
                os.environ.setdefault(k, v)

    def log_record(self, record: dict[str, Any]) -> str | None:
        """Log one record (or find it already logged); returns the MLflow run id, or None (with a
        warning) if MLflow is not installed (one warning per process: the records stay in the result
        store), failed, or failed less than :data:`RETRY_AFTER_S` seconds ago."""
        if not mlflow_installed():
            global _WARNED_MISSING
            if not _WARNED_MISSING:
                _WARNED_MISSING = True
                warnings.warn("MLflow is not installed: records stay in the result store only; mirror them later "
                              "with `python -m benchmark import DIR` or `mirror` where MLflow is installed",
                              RuntimeWarning, stacklevel=2)
            return None
        if time.time() < self._down_until:
            warnings.warn(f"MLflow at {self.uri} failed moments ago: run {record['run_id']} not sent; the record is "
                          "safe in the result store and the next `run`/`mirror` sends it", RuntimeWarning, stacklevel=2)
            return None
        try:
            with self._lock():
                return self._log(record)
        except Exception as e:  # noqa: BLE001 - any MLflow failure must not lose the run
            self._down_until = time.time() + RETRY_AFTER_S
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            warnings.warn(f"MLflow at {self.uri} missed run {record['run_id']} ({type(e).__name__}: {first}); "
                          "the record is safe in the result store and the next `run`/`mirror` sends it",
                          RuntimeWarning, stacklevel=2)
            return None

    def sync(self, store) -> SyncResult:
        """Send every record of ``store`` that MLflow lacks; stop at the first failure (the rest
        count as failed, with one warning)."""
        result = SyncResult()
        records = list(store.records())
        if not records:
            return result
        try:
            with self._lock():
                present = self.mirrored_ids()
        except Exception as e:  # noqa: BLE001
            self._down_until = time.time() + RETRY_AFTER_S
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            warnings.warn(f"MLflow at {self.uri} is unreachable ({type(e).__name__}: {first}); {len(records)} "
                          "record(s) not mirrored, they are safe in the result store", RuntimeWarning, stacklevel=2)
            result.failed = [r["run_id"] for r in records]
            return result
        for i, record in enumerate(records):
            if record["run_id"] in present:
                result.present.append(record["run_id"])
            elif self._down_until > time.time():
                result.failed.extend(r["run_id"] for r in records[i:] if r["run_id"] not in present)
                break
            else:
                rid = self.log_record(record)
                (result.sent if rid else result.failed).append(record["run_id"])
        return result

    def mirrored_ids(self) -> set[str]:
        """Our run ids (tag ``run_id``) of the complete MLflow runs in the experiment."""
        client = self._client()
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            return set()
        out, token = set(), None
        while True:
            page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
            out.update(r.data.tags["run_id"] for r in page
                       if r.info.status in DONE_STATUSES and "run_id" in r.data.tags)
            token = page.token
            if not token:
                return out

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """For the embedded store: an exclusive file lock beside the database (several processes
        creating or writing it at once); a server serialises its own writes."""
        if not self.uri.startswith("sqlite:///"):
            yield
            return
        db = Path(self.uri[len("sqlite:///"):])
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_name(db.name + ".lock"), "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _client(self):
        from mlflow.tracking import MlflowClient
        return MlflowClient(tracking_uri=self.uri)

    def _log(self, record: dict[str, Any]) -> str:
        artifacts = None
        if self.uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
            db = Path(self.uri[len("sqlite:///"):])
            artifacts = (db.parent / "mlartifacts").resolve().as_uri()
        from mlflow.entities import Metric, Param, RunTag

        client = self._client()
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(self.experiment, artifact_location=artifacts)
        found = client.search_runs([exp_id], f"tags.run_id = '{record['run_id']}'", max_results=50)
        done = [r for r in found if r.info.status in DONE_STATUSES]
        if done:  # already mirrored: nothing to do
            return done[0].info.run_id
        spec = record["spec"]
        tags = {"run_id": record["run_id"], "dataset_fingerprint": record.get("dataset_fingerprint", ""),
                "method": spec["method"], "dataset": spec["dataset"], "status": record.get("status", "done"),
                "code_commit": str((record.get("code") or {}).get("commit")), "device": str(record.get("device"))}
        if found:  # a half-written run (its writer died): complete it; repeated values are ignored
            rid = found[0].info.run_id
        else:
            rid = client.create_run(exp_id, run_name=f"{spec['method']}/{spec['dataset']}/{record['run_id'][:8]}",
                                    tags=tags).info.run_id
        failpoint("mirror.mid")
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
