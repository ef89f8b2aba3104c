"""Plug-ins that break: one that raises on import, one that takes a built-in's name, a method
without ``batch_size``, a dataset without a ``test`` split. Each is reported with its error,
and everything else keeps working. They are installed the way pip would (a dist-info folder with
entry points on the path), in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from .helpers import store_hash

IMPOSTOR = '''
from benchmark import register_method
from benchmark_methods.vanilla import Vanilla


@register_method("vanilla")
class Impostor(Vanilla):
    """Takes a built-in's name."""
'''

NOBATCH = '''
from dataclasses import dataclass

from benchmark import hp, register_method
from benchmark_methods.vanilla import Vanilla


@dataclass(frozen=True)
class NoBatchHParams:
    lr: float = hp(0.1, "test")
    epochs: int = hp(1, "test")


@register_method("nobatch")
class NoBatch(Vanilla):
    """HParams without batch_size."""
    HParams = NoBatchHParams
'''

PLUGINS = '''
from dataclasses import dataclass

import torch

from benchmark import DatasetFamily, hp, register_dataset
from benchmark.data import BiasHead, DatasetInfo, Split


@dataclass(frozen=True)
class TinyParams:
    n: int = hp(32, "test", bounds=(1, 1000))
    rho: float = hp(0.5, "test", "a fraction", bounds=(0.0, 1.0))


@register_dataset("notest")
class NoTest(DatasetFamily):
    """A dataset whose generate() forgets the test split."""
    Params = TinyParams

    def info(self, params):
        return DatasetInfo("notest", (3, 28, 28), 10, 10, (BiasHead("color", "b", 10),), "lnl_convnet",
                           (0.5,) * 3, (0.5,) * 3)

    def generate(self, params, data_root):
        n = params.n
        return {"train": Split(torch.zeros(n, 3, 28, 28, dtype=torch.uint8), torch.zeros(n, dtype=torch.long),
                               torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.bool))}
'''

ENTRY_POINTS = '''[benchmark.methods]
exploding = bb_exploding:Exploding
vanilla = bb_impostor:Impostor
nobatch = bb_nobatch:NoBatch

[benchmark.datasets]
notest = bb_plugins:NoTest
'''

DRIVER = '''
import contextlib, io, json, sys
from benchmark.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        rc = main(argv)
    out.append({"argv": argv, "rc": rc, "out": o.getvalue(), "err": e.getvalue()})
print(json.dumps(out))
'''


def test_broken_plugins_are_listed_and_everything_else_works(tmp_path, stored):
    site = tmp_path / "site"
    site.mkdir()
    (site / "bb_exploding.py").write_text("raise ImportError('libfoo.so: cannot open shared object file')\n")
    (site / "bb_plugins.py").write_text(PLUGINS)
    (site / "bb_impostor.py").write_text(IMPOSTOR)
    (site / "bb_nobatch.py").write_text(NOBATCH)
    dist = site / "bb_broken_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bb-broken-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    r, home = str(stored.root), str(tmp_path / "home")
    common = ["--results-dir", r, "--home", home, "--no-mlflow", "--no-progress"]
    calls = [
        ["list"],
        ["status", "--results-dir", r],
        ["run", "--suite", "lnl.figure4", "--profile", "quick", "--dry-run", "--results-dir", r],
        ["run", "--method", "vanila", "--dataset", "colored_mnist", *common],
        ["run", "--method", "exploding", "--dataset", "colored_mnist", *common],
        ["run", "--method", "vanilla", "--dataset", "colored_mnist", *common],
        ["run", "--method", "nobatch", "--dataset", "colored_mnist", *common],
        ["run", "--method", "lnl", "--dataset", "notest", "--epochs", "1", *common],
        ["run", "--method", "lnl", "--dataset", "notest", "--rho", "1.5", *common],
        ["run", "--method", "lnl", "--dataset", "notest", "--n", "-3", *common],
    ]
    before = store_hash(stored.root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(DRIVER), json.dumps(calls)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    listing, status, dry, misspelt, exploding, clash, nobatch, notest, rho, n = res
    for r_ in res:
        assert "Traceback" not in r_["err"], r_
    # list: works, and shows each broken plug-in with its error
    assert listing["rc"] == 0, listing
    assert "lnl " in listing["out"] and "Broken plug-ins" in listing["out"]
    assert "libfoo.so: cannot open shared object file" in listing["out"]
    assert "registered twice" in listing["out"] and "batch_size" in listing["out"]
    assert status["rc"] == 0 and "lnl.figure4" in status["out"]
    assert dry["rc"] == 0 and "lnl.figure4" in dry["out"]

    def one_error(r_, *needles):
        lines = [ln for ln in r_["err"].splitlines() if ln.startswith("error:")]
        assert r_["rc"] != 0 and len(lines) == 1, r_
        for needle in needles:
            assert needle in r_["err"], (needle, r_)

    one_error(misspelt, "unknown method 'vanila'", "lnl", "broken plug-ins: ")
    one_error(exploding, "ImportError", "libfoo.so")
    one_error(clash, "registered twice")  # an ambiguous name is refused, not guessed
    one_error(nobatch, "batch_size")
    one_error(notest, "without 'test'", "notest")
    one_error(rho, "rho=1.5", "out of range")
    one_error(n, "n=-3", "out of range")
    assert store_hash(stored.root) == before
