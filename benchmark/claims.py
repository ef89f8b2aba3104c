"""Per-run claims, so that two schedulers on one result store never run the same spec at once.

A claim is a small JSON file ``<store>/_claims/<run_id>.json``, written to a temporary file and
hard-linked into place (the link fails if the claim exists: atomic like ``O_EXCL``, also on NFS,
and never seen half-written), holding the owner's host, pid, the pid's start
time, a random token and a heartbeat time that the owner refreshes while it runs. A claim whose
owner is gone is *stale* and may be taken over:

- same host and the pid is not running (or runs a different process: the start time differs), or
- the heartbeat is older than ``ttl`` seconds (a holder on another host that crashed or hangs).

Taking over renames the stale file to a unique name first, then checks the renamed file is the
one judged stale (so two takers cannot both win), then links a fresh claim.
The result store itself is the last line of defence: a record is linked into place and never
overwritten, so even a lost race yields exactly one record per run id.

Failure records (a run that raised after its retries) live beside the claims, in
``<store>/_failures/<run_id>.json``; unlike finished records they are mutable and are removed when
the run later succeeds.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLAIM_TTL_ENV = "BENCHMARK_CLAIM_TTL"
DEFAULT_TTL = 600.0  # seconds without a heartbeat before a claim from another host is stale
HEARTBEAT_EVERY = 30.0


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, ...), None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pid_start(pid: int) -> str | None:
    """The start time of ``pid`` (field 22 of /proc/<pid>/stat), None where /proc is absent."""
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    if stat:
        if stat[0] in ("Z", "X"):
            return False  # a zombie: dead, not yet reaped (containers whose init does not reap)
        if start is not None and len(stat) > 19 and stat[19] != start:
            return False  # the pid was reused by another process
    return True


@dataclass
class Claim:
    """A claim this process holds (returned by :meth:`ClaimBoard.acquire`)."""

    board: "ClaimBoard"
    run_id: str
    token: str
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self.board.path(self.run_id)

    def heartbeat(self) -> bool:
        """Refresh the heartbeat; False if the claim is no longer ours (taken over as stale)."""
        info = self.board.read(self.run_id)
        if not info or info.get("token") != self.token:
            return False
        info["heartbeat"] = time.time()
        self.board._write_replace(self.path, info)
        return True

    def start_heartbeat(self, every: float = HEARTBEAT_EVERY) -> "Claim":
        """Refresh the heartbeat from a daemon thread until :meth:`release`."""
        self._stop = threading.Event()

        def beat():
            while not self._stop.wait(every):
                try:
                    self.heartbeat()
                except OSError:
                    pass

        self._thread = threading.Thread(target=beat, name=f"claim-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Remove the claim if it is still ours."""
        if self._stop is not None:
            self._stop.set()
        info = self.board.read(self.run_id)
        if info and info.get("token") == self.token:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class ClaimBoard:
    """The claims (and failure records) of one result store.

    Args:
        store_root: the result store folder.
        ttl: seconds without a heartbeat after which another host's claim is stale (default
            ``$BENCHMARK_CLAIM_TTL`` or 600).
    """

    def __init__(self, store_root: str | Path, ttl: float | None = None):
        self.root = Path(store_root).resolve()
        self.dir = self.root / "_claims"
        self.failures_dir = self.root / "_failures"
        self.ttl = float(ttl if ttl is not None else os.environ.get(CLAIM_TTL_ENV, DEFAULT_TTL))
        self.host = socket.gethostname()

    def path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.json"

    def read(self, run_id: str) -> dict[str, Any] | None:
        return _read_json(self.path(run_id))

    def is_stale(self, info: dict[str, Any], now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if now - float(info.get("heartbeat", 0)) > self.ttl:
            return True
        if info.get("host") == self.host:
            return not _pid_alive(int(info.get("pid", -1)), info.get("pid_start"))
        return False

    def acquire(self, run_id: str, **extra) -> Claim | None:
        """Claim ``run_id``; None if a live owner holds it. Stale claims are taken over."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            token = uuid.uuid4().hex
            now = time.time()
            info = {"run_id": run_id, "host": self.host, "pid": os.getpid(), "pid_start": _pid_start(os.getpid()),
                    "token": token, "started": now, "heartbeat": now, **extra}
            if self._create(self.path(run_id), info):
                return Claim(self, run_id, token)
            held = self.read(run_id)
            if held is None:
                if self.path(run_id).exists():  # unreadable (claims are written whole): damaged, take it over
                    self._break(run_id, {})
                continue  # or released in between: try again
            if not self.is_stale(held):
                return None
            self._break(run_id, held)
        return None

    def _create(self, path: Path, info: dict) -> bool:
        """Write ``info`` to a temporary file and link it to ``path`` (fails if ``path`` exists),
        so a claim is never seen half-written."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh)
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def break_stale(self, run_id: str, stale: dict[str, Any]) -> bool:
        """Remove the claim ``stale`` (as read) if it is still there and still stale."""
        held = self.read(run_id)
        if held is None or held.get("token") != stale.get("token") or not self.is_stale(held):
            return False
        self._break(run_id, held)
        return True

    def _break(self, run_id: str, stale: dict[str, Any]) -> None:
        """Remove a stale claim, unless another process replaced it meanwhile."""
        path = self.path(run_id)
        tomb = path.with_name(f".{run_id}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(path, tomb)
        except FileNotFoundError:
            return
        moved = _read_json(tomb)
        if moved is not None and moved.get("token") != stale.get("token"):
            try:  # we moved a fresh claim someone made in between: put it back
                os.link(tomb, path)
            except FileExistsError:
                pass
        os.unlink(tomb)

    def claims(self) -> list[dict[str, Any]]:
        """Every claim on the board, each with ``stale`` set."""
        out = []
        now = time.time()
        for p in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            info = _read_json(p)
            if info and isinstance(info.get("run_id"), str):
                info["stale"] = self.is_stale(info, now)
                out.append(info)
        return out

    # --- failure records ---------------------------------------------------------------------

    def failure_path(self, run_id: str) -> Path:
        return self.failures_dir / f"{run_id}.json"

    def record_failure(self, run_id: str, spec: dict, tags: dict, error: str, traceback: str,
                       attempt: int | None = None) -> Path:
        """Write (or update) the failure record of ``run_id``: spec, tags, attempts, last traceback."""
        old = _read_json(self.failure_path(run_id)) or {}
        attempts = int(old.get("attempts", 0)) + 1 if attempt is None else attempt
        info = {"run_id": run_id, "status": "failed", "spec": spec, "tags": tags, "error": error,
                "traceback": traceback, "attempts": attempts, "host": self.host, "pid": os.getpid(),
                "time": time.time(),
                "errors": (old.get("errors") or [])[-4:] + [error]}
        self.failures_dir.mkdir(parents=True, exist_ok=True)
        self._write_replace(self.failure_path(run_id), info)
        return self.failure_path(run_id)

    def clear_failure(self, run_id: str) -> None:
        try:
            os.unlink(self.failure_path(run_id))
        except FileNotFoundError:
            pass

    def failures(self) -> list[dict[str, Any]]:
        if not self.failures_dir.is_dir():
            return []
        return [f for p in sorted(self.failures_dir.glob("*.json"))
                if (f := _read_json(p)) and isinstance(f.get("run_id"), str)]

    @staticmethod
    def _write_replace(path: Path, info: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh, indent=1)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if absent or damaged (not JSON, not an object)."""
    try:
        with open(path, "rb") as fh:
            info = json.loads(fh.read().decode("utf-8"))
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return info if isinstance(info, dict) else None
