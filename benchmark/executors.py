"""Executors: run a plan's specs on local worker processes or on a SLURM cluster (submitit).

Both share one unit of work, :func:`execute`: claim the run id (see :mod:`benchmark.claims`),
run it with the engine (which resumes from ``<home>/checkpoints/<run_id>.pt`` when a previous
attempt was interrupted), store the record, release the claim. A run that raises leaves a failure
record with its traceback in ``<store>/_failures/`` and is retried up to ``retries`` times; the
other runs go on.

- :class:`LocalExecutor`: one long-lived worker process per *slot*. With GPUs, slots = GPUs ×
  ``jobs_per_gpu`` and each worker sees only its GPU (``CUDA_VISIBLE_DEVICES``), so several small
  models share a GPU; without, ``workers`` CPU processes with ``cores // workers`` torch threads
  each. Workers die with their parent (``PR_SET_PDEATHSIG``), so killing ``run --all`` leaves no
  orphan training; the rerun finds the dead owner's claims stale, skips what was stored and resumes
  the rest from their epoch checkpoints. The parent draws an overall progress bar (runs done /
  total, failures, ETA) and one bar per slot from the workers' epoch reports, and mirrors finished
  records to MLflow (one writer for the tracking store) after it has handed the free workers their
  next runs, so a slow tracking store never keeps a worker idle. Workers live for the whole
  executor run (one start-up each, their fork server started early by :func:`prestart`).
- :class:`SlurmExecutor`: one submitit job per spec, submitted as array jobs
  (``slurm_array_parallelism``), with partition, time limit and GPUs per job. The job callable is
  ``submitit.helpers.Checkpointable``: on preemption or time-out submitit requeues it and the
  engine resumes from the run's last epoch checkpoint. ``cluster="local"`` runs the same
  submission path with submitit's local executor (tests, machines without SLURM).
"""
from __future__ import annotations

import importlib
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .claims import ClaimBoard

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class Task:
    """One run handed to a worker: the spec, the tags its record gets, a label for messages."""

    spec: Any  # benchmark.spec.RunSpec
    tags: dict
    label: str

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @classmethod
    def from_planned(cls, run) -> "Task":
        return cls(run.spec, run.tags, f"{','.join(run.suites)}: {run.describe()}")


@dataclass(frozen=True)
class Settings:
    """Where runs read and write, shared by every worker (picklable).

    Attributes:
        store_root: the result store folder (claims and failure records live inside it).
        home: working folder (dataset cache, checkpoints, models).
        data_root: dataset files (None: ``$BENCHMARK_DATA_ROOT`` etc.).
        device: "cpu", "cuda", "cuda:1" or None (a worker picks the device of its slot).
        plugin_modules: modules to import in a worker before running (plug-ins registered by
            import rather than entry points, e.g. in tests).
        claim_ttl, heartbeat_s: see :mod:`benchmark.claims`.
    """

    store_root: str
    home: str
    data_root: str | None = None
    device: str | None = None
    plugin_modules: tuple[str, ...] = ()
    claim_ttl: float | None = None
    heartbeat_s: float = 30.0


@dataclass
class Outcome:
    """What happened to one task."""

    run_id: str
    status: str  # "done", "cached" (stored meanwhile), "claimed" (running elsewhere), "failed", "left" (not started)
    label: str = ""
    error: str = ""
    traceback: str = ""
    wall_s: float = 0.0
    resumed_from: int | None = None
    test_acc: float | None = None
    holder: str = ""

    def line(self) -> str:
        if self.status == "done":
            acc = f"test acc {self.test_acc:.4f}" if self.test_acc is not None else "no test split"
            resumed = f", resumed from epoch {self.resumed_from}" if self.resumed_from else ""
            return f"done    {self.run_id}  {self.label}: {acc} in {self.wall_s:.1f}s{resumed}"
        if self.status == "cached":
            return f"cached  {self.run_id}  {self.label}: stored meanwhile by another process"
        if self.status == "claimed":
            return f"skip    {self.run_id}  {self.label}: running elsewhere ({self.holder})"
        if self.status == "left":
            return f"left    {self.run_id}  {self.label}: {self.error}"
        return f"FAILED  {self.run_id}  {self.label}: {self.error}"


@dataclass
class Summary:
    """The outcomes of an executor run (final ones: a retried run counts once)."""

    outcomes: list[Outcome] = field(default_factory=list)
    attempts: int = 0
    wall_s: float = 0.0
    failure_dir: str = ""

    def by_status(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[Outcome]:
        return self.by_status("failed")

    def render(self) -> str:
        n = {s: len(self.by_status(s)) for s in ("done", "cached", "claimed", "failed", "left")}
        lines = [f"{len(self.outcomes)} run(s) in {self.wall_s:.0f}s: {n['done']} done, {n['failed']} failed, "
                 f"{n['claimed']} running elsewhere, {n['cached']} stored meanwhile"
                 + (f", {n['left']} left unstarted (time budget)" if n["left"] else "")]
        if self.failed:
            lines.append(f"failed runs (tracebacks in {self.failure_dir}/<run_id>.json; "
                         "`python -m benchmark status` lists them):")
            lines.extend(f"  {o.run_id}  {o.label}: {o.error}" for o in self.failed)
        if n["claimed"]:
            lines.append("runs held by another process are not waited for; rerun later to pick up what they leave")
        return "\n".join(lines)


# --- the unit of work -------------------------------------------------------------------------

def checkpoint_epoch(spec, home: str | Path) -> int | None:
    """The last finished epoch in the run's checkpoint, or None without a checkpoint."""
    from .engine import checkpoint_path
    path = checkpoint_path(spec, Path(home))
    if not path.is_file():
        return None
    try:
        import torch
        return int(torch.load(path, map_location="cpu", weights_only=True).get("epoch", 0))
    except Exception:  # noqa: BLE001 - a damaged checkpoint is the engine's business
        return None


def execute(task: Task, settings: Settings, device: str | None = None,
            on_epoch: Callable[[int, dict], None] | None = None, claim_info: dict | None = None) -> Outcome:
    """Run one task under a claim on its run id; never raises for a failing run.

    Returns an :class:`Outcome`: "done", "cached" (the store had it), "claimed" (a live process
    holds the claim; nothing was run) or "failed" (the exception and traceback, also written to
    the store's failure records). ``KeyboardInterrupt``/``SystemExit`` (e.g. a SLURM preemption)
    propagate after the claim is released; the run resumes from its checkpoint next time.
    """
    from .engine import format_exception, run
    from .planner import build_once
    from .store import RecordExists, ResultStore

    spec = task.spec
    store = ResultStore(settings.store_root)
    out = Outcome(spec.run_id, "cached", task.label)
    if store.has(spec.run_id):
        return out
    board = ClaimBoard(settings.store_root, ttl=settings.claim_ttl)
    claim = board.acquire(spec.run_id, label=task.label, **(claim_info or {}))
    if claim is None:
        held = board.read(spec.run_id) or {}
        out.status, out.holder = "claimed", f"{held.get('host', '?')} pid {held.get('pid', '?')}"
        return out
    try:
        claim.start_heartbeat(settings.heartbeat_s)
        if store.has(spec.run_id):  # finished between our look and our claim
            return out
        out.resumed_from = checkpoint_epoch(spec, settings.home)
        t0 = time.time()
        try:
            build_once(spec.dataset, spec.dataset_params, settings.data_root, Path(settings.home))
            result = run(spec, store=store, data_root=settings.data_root, device=device or settings.device,
                         home=Path(settings.home), mirror=None, progress=False, tags=task.tags, on_epoch=on_epoch)
        except RecordExists:
            return out
        except Exception as e:  # noqa: BLE001 - every failure becomes a failure record
            out.status, out.error, out.traceback = "failed", f"{type(e).__name__}: {e}", format_exception(e)
            out.wall_s = time.time() - t0
            board.record_failure(spec.run_id, spec.to_dict(), task.tags, out.error, out.traceback)
            return out
        board.clear_failure(spec.run_id)
        rec = result.record
        out.status, out.wall_s = ("cached" if result.cached else "done"), time.time() - t0
        out.test_acc = (rec.get("final") or {}).get("test", {}).get("acc")
        return out
    finally:
        claim.release()


STALE_TMP_S = 3600.0  # a temporary file this old belongs to a write that was killed


def tidy_finished(store_root: str | Path, home: str | Path) -> int:
    """Remove what killed processes leave behind: for stored runs, the stale claim, checkpoint and
    failure record (a process killed right after storing); and temporary files of interrupted
    writes (records, checkpoints, dataset caches) older than :data:`STALE_TMP_S`. Returns how
    many files went."""
    from .store import ResultStore
    store, board = ResultStore(store_root), ClaimBoard(store_root)
    gone = 0
    now = time.time()
    home = Path(home)
    for tmp in [*Path(store_root).glob(".tmp-*.json"), *(home / "checkpoints").glob(".*.tmp"),
                *(home / "cache").glob("*/.*.tmp")]:
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink()
                gone += 1
        except FileNotFoundError:
            pass
    for info in board.claims():
        if info["stale"] and store.has(info["run_id"]):
            gone += board.break_stale(info["run_id"], info)
    for ckpt in (Path(home) / "checkpoints").glob("*.pt"):
        if store.has(ckpt.stem):
            ckpt.unlink(missing_ok=True)
            gone += 1
    for failure in board.failures():
        if store.has(failure["run_id"]):
            board.clear_failure(failure["run_id"])
            gone += 1
    return gone


def plugin_modules(specs: Iterable) -> tuple[str, ...]:
    """Modules defining the methods/datasets of ``specs`` that entry points do not provide, so a
    fresh worker process imports them (plug-ins registered by a plain import)."""
    from importlib import metadata

    from .registry import DATASETS, METHODS
    declared = {ep.value.split(":")[0] for g in (METHODS.group, DATASETS.group) for ep in metadata.entry_points(group=g)}
    mods = set()
    for spec in specs:
        for cls in (METHODS.get(spec.method), DATASETS.get(spec.dataset)):
            if cls.__module__ not in declared and cls.__module__ != "__main__":
                mods.add(cls.__module__)
    return tuple(sorted(mods))


def _import_plugins(modules: Iterable[str]) -> None:
    for m in modules:
        importlib.import_module(m)


# --- local slots ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    """A worker's place: its device and, on GPUs, the one GPU it sees.

    Attributes:
        index: slot number (also its progress-bar row).
        device: "cuda" or "cpu", as the worker names it.
        gpu: the GPU id as the parent sees it (an entry of the parent's ``CUDA_VISIBLE_DEVICES`` or
            an index), exported to the worker as its ``CUDA_VISIBLE_DEVICES``; None on CPU.
        threads: torch intra-op threads for the worker.
    """

    index: int
    device: str
    gpu: str | None
    threads: int

    def env(self) -> dict[str, str]:
        """Environment variables of this slot's worker: it sees only its GPU."""
        return {} if self.gpu is None else {"CUDA_VISIBLE_DEVICES": self.gpu}


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` entries (as many as torch sees),
    else ``0 .. device_count-1``; empty without CUDA."""
    try:
        import torch
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        count = 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [x.strip() for x in env.split(",") if x.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def assign_slots(gpus: list[str], *, device: str | None = None, jobs_per_gpu: int = 1, workers: int | None = None,
                 cpus: int | None = None) -> list[Slot]:
    """Slots for the local executor.

    Args:
        gpus: GPU ids available (see :func:`visible_gpus`; tests pass a simulated list).
        device: "cpu" forces CPU workers; "cuda:N" restricts to the N-th GPU of ``gpus``;
            "cuda"/None use every GPU when there is one.
        jobs_per_gpu: workers sharing each GPU (small models leave a GPU mostly idle).
        workers: with GPUs, an upper bound on the slots (filled GPU by GPU round-robin); without,
            the number of CPU workers (default 1).
        cpus: CPU cores to share out as torch threads (default: this process's affinity).
    """
    cpus = cpus or cpu_count()
    if jobs_per_gpu < 1:
        raise ValueError(f"jobs_per_gpu must be >= 1, got {jobs_per_gpu}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if device and device.startswith("cuda") and not gpus:
        raise ValueError(f"--device {device} asked for, but no CUDA device is visible")
    if device and device.startswith("cuda:"):
        index = int(device.split(":", 1)[1])
        if index >= len(gpus):
            raise ValueError(f"--device {device}: only {len(gpus)} GPU(s) visible ({', '.join(gpus)})")
        gpus = [gpus[index]]
    if device == "cpu" or not gpus:
        n = workers or 1
        return [Slot(i, "cpu", None, max(1, cpus // n)) for i in range(n)]
    order = [g for _ in range(jobs_per_gpu) for g in gpus]  # round-robin: GPU 0, 1, ..., 0, 1, ...
    if workers is not None:
        order = order[:workers]
    threads = max(1, cpus // len(order))
    return [Slot(i, "cuda", g, threads) for i, g in enumerate(order)]


def _die_with_parent(scheduler_pid: int) -> None:
    """End this worker when the scheduler dies, even by SIGKILL, so no orphan keeps training.

    The worker's parent is multiprocessing's fork server, which exits when the scheduler does; the
    kernel then kills the worker (``PR_SET_PDEATHSIG``, Linux). A thread also polls the
    scheduler's pid, for systems without prctl.
    """
    import signal
    import threading
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch():
        while True:
            try:
                os.kill(scheduler_pid, 0)
                with open(f"/proc/{scheduler_pid}/stat") as fh:  # dead but not yet reaped by its parent
                    if fh.read().rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
                        os._exit(1)
            except ProcessLookupError:
                os._exit(1)
            except (PermissionError, OSError, IndexError):
                pass
            time.sleep(1.0)
    threading.Thread(target=watch, name="watch-scheduler", daemon=True).start()


def _worker_main(slot: Slot, settings: Settings, conn, parent_pid: int) -> None:
    """A local worker: pin the device, then run tasks from ``conn`` until told to stop."""
    _die_with_parent(parent_pid)
    os.environ.update(slot.env())  # before any CUDA call in this process
    import torch
    torch.set_num_threads(slot.threads)
    _import_plugins(settings.plugin_modules)
    device = slot.device  # "cuda" is the one GPU this worker sees
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the scheduler is gone: end quietly (its death ends us anyway)
            return
        if task is None:
            return

        def on_epoch(epoch, row, _task=task):
            test = row.get("test") or {}
            conn.send(("epoch", _task.run_id, epoch, _task.spec.epochs, test.get("acc")))

        outcome = execute(task, settings, device=device, on_epoch=on_epoch,
                          claim_info={"executor": "local", "slot": slot.index})
        try:
            conn.send(("done", outcome))
        except (BrokenPipeError, OSError):
            return


class _Bars:
    """The parent's progress display: on a terminal, an overall tqdm bar (runs done / total,
    failures, ETA) and one bar per slot (epochs of its current run); otherwise (logs, CI) one
    numbered line per finished run with the running ETA."""

    def __init__(self, total: int, slots: list[Slot], enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.total, self.finished, self.failed, self.t0 = total, 0, 0, time.time()
        self.overall = None
        self.slot_bars: dict[int, Any] = {}
        self.names: dict[int, str] = {}
        if self.enabled:
            from tqdm.auto import tqdm
            self._tqdm = tqdm
            self.overall = tqdm(total=total, desc="runs", unit="run", position=0, dynamic_ncols=True)
            for s in slots:
                self.names[s.index] = f"slot {s.index} ({s.device}{'' if s.gpu is None else ':' + s.gpu})"
                self.slot_bars[s.index] = tqdm(total=1, position=s.index + 1, leave=False, dynamic_ncols=True,
                                               desc=self.names[s.index], unit="ep")

    def write(self, line: str) -> None:
        if self.overall is not None:
            self._tqdm.write(line)
        else:
            print(line, flush=True)

    def start(self, slot: int, task: Task) -> None:
        bar = self.slot_bars.get(slot)
        if bar is not None:
            bar.reset(total=task.spec.epochs)
            bar.set_description(f"{self.names[slot]} {task.label[-60:]}", refresh=True)

    def epoch(self, slot: int, epoch: int, epochs: int, acc) -> None:
        bar = self.slot_bars.get(slot)
        if bar is not None:
            bar.n = epoch
            bar.set_postfix_str(f"test acc {acc:.3f}" if acc is not None else "", refresh=True)

    def finish(self, outcome: Outcome, final: bool) -> None:
        self.finished += final
        self.failed += final and outcome.status == "failed"
        if self.overall is not None:
            self.write(outcome.line())
            if final:
                self.overall.update(1)
                self.overall.set_postfix(failed=self.failed)
            return
        elapsed = time.time() - self.t0
        eta = elapsed / max(self.finished, 1) * (self.total - self.finished)
        self.write(f"[{self.finished}/{self.total}, {self.failed} failed, ETA {eta / 60:.1f} min] {outcome.line()}")

    def close(self) -> None:
        for bar in self.slot_bars.values():
            bar.close()
        if self.overall is not None:
            self.overall.close()


def prestart() -> None:
    """Start the workers' fork server now, so that its imports (torch and the engine: seconds) run
    while the caller still plans; the first worker then forks at once. The server exits with the
    caller."""
    from multiprocessing import forkserver
    _context()
    forkserver.ensure_running()


def _context():
    """Workers come from multiprocessing's fork server: it imports torch and the engine once, then
    forks each worker at once (a respawn after a crash too); it never touches CUDA or OpenMP, so
    forking it is safe, and it exits with the scheduler, taking the workers with it."""
    import multiprocessing as mp
    ctx = mp.get_context("forkserver")
    # torch._dynamo: imported by the first optimizer a worker builds (3 CPU-seconds), so import it once here
    ctx.set_forkserver_preload(["torch", "torch._dynamo", "torch.optim", "benchmark.engine", "benchmark.executors"])
    return ctx


class LocalExecutor:
    """Worker processes on this machine (see the module docstring).

    Args:
        slots: from :func:`assign_slots`.
        retries: extra attempts for a run that raises (or whose worker dies).
        progress: draw progress bars (else one line per finished run).
        admit: asked before each task starts; False leaves it unstarted (outcome "left"), e.g.
            a time budget that the run would overrun (see :func:`benchmark.budget.admission`).
    """

    def __init__(self, slots: list[Slot], retries: int = 1, progress: bool = True,
                 admit: Callable[[Task], bool] | None = None):
        if not slots:
            raise ValueError("no slots to run on")
        self.slots, self.retries, self.progress, self.admit = slots, retries, progress, admit

    def run(self, tasks: list[Task], settings: Settings, mirror=None) -> Summary:
        from multiprocessing.connection import wait

        from .store import ResultStore

        t0 = time.time()
        board = ClaimBoard(settings.store_root)
        summary = Summary(failure_dir=str(board.failures_dir))
        if not tasks:
            return summary
        store = ResultStore(settings.store_root)
        for t in [t for t in tasks if store.has(t.run_id)]:  # stored since planning: no worker needed
            summary.outcomes.append(Outcome(t.run_id, "cached", t.label))
        tasks = [t for t in tasks if not store.has(t.run_id)]
        if not tasks:
            summary.wall_s = time.time() - t0
            return summary
        ctx = _context()
        queue = deque(tasks)
        attempts: dict[str, int] = {}
        bars = _Bars(len(tasks), self.slots[:len(tasks)], self.progress)
        workers: dict[int, dict] = {}
        unmirrored: deque[str] = deque()

        def spawn(slot: Slot) -> None:
            parent_conn, child_conn = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(slot, settings, child_conn, os.getpid()),
                               daemon=True, name=f"biasbench-slot{slot.index}")
            proc.start()
            child_conn.close()
            workers[slot.index] = {"slot": slot, "proc": proc, "conn": parent_conn, "task": None, "stopped": False}

        def settle(task: Task, outcome: Outcome) -> None:
            summary.attempts += 1
            if outcome.status == "failed":
                attempts[task.run_id] = attempts.get(task.run_id, 0) + 1
                if attempts[task.run_id] <= self.retries:
                    bars.write(f"retry   {task.run_id}  {task.label}: attempt {attempts[task.run_id] + 1} "
                               f"of {self.retries + 1} after {outcome.error}")
                    queue.append(task)
                    return
            summary.outcomes.append(outcome)
            bars.finish(outcome, final=True)
            if outcome.status == "done" and mirror is not None:
                unmirrored.append(task.run_id)  # sent once the free workers have their next task

        def stop_idle() -> None:
            for w in workers.values():
                try:
                    if w["proc"].is_alive() and w["task"] is None and not w["stopped"]:
                        w["conn"].send(None)
                        w["stopped"] = True
                except (OSError, BrokenPipeError):
                    pass

        def send_to_mirror(busy: list[dict]) -> None:
            """Mirror finished records one at a time while no busy worker has something to report."""
            watched = [w["conn"] for w in busy] + [w["proc"].sentinel for w in busy]
            while unmirrored and not (watched and wait(watched, timeout=0)):
                mirror.log_record(store.get(unmirrored.popleft()))

        try:
            for slot in self.slots[:len(tasks)]:
                spawn(slot)
            while queue or any(w["task"] is not None for w in workers.values()):
                for w in list(workers.values()):
                    while w["task"] is None and queue and self.admit is not None and not self.admit(queue[0]):
                        left = queue.popleft()
                        summary.outcomes.append(Outcome(left.run_id, "left", left.label,
                                                        error="not started: it would not finish in the time left"))
                        bars.write(summary.outcomes[-1].line())
                    if w["task"] is None and queue:
                        if not w["proc"].is_alive():
                            spawn(w["slot"])
                            w = workers[w["slot"].index]
                        w["task"] = queue.popleft()
                        w["conn"].send(w["task"])
                        bars.start(w["slot"].index, w["task"])
                busy = [w for w in workers.values() if w["task"] is not None]
                send_to_mirror(busy)  # the scheduler's MLflow writes wait here, off the workers' path
                if not busy:  # every remaining task was left unstarted
                    continue
                ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy])
                for w in busy:
                    task = w["task"]
                    if w["conn"] in ready:
                        try:
                            msg = w["conn"].recv()
                        except (EOFError, OSError):
                            msg = None
                        if msg is not None and msg[0] == "epoch":
                            bars.epoch(w["slot"].index, *msg[2:])
                            continue
                        if msg is not None and msg[0] == "done":
                            w["task"] = None
                            settle(task, msg[1])
                            continue
                        w["proc"].join(timeout=10)  # end of file: the worker is exiting
                    if not w["proc"].is_alive():
                        w["proc"].join()
                        code = w["proc"].exitcode
                        error = f"worker process died (exit code {code}) while running it"
                        board.record_failure(task.run_id, task.spec.to_dict(), task.tags, error, "")
                        w["task"] = None  # a fresh worker takes the slot's next task
                        settle(task, Outcome(task.run_id, "failed", task.label, error=error))
            stop_idle()  # the workers exit while the last records are mirrored
            send_to_mirror([])
        finally:
            stop_idle()
            for w in workers.values():
                w["proc"].join(timeout=5 if w["task"] is None else 0)
                if w["proc"].is_alive():
                    w["proc"].terminate()
                    w["proc"].join(timeout=5)
            bars.close()
        summary.wall_s = time.time() - t0
        return summary


# --- SLURM through submitit -------------------------------------------------------------------

try:
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is a dependency; keep local runs working without it
    _Checkpointable = object


class SpecJob(_Checkpointable):
    """The callable a SLURM job runs: :func:`execute` on one task.

    Being ``Checkpointable``, submitit requeues it on preemption or time-out with the same
    arguments; the engine then resumes the run from its last epoch checkpoint.
    """

    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self, task: Task) -> Outcome:
        import torch
        torch.set_num_threads(max(1, cpu_count()))
        _import_plugins(self.settings.plugin_modules)
        device = self.settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        info = {"executor": "slurm", "job_id": os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")}
        return execute(task, self.settings, device=device, claim_info=info)


class SlurmExecutor:
    """One submitit job per run, submitted as array jobs.

    Args:
        folder: where submitit keeps scripts, logs and pickles (on a shared file system).
        partition: SLURM partition (None: the cluster default).
        timeout_min: the time limit of one job (a run longer than this is requeued and resumes
            from its checkpoint).
        gpus_per_job: GPUs per job (0 for CPU jobs).
        cpus_per_task: CPU cores per job.
        mem_gb: memory per job (None: the cluster default).
        array_parallelism: how many jobs of an array run at once.
        retries: resubmissions of a run whose job failed.
        cluster: None (auto: SLURM if available), "slurm", or "local" (submitit's local executor:
            the same code path on this machine).
        poll_s: seconds between status polls.
        progress: draw an overall progress bar.
    """

    def __init__(self, folder: str | Path, *, partition: str | None = None, timeout_min: int = 240,
                 gpus_per_job: int = 1, cpus_per_task: int | None = None, mem_gb: float | None = None,
                 array_parallelism: int = 32, retries: int = 1, cluster: str | None = None,
                 poll_s: float | None = None, progress: bool = True):
        self.folder = Path(folder)
        self.partition, self.timeout_min, self.gpus_per_job = partition, timeout_min, gpus_per_job
        self.cpus_per_task, self.mem_gb, self.array_parallelism = cpus_per_task, mem_gb, array_parallelism
        self.retries, self.cluster, self.progress = retries, cluster, progress
        self.poll_s = poll_s if poll_s is not None else (0.5 if cluster == "local" else 15.0)

    def executor(self):
        import submitit
        ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=self.cluster)
        params: dict[str, Any] = {"timeout_min": int(self.timeout_min), "gpus_per_node": int(self.gpus_per_job),
                                  "nodes": 1, "tasks_per_node": 1, "name": "biasbench",
                                  "slurm_array_parallelism": int(self.array_parallelism)}
        if self.cpus_per_task:
            params["cpus_per_task"] = int(self.cpus_per_task)
        if self.mem_gb:
            params["mem_gb"] = float(self.mem_gb)
        if self.partition:
            params["slurm_partition"] = self.partition
        ex.update_parameters(**params)
        return ex

    def submit(self, tasks: list[Task], settings: Settings) -> list:
        """Submit ``tasks`` as one array; returns the submitit jobs (in the order of ``tasks``)."""
        return self.executor().map_array(SpecJob(settings), tasks)

    def run(self, tasks: list[Task], settings: Settings, mirror=None) -> Summary:
        t0 = time.time()
        board = ClaimBoard(settings.store_root)
        summary = Summary(failure_dir=str(board.failures_dir))
        if not tasks:
            return summary
        bars = _Bars(len(tasks), [], self.progress)
        attempts: dict[str, int] = {}
        pending = {job.job_id: (job, task) for job, task in zip(self.submit(tasks, settings), tasks)}
        bars.write(f"submitted {len(tasks)} job(s) to {self.cluster or 'the cluster'}; logs in {self.folder}")
        try:
            while pending:
                resubmit: list[Task] = []
                for job_id, (job, task) in list(pending.items()):
                    if not job.done():
                        continue
                    del pending[job_id]
                    try:
                        outcome = job.result()
                    except Exception as e:  # noqa: BLE001 - the job died outside execute()
                        error = f"job {job_id} failed: {type(e).__name__}: {str(e).strip().splitlines()[-1:] or ''}"
                        board.record_failure(task.run_id, task.spec.to_dict(), task.tags, error, str(e))
                        outcome = Outcome(task.run_id, "failed", task.label, error=error)
                    summary.attempts += 1
                    if outcome.status == "failed":
                        attempts[task.run_id] = attempts.get(task.run_id, 0) + 1
                        if attempts[task.run_id] <= self.retries:
                            bars.write(f"retry   {task.run_id}  {task.label}: after {outcome.error}")
                            resubmit.append(task)
                            continue
                    summary.outcomes.append(outcome)
                    bars.finish(outcome, final=True)
                    if outcome.status == "done" and mirror is not None:
                        from .store import ResultStore
                        mirror.log_record(ResultStore(settings.store_root).get(task.run_id))
                if resubmit:
                    pending.update({job.job_id: (job, task) for job, task in zip(self.submit(resubmit, settings), resubmit)})
                if pending:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            bars.write(f"stopped waiting; {len(pending)} job(s) keep running on the cluster (rerun later: "
                       "finished runs are skipped, running ones are claimed)")
            raise
        finally:
            bars.close()
        summary.wall_s = time.time() - t0
        return summary


def make_settings(store_root, home, data_root=None, device=None, specs: Iterable = ()) -> Settings:
    """:class:`Settings` with absolute paths (the data root resolved here, not from a worker's
    environment) and the plug-in modules ``specs`` need."""
    from .data import resolve_data_root
    return Settings(store_root=str(Path(store_root).resolve()), home=str(Path(home).resolve()),
                    data_root=str(resolve_data_root(data_root)), device=device,
                    plugin_modules=plugin_modules(specs))


def print_summary(summary: Summary, file=None) -> None:
    print(summary.render(), file=file or sys.stdout, flush=True)
