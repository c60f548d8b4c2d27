"""results.json and summary.md."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from migrate_eval.core.results import Interval, Results, TaskResult
from migrate_eval.report import (
    md_escape,
    read_results_json,
    render_summary_md,
    write_results_json,
    write_summary_md,
)
from migrate_eval.report.summary import MAX_SUMMARY_CHARS, MAX_TASK_ROWS

from .conftest import HOSTILE_TASK, XSS, Run, build_run


def test_results_json_round_trips(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "results.json"
    write_results_json(run.results, path)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.startswith('{\n  "schema_version": "1.2"')
    again = Results.model_validate(json.loads(text))
    assert again == run.results
    assert read_results_json(path) == run.results
    # UTF-8, not \u escapes, and the hostile text is kept verbatim (it's data)
    assert HOSTILE_TASK in text


def test_results_json_stable(run: Run, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_results_json(run.results, a)
    shuffled = run.results.model_copy(deep=True)
    shuffled.thresholds = dict(reversed(list(shuffled.thresholds.items())))
    write_results_json(shuffled, b)
    assert a.read_bytes() == b.read_bytes()
    data = json.loads(a.read_text(encoding="utf-8"))
    assert list(data["thresholds"]) == sorted(data["thresholds"])
    assert list(data)[:3] == ["schema_version", "tool_version", "suite"]


def test_results_json_nan_is_null(run: Run, tmp_path: Path) -> None:
    res = run.results.model_copy(deep=True)
    res.candidates[0].parity = Interval(mean=math.nan, ci_low=None, ci_high=None)
    path = tmp_path / "r.json"
    write_results_json(res, path)
    data = json.loads(path.read_text(encoding="utf-8"))  # strict JSON
    assert data["candidates"][0]["parity"]["mean"] is None


def test_summary_first_line_states_gate(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    write_summary_md(run.results, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# migrate-eval: gate FAIL - 1 of 2 candidates not ready"
    text = "\n".join(lines)
    assert "SIMULATED" not in text
    assert "⚠️ Ready with caveats" in text and "❌ Not ready" in text
    assert "0.860 [0.810, 0.910]" in text
    assert "1250 ms" in text


def test_summary_gate_pass(run: Run) -> None:
    res = run.results.model_copy(deep=True)
    res.gate, res.exit_code = "pass", 0
    for c in res.candidates:
        c.verdict = "ready"
    assert (
        render_summary_md(res).splitlines()[0]
        == "# migrate-eval: gate PASS - 2 of 2 candidates ready"
    )


def test_summary_notes_simulated(simulated_run: Run) -> None:
    text = render_summary_md(simulated_run.results)
    assert text.splitlines()[0].startswith("# migrate-eval: gate FAIL")
    assert "SIMULATED DATA" in text.split("## Candidates")[0]


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_summary_escapes_pipes_and_html(run: Run) -> None:
    text = render_summary_md(run.results)
    for block in text.split("\n\n"):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if rows:
            assert len({_unescaped_pipes(r) for r in rows}) == 1, rows
    assert "route &lt;script&gt;alert\\(1\\)&lt;/script&gt; \\| \\{\\{ 7\\*7 \\}\\}" in text
    for payload in (XSS["script"], XSS["img"], XSS["script_break"]):
        assert payload not in text
    assert "<" not in text.replace("<!--", "")


def test_md_escape() -> None:
    assert md_escape("a|b") == "a\\|b"
    assert md_escape("line1\nline2 | x") == "line1 line2 \\| x"
    assert md_escape("<b>*x*</b>") == "&lt;b&gt;\\*x\\*&lt;/b&gt;"
    assert md_escape("[link](javascript:alert(3))") == "\\[link\\]\\(javascript:alert\\(3\\)\\)"
    assert md_escape("x" * 500, 20).endswith("…") and len(md_escape("x" * 500, 20)) == 20


def test_summary_bounded_with_many_tasks() -> None:
    run = build_run()
    res = run.results.model_copy(deep=True)
    template = res.candidates[1].tasks[0]
    extra: list[TaskResult] = []
    for i in range(800):
        tr = template.model_copy(deep=True)
        tr.task = f"task-{i:04d} " + "|" * 50 + "x" * 300
        extra.append(tr)
    for c in res.candidates:
        c.tasks = c.tasks + extra
    text = render_summary_md(res)
    assert len(text) <= MAX_SUMMARY_CHARS
    assert "more task(s) not shown" in text
    task_rows = [
        ln for ln in text.split("## Tasks")[1].split("\n\n")[2].splitlines() if ln.startswith("| ")
    ]
    assert len(task_rows) == 1 + MAX_TASK_ROWS  # header + rows
    assert "more; see report.html" in text


def _candidate_table(text: str) -> list[str]:
    block = text.split("## Candidates")[1].split("\n\n")[1]
    rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    assert len({_unescaped_pipes(r) for r in rows}) == 1, rows  # every row has every column
    return rows


def test_summary_candidates_show_noise_floor_and_monthly_cost(run: Run) -> None:
    res = run.results.model_copy(deep=True)
    # the fixture's run has a noise floor and no price projection
    rows = _candidate_table(render_summary_md(res))
    assert "| Noise floor |" in rows[0] and "Monthly cost" not in rows[0]
    assert all("| 0.930 |" in r for r in rows[2:])

    cheap, dear = res.candidates
    cheap.cost.monthly_usd, cheap.cost.baseline_monthly_usd = 1232.0, 1400.0
    dear.cost.monthly_usd, dear.cost.baseline_monthly_usd = 2100.0, 1400.0
    rows = _candidate_table(render_summary_md(res))
    assert rows[0].endswith("| Cost | Monthly cost |")
    assert rows[2].endswith("| $1,232.00/month (-12% vs OpenAI $1,400.00/month) |")
    assert rows[3].endswith("| $2,100.00/month (+50% vs OpenAI $1,400.00/month) |")

    # no logged-model cost: the projection alone; no projection for a candidate: n/a
    cheap.cost.baseline_monthly_usd = None
    dear.cost.monthly_usd = None
    rows = _candidate_table(render_summary_md(res))
    assert rows[2].endswith("| $1,232.00/month |") and rows[3].endswith(
        "| n/a (no monthly figure: the logs give no volume to project) |"
    )

    # neither figure anywhere: the table keeps its original columns
    cheap.cost.monthly_usd = None
    for c in res.candidates:
        c.noise_floor = None
    rows = _candidate_table(render_summary_md(res))
    assert rows[0] == "| Candidate | Verdict | Parity [95% CI] | Error rate | p95 latency | Cost |"


def test_summary_candidate_table_stays_bounded_with_many_candidates(run: Run) -> None:
    res = run.results.model_copy(deep=True)
    template = res.candidates[1]
    template.cost.monthly_usd, template.cost.baseline_monthly_usd = 1e12, 1e-9
    res.candidates = [
        template.model_copy(update={"name": f"cand-{i} " + "|<b>" * 100}, deep=True)
        for i in range(200)
    ]
    text = render_summary_md(res)
    assert len(text) <= MAX_SUMMARY_CHARS
    rows = _candidate_table(text)
    assert len(rows) == 2 + 50  # header, separator, MAX_CANDIDATE_ROWS
    assert all(len(r) < 1000 for r in rows)
    assert rows[2].endswith(
        "| $1,000,000,000,000.00/month (>+999% vs OpenAI under $0.000001/month) |"
    )
    assert "<" not in text
    assert "<b>" not in text and "150 more candidate(s) not shown" in text


def test_summary_says_whether_logged_content_was_redacted(run: Run) -> None:
    from migrate_eval.core.results import RedactionSummary

    res = run.results.model_copy(deep=True)
    res.redaction = None
    assert "redaction" not in render_summary_md(res)
    res.redaction = RedactionSummary(enabled=False, entities=[], exchanges=40, exchanges_affected=0)
    assert (
        "PII redaction was off: candidates got the logged content as logged."
        in render_summary_md(res)
    )
    res.redaction = RedactionSummary(
        enabled=True,
        entities=["email"],
        exchanges=40,
        exchanges_affected=7,
        values=9,
        by_entity={"email": 9},
        occurrences_by_entity={"email": 12},
    )
    assert (
        "PII redaction was on: 9 value(s) replaced in 7 of 40 exchange(s) before replay."
        in render_summary_md(res)
    )


def test_self_hosted_cost_shows_servers_and_its_basis(run: Run) -> None:
    from migrate_eval.report import render_html_text

    res = run.results.model_copy(deep=True)
    gpu = res.candidates[0]
    gpu.cost.monthly_usd, gpu.cost.servers = 3652.5, 2
    gpu.cost.cost_basis = "2 servers x $2.5/h, always on (730.5 h/month), sized for the peak"
    rows = _candidate_table(render_summary_md(res))
    assert rows[2].endswith("| $3,652.50/month, 2 servers |")
    html = render_html_text(res, run.scores, {}, {})
    assert "Self-hosting" in html and "2 servers x $2.5/h, always on" in html
