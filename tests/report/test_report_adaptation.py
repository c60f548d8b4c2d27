"""The "Prompt adaptation" section: results.json (schema 1.2) carries it, summary.md and
report.html render it, every text escaped; a results.json without it (schema 1.1) still loads."""

from __future__ import annotations

import json
from pathlib import Path

from markupsafe import escape

from migrate_eval.core.results import (
    AdaptationPaired,
    AdaptationSummary,
    AdaptCost,
    Results,
    TaskAdaptationResult,
)
from migrate_eval.report import render_html_text, render_summary_md
from migrate_eval.report.results_json import read_results_json, results_to_json

from .conftest import HOSTILE_TASK, XSS, Run

DIFF = (
    "--- t/system_prompt (before)\n+++ t/system_prompt (adapted)\n@@ -1 +1,2 @@\n"
    ' You do things.\n+Answer only with JSON: {"reply": "<script>alert(9)</script>"}\n'
)


def adaptation() -> AdaptationSummary:
    cost = AdaptCost(planned_requests=90, optimiser_requests=4, candidate_requests=60, cached=2)
    return AdaptationSummary(
        seed=7,
        held_out_fraction=0.5,
        alpha=0.05,
        rounds=3,
        planned_requests=90,
        results=[
            TaskAdaptationResult(
                task=HOSTILE_TASK,
                candidate="llama-70b",
                optimiser="opt " + XSS["img"],
                outcome="ready_after_adaptation",
                run_verdict="not_ready",
                verdict_before="not_ready",
                verdict_after="ready",
                parity_before=0.41,
                parity_after=0.93,
                n_adaptation=7,
                n_held_out=7,
                paired=AdaptationPaired(n=7, mean_difference=0.52, wilcoxon_p=0.0078),
                rounds=2,
                changes=["system_prompt", "response_format"],
                prompt_diff=DIFF,
                cost=cost.model_copy(update={"cost_usd": 0.0123}),
            ),
            TaskAdaptationResult(
                task="summarize",
                candidate="mistral-large",
                optimiser="mistral-large",
                outcome="no_reliable_gain",
                run_verdict="not_ready",
                verdict_before="not_ready",
                verdict_after="not_ready",
                parity_before=0.3,
                parity_after=0.31,
                n_held_out=7,
                paired=AdaptationPaired(n=7, mean_difference=0.01, wilcoxon_p=0.4),
                rounds=1,
                changes=["system_prompt"],
                prompt_diff="",
                cost=cost,
            ),
            TaskAdaptationResult(
                task="extract-invoice",
                candidate="mistral-large",
                optimiser="mistral-large",
                outcome="not_adapted",
                reason="too few exchanges " + XSS["script"],
                run_verdict="needs_evidence",
                cost=AdaptCost(planned_requests=0),
            ),
        ],
    )


def _with_adaptation(run: Run) -> Results:
    return run.results.model_copy(update={"adaptation": adaptation()})


def test_report_html_renders_the_section_escaped(run: Run) -> None:
    html = render_html_text(_with_adaptation(run), run.scores, run.exchanges, run.replays)
    assert '<section id="adaptation">' in html and 'href="#adaptation"' in html
    section = html.split('<section id="adaptation">', 1)[1].split("</section>", 1)[0]
    for words in ("ready after adaptation", "no reliable gain", "not adapted"):
        assert words in section
    assert "0.410 → 0.930" in section and "0.0078" in section and "$0.0123" in section
    assert "system_prompt, response_format" in section
    # the diff, escaped: no tag of it reaches the page
    assert "<script>alert(9)" not in html
    assert str(escape('+Answer only with JSON: {"reply": "<script>alert(9)</script>"}')) in section
    assert XSS["script"] not in section and str(escape(XSS["script"])) in section
    assert str(escape(HOSTILE_TASK)) in section
    # shown in its own section, not again as a generic extra table
    assert "<code>adaptation" not in html


def test_results_json_carries_it_and_an_old_file_still_loads(run: Run, tmp_path: Path) -> None:
    results = _with_adaptation(run)
    text = results_to_json(results)
    assert text.startswith('{\n  "schema_version": "1.2"')
    path = tmp_path / "results.json"
    path.write_text(text, encoding="utf-8")
    back = read_results_json(path)
    assert back.adaptation == results.adaptation
    # a results.json written before adaptation existed (schema 1.1, no key) loads and renders
    old = json.loads(results_to_json(run.results))
    old.pop("adaptation", None)
    old["schema_version"] = "1.1"
    path.write_text(json.dumps(old), encoding="utf-8")
    loaded = read_results_json(path)
    assert loaded.adaptation is None and loaded.schema_version == "1.1"
    html = render_html_text(loaded, run.scores, run.exchanges, run.replays)
    assert 'id="adaptation"' not in html


def test_summary_md_has_one_line_per_pair_and_the_diff(run: Run) -> None:
    md = render_summary_md(_with_adaptation(run))
    section = md.split("## Prompt adaptation", 1)[1]
    assert md.count("## Prompt adaptation") == 1
    assert "**ready after adaptation**; held-out parity 0.410 -> 0.930" in section
    assert "**no reliable gain**" in section and "not adapted (too few exchanges" in section
    assert "```diff\n" + DIFF.rstrip("\n") + "\n```" in section
    assert "<script>" not in section.replace(DIFF, "")  # outside the code block: escaped
