"""report.html evidence: charts, diffs, confusion matrices, field mismatches, the exchange
browser's embedded data, and the first screen's figures; all escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markupsafe import escape

from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.results import TaskInfo
from migrate_eval.report import render_html_text
from migrate_eval.report.explorer import (
    MIN_BLOB_TEXT,
    confusion,
    embed_json,
    field_mismatches,
    histogram,
    histogram_svg,
    text_limit,
    word_diff,
)
from migrate_eval.report.html import build_page

from .conftest import CANDIDATES, PER_TASK, TASKS, XSS, Run, build_run


def _data(html: str, element_id: str) -> dict[str, object]:
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert m is not None
    data: dict[str, object] = json.loads(m.group(1))
    return data


def test_word_diff_marks_changes_and_escapes() -> None:
    left, right = word_diff(
        "the order <b>ships</b> on Monday", "the order <script>x</script> ships Tuesday"
    )
    assert "<del>" in left and "Monday" in left and "<ins>" in right and "Tuesday" in right
    assert "<script>" not in right and "&lt;script&gt;" in right
    assert "<b>" not in left and "&lt;b&gt;" in left
    # equal words are not marked
    assert "<del>the" not in left and "<ins>the" not in right
    same_l, same_r = word_diff("same text", "same text")
    assert "<del>" not in same_l and "<ins>" not in same_r


def test_histogram_counts_and_svg() -> None:
    counts = histogram([0.0, 0.05, 0.5, 0.95, 1.0, 1.0, float("nan")])
    assert counts == [2, 0, 0, 0, 0, 1, 0, 0, 0, 3]
    svg = str(histogram_svg(counts, f"cand {XSS['script']}", threshold=0.85))
    assert svg.startswith("<svg") and svg.count("<rect") == 10
    assert XSS["script"] not in svg and str(escape(XSS["script"])) in svg
    assert "hist-threshold" in svg


def test_report_has_histograms_and_diffs(run: Run) -> None:
    html = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    # one histogram per task and candidate
    assert html.count('<svg class="hist"') == len(TASKS) * len(CANDIDATES)
    assert '<pre class="content diff">' in html and "<ins>" in html


def test_exchange_blob_reaches_every_exchange_and_is_safe(run: Run) -> None:
    html = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    data = _data(html, "exchange-data")
    assert sorted(data["ids"]) == sorted(run.exchanges)  # type: ignore[arg-type]
    assert data["candidates"] == list(CANDIDATES)
    parity = data["parity"]
    assert isinstance(parity, list) and len(parity) == len(CANDIDATES)
    ids = data["ids"]
    assert isinstance(ids, list)
    i = ids.index(next(iter(run.exchanges)))
    row = run.scores[
        (run.scores["exchange_id"] == ids[i]) & (run.scores["candidate"] == CANDIDATES[0])
    ]
    assert parity[0][i] == round(float(row["parity"].iloc[0]), 3)
    # payloads survive as data (JSON-decoded) but never appear raw in the file
    texts = json.dumps(data, ensure_ascii=False)
    assert "<script>alert(1)</script>" in texts
    m = re.search(r'id="exchange-data">(.*?)</script>', html, re.S)
    assert m is not None and "<" not in m.group(1) and "\u2028" not in m.group(1)
    verdicts = _data(html, "task-verdicts")
    assert verdicts[CANDIDATES[1]] == {t: "not_ready" for t in TASKS}


def test_a_large_run_browses_the_lowest_parity_and_a_fixed_sample(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A million exchanges would embed a million rows (hundreds of MB): above the cap the
    browser shows, per task, its lowest-parity exchanges and a fixed sample of the rest."""
    from migrate_eval.report import explorer

    monkeypatch.setattr(explorer, "MAX_BROWSER_EXCHANGES", 12)
    monkeypatch.setattr(explorer, "MIN_BROWSER_PER_TASK", 2)
    html = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    ids = _data(html, "exchange-data")["ids"]
    assert isinstance(ids, list) and len(ids) == 12  # 4 of each task's 14
    assert f"12 of the run's {len(TASKS) * PER_TASK} exchanges" in html
    scores = run.scores
    ok = scores["status"] == "ok"
    worst = scores.assign(p=scores["parity"].where(ok, -1.0)).groupby("exchange_id")["p"].min()
    for task in TASKS:
        members = scores[scores["task"] == task]["exchange_id"].unique()
        lowest = worst[members].sort_values(kind="stable").index[:2]
        shown = [e for e in ids if e in set(members)]
        assert len(shown) == 4 and set(lowest) <= set(shown), task
    again = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    assert _data(again, "exchange-data")["ids"] == ids  # the same run shows the same ones


def test_embed_json_neutralises_markup() -> None:
    text = embed_json(json.dumps({"x": "</script><!-- & \u2028"}, ensure_ascii=False))
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": "</script><!-- & \u2028"}


def test_text_budget_keeps_large_runs_small() -> None:
    assert text_limit(100, 2) == 2000
    assert text_limit(100_000, 3) == 28
    assert text_limit(10_000_000, 3) == MIN_BLOB_TEXT


def _ex(i: int, text: str) -> Exchange:
    return Exchange(
        id=f"e{i}",
        source=Source(file="x.jsonl", line=i, format="chat-jsonl"),
        request={"messages": [{"role": "user", "content": "q"}]},
        response=Response(text=text),
    )


def test_confusion_matrix_from_answers() -> None:
    labels = [("billing", "billing"), ("billing", "shipping"), ("shipping", "shipping")]
    exchanges = {f"e{i}": _ex(i, a) for i, (a, _) in enumerate(labels)}
    replays = {
        (f"e{i}", "c"): ReplayResult(exchange_id=f"e{i}", candidate="c", response=Response(text=b))
        for i, (_, b) in enumerate(labels)
    }
    conf = confusion(list(exchanges), "c", exchanges, replays)
    assert conf is not None
    assert conf.labels == ["billing", "shipping"]
    assert conf.counts == [[1, 1], [0, 1]]
    assert conf.n == 3 and abs((conf.agreement or 0) - 2 / 3) < 1e-9


def test_json_field_mismatches() -> None:
    pairs = [
        (
            '{"name": "a", "total": 1, "addr": {"city": "X"}}',
            '{"name": "a", "total": 2, "addr": {"city": "Y"}}',
        ),
        (
            '{"name": "b", "total": 3, "addr": {"city": "Z"}}',
            '{"name": "b", "total": 3, "addr": {"city": "Q"}}',
        ),
        ('{"name": "c", "total": 4}', "not json"),
    ]
    exchanges = {f"e{i}": _ex(i, a) for i, (a, _) in enumerate(pairs)}
    replays = {
        (f"e{i}", "c"): ReplayResult(exchange_id=f"e{i}", candidate="c", response=Response(text=b))
        for i, (_, b) in enumerate(pairs)
    }
    rows = {
        r.field: (r.mismatches, r.compared)
        for r in field_mismatches("structured", list(exchanges), "c", exchanges, replays)
    }
    assert rows["addr.city"] == (2, 2)
    assert rows["total"] == (2, 3)
    assert rows["(valid JSON)"] == (1, 3)
    assert "name" in rows and rows["name"] == (1, 3)  # missing in the invalid answer


def test_tool_call_mismatches_in_report(run: Run) -> None:
    page = build_page(run.results, run.scores, run.exchanges, run.replays)
    tool_task = next(t for t in page.tasks if t.output == "tool_call")
    assert tool_task.mismatches
    fields = {m.field for _, rows in tool_task.mismatches for m in rows}
    assert any(f.startswith("route(") for f in fields)


def test_classification_task_gets_a_confusion_matrix(run: Run) -> None:
    results = run.results.model_copy(deep=True)
    results.tasks = [
        t.model_copy(update={"output": "classification"}) if t.name == "summarize" else t
        for t in results.tasks
    ]
    html = render_html_text(results, run.scores, run.exchanges, run.replays)
    assert html.count('class="confusion-table"') == len(CANDIDATES)


def test_first_screen_figures_and_unknown_fields(run: Run) -> None:
    results = run.results.model_copy(deep=True)
    page = build_page(results, run.scores, run.exchanges, run.replays)
    card = page.candidates[1]
    assert card.unsupported_rate == "0.0%"
    assert card.latency_change is not None and "vs logged OpenAI" in card.latency_change
    html = render_html_text(results, run.scores, run.exchanges, run.replays)
    verdict = html[html.index('id="verdict"') : html.index('id="tasks"')]
    assert "Noise floor" in verdict and "0.930" in verdict
    assert "Unsupported features" in verdict and "Latency change" in verdict


def test_sections_and_new_results_fields_render(tmp_path: Path) -> None:
    run = build_run()
    tasks = [
        *run.results.tasks,
        TaskInfo(
            name="extra", output="free_text", metrics=["chrf"], min_parity=0.8, n=0, source="suite"
        ),
    ]
    results = run.results.model_copy(update={"tasks": tasks})
    html = render_html_text(results, run.scores, run.exchanges, run.replays)
    for anchor in ("verdict", "tasks", "evidence", "exchanges", "cost", "ingest", "method"):
        assert f'id="{anchor}"' in html
    assert "Reproduce" in html and results.command in html
    assert f"{PER_TASK * len(TASKS)}" in html  # exchange count in the browser intro


def test_confusion_matrix_the_results_carry_is_rendered(run: Run) -> None:
    results = run.results.model_copy(deep=True)
    results.tasks = [
        t.model_copy(update={"output": "classification"}) if t.name == "summarize" else t
        for t in results.tasks
    ]
    tr = next(t for t in results.candidates[0].tasks if t.task == "summarize")
    if "confusion" not in type(tr).model_fields:
        return  # an older results model: the matrix is computed from the answers instead
    tr.confusion = {"refund": {"refund": 7, "other": 1}, "other": {"other": 4}}
    page = build_page(results, run.scores, run.exchanges, run.replays)
    task = next(t for t in page.tasks if t.name == "summarize")
    conf = dict(task.confusions)[CANDIDATES[0]]
    assert conf.labels == ["other", "refund"]
    assert conf.counts == [[4, 0], [1, 7]] and conf.n == 12


def test_task_evidence_compares_candidates_on_the_same_exchanges() -> None:
    from migrate_eval.core.suite import Thresholds
    from migrate_eval.verdict.aggregate import compare_candidates

    run = build_run()
    run.results.comparisons = compare_candidates(
        run.scores, run.results.tasks, list(CANDIDATES), Thresholds()
    )
    assert [(c.task, c.a, c.b) for c in run.results.comparisons] == [
        (t, CANDIDATES[0], CANDIDATES[1]) for t in TASKS
    ]
    page = build_page(run.results, run.scores, run.exchanges, run.replays)
    for view in page.tasks:
        (row,) = view.comparisons
        assert (row.a, row.b) == CANDIDATES
        assert row.mean_diff == "+0.200"  # the conftest's second candidate is 0.2 lower
        assert row.n == str(PER_TASK - 2)  # its two failed calls are not paired
        assert row.finding == f"{CANDIDATES[0]} higher"
    html = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    assert html.count('class="comparison-table"') == len(TASKS)
    assert "Candidates compared on the same exchanges" in html
    # a run without comparisons (one candidate, or an older results.json) has no table
    run.results.comparisons = []
    assert "comparison-table" not in render_html_text(
        run.results, run.scores, run.exchanges, run.replays
    )
