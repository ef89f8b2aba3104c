"""The MLflow mirror of the result store, laid out to read like the runs.

Each finished record is one MLflow run in the experiment of its suite (``biasbench/<suite>``;
records made outside a suite go to ``biasbench/adhoc``), each experiment with a description. A run
carries the training's own times (start = the record's ``created`` minus ``wall_time_s``, end =
``created``), so MLflow's Duration column is the training wall time, and its name says what it is
(``lff · colored_mnist_lff(conflicting_ratio=0.01) · seed 0``). Tags: ``suite``, ``profile``,
``seed``, ``method``, ``dataset``, ``paper_cell`` (paper-profile runs of a registered suite),
``run_id``, code commit, device, dataset fingerprint. Params: the spec flattened, one value per name
(``epochs`` is the budget actually run; the method's own ``epochs`` default is left out). Metrics:
the per-epoch history (step = epoch), so a metric's value in the run list is the last epoch's.
The record itself is attached as an artifact.

The run list opens with the key columns (Duration, ``test.acc``, ``test.conflicting_acc``,
``test.aligned_acc``, ``val.acc``, ``profile``, ``seed``, ``epochs``, ``paper_cell``): each
experiment stores that view as MLflow's shared view state (experiment tag
``mlflow.sharedViewState.<VIEW_KEY>``) and :func:`experiment_url` opens it; every other param and
metric stays one click away under "Columns".

The default tracking URI is an embedded SQLite store under the working folder (no server needed);
``$MLFLOW_TRACKING_URI`` or ``--tracking-uri`` points anywhere else. A failing MLflow never loses
a run: the record is already in the result store, and a warning names the run MLflow missed
(``benchmark mirror`` re-sends).

The mirror follows the store and is idempotent: an MLflow run is found by its ``run_id`` tag;
a finished one is left alone, a half-written one (its writer was killed) is completed, so each
record is one MLflow run however often it is sent. :meth:`MLflowMirror.sync` sends every stored
record MLflow lacks (``run``, ``sweep``, ``mirror`` and ``ui`` call it, so records made elsewhere
or before MLflow was set up appear on first use); runs of the single ``biasbench`` experiment that
earlier versions wrote are re-sent in this layout and that experiment is then deleted (MLflow's
soft delete: ``mlflow experiments restore`` brings it back). Against a server, requests time out
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
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from .failpoints import failpoint
from .paths import default_home

PREFIX = "biasbench/"  # every experiment of the mirror is named PREFIX + suite
ADHOC = PREFIX + "adhoc"  # runs made outside a suite
LEGACY_EXPERIMENT = "biasbench"  # the single experiment of earlier versions (re-sent, then deleted)
VIEW_KEY = "biasbench"  # the experiment's shared view state: tag mlflow.sharedViewState.<VIEW_KEY>
KEY_METRICS = ("test.acc", "test.conflicting_acc", "test.aligned_acc", "val.acc")
KEY_TAGS = ("profile", "seed", "paper_cell", "suite", "method", "dataset")
KEY_PARAMS = ("epochs",)
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


@dataclass(frozen=True)
class Experiment:
    """One experiment of the mirror, as :meth:`MLflowMirror.experiments` lists it."""

    name: str
    experiment_id: str
    runs: int


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default_home() / 'mlflow.db'}"


def experiment_name(record: dict[str, Any]) -> str:
    """The experiment of ``record``: ``biasbench/<its suite tag>``, or :data:`ADHOC`."""
    suite = (record.get("tags") or {}).get("suite")
    return PREFIX + suite if suite else ADHOC


def experiment_url(base: str, experiment_id: str | None) -> str:
    """The UI address that opens ``experiment_id``'s run list with the key columns (MLflow's
    "Model training" side, not the GenAI welcome page); None: the experiment list."""
    if experiment_id is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


class MLflowMirror:
    """Mirrors records to MLflow at ``uri`` (None = :func:`default_tracking_uri`)."""

    def __init__(self, uri: str | None = None):
        self.uri = uri or default_tracking_uri()
        self._down_until = 0.0
        self._experiment_ids: dict[str, str] = {}
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
            warnings.warn(f"MLflow at {self.uri} missed run {record['run_id']} ({_first_line(e)}); "
                          "the record is safe in the result store and the next `run`/`mirror` sends it",
                          RuntimeWarning, stacklevel=2)
            return None

    def sync(self, store) -> SyncResult:
        """Send every record of ``store`` that MLflow lacks; stop at the first failure (the rest
        count as failed, with one warning). With nothing to send this is one search request."""
        result = SyncResult()
        records = list(store.records())
        if not records:
            return result
        try:
            with self._lock():
                present = self.mirrored_ids()
        except Exception as e:  # noqa: BLE001
            self._down_until = time.time() + RETRY_AFTER_S
            warnings.warn(f"MLflow at {self.uri} is unreachable ({_first_line(e)}); {len(records)} "
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
        if not result.failed:
            try:
                with self._lock():
                    self._retire_legacy(present | set(result.sent))
            except Exception as e:  # noqa: BLE001 - the old experiment stays; nothing is lost
                warnings.warn(f"MLflow at {self.uri}: the old '{LEGACY_EXPERIMENT}' experiment was kept "
                              f"({_first_line(e)})", RuntimeWarning, stacklevel=2)
        return result

    def mirrored_ids(self) -> set[str]:
        """Our run ids (tag ``run_id``) of the complete MLflow runs in the mirror's experiments."""
        client = self._client()
        ids = [e.experiment_id for e in self._our_experiments(client)]
        return {r.data.tags["run_id"] for r in self._runs(client, ids)
                if r.info.status in DONE_STATUSES and "run_id" in r.data.tags}

    def experiments(self) -> list[Experiment]:
        """The mirror's experiments, the one holding the newest run first."""
        client = self._client()
        out = []
        for exp in self._our_experiments(client):
            page = client.search_runs([exp.experiment_id], max_results=1, order_by=["attributes.end_time DESC"])
            newest = page[0].info.end_time or 0 if page else 0
            n = len(self._runs(client, [exp.experiment_id]))
            out.append((newest, Experiment(exp.name, exp.experiment_id, n)))
        return [e for _, e in sorted(out, key=lambda t: -t[0])]

    @staticmethod
    def _our_experiments(client) -> list:
        from mlflow.entities import ViewType
        return client.search_experiments(view_type=ViewType.ACTIVE_ONLY, filter_string=f"name LIKE '{PREFIX}%'",
                                          max_results=1000)

    @staticmethod
    def _runs(client, experiment_ids: list[str]) -> list:
        if not experiment_ids:
            return []
        out, token = [], None
        while True:
            page = client.search_runs(experiment_ids, max_results=1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _retire_legacy(self, mirrored: set[str]) -> None:
        """Delete (softly) the single experiment of earlier versions once all its runs are
        mirrored in this layout."""
        client = self._client()
        exp = client.get_experiment_by_name(LEGACY_EXPERIMENT)
        if exp is None or exp.lifecycle_stage != "active":
            return
        old = {r.data.tags.get("run_id") for r in self._runs(client, [exp.experiment_id])}
        if old <= mirrored:
            client.delete_experiment(exp.experiment_id)

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

    def _experiment_id(self, client, name: str) -> str:
        """The id of experiment ``name``, created with its description and default view if new."""
        if name in self._experiment_ids:
            return self._experiment_ids[name]
        exp = client.get_experiment_by_name(name)
        if exp is not None and exp.lifecycle_stage != "active":
            client.restore_experiment(exp.experiment_id)
        if exp is None:
            artifacts = None
            if self.uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in the cwd
                db = Path(self.uri[len("sqlite:///"):])
                artifacts = (db.parent / "mlartifacts").resolve().as_uri() + "/" + name.replace("/", "_")
            exp_id = client.create_experiment(name, artifact_location=artifacts, tags={
                "mlflow.note.content": experiment_description(name[len(PREFIX):]),
                "mlflow.experimentKind": "custom_model_development",
                f"mlflow.sharedViewState.{VIEW_KEY}": json.dumps(default_view())})
        else:
            exp_id = exp.experiment_id
        self._experiment_ids[name] = exp_id
        return exp_id

    def _log(self, record: dict[str, Any]) -> str:
        from mlflow.entities import Metric, Param, RunTag

        client = self._client()
        exp_id = self._experiment_id(client, experiment_name(record))
        found = client.search_runs([exp_id], f"tags.run_id = '{record['run_id']}'", max_results=50)
        done = [r for r in found if r.info.status in DONE_STATUSES]
        if done:  # already mirrored: nothing to do
            return done[0].info.run_id
        start_ms, end_ms = run_times_ms(record)
        tags = run_tags(record)
        if found:  # a half-written run (its writer died): complete it; repeated values are ignored
            rid = found[0].info.run_id
        else:
            rid = client.create_run(exp_id, start_time=start_ms, run_name=run_name(record), tags=tags).info.run_id
        failpoint("mirror.mid")
        params = [Param(k, str(v)[:6000]) for k, v in run_params(record["spec"]).items()]
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in run_metrics(record, start_ms)]
        for i in range(0, max(len(params), 1), 100):
            client.log_batch(rid, params=params[i:i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(rid, metrics=metrics[i:i + 1000])
        client.log_batch(rid, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "record.json"
            p.write_text(json.dumps(record, indent=1, sort_keys=True))
            client.log_artifact(rid, str(p))
        client.set_terminated(rid, "FINISHED" if record.get("status", "done") == "done" else "FAILED", end_time=end_ms)
        return rid


def run_times_ms(record: dict[str, Any]) -> tuple[int, int]:
    """(start, end) of the training in ms since the epoch: the record's ``created`` is when it was
    stored, right after training, so start = created - wall time. Without ``created``: now."""
    created = record.get("created")
    end = datetime.fromisoformat(created).timestamp() if created else time.time()
    return int(round(1000 * (end - float(record.get("wall_time_s") or 0.0)))), int(round(1000 * end))


def run_name(record: dict[str, Any]) -> str:
    """E.g. ``lff · 0.01 conflicting ratio · seed 0``: method, the suite setting, seed, and the
    profile when it is not the paper's (``quick``); outside a suite, the dataset, seed and the run
    id's start."""
    spec, tags = record["spec"], record.get("tags") or {}
    setting = _setting(record)
    parts = [spec["method"], _describe(setting, tags["suite"]) if setting else spec["dataset"], f"seed {spec['seed']}"]
    if setting is None:
        parts.append(record["run_id"][:8])
    if tags.get("profile") and tags["profile"] != "paper":
        parts.append(str(tags["profile"]))
    return " · ".join(parts)


def run_tags(record: dict[str, Any]) -> dict[str, str]:
    """The run's tags: the record's own (suite, profile, ...), what it is, and its provenance."""
    spec, own = record["spec"], record.get("tags") or {}
    tags = {k: str(v) for k, v in own.items()}
    tags.update({"run_id": record["run_id"], "method": spec["method"], "dataset": spec["dataset"],
                 "seed": str(spec["seed"]), "suite": own.get("suite") or "adhoc",
                 "profile": own.get("profile") or "untagged",
                 "dataset_fingerprint": record.get("dataset_fingerprint", ""), "status": record.get("status", "done"),
                 "code_commit": str((record.get("code") or {}).get("commit")), "device": str(record.get("device"))})
    setting = _setting(record)
    if setting is not None and own.get("profile") == "paper":
        tags["paper_cell"] = f"{spec['method']} × {_describe(setting, own['suite'])}"
    return tags


def run_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec flattened (``data.NAME``: dataset parameters, e.g. ``data.seed`` is the dataset's
    seed, ``seed`` the training's; ``hp.NAME``: hyperparameters), one value per name: ``epochs`` is
    the budget the run trained for, so the method's ``hp.epochs`` default (which the spec
    overrides) is left out."""
    out = {k: v for k, v in spec.items() if k not in ("dataset_params", "hparams")}
    out.update({f"data.{k}": v for k, v in spec.get("dataset_params", {}).items()})
    out.update({f"hp.{k}": v for k, v in spec.get("hparams", {}).items() if k != "epochs"})
    return out


def run_metrics(record: dict[str, Any], start_ms: int) -> list[tuple[str, float, int, int]]:
    """(name, value, timestamp ms, step) of every number in the history, step = epoch, stamped at
    the end of that epoch's training (start + the epochs' ``train_time_s`` so far); the wall time
    as ``wall_time_s``. A record without history logs its final metrics at step 0."""
    out = []
    elapsed = 0.0
    for row in record.get("history", []):
        step = int(row["epoch"])
        elapsed += float(row.get("train_time_s") or 0.0)
        ts = start_ms + int(round(1000 * elapsed))
        out.extend((k, v, ts, step) for k, v in _numeric(row).items() if k != "epoch")
    if not record.get("history"):
        for split, m in (record.get("final") or {}).items():
            out.extend((f"{split}.{k}", v, start_ms, 0) for k, v in _numeric(m).items())
    if record.get("wall_time_s") is not None:
        out.append(("wall_time_s", float(record["wall_time_s"]), start_ms, 0))
    return out


def default_view() -> dict[str, Any]:
    """MLflow's run-list view state with the key columns selected (Duration is always shown)."""
    cols = ([f"metrics.`{m}`" for m in KEY_METRICS] + [f"params.`{p}`" for p in KEY_PARAMS]
            + [f"tags.`{t}`" for t in KEY_TAGS])
    return {"selectedColumns": cols, "orderByKey": "attributes.start_time", "orderByAsc": False}


def experiment_description(suite: str) -> str:
    """The experiment's description (markdown): the suite's paper artefact, or what adhoc holds."""
    common = ("One MLflow run per record of the result store. Duration = the training's wall time; a metric's "
              "value in this list is its last epoch's (per-epoch curves on each run's page); `profile=quick` runs "
              "are CPU smoke tests, never comparable with the paper.")
    if suite == "adhoc":
        return f"Runs made outside a suite (`python -m benchmark run --method ... --dataset ...`). {common}"
    from .suites import SUITES
    try:
        s = SUITES.get(suite)
    except LookupError:  # not a registered suite
        return f"Records tagged suite={suite} (not a registered suite). {common}"
    return f"{s.title} — {s.paper}. Suite `{suite}` (`python -m benchmark run --suite {suite}`). {common}"


def _setting(record: dict[str, Any]):
    """The suite :class:`~benchmark.suites.Setting` the record's spec runs, or None (no suite,
    an unregistered one, or no setting matches)."""
    suite = (record.get("tags") or {}).get("suite")
    if not suite:
        return None
    from .suites import SUITES
    try:
        settings = SUITES.get(suite).settings
    except LookupError:  # not a registered suite
        return None
    spec = record["spec"]
    matches = []
    for s in settings:
        hp = {**s.hparams.get("*", {}), **s.hparams.get(spec["method"], {})}
        if (s.dataset == spec["dataset"] and float(s.label_noise) == float(spec.get("label_noise") or 0.0)
                and all(spec["dataset_params"].get(k) == v for k, v in s.params.items())
                and all(spec["hparams"].get(k) == v for k, v in hp.items() if k in spec["hparams"])
                and s.backbone in (None, spec.get("backbone"))):
            matches.append((len(s.params) + len(hp) + (s.backbone is not None), s))
    return max(matches, key=lambda t: t[0])[1] if matches else None


def _describe(setting, suite: str) -> str:
    """A setting in few characters, value first (the run list cuts names at ~25): its label, else its
    parameters (``0.01 conflicting ratio``) and label noise, led by the dataset where the suite has
    several (or the setting has no parameters), so that no two settings of a suite read the same."""
    if setting.label:
        return setting.label
    from .suites import SUITES
    parts = [f"{v} {k.replace('_', ' ')}" for k, v in setting.params.items()]
    if setting.label_noise:
        parts.append(f"{setting.label_noise} label noise")
    if not parts or len({s.dataset for s in SUITES.get(suite).settings}) > 1:
        parts.insert(0, setting.dataset)
    return ", ".join(parts)


def _first_line(e: Exception) -> str:
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}"


def _numeric(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten nested dicts of numbers into ``a.b`` keys; drops lists and NaN. Values keep 7
    significant digits (float32's precision, which the metrics are computed in), so the run list
    shows 0.7726, not 0.77259999."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_numeric(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(float(v)):
            out[key] = float(f"{float(v):.7g}")
    return out
