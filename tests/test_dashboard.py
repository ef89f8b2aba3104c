"""The reproduction dashboard (``report --html``), rendered by a real browser (headless Chromium).

A small store of records written through ``ResultStore`` (a reduced PGD Table 1 with cells within
tolerance, outside it and not run, plus LNL Figure 4's curve); the site is written and Chromium
dumps the DOM of its pages and screenshots them. The slow test mirrors the store to a real embedded
MLflow store, serves it with a real ``mlflow server`` and follows a run page's link into it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from benchmark.provenance import fingerprint
from benchmark.references import load_references
from benchmark.reporting import build_report, load_spec
from benchmark.reporting.html import SiteError, locate_in_mlflow, write_site
from benchmark.store import ResultStore
from benchmark.tracking import MLflowMirror
from servers import serve_mlflow

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package "
                                                          "`chromium`); the dashboard test renders pages in it")
INJECTED = "<b>bold?</b>"  # a hyperparameter value that must be shown as text, never parsed as markup


def _record(run_id: str, method: str, dataset: str, params: dict, seed: int, suite: str, metrics: list[dict]) -> dict:
    """A finished paper-profile record of the current code (not stale) whose history holds ``metrics``
    (one dict of split -> values per epoch)."""
    history = [{"epoch": i + 1, "train.loss": 1.0 / (i + 1), **m} for i, m in enumerate(metrics)]
    spec = {"method": method, "dataset": dataset, "dataset_params": params, "seed": seed, "epochs": len(metrics),
            "hparams": {"lr": 0.001, "note": INJECTED}, "max_train": None}
    code = {"commit": "0123456789abcdef", "dirty": False, "package": "0.1.0", "fingerprint": fingerprint(spec)}
    return {"run_id": run_id, "status": "done", "created": "2026-11-30T00:00:00+00:00", "device": "cpu:2 threads",
            "wall_time_s": 12.5, "code": code, "tags": {"suite": suite, "profile": "paper"}, "spec": spec,
            "history": history, "final": {"test": dict(history[-1]["test"])}}


def _ratio_metrics(val: float, aligned: float, conflicting: float) -> list[dict]:
    return [{"val": {"acc": val - 0.1}, "test": {"acc": 0.5, "aligned_acc": aligned - 0.1, "conflicting_acc": 0.1}},
            {"val": {"acc": val}, "test": {"acc": 0.6, "aligned_acc": aligned, "conflicting_acc": conflicting}}]


@dataclass
class Finding:
    kind: str
    text: str
    run_ids: list[str]
    spec: str


class _Dom(HTMLParser):
    """Elements of a DOM dump as (tag, attrs, text of the element and its descendants)."""

    VOID = {"meta", "link", "img", "br", "hr", "input"}

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict, list[str]]] = []
        self._open: list[tuple[str, dict, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        el = (tag, dict(attrs), [])
        self.elements.append(el)
        if tag not in self.VOID:
            self._open.append(el)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for el in self._open:
            el[2].append(data)

    def find(self, tag: str, **attrs) -> list[tuple[dict, str]]:
        return [(a, " ".join(" ".join(t).split())) for g, a, t in self.elements
                if g == tag and all(k in a and (v is True or v in a[k].split()) for k, v in attrs.items())]


def _chromium(url: str, *args: str, tmp: Path) -> str:
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={profile}", *args, url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    store = ResultStore(tmp / "runs")
    ratio = "colored_mnist_ratio"
    records = [  # PGD Table 1 (paper, bias ratio 99.5 %): Vanilla val 99.49, major 99.97, minor 26.58
        _record("aaaa000000000001", "vanilla", ratio, {"bias_ratio": 0.995}, 0, "pgd.table1",
                _ratio_metrics(0.9949, 0.50, 0.2658)),
        _record("aaaa000000000002", "vanilla", ratio, {"bias_ratio": 0.995}, 1, "pgd.table1",
                _ratio_metrics(0.9949, 0.50, 0.2658)),
        _record("bbbb000000000001", "pgd", ratio, {"bias_ratio": 0.99}, 0, "pgd.table1",
                _ratio_metrics(0.97, 0.96, 0.90)),
        *[_record(f"cccc00000000000{i}", "vanilla", "colored_mnist", {"sigma2": s}, 0, "lnl.figure4",
                  [{"test": {"acc": a - 0.1}}, {"test": {"acc": a}}]) for i, (s, a) in enumerate([(0.02, 0.4), (0.05, 0.8)])],
    ]
    for r in records:
        store.put(r)
    uri = f"sqlite:///{tmp / 'mlflow' / 'mlflow.db'}"  # not mirrored here (seconds); the slow test mirrors
    runs = store.query()
    specs = [load_spec(FIXTURES / "specs" / "pgd.table1_cm.toml"), load_spec(FIXTURES / "specs" / "lnl.figure4.toml")]
    report = build_report(runs, load_references(), specs)
    for sec in report.sections:  # fixed findings, so the test checks how they render (findings.py makes them)
        sec.findings = []
    lnl = report.sections[0]
    lnl.findings = [Finding("not_run", "Figure 4: <no curve> for LNL yet", [], "lnl.figure4"),
                    Finding("within", "Vanilla's 99.5 % cells reproduce", ["aaaa000000000001"], "pgd.table1_cm")]
    mlflow = locate_in_mlflow(uri, report.provenance["run_id"])
    written = write_site(report, tmp / "out", runs, mlflow)
    return {"tmp": tmp, "root": tmp / "out" / "site", "written": written, "mlflow": mlflow, "report": report,
            "runs": runs}


def test_index_shows_each_papers_summary_and_links_every_artefact(site):
    root = site["root"]
    dom = _Dom(_chromium((root / "index.html").as_uri(), "--dump-dom", tmp=site["tmp"]))
    headings = dom.find("h2")
    assert [a["id"] for a, _ in headings] == ["lnl", "pgd"]  # the papers, in the report's order
    assert headings[0][1].startswith("Learning Not to Learn")
    rows = [t for _, t in dom.find("tr") if "PGD Table 1 (fixture)" in t]
    # 18 paper cells: within 3 (Vanilla 99.5 % val and minor, PGD 99 % val: |Δ| <= 2), outside 3, not run 12
    assert rows == ["PGD Table 1 (fixture): Colored MNIST at bias ratios 99.5/99/95% biased_val 18 3 3 12 0"]
    findings = [(a["data-kind"], t) for a, t in dom.find("li", **{"data-kind": True})]
    assert findings == [("not_run", "Figure 4: <no curve> for LNL yet ( lnl.figure4 )"),
                        ("within", "Vanilla's 99.5 % cells reproduce ( pgd.table1_cm ) — runs: aaaa0000")]
    links = [a["href"] for a, _ in dom.find("a")]
    assert "artefacts/pgd.table1_cm.biased_val.html" in links and "artefacts/lnl.figure4.last.html" in links
    for href in links:
        assert not href.startswith(("http:", "https:", "/")), href  # relative links only
        assert (root / href).is_file(), href


def test_artefact_page_lays_out_the_table_coloured_by_the_gap_with_working_run_links(site):
    root = site["root"]
    page = root / "artefacts" / "pgd.table1_cm.biased_val.html"
    dom = _Dom(_chromium(page.as_uri(), "--dump-dom", tmp=site["tmp"]))
    assert [t for _, t in dom.find("h3")][:2] == ["bias ratio 99.5%", "bias ratio 99%"]
    cells = {(a["data-status"], t) for a, t in dom.find("td", **{"data-status": True})}
    assert ("within", "99.49 ± 0.00 n = 2 · paper 99.49 · Δ +0.00 · tol. 2.00 · profile paper "
                      "runs: aaaa0000 aaaa0000") in cells
    assert ("outside", "50.00 ± 0.00 n = 2 · paper 99.97 · Δ -49.97 · tol. 2.00 · profile paper "
                       "runs: aaaa0000 aaaa0000") in cells
    assert ("outside", "90.00 n = 1 · paper 97.76 · Δ -7.76 · tol. 2.00 · profile paper runs: bbbb0000") in cells
    assert ("not run", "— n = 0 · paper 58.36") in cells  # LfF minor at 99.5 %
    assert [a["class"] for a, _ in dom.find("td", **{"data-status": True})
            if a["data-status"] == "not run"] == ["cell not-run"] * 12
    assert len(dom.find("td", **{"class": "within"})) == 3 and len(dom.find("td", **{"class": "outside"})) == 3
    assert dom.find("span", **{"class": "within"}) and dom.find("span", **{"class": "outside"})  # the legend
    run_links = sorted({a["href"] for a, _ in dom.find("a") if "/runs/" in a["href"]})
    assert run_links == ["../runs/aaaa000000000001.html", "../runs/aaaa000000000002.html",
                         "../runs/bbbb000000000001.html"]
    run_page = (page.parent / run_links[-1]).resolve()
    assert run_page.is_file()
    run = _Dom(_chromium(run_page.as_uri(), "--dump-dom", tmp=site["tmp"]))
    assert [t for _, t in run.find("h1")] == ["Run bbbb000000000001"]
    curves = [a for a, _ in run.find("img", **{"class": "curves"})]
    assert len(curves) == 1 and (run_page.parent / curves[0]["src"]).stat().st_size > 1000
    assert ["note", INJECTED] in [t.split(" ", 1) for _, t in run.find("tr")]  # shown as text, not markup
    assert not run.find("b")
    # no MLflow store yet: the page says how to make and open one, and the look-up did not create it
    uri = site["mlflow"].uri
    assert any(f"python -m benchmark ui --tracking-uri {uri} mirrors the store" in t for _, t in run.find("p"))
    assert not run.find("a", **{"class": "mlflow"}) and not Path(uri[len("sqlite:///"):]).exists()


def test_figure_page_shows_the_drawn_figure(site):
    page = site["root"] / "artefacts" / "lnl.figure4.last.html"
    dom = _Dom(page.read_text(encoding="utf-8"))
    src = [a["src"] for a, _ in dom.find("img")]
    assert src == ["../figures/lnl.figure4.last.png"] and (page.parent / src[0]).resolve().is_file()


def test_screenshots_are_not_blank(site):
    from PIL import Image
    for name in ("index.html", "artefacts/pgd.table1_cm.biased_val.html"):
        shot = site["tmp"] / (name.replace("/", "_") + ".png")
        _chromium((site["root"] / name).as_uri(), f"--screenshot={shot}", "--window-size=1280,900", tmp=site["tmp"])
        pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
        assert pixels.shape[:2] == (900, 1280)
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50 and pixels.std() > 10


@pytest.mark.slow
def test_server_links_open_the_run_in_a_real_mlflow_server(site, tmp_path):
    """With a server URI, each run page links to the run in that server's UI (``#/experiments/E/runs/R``)."""
    uri = site["mlflow"].uri
    store = ResultStore(site["tmp"] / "runs")
    assert not MLflowMirror(uri).sync(store).failed
    local = locate_in_mlflow(uri, site["report"].provenance["run_id"])
    assert sorted(local.ids) == sorted(site["report"].provenance["run_id"])
    write_site(site["report"], tmp_path / "local", site["runs"], local)
    dom = _Dom((tmp_path / "local" / "site" / "runs" / "aaaa000000000001.html").read_text(encoding="utf-8"))
    exp, run = local.ids["aaaa000000000001"]  # a local store: the link works once `benchmark ui` serves it
    assert [a["href"] for a, _ in dom.find("a", **{"class": "mlflow"})] == [
        f"http://127.0.0.1:5000/#/experiments/{exp}/runs/{run}"]
    with serve_mlflow(uri) as url:
        mlflow = locate_in_mlflow(url, site["report"].provenance["run_id"])
        assert mlflow.ids == local.ids  # found through the server's REST API
        write_site(site["report"], tmp_path, site["runs"], mlflow)
        dom = _Dom((tmp_path / "site" / "runs" / "aaaa000000000001.html").read_text(encoding="utf-8"))
        exp, run = mlflow.ids["aaaa000000000001"]
        assert [a["href"] for a, _ in dom.find("a", **{"class": "mlflow"})] == [f"{url}/#/experiments/{exp}/runs/{run}"]
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/runs/get?run_id={run}", timeout=10) as r:
            tags = {t["key"]: t["value"] for t in json.load(r)["run"]["data"]["tags"]}
        assert tags["run_id"] == "aaaa000000000001" and r.status == 200


def test_report_html_replaces_its_own_site(site, tmp_path):
    """The command line: ``report --html`` writes ``<out>/site``, replacing a previous dashboard whole
    (no page of a run the store no longer holds lingers)."""
    shutil.copytree(site["root"], tmp_path / "out" / "site")
    stray = tmp_path / "out" / "site" / "runs" / "ffff000000000000.html"
    stray.write_text("a page of a run that is gone", encoding="utf-8")
    cmd = [sys.executable, "-m", "benchmark", "report", "--html", "--results-dir",
           str(site["tmp"] / "runs"), "--specs-dir", str(FIXTURES / "specs"), "--no-default-specs", "--spec", "pgd.table1_cm",
           "--home", str(tmp_path / "home"), "--out", str(tmp_path / "out")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "site/ (open site/index.html)" in out.stdout
    index = (tmp_path / "out" / "site" / "index.html").read_text(encoding="utf-8")
    assert "PGD Table 1 (fixture)" in index and "LNL Figure 4" not in index
    run_page = (tmp_path / "out" / "site" / "runs" / "bbbb000000000001.html").read_text(encoding="utf-8")
    assert not stray.exists() and "<dt>code fingerprint</dt>" in run_page and "<dt>stale</dt>" not in run_page
    assert not (tmp_path / "home" / "mlflow.db").exists()  # the MLflow look-up creates no store


def test_a_site_folder_it_did_not_write_is_left_alone(site, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "notes.txt").write_text("mine")
    with pytest.raises(SiteError, match="is not a dashboard written by `report --html`; move it away"):
        write_site(site["report"], tmp_path, site["runs"])
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["notes.txt"]
