"""The outputs of a run: ``report.html``, ``results.json`` and ``summary.md``.

* :func:`write_results_json` - the results in the versioned schema (stable key order).
* :func:`write_summary_md` - a bounded Markdown summary for a CI job summary; first line = gate.
* :func:`render_html` - one self-contained, offline HTML report with every logged text escaped.
* :func:`write_junit_xml` - one JUnit test case per task and candidate.
"""

from __future__ import annotations

from migrate_eval.report._format import VERDICT_LABELS, gate_sentence, verdict_label
from migrate_eval.report.html import render_html, render_html_text
from migrate_eval.report.junit import render_junit_xml, write_junit_xml
from migrate_eval.report.results_json import read_results_json, results_to_json, write_results_json
from migrate_eval.report.summary import md_escape, render_summary_md, write_summary_md

__all__ = [
    "VERDICT_LABELS",
    "gate_sentence",
    "md_escape",
    "read_results_json",
    "render_html",
    "render_html_text",
    "render_junit_xml",
    "render_summary_md",
    "results_to_json",
    "verdict_label",
    "write_junit_xml",
    "write_results_json",
    "write_summary_md",
]
