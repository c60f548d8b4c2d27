"""report.html: content, escaping of hostile logged content, self-containment."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape

from migrate_eval.core.results import SCHEMA_VERSION
from migrate_eval.report import VERDICT_LABELS, render_html, render_html_text
from migrate_eval.report.html import MAX_REGRESSIONS, build_page

from .conftest import CANDIDATES, HOSTILE_TASK, PER_TASK, TASKS, XSS, Run

JS = (Path(__file__).parents[2] / "migrate_eval" / "report" / "templates" / "report.js").read_text(
    encoding="utf-8"
)
URL_ATTRS = {
    "href",
    "src",
    "action",
    "formaction",
    "srcset",
    "poster",
    "data",
    "xlink:href",
    "background",
    "cite",
}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.scripts: list[str] = []
        self.data_scripts: list[str] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag == "script" and ("type", "application/json") in attrs:
            self._in = "data"
            self.data_scripts.append("")
        elif tag in ("script", "style"):
            self._in = tag
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in or (tag == "script" and self._in == "data"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "data":
            self.data_scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data
        else:
            self.text.append(data)


def _parse(html: str) -> _Collector:
    p = _Collector()
    p.feed(html)
    p.close()
    return p


@pytest.fixture
def html(run: Run, tmp_path: Path) -> str:
    out = tmp_path / "out" / "report.html"
    render_html(run.results, run.scores, run.exchanges, run.replays, out)
    assert out.is_file()
    return out.read_text(encoding="utf-8")


def test_file_written_and_self_describing(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert "</html>" in html
    for name in CANDIDATES:
        assert name in html
    # both verdicts of the fixture, and the legend with every label
    for label in VERDICT_LABELS.values():
        assert label in html
    # the gate is said after the decision, not as a red headline before it
    assert "CI gate: FAIL (exit code 1), 1 of 2 candidates not ready" in html
    assert html.index("decision-sentence") < html.index("CI gate: FAIL")
    assert "Gate: FAIL" not in html and 'class="gate gate-fail"' not in html
    for section in ("verdict", "tasks", "evidence", "cost", "ingest", "method"):
        assert f'id="{section}"' in html


def test_verdict_first_then_matrix_then_evidence(html: str) -> None:
    order = [html.index(f'id="{s}"') for s in ("verdict", "tasks", "evidence", "ingest", "method")]
    assert order == sorted(order)
    # the overall parity with its interval is on the first screen
    verdict = html[html.index('id="verdict"') : html.index('id="tasks"')]
    assert "0.860" in verdict and "[0.810, 0.910]" in verdict
    assert "Ready with caveats" in verdict and "Not ready" in verdict
    assert "3 tasks have fewer than 30 scored exchanges" in verdict


def test_xss_corpus_only_escaped(html: str) -> None:
    parsed = _parse(html)
    visible = "".join(parsed.text)
    for key, payload in XSS.items():
        if key == "line_sep":
            assert "\u2028" not in html and "&#x2028;" in html
            assert payload in visible  # shown to the reader as the character
            continue
        if any(ch in payload for ch in "<>\"'&"):
            assert payload not in html, key
            assert str(escape(payload)) in html, key
        else:
            # nothing to escape: it must be shown literally, as text
            assert payload in html, key
        assert payload in visible, key
    # jinja never evaluated logged template syntax
    assert "{{ 7*7 }}" in visible
    assert "{% raw %}" in visible
    assert HOSTILE_TASK in visible


def test_no_external_references_no_handlers_single_own_script(html: str) -> None:
    parsed = _parse(html)
    for tag, attrs in parsed.tags:
        assert tag not in ("img", "iframe", "object", "embed", "link", "base", "form", "frame"), tag
        for name, value in attrs:
            assert not name.lower().startswith("on"), (tag, name)
            if name.lower() in URL_ATTRS and value is not None:
                v = value.strip().lower()
                assert not v.startswith(("http:", "https:", "//", "javascript:", "data:")), (
                    tag,
                    name,
                    value,
                )
                assert name.lower() != "href" or v.startswith("#"), value
            if name.lower() == "style" and value:
                assert "url(" not in value.lower()
    # one executable script (the package's own); the others are JSON data, never executed
    assert [t for t, _ in parsed.tags].count("script") == 1 + len(parsed.data_scripts)
    assert parsed.scripts == [JS]
    assert len(parsed.data_scripts) == 2
    for data in parsed.data_scripts:
        json.loads(data)
        # the data cannot close its element nor open markup, whatever the logs hold
        assert not set(data) & {"<", ">", "&", "\u2028", "\u2029"}
    for payload in XSS.values():
        assert payload not in parsed.scripts[0]
    for css in parsed.styles:
        assert "url(" not in css and "@import" not in css
    assert not re.search(r"https?://(?!127\.0\.0\.1)", "".join(parsed.styles) + parsed.scripts[0])


def test_content_security_policy_pins_the_script(html: str) -> None:
    metas = [dict(attrs) for tag, attrs in _parse(html).tags if tag == "meta"]
    csp = next(m["content"] for m in metas if m.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None
    assert "default-src 'none'" in csp
    digest = base64.b64encode(hashlib.sha256(JS.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp


def test_simulated_banner_iff_simulated(html: str, simulated_run: Run) -> None:
    assert "SIMULATED DATA" not in html
    sim = render_html_text(
        simulated_run.results, simulated_run.scores, simulated_run.exchanges, simulated_run.replays
    )
    assert "SIMULATED DATA" in sim
    assert sim.index("SIMULATED DATA") < sim.index('id="verdict"')


def test_regressions_lowest_first_capped(run: Run) -> None:
    page = build_page(run.results, run.scores, run.exchanges, run.replays)
    assert [t.name for t in page.tasks] == list(TASKS)
    for task in page.tasks:
        assert [g.candidate for g in task.groups] == list(CANDIDATES)
        for g in task.groups:
            assert 0 < len(g.items) <= MAX_REGRESSIONS
            parities = [float(r.parity) for r in g.items]
            assert parities == sorted(parities)
            sub = run.scores[(run.scores.task == task.name) & (run.scores.candidate == g.candidate)]
            assert parities[0] == pytest.approx(sub.parity.min(), abs=1e-3)
            assert all(r.user_message and r.user_message.startswith("question") for r in g.items)
            assert all(r.logged.text or r.logged.tool_calls for r in g.items)
    mistral = page.tasks[0].groups[1]
    assert mistral.failure_total == 2 and len(mistral.failures) == 2
    assert all(f.candidate.error and "HTTP 500" in f.candidate.error for f in mistral.failures)
    assert all(f.candidate.error_kind == "http_500" for f in mistral.failures)


def test_tool_calls_pretty_json_and_errors_shown(html: str) -> None:
    # logged tool call: parsed arguments, pretty-printed (indented), escaped
    assert "&#34;name&#34;: &#34;route&#34;" in html
    assert "\n    &#34;arguments&#34;: {" in html
    # candidate's invalid JSON arguments are shown raw and flagged
    assert "&#34;arguments_valid_json&#34;: false" in html
    # candidate errors with their message
    assert "HTTP 500 &lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt; | upstream" in html


def test_matrix_has_every_task_and_text_labels(html: str) -> None:
    matrix = html[html.index('id="matrix"') : html.index("</table>", html.index('id="matrix"'))]
    assert matrix.count("<tr>") == 1 + len(TASKS)
    assert matrix.count("Not ready") == len(TASKS)
    assert matrix.count("Ready with caveats") == len(TASKS)
    assert "small sample" in matrix
    assert str(escape(HOSTILE_TASK)) in matrix


def test_ingest_and_method(html: str) -> None:
    ingest = html[html.index('id="ingest"') : html.index('id="method"')]
    assert "45" in ingest and "invalid JSON" in ingest and "no response" in ingest
    assert "invalid JSON near &lt;script&gt;" in ingest
    method = html[html.index('id="method"') :]
    assert "migrate-eval run suites/demo --out reports/demo" in method
    assert "percentile bootstrap" in method
    assert "mean of the task&#39;s metrics" in method or "mean of the task's metrics" in method
    assert "Results schema" in method and SCHEMA_VERSION in method
    assert "min_samples" in method


def test_missing_data_does_not_fail(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    render_html(run.results, pd.DataFrame(), {}, {}, out)
    text = out.read_text(encoding="utf-8")
    assert "No scored exchanges." in text
    # scores present but logged exchanges and replays missing
    text = render_html_text(run.results, run.scores, {}, {})
    assert "The logged exchange is not available" in text
    assert "The candidate&#39;s answer is not available" in text


def test_ids_unique(html: str) -> None:
    ids = [v for _, attrs in _parse(html).tags for k, v in attrs if k == "id"]
    assert len(ids) == len(set(ids))
    # every in-page link points at an existing id
    hrefs = [v for _, attrs in _parse(html).tags for k, v in attrs if k == "href" and v]
    assert hrefs and all(h[1:] in ids for h in hrefs)


def test_control_characters_and_long_text(run: Run) -> None:
    ex_id = list(run.exchanges)[PER_TASK - 1]  # the lowest parity of the first task
    ex = run.exchanges[ex_id].model_copy(deep=True)
    assert ex.response is not None
    ex.response.text = "\x1b[31mred\x00 " + "y" * 10_000
    exchanges = {**run.exchanges, ex_id: ex}
    text = render_html_text(run.results, run.scores, exchanges, run.replays)
    assert "\x1b" not in text and "\x00" not in text
    assert "\\u001b[31mred\\u0000" in text
    assert "more characters not shown" in text
    assert "y" * 10_000 not in text


def test_all_perfect_and_other_verdicts(run: Run) -> None:
    res = run.results.model_copy(deep=True)
    res.candidates[0].verdict = "ready"
    res.candidates[1].verdict = "cannot_judge"
    res.gate, res.exit_code = "error", 3
    scores = run.scores.copy()
    scores.loc[scores.status == "ok", "parity"] = 1.0
    text = render_html_text(res, scores, run.exchanges, run.replays)
    assert "No scored exchange below parity 1.000" in text
    assert "CI gate: ERROR (exit code 3)" in text
    verdict = text[text.index('id="verdict"') : text.index('id="tasks"')]
    assert "badge v-ready" in verdict and "badge v-cannot-judge" in verdict
    assert "Cannot judge" in verdict and "</span> Ready</span>" in verdict
