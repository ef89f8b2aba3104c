"""The reproduction dashboard: a static web site of a built :class:`~.build.Report`.

``write_site`` writes ``<out>/site/``, readable offline by opening ``index.html`` (plain HTML and
one CSS file; no script, no server, no network, relative links only):

* ``index.html``: per paper, the cells within / outside tolerance / not yet run per artefact, the
  paper's findings (when the report carries them) and links to every artefact page;
* ``artefacts/<spec>.<selection>.html``: a table laid out like the paper's (panels, rows, columns
  of the spec), each cell ours mean ± std, n, the paper's value and Δ, coloured by its status and
  linking to its runs; a figure spec's page shows the figure the report drew;
* ``runs/<run_id>.html``: one page per run the report read: spec, code version, device, wall
  time, the per-epoch curves (``runs/<run_id>.png``) and where to find the run in MLflow;
* ``runs.html``: the report's provenance table (every stored run, ``read_by`` naming the specs
  that read it), each run linked.

Every number comes from the report (gap frames, provenance) or the run's stored record; nothing is
recomputed here. Every string from a record or a spec is escaped.
"""
from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, unquote

import pandas as pd
from matplotlib.figure import Figure

from ..selection import LABELS
from .build import PaperSection, Report, TableResult
from .figures import FigureResult
from .tables import (DASH, NO_REFERENCE, NO_SELECTION, NOT_RUN, OUTSIDE, STATUSES, WITHIN, counts, fmt, row_label,
                     selection_line, units)

SITE = "site"
#: Marks every page, so that rewriting a site replaces only a folder this module wrote.
GENERATOR = '<meta name="generator" content="biasbench report --html">'
#: CSS class of a cell per gap status, and what the legend says about it.
STATUS_CLASS = {WITHIN: "within", OUTSIDE: "outside", NOT_RUN: "not-run", NO_SELECTION: "no-selection",
                NO_REFERENCE: "no-reference"}
STATUS_TEXT = {WITHIN: "within the paper's tolerance", OUTSIDE: "outside the paper's tolerance",
               NOT_RUN: "not yet run", NO_SELECTION: "runs exist but none can be selected",
               NO_REFERENCE: "ours only: the paper gives no number"}
#: Per-epoch curves drawn on a run page when its history has them: (panel, history key, label).
CURVES = (("loss", "train.loss", "train loss"), ("accuracy", "val.acc", "val acc"),
          ("accuracy", "val.conflicting_acc", "val conflicting acc"), ("accuracy", "test.acc", "test acc"),
          ("accuracy", "test.aligned_acc", "test aligned acc"),
          ("accuracy", "test.conflicting_acc", "test conflicting acc"))

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ccc; } h3 { margin-top: 1.4rem; }
a { color: #0b57d0; } nav { font-size: .9rem; margin-bottom: 1rem; } .meta { color: #555; font-size: .9rem; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #bbb; padding: .3rem .5rem; vertical-align: top; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; }
td.cell { min-width: 8rem; } .cell .ours { font-size: 1rem; } .cell .best { font-weight: bold; }
.cell .detail { color: #333; font-size: .8rem; } .cell .runs { font-size: .75rem; }
.within { background: #cdebd3; } .outside { background: #f6c9cc; } .not-run { background: #e6e6e6; color: #666; }
.no-selection { background: #fbe7b5; } .no-reference { background: #dbe7fb; }
.legend span { display: inline-block; padding: .15rem .5rem; margin: 0 .4rem .3rem 0; border: 1px solid #bbb; }
ul.findings li { margin: .2rem 0; padding: .1rem .4rem; list-style: none; border-left: .4rem solid #bbb; }
ul.findings li.within { border-left-color: #2e8b57; } ul.findings li.outside { border-left-color: #c0392b; }
ul.findings li.not_run { border-left-color: #888; } ul.findings li.documented { border-left-color: #d4a017; }
ul.findings li { background: none; }
img { max-width: 100%; border: 1px solid #ddd; } code, pre { background: #f5f5f5; padding: 0 .2rem; }
.scroll { overflow-x: auto; } table.provenance { font-size: .8rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; } dt { font-weight: bold; }
"""


class SiteError(ValueError):
    """The site cannot be written where asked (the message names the folder and the fix)."""


@dataclass(frozen=True)
class MlflowRuns:
    """Where the runs are in MLflow: the tracking URI and, per run id, (experiment id, MLflow run id).

    ``ids`` is empty when the store was not read (no store yet, or it failed: ``problem`` says
    why); a run page then says how to open MLflow instead of linking to the run.
    """

    uri: str
    ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    problem: str = ""

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))


def locate_in_mlflow(uri: str, run_ids: Iterable[str]) -> MlflowRuns:
    """Look up the MLflow runs mirroring ``run_ids`` (by their ``run_id`` tag, in every experiment).

    An embedded SQLite store that does not exist yet is not created; any MLflow failure is caught
    (with a warning) so that a dead server costs a missing link, never the report.
    """
    wanted = set(run_ids)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return MlflowRuns(uri, problem="no MLflow store yet")
    if uri.startswith(("http://", "https://")):
        from ..tracking import HTTP_DEFAULTS
        for k, v in HTTP_DEFAULTS.items():  # seconds, not MLflow's minutes of retries, for a dead server
            os.environ.setdefault(k, v)
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        found: dict[str, tuple[str, str]] = {}
        experiments = [e.experiment_id for e in client.search_experiments()]
        token = None
        while experiments:
            page = client.search_runs(experiments, max_results=1000, page_token=token)
            for r in page:
                rid = r.data.tags.get("run_id")
                if rid in wanted and r.info.status == "FINISHED":
                    found.setdefault(rid, (r.info.experiment_id, r.info.run_id))
            token = page.token
            if not token:
                break
        return MlflowRuns(uri, found)
    except Exception as e:  # noqa: BLE001 - MLflow is a mirror: the site is written without links
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        warnings.warn(f"MLflow at {uri} could not be read ({type(e).__name__}: {first}); the dashboard's run pages "
                      "say how to open MLflow instead of linking to each run", RuntimeWarning, stacklevel=2)
        return MlflowRuns(uri, problem=f"{type(e).__name__}: {first}")


# ---------------------------------------------------------------------------------------------- pages
def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _text(v: str) -> str:
    """Escaped text whose markdown code spans (`x`, as the report's sentences carry) become <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(v))


def _page(title: str, body: list[str], root: str) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', GENERATOR, f"<title>{_e(title)}</title>",
        f'<link rel="stylesheet" href="{root}style.css">', "</head>", "<body>",
        f'<nav><a href="{root}index.html">Reproduction dashboard</a> · <a href="{root}runs.html">Stored runs</a></nav>',
        *body, "</body>", "</html>", ""])


def _artefact_file(name: str, selection: str) -> str:
    return f"artefacts/{quote(name)}.{quote(selection)}.html"


def _run_file(run_id: str) -> str:
    return f"runs/{quote(run_id)}.html"


def _run_links(run_ids: Iterable[str], root: str, have: set[str]) -> str:
    return " ".join(f'<a href="{root}{_run_file(r)}">{_e(r[:8])}</a>' if r in have else _e(r[:8]) for r in run_ids)


def _legend() -> str:
    items = "".join(f'<span class="{STATUS_CLASS[s]}">{_e(STATUS_TEXT[s])}</span>' for s in STATUSES)
    return f'<p class="legend">{items}</p>'


def _cell(c, digits: int, have: set[str]) -> str:
    status = c.status
    if c.n:
        ours = fmt(c.ours_mean, digits) + (f" ± {fmt(c.ours_std, digits)}" if c.n > 1 else "")
    else:
        ours = DASH
    parts = [f'<div class="ours{" best" if c.best and c.n else ""}">{_e(ours)}</div>']
    detail = [f"n = {int(c.n)}"]
    if not math.isnan(c.paper_value):
        detail.append(f"paper {fmt(c.paper_value, digits)}")
        if c.n:
            detail.append(f"Δ {fmt(c.delta, digits, sign=True)}")
            detail.append(f"tol. {fmt(c.tolerance, digits)}")
    if c.profiles and c.n:
        detail.append(f"profile {c.profiles}")
    parts.append(f'<div class="detail">{_e(" · ".join(detail))}</div>')
    if c.run_ids:
        parts.append(f'<div class="runs">runs: {_run_links(c.run_ids, "../", have)}</div>')
    if c.note:
        parts.append(f'<div class="detail">{_e(c.note)}</div>')
    return (f'<td class="cell {STATUS_CLASS.get(status, "")}" data-status="{_e(status)}" '
            f'title="{_e(STATUS_TEXT.get(status, status))}">{"".join(parts)}</td>')


def _table_page(t: TableResult, have: set[str]) -> str:
    spec, gap = t.spec, t.gap
    selection = gap["selection"].iloc[0] if not gap.empty else t.selection
    cells = {(r.col_index, r.row_index): r for r in gap.itertuples()}
    k = counts(gap)
    body = [f"<h1>{_e(spec.title)}</h1>",
            f'<p class="meta">Spec <code>{_e(spec.name)}</code> · paper <code>{_e(spec.paper)}</code> · '
            f"{_text(selection_line(spec, selection, t.protocol))}</p>",
            f"<p>Each cell: ours mean ± std over seeds, in {_e(units(spec.scale))}; n = seeds; the paper's value, "
            f"Δ = ours − paper and the tolerance; bold: our best in the column; § : the method trains with bias "
            f"labels. Cells: {k[WITHIN]} within tolerance, {k[OUTSIDE]} outside, {k[NOT_RUN]} not yet run, "
            f"{k[NO_SELECTION]} not selectable, {k[NO_REFERENCE]} without a paper value.</p>", _legend()]
    for panel in spec.panels:
        cols = [(i, c) for i, c in enumerate(spec.columns) if c.panel == panel]
        if panel:
            body.append(f"<h3>{_e(panel)}</h3>")
        head = "".join(f"<th>{_e(c.label)}</th>" for _, c in cols)
        rows = []
        for ri, row in enumerate(spec.rows):
            tds = "".join(_cell(cells[(i, ri)], spec.digits, have) for i, _ in cols)
            rows.append(f"<tr><th>{_e(row_label(row.label, row.method))}</th>{tds}</tr>")
        body.append(f'<table class="artefact"><thead><tr><th>Method</th>{head}</tr></thead>'
                    f'<tbody>{"".join(rows)}</tbody></table>')
    if spec.notes:
        body += ["<h3>Notes</h3>", "<ul>", *[f"<li>{_e(n)}</li>" for n in spec.notes], "</ul>"]
    return _page(spec.title, body, "../")


def _figure_page(f: FigureResult, have: set[str]) -> str:
    body = [f"<h1>{_e(f.spec.title)}</h1>",
            f'<p class="meta">Spec <code>{_e(f.spec.name)}</code> · selection: {_e(LABELS[f.selection])} '
            f"(<code>{_e(f.selection)}</code>) · runs: {len(f.run_ids)}</p>"]
    if f.figure is not None:
        name = f"{quote(f.spec.name)}.{quote(f.selection)}"
        body.append(f'<p><img src="../figures/{name}.png" alt="{_e(f.spec.title)}"></p>'
                    f'<p><a href="../figures/{name}.pdf">PDF</a></p>')
    else:
        body.append("<p>Not drawn.</p>")
    if f.notes:
        body += ["<ul>", *[f"<li>{_e(n)}</li>" for n in f.notes], "</ul>"]
    if f.run_ids:
        body.append(f"<p>Runs: {_run_links(f.run_ids, '../', have)}</p>")
    return _page(f.spec.title, body, "../")


def _findings(sec: PaperSection, pages: dict[str, str], have: set[str]) -> list[str]:
    findings = getattr(sec, "findings", None) or []
    if not findings:
        return []
    out = ["<h3>What reproduces and what doesn't</h3>", '<ul class="findings">']
    for f in findings:
        kind = str(getattr(f, "kind", ""))
        spec = getattr(f, "spec", "") or ""
        link = f' (<a href="{pages[spec]}">{_e(spec)}</a>)' if spec in pages else (f" ({_e(spec)})" if spec else "")
        runs = list(getattr(f, "run_ids", ()) or ())
        run_text = f" — runs: {_run_links(runs, '', have)}" if runs else ""
        out.append(f'<li class="{_e(kind)}" data-kind="{_e(kind)}">{_e(getattr(f, "text", ""))}{link}{run_text}</li>')
    return out + ["</ul>"]


def _index_page(report: Report, pages: dict[str, str], have: set[str]) -> str:
    code = report.code
    commit = (code.get("commit") or "unknown")[:10] + (" (with local changes)" if code.get("dirty") else "")
    body = ["<h1>Reproduction dashboard</h1>",
            f'<p class="meta">Generated {_e(report.generated)} by biasbench {_e(code.get("package"))} at commit '
            f"{_e(commit)}. Result store: {f'<code>{_e(report.store)}</code> ' if report.store else ''}"
            f"({report.n_runs} finished runs; "
            f'{_n_read(report)} read by this report, see <a href="runs.html">stored runs</a>). Every table cell and '
            "figure point reads paper-profile records of current code only.</p>"]
    smoke = report.smoke
    if smoke is not None and not smoke.empty:
        from ..evidence import LABELS
        by_class = smoke["class"].value_counts()
        body.append(f"<p>{len(smoke)} stored run(s) fill no paper cell: "
                    + "; ".join(f"{n} {_e(LABELS.get(c, c))}" for c, n in by_class.items())
                    + " (report.md, 'Smoke and untagged runs').</p>")
    for sec in report.sections:
        body += [f'<h2 id="{_e(sec.paper)}">{_e(sec.title)} (<code>{_e(sec.paper)}</code>)</h2>']
        if sec.citation:
            body.append(f'<p class="meta"><em>{_e(sec.citation)}</em></p>')
        body += _findings(sec, pages, have)
        if sec.tables:
            rows = []
            for t in sec.tables:
                k = counts(t.gap)
                cells = int(t.gap["paper_value"].notna().sum())
                rows.append(f'<tr><td><a href="{_artefact_file(t.spec.name, t.selection)}">{_e(t.spec.title)}</a></td>'
                            f"<td><code>{_e(t.selection)}</code></td>"
                            f'<td class="num">{cells}</td>'
                            + "".join(f'<td class="num{" " + STATUS_CLASS[s] if k[s] else ""}">{k[s]}</td>'
                                      for s in (WITHIN, OUTSIDE, NOT_RUN, NO_REFERENCE)) + "</tr>")
            body.append('<table class="summary"><thead><tr><th>Table</th><th>Selection</th><th>Paper cells</th>'
                        "<th>Within tolerance</th><th>Outside</th><th>Not yet run</th><th>Ours only</th></tr></thead>"
                        f'<tbody>{"".join(rows)}</tbody></table>')
        if sec.figures:
            body.append("<p>Figures:</p><ul>")
            for f in sec.figures:
                drawn = "" if f.figure is not None else " (not drawn)"
                body.append(f'<li><a href="{_artefact_file(f.spec.name, f.selection)}">{_e(f.spec.title)}</a>'
                            f"{_e(drawn)}</li>")
            body.append("</ul>")
    return _page("Reproduction dashboard", body, "")


def _n_read(report: Report) -> int:
    prov = report.provenance
    return 0 if prov.empty or "read_by" not in prov.columns else int((prov["read_by"].fillna("") != "").sum())


def _runs_page(prov: pd.DataFrame, have: set[str]) -> str:
    if prov.empty:
        return _page("Stored runs", ["<h1>Stored runs</h1>", "<p>The store holds no run.</p>"], "")
    head = "".join(f"<th>{_e(c)}</th>" for c in prov.columns)
    rows = []
    for rec in prov.itertuples(index=False):
        vals = list(rec)
        first = _run_links([vals[0]], "", have)
        rows.append("<tr><td>" + first + "</td>" + "".join(f"<td>{_e('' if _missing(v) else v)}</td>"
                                                            for v in vals[1:]) + "</tr>")
    return _page("Stored runs", ["<h1>Stored runs</h1>",
                                 "<p>Every stored run; <code>read_by</code> names the tables and figures that read "
                                 "it (empty: it fills no paper cell — see the index for why).</p>",
                               f'<div class="scroll"><table class="provenance"><thead><tr>{head}</tr></thead>'
                               f"<tbody>{''.join(rows)}</tbody></table></div>"], "")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ------------------------------------------------------------------------------------------ run pages
def _history_value(row: dict, key: str) -> float | None:
    if key in row:
        v = row[key]
    else:
        split, _, name = key.partition(".")
        v = row.get(split, {}).get(name) if isinstance(row.get(split), dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def draw_curves(record: dict) -> Figure | None:
    """Per-epoch train loss and accuracies of one record (None when its history has none)."""
    history = record.get("history") or []
    series = []
    for panel, key, label in CURVES:
        pts = [(row["epoch"], v) for row in history if (v := _history_value(row, key)) is not None]
        if pts:
            series.append((panel, label, pts))
    if not series:
        return None
    panels = [p for p in ("loss", "accuracy") if any(s[0] == p for s in series)]
    fig = Figure(figsize=(4.2 * len(panels), 3.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        for p, label, pts in series:
            if p == panel:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(panel)
        ax.grid(alpha=.3)
        ax.legend(fontsize=7)
    return fig


def _mlflow_html(run_id: str, mlflow: MlflowRuns | None) -> str:
    if mlflow is None:
        return "<p>MLflow: not looked up (no tracking URI given).</p>"
    if run_id in mlflow.ids:
        exp, mrun = mlflow.ids[run_id]
        path = f"#/experiments/{quote(exp)}/runs/{quote(mrun)}"
        if mlflow.is_server:
            url = mlflow.uri.rstrip("/") + "/" + path
            return f'<p>MLflow: <a class="mlflow" href="{_e(url)}">this run on {_e(mlflow.uri)}</a></p>'
        url = f"http://127.0.0.1:5000/{path}"
        return (f"<p>MLflow (local store <code>{_e(mlflow.uri)}</code>): start the UI with "
                f"<code>python -m benchmark ui --tracking-uri {_e(mlflow.uri)}</code>, then open "
                f'<a class="mlflow" href="{_e(url)}">{_e(url)}</a>.</p>')
    why = f" ({_e(mlflow.problem)})" if mlflow.problem else " (not mirrored yet)"
    if mlflow.is_server:
        return (f"<p>MLflow: this run was not found on <a href=\"{_e(mlflow.uri)}\">{_e(mlflow.uri)}</a>{why}; "
                f"<code>python -m benchmark mirror --tracking-uri {_e(mlflow.uri)}</code> sends it.</p>")
    return (f"<p>MLflow: not found in <code>{_e(mlflow.uri)}</code>{why}; "
            f"<code>python -m benchmark ui --tracking-uri {_e(mlflow.uri)}</code> mirrors the store and opens the UI "
            f"(search <code>tags.run_id = '{_e(run_id)}'</code>).</p>")


def _run_page(record: dict, has_curves: bool, mlflow: MlflowRuns | None) -> str:
    spec, code, tags = record["spec"], record.get("code") or {}, record.get("tags") or {}
    run_id = record["run_id"]
    fp = code.get("fingerprint") or {}
    wall = record.get("wall_time_s")
    items = [("run id", run_id), ("status", record.get("status", "")), ("method", spec.get("method")),
             ("dataset", spec.get("dataset")), ("backbone", spec.get("backbone") or "the dataset's default"),
             ("seed", spec.get("seed")), ("epochs", spec.get("epochs")),
             ("max train", spec.get("max_train") if spec.get("max_train") is not None else "all"),
             ("label noise", spec.get("label_noise", 0.0)), ("suite", tags.get("suite") or "untagged"),
             ("profile", tags.get("profile") or "untagged"),
             ("commit", (code.get("commit") or "unknown") + (" (with local changes)" if code.get("dirty") else "")),
             ("code fingerprint", fp.get("digest", "none (recorded before fingerprints)")),
             ("device", record.get("device", "")), ("host", record.get("host", "")),
             ("wall time", f"{wall:.1f} s" if isinstance(wall, (int, float)) else "not recorded"),
             ("created", record.get("created", ""))]
    if record.get("stale"):
        items.append(("stale", record["stale"]))
    body = [f"<h1>Run <code>{_e(run_id)}</code></h1>",
            "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>",
            _mlflow_html(run_id, mlflow)]
    body.append("<h2>Per-epoch curves</h2>")
    body.append(f'<p><img class="curves" src="{quote(run_id)}.png" alt="per-epoch curves of run {_e(run_id)}"></p>'
                if has_curves else "<p>No per-epoch history in this record.</p>")
    for title, d in (("Dataset parameters", spec.get("dataset_params") or {}),
                     ("Hyperparameters", spec.get("hparams") or {})):
        body += [f"<h2>{title}</h2>", "<table><tbody>",
                 *[f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v) if isinstance(v, (list, dict)) else v)}</td></tr>"
                   for k, v in sorted(d.items())], "</tbody></table>"]
    final = record.get("final") or {}
    rows = [f"<tr><th>{_e(split)}</th><td>{_e(k)}</td><td class=\"num\">{v:.4f}</td></tr>"
            for split, m in sorted(final.items()) if isinstance(m, dict)
            for k, v in sorted(m.items()) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if rows:
        body += ["<h2>Final metrics</h2>", "<table><thead><tr><th>Split</th><th>Metric</th><th>Value</th></tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table>"]
    return _page(f"Run {run_id}", body, "../")


# ------------------------------------------------------------------------------------------- the site
def write_site(report: Report, out_dir: str | Path, runs: pd.DataFrame,
               mlflow: MlflowRuns | None = None) -> list[Path]:
    """Write the dashboard under ``<out_dir>/site/``; returns the files written.

    A previous site in that folder is replaced whole; a folder of that name that this function did
    not write raises :class:`SiteError` and is left untouched.

    Args:
        report: ``build_report``'s result.
        out_dir: the report's output folder.
        runs: the run frame the report was built from (its ``record`` column gives each run page).
        mlflow: where the runs are in MLflow (:func:`locate_in_mlflow`); None = no MLflow line.
    """
    site = Path(out_dir) / SITE
    if site.exists():  # a previous site: replaced whole, so no page of a run no longer read lingers
        index = site / "index.html"
        if not (index.is_file() and GENERATOR in index.read_text(encoding="utf-8", errors="replace")):
            raise SiteError(f"{site} exists and is not a dashboard written by `report --html`; "
                            "move it away or choose another --out")
        shutil.rmtree(site)
    for sub in ("artefacts", "runs", "figures"):
        (site / sub).mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(href: str, text: str) -> None:
        p = site / unquote(href)  # the file the (percent-encoded) relative link names
        p.write_text(text, encoding="utf-8")
        written.append(p)

    records = {} if runs.empty else dict(zip(runs["run_id"], runs["record"]))
    stale = {} if runs.empty or "stale" not in runs.columns else dict(zip(runs["run_id"], runs["stale"]))
    read = list(report.provenance["run_id"]) if not report.provenance.empty else []
    have = {r for r in read if r in records}
    put("style.css", CSS.lstrip())
    pages: dict[str, str] = {}
    for sec in report.sections:
        for t in sec.tables:
            rel = _artefact_file(t.spec.name, t.selection)
            pages.setdefault(t.spec.name, rel)
            put(rel, _table_page(t, have))
        for f in sec.figures:
            rel = _artefact_file(f.spec.name, f.selection)
            pages.setdefault(f.spec.name, rel)
            written += f.save(site / "figures")
            put(rel, _figure_page(f, have))
    for run_id in sorted(have):
        record = dict(records[run_id])
        if isinstance(stale.get(run_id), str) and stale[run_id]:
            record["stale"] = stale[run_id]
        fig = draw_curves(record)
        if fig is not None:
            png = site / "runs" / f"{run_id}.png"
            fig.savefig(png, dpi=100)
            written.append(png)
        put(_run_file(run_id), _run_page(record, fig is not None, mlflow))
    put("runs.html", _runs_page(report.provenance, have))
    put("index.html", _index_page(report, pages, have))
    return written
