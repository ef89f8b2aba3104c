"""Stopping ``benchmark ui`` with SIGTERM stops its MLflow server too (no orphan on the port)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_sigterm_stops_the_mlflow_server_child(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "ui", "--port", str(port), "--results-dir",
                             str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = [proc.stdout.readline()]
        while "MLflow UI on" not in lines[-1] and len(lines) < 10:  # MLflow may first log creating the store
            lines.append(proc.stdout.readline())
        assert "MLflow UI on" in lines[-1], lines
        deadline = time.time() + 60
        while not _children(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        (server,) = _children(proc.pid)
        time.sleep(1.0)  # let it start its own workers
        group = [p for p in map(int, filter(str.isdigit, os.listdir("/proc")))
                 if _alive(p) and os.getpgid(p) == server]
        assert server in group
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.time() + 30
        while any(_alive(p) for p in group) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in group)
    finally:
        if proc.poll() is None:
            proc.kill()
