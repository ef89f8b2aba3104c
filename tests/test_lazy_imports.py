"""Commands that only read start without torch or MLflow (issue 14, item 7).

Each command runs in a fresh interpreter (the real CLI entry point); afterwards the test reads which
heavy packages that interpreter had loaded. The plug-in catalogue is built once first (that build
imports every plug-in, torch included, and is what a code change costs once).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmark import catalogue

PROBE = """
import json, sys
from benchmark.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:  # --help exits
    code = e.code
print(json.dumps({"code": code, "loaded": sorted(m for m in ("torch", "mlflow", "pandas") if m in sys.modules)}),
      file=sys.stderr)
"""


def _probe(args: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=120)
    return {**json.loads(proc.stderr.strip().splitlines()[-1]), "stdout": proc.stdout}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("lazy-home")
    env = {**os.environ, "BENCHMARK_HOME": str(home), "BENCHMARK_RESULTS": str(home / "runs")}
    first = _probe(["list"], env)  # builds the catalogue
    assert first["code"] == 0
    env["FIRST_LIST"] = first["stdout"]
    return env


@pytest.mark.parametrize("args", [
    ["--help"], ["run", "--help"], ["status", "--help"], ["report", "--help"], ["list", "--help"],
    ["mirror", "--help"], ["probe", "--help"], ["ui", "--help"], ["import", "--help"], ["reeval", "--help"],
    ["export", "--help"],
])
def test_help_loads_neither_torch_nor_mlflow_nor_pandas(env, args):
    out = _probe(args, env)
    assert out["code"] == 0
    assert out["loaded"] == []


@pytest.mark.parametrize("args", [["list"], ["list", "-v"], ["status"]])
def test_list_and_status_load_no_torch_and_print_the_same(env, args):
    out = _probe(args, env)
    assert out["code"] == 0
    assert out["loaded"] == []
    if args == ["list"]:
        assert out["stdout"] == env["FIRST_LIST"]  # the catalogue gives what importing the plug-ins gave
    assert "Methods:" in out["stdout"] or "suite" in out["stdout"]


def test_report_loads_no_torch(env, tmp_path):
    import shutil
    from pathlib import Path
    runs = tmp_path / "runs"  # real records of LNL (bias heads) and PGD runs, read by every spec
    shutil.copytree(Path(__file__).resolve().parent / "fixtures" / "store", runs)
    out = _probe(["report", "--out", str(tmp_path / "rep"), "--results-dir", str(runs)], env)
    assert out["code"] == 0
    assert out["loaded"] == ["pandas"]  # report needs pandas, nothing heavier


def test_catalogue_is_cached_under_its_source_key(env):
    from pathlib import Path
    path = Path(env["BENCHMARK_HOME"]) / "cache" / "catalogue" / f"{catalogue.key()}.json"
    assert path.is_file()
    cat = json.loads(path.read_text())
    names = [m["name"] for m in cat["methods"]]
    assert "vanilla" in names and "lnl" in names
    lnl = next(s for s in cat["suites"] if s["name"] == "lnl.figure4")
    assert len(lnl["plans"]["paper"]["ids"]) + lnl["plans"]["paper"]["skipped"] == lnl["counts"]["paper"]
