"""``junit.xml``: one test case per task and candidate, for CI test-report viewers.

Mapping (documented in docs/ci.md):

* ``ready`` -> a passing test case;
* ``ready_with_caveats`` -> a passing test case whose ``<system-out>`` lists the caveats
  (caveats are evidence to read, not a failure; the gate decides whether they block);
* ``not_ready`` -> a ``<failure>`` with the reasons;
* ``cannot_judge`` -> an ``<error>`` (the run could not decide: infrastructure or data problem).

One ``<testsuite>`` per candidate (``migrate-eval.<candidate>``). Every text from the run is
escaped by the XML writer; characters XML 1.0 cannot hold are dropped.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from migrate_eval.core.outputs import write_text_atomic
from migrate_eval.core.results import CandidateResult, Results, TaskResult
from migrate_eval.report._format import fmt_interval, fmt_pct, verdict_label

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: object) -> str:
    return _INVALID_XML.sub("", str(text))


def _details(c: CandidateResult, t: TaskResult) -> str:
    lines = [
        f"candidate: {c.name} ({c.provider}:{c.model})",
        f"task: {t.task}",
        f"verdict: {verdict_label(t.verdict)}",
        f"parity: {fmt_interval(t.parity)} (minimum {t.min_parity:g})",
        f"scored: {t.n} of {t.n_total}; errors: {t.errors.count} ({fmt_pct(t.errors.rate)})",
    ]
    lines += [f"- {r.message} [{r.code}]" for r in t.reasons]
    return "\n".join(lines)


def render_junit_xml(results: Results) -> str:
    """The text of ``junit.xml``."""
    root = ET.Element("testsuites", name=_x(f"migrate-eval {results.suite}"))
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for c in results.candidates:
        suite = ET.SubElement(root, "testsuite", name=_x(f"migrate-eval.{c.name}"))
        counts = {"tests": 0, "failures": 0, "errors": 0}
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("provider", c.provider),
            ("model", c.model),
            ("verdict", c.verdict),
            ("parity", fmt_interval(c.parity)),
        ):
            ET.SubElement(props, "property", name=key, value=_x(value))
        for t in c.tasks:
            counts["tests"] += 1
            case = ET.SubElement(
                suite, "testcase", classname=_x(f"migrate-eval.{c.name}"), name=_x(t.task)
            )
            case.set("time", "0")
            details = _x(_details(c, t))
            first = _x(t.reasons[0].message) if t.reasons else verdict_label(t.verdict)
            if t.verdict == "not_ready":
                counts["failures"] += 1
                el = ET.SubElement(case, "failure", message=first, type="not_ready")
                el.text = details
            elif t.verdict in ("cannot_judge", "needs_evidence"):
                counts["errors"] += 1
                el = ET.SubElement(case, "error", message=first, type=t.verdict)
                el.text = details
            else:
                out = ET.SubElement(case, "system-out")
                out.text = (
                    "ready with caveats (passes; read them):\n" + details
                    if t.verdict == "ready_with_caveats"
                    else details
                )
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("skipped", "0")
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit_xml(results: Results, path: str | os.PathLike[str]) -> None:
    """Write ``junit.xml`` (UTF-8)."""
    write_text_atomic(Path(path), render_junit_xml(results))


__all__ = ["render_junit_xml", "write_junit_xml"]
