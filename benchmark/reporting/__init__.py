"""Reports beside the papers: tables with the reproduction gap, figures, and one PDF.

Pure functions of the result store's frame (``ResultStore.query()``), the paper references
(``benchmark.references.load_references()``) and report specs (``reports/specs/*.toml``):

* :mod:`.spec` parses specs; :mod:`.runs` selects runs — paper evidence only
  (:mod:`benchmark.evidence`, the rule ``status`` counts by) — and reads numbers at the epoch a
  :mod:`benchmark.selection` strategy picks;
* :mod:`.findings` writes each paper's "What reproduces and what doesn't" (cells and the documented
  findings of ``results/papers/<paper>/findings.toml``);
* :mod:`.tables` builds the gap frame and renders markdown / LaTeX and per-paper summaries;
* :mod:`.figures` draws the papers' figures from stored runs;
* :mod:`.reevaluated` says which stored re-evaluations (``python -m benchmark reeval``, computed
  after training from kept weights) specs read, and what a report says where one is missing;
* :mod:`.build` assembles everything by paper and writes files; :mod:`.pdf` writes one PDF.

Nothing here imports torch, the engine or a plug-in: a report needs only the store (method facts
such as "uses bias labels" and bias-head class counts come from the plug-in catalogue,
:mod:`benchmark.catalogue`, plain data rebuilt only when plug-in source changed).

``python -m benchmark report`` is the command-line entry point.
"""
from .build import Report, build_report, report_markdown, write_report
from .figures import FIGURES, make_figure
from .spec import DEFAULT_SPEC_DIR, ReportSpec, SpecError, load_spec, load_specs
from .tables import gap_frame, overview_table, summary_frame, to_latex, to_markdown

__all__ = ["Report", "build_report", "report_markdown", "write_report", "FIGURES", "make_figure",
           "DEFAULT_SPEC_DIR", "ReportSpec", "SpecError", "load_spec", "load_specs", "gap_frame", "overview_table",
           "summary_frame", "to_latex", "to_markdown"]
