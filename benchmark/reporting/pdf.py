"""One PDF with every table and figure, grouped by paper, with run provenance — without TeX.

Pages are matplotlib figures written through ``PdfPages``: tables are drawn as matplotlib tables
(our best per column in bold, cells shaded by status: green within tolerance, red outside, grey not
yet run), figures are placed on a page with their notes, and the runs read are listed at the end
with their ids, code version and dates. Every page is A4 landscape.
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from ..selection import LABELS
from .build import Report, selection_text
from .tables import (BIAS_MARK, NO_SELECTION, NOT_RUN, OUTSIDE, WITHIN, cell_parts, row_label, gap_list,
                     selection_line)

PAGE = (11.69, 8.27)  # A4 landscape, inches
STATUS_COLOURS = {WITHIN: "#d8f0d8", OUTSIDE: "#f6d5d5", NOT_RUN: "#f0f0f0", NO_SELECTION: "#fff1c2"}
ROWS_PER_PAGE = 30
CHAR_W = 0.62  # average glyph width of DejaVu Sans in units of the font size (a safe over-estimate)
LINE = 1.3     # line height in units of the font size
PAD = 5.0      # vertical padding per table row, points


def _page(title: str, subtitle: str = "") -> Figure:
    """An A4-landscape page with a title and an optional wrapped subtitle; ``fig.content_top`` is
    the height (figure fraction) below which content may start."""
    fig = Figure(figsize=PAGE)
    fig.text(0.03, 0.965, title, fontsize=min(13.0, 13.0 * 100 / max(len(title), 1)), weight="bold", va="top")
    top = 0.925
    if subtitle:
        lines = textwrap.wrap(subtitle, 170)
        fig.text(0.03, top, "\n".join(lines), fontsize=8, va="top", color="#333333")
        top -= len(lines) * 8 * 1.25 / (PAGE[1] * 72)
    fig.content_top = top - 0.02
    return fig


def _footer(fig: Figure, text: str) -> None:
    fig.text(0.03, 0.02, text, fontsize=7, color="#666666")


def _notes(fig: Figure, notes: list[str], top: float = 0.2) -> None:
    if not notes:
        return
    lines = []
    for n in notes:
        lines += textwrap.wrap(n, 190, initial_indent="• ", subsequent_indent="  ")
    fig.text(0.03, top, "\n".join(lines[:14] + (["  …"] if len(lines) > 14 else [])), fontsize=7, va="top")


def _draw_table(fig: Figure, rect, headers: list[str], body: list[list[str]], colours=None, bold=None,
                max_font: float = 9.0) -> float:
    """A matplotlib table in the box ``rect`` = [left, bottom, width, height] (figure fractions),
    anchored at its top-left corner, font shrunk until the widest line and all rows fit; returns
    the bottom of the drawn table (figure fraction)."""
    ncol = len(headers)
    body = body or [[""] * ncol]
    widths = [max(len(line) for t in [headers[j]] + [r[j] for r in body] for line in str(t).split("\n")) + 2
              for j in range(ncol)]
    lines = [max(h.count("\n") + 1 for h in headers)] + [max(str(c).count("\n") + 1 for c in r) for r in body]
    box_w, box_h = rect[2] * PAGE[0] * 72, rect[3] * PAGE[1] * 72
    fs = min(max_font, box_w / (CHAR_W * sum(widths)), (box_h - PAD * len(lines)) / (LINE * sum(lines)))
    fs = max(fs, 3.0)
    heights = [LINE * fs * n + PAD for n in lines]
    w_frac = CHAR_W * fs * sum(widths) / (PAGE[0] * 72)
    h_frac = sum(heights) / (PAGE[1] * 72)
    top = rect[1] + rect[3]
    ax = fig.add_axes([rect[0], top - h_frac, w_frac, h_frac])
    ax.set_axis_off()
    table = ax.table(cellText=body, colLabels=headers, cellLoc="center", colWidths=[w / sum(widths) for w in widths],
                     bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(fs)
    for (i, j), cell in table.get_celld().items():
        cell.set_height(heights[i] / sum(heights))
        cell.set_linewidth(0.3)
        if i == 0:
            cell.set_facecolor("#dde3ea")
            cell.get_text().set_fontweight("bold")
        elif colours is not None:
            cell.set_facecolor(colours[i - 1][j])
        if i > 0 and bold is not None and bold[i - 1][j]:
            cell.get_text().set_fontweight("bold")
        if j == 0:
            cell.get_text().set_horizontalalignment("left")
            cell.PAD = 0.5 / widths[0]
    return top - h_frac


def _table_pages(t, title_prefix: str) -> list[Figure]:
    spec, gap = t.spec, t.gap
    cells = {(r.col_index, r.row_index): r for r in gap.itertuples()}
    pages = []
    panels = spec.panels
    for k, panel in enumerate(panels):
        cols = [(i, c) for i, c in enumerate(spec.columns) if c.panel == panel]
        # at most 9 columns per page: wide panels continue on the next page
        for start in range(0, len(cols), 9):
            chunk = cols[start:start + 9]
            headers = ["Method"] + ["\n".join(textwrap.wrap(c.label, 18)) for _, c in chunk]
            body, colours, bold = [], [], []
            for ri, row in enumerate(spec.rows):
                line, col_line, bold_line = [row_label(row.label, row.method)], ["white"], [False]
                for i, _ in chunk:
                    c = cells[(i, ri)]
                    ours, paper = cell_parts(c, spec.digits)
                    line.append(f"{ours}\n{paper}" if paper else ours)
                    col_line.append(STATUS_COLOURS.get(c.status, "white"))
                    bold_line.append(bool(c.best and c.n))
                body.append(line)
                colours.append(col_line)
                bold.append(bold_line)
            part = f" — {panel}" if panel else ""
            if len(cols) > 9:
                part += f" (columns {start + 1}–{start + len(chunk)} of {len(cols)})"
            fig = _page(f"{title_prefix}{spec.title}{part} — paper profile",
                        selection_line(spec, t.selection, t.protocol) + " Cells: ours mean ± std (n = seeds) over "
                        "paper-profile runs of the current code; "
                        "below: (paper, Δ). Bold: our best per column. Green: within tolerance; red: outside; "
                        f"grey: not yet run; yellow: runs exist but cannot be selected. {BIAS_MARK}: trains with "
                        "bias labels.")
            bottom = _draw_table(fig, [0.03, 0.3, 0.94, fig.content_top - 0.3], headers, body, colours, bold)
            notes = list(spec.notes) + [f"{r.row} / {r.column}: {r.note}" for r in gap.itertuples() if r.note
                                        and any(r.col_index == i for i, _ in chunk)]
            run_ids = sorted({x for ids in gap["run_ids"] for x in ids})
            notes.append(f"runs read by this table ({len(run_ids)}): " + (", ".join(run_ids[:24]) + (" …" if len(run_ids) > 24 else "")
                                                        if run_ids else "none"))
            _notes(fig, notes, top=bottom - 0.03)
            pages.append(fig)
    return pages


def _figure_page(f) -> Figure:
    fig = _page(f"{f.spec.title} — paper profile", f"Selection: {LABELS[f.selection]}. Drawn from {len(f.run_ids)} stored run(s): "
                + (", ".join(f.run_ids[:20]) + (" …" if len(f.run_ids) > 20 else "")) if f.figure is not None
                else "Not drawn.")
    if f.figure is not None:
        buf = io.BytesIO()
        f.figure.savefig(buf, format="png", dpi=150)
        buf.seek(0)
        import matplotlib.image as mpimg
        img = mpimg.imread(buf, format="png")
        h, w = img.shape[:2]
        box_w, box_h = 0.94, fig.content_top - 0.24
        aspect = (w / h) * (PAGE[1] / PAGE[0])
        if aspect > box_w / box_h:
            ww, hh = box_w, box_w / aspect
        else:
            ww, hh = box_h * aspect, box_h
        ax = fig.add_axes([0.03 + (box_w - ww) / 2, 0.24 + (box_h - hh), ww, hh])
        ax.imshow(img, interpolation="antialiased")
        ax.set_axis_off()
    _notes(fig, list(f.notes), top=0.2)
    return fig


def _summary_pages(sec) -> list[Figure]:
    s = sec.summary
    headers = ["Artefact", "Selection", "Profile", "Paper\ncells", "Within\ntolerance", "Outside", "Not yet\nrun",
               "Not\nselectable"]
    body = [[str(v) for v in list(r)[1:]] for r in s.itertuples(index=False)]
    body.append(["total", "", "", *(str(int(s[c].sum())) for c in s.columns[4:])])
    fig = _page(f"{sec.title} — summary", sec.citation)
    bottom = _draw_table(fig, [0.03, 0.5, 0.94, fig.content_top - 0.5], headers, body, max_font=9)
    lists = [gap_list(t.gap, t.spec) for t in sec.tables]
    lists = [x for x in lists if not x.empty]
    rows = [] if not lists else [[str(v) for v in r] for r in
                                 pd.concat(lists, ignore_index=True).itertuples(index=False)]
    gl_headers = ["Artefact", "Method", "Column", "Ours", "Paper", "Δ", "Tolerance", "Status", "Profile", "Seeds"]
    pages = [fig]
    if not rows:
        fig.text(0.03, bottom - 0.05, "No cell has both our number and the paper's yet.", fontsize=9)
        return pages
    first, rest = rows[:12], rows[12:]
    fig.text(0.03, bottom - 0.05, "Cells with both numbers:", fontsize=9, weight="bold")
    _draw_table(fig, [0.03, 0.06, 0.94, bottom - 0.14], gl_headers, first,
                colours=[[STATUS_COLOURS.get(r[7], "white")] * len(r) for r in first], max_font=8)
    for start in range(0, len(rest), ROWS_PER_PAGE):
        chunk = rest[start:start + ROWS_PER_PAGE]
        p = _page(f"{sec.paper}: cells with both numbers (continued)")
        _draw_table(p, [0.03, 0.06, 0.94, p.content_top - 0.06], gl_headers, chunk,
                    colours=[[STATUS_COLOURS.get(r[7], "white")] * len(r) for r in chunk], max_font=8)
        pages.append(p)
    return pages


def _provenance_pages(report: Report) -> list[Figure]:
    df = report.provenance
    if df.empty:
        fig = _page("Provenance: every stored run")
        fig.text(0.03, 0.85, "No stored run.", fontsize=10)
        return [fig]
    body = [["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in r]
            for r in df.itertuples(index=False)]
    pages = []
    n_pages = math.ceil(len(body) / ROWS_PER_PAGE)
    for k in range(n_pages):
        fig = _page(f"Provenance: every stored run; read_by: the specs that read it ({k + 1}/{n_pages})",
                    "run id = hash of the run's full spec (results/runs/<run id>.json); commit = the code version "
                    "that ran it (+dirty: with local changes); created = when the record was written (UTC).")
        chunk = body[k * ROWS_PER_PAGE:(k + 1) * ROWS_PER_PAGE]
        _draw_table(fig, [0.03, 0.05, 0.94, fig.content_top - 0.05], list(df.columns), chunk, max_font=7)
        pages.append(fig)
    return pages


def _title_page(report: Report) -> Figure:
    code = report.code
    fig = _page("Reproduction report")
    lines = [f"Generated: {report.generated}",
             f"Code: biasbench {code.get('package')} at commit {(code.get('commit') or 'unknown')[:12]}"
             f"{' (with local changes)' if code.get('dirty') else ''}",
             f"Result store: {report.store} ({report.n_runs} finished runs; {int((report.provenance['read_by'] != '').sum())} read here)",
             f"Selection: {selection_text(report).replace('`', '')}", "Budget profile: paper (tables and figures read paper-profile runs of the current code only)", "",
             "Cells: ours mean ± std (n = seeds), with (paper, Δ = ours − paper).",
             "Within tolerance: |Δ| ≤ max(tolerance, 2 × the paper's std) — see results/papers/<paper>/README.md.", ""]
    for sec in report.sections:
        s = sec.summary
        counts = (f"{int(s['within'].sum())} within, {int(s['outside'].sum())} outside, "
                  f"{int(s['not run'].sum())} not yet run" if s is not None and not s.empty else "figures only")
        lines.append(f"{sec.title} ({sec.paper}): {len(sec.tables)} table(s), {len(sec.figures)} figure(s); {counts}")
    wrapped = [w for line in lines for w in (textwrap.wrap(line, 140, subsequent_indent="    ") or [""])]
    fig.text(0.05, 0.85, "\n".join(wrapped), fontsize=10, va="top", linespacing=1.6)
    return fig


def report_pages(report: Report) -> list[Figure]:
    """Every page in order: title, then per paper its summary, tables and figures, then provenance."""
    pages = [_title_page(report)]
    for sec in report.sections:
        if sec.tables:
            pages += _summary_pages(sec)
        for t in sec.tables:
            pages += _table_pages(t, "")
        for f in sec.figures:
            pages.append(_figure_page(f))
    pages += _provenance_pages(report)
    for i, p in enumerate(pages):
        _footer(p, f"biasbench reproduction report — {report.generated} — page {i + 1} of {len(pages)}")
    return pages


def write_pdf(report: Report, path: str | Path, png_dir: str | Path | None = None) -> Path:
    """Write the report to one PDF (and, with ``png_dir``, each page as a PNG for a quick look)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pages = report_pages(report)
    with PdfPages(path, metadata={"Title": "biasbench reproduction report", "Creator": "biasbench"}) as pdf:
        for i, fig in enumerate(pages):
            pdf.savefig(fig)
            if png_dir is not None:
                Path(png_dir).mkdir(parents=True, exist_ok=True)
                fig.savefig(Path(png_dir) / f"page-{i + 1:03d}.png", dpi=110)
    return path


def count_pages(path: str | Path) -> int:
    """Pages in a PDF, counted from its page objects (no PDF library needed)."""
    import re
    data = Path(path).read_bytes()
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))

