"""report.html: the traffic profile, sampling and redaction sections (readable, bounded, escaped),
and no second, generic dump of the candidate comparisons."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from markupsafe import escape
from pydantic import Field

from migrate_eval.core.results import (
    CandidateComparison,
    Distribution,
    Duplicates,
    FeatureUse,
    LoggedErrors,
    Profile,
    RedactionSummary,
    Results,
    SamplingSummary,
    TaskSampling,
    TaskVolume,
)
from migrate_eval.report import render_html_text
from migrate_eval.report.html import build_page
from migrate_eval.report.traffic import MAX_BARS, MAX_ROWS, volume_buckets

from .conftest import CANDIDATES, HOSTILE_TASK, TASKS, XSS, Run

HOSTILE_MODEL = "gpt <script>alert(1)</script>"
HOSTILE_FILE = 'logs/"><img src=x onerror=alert(1)>.jsonl'
HOSTILE_KIND = "<script>alert('kind')</script>"
#: seven days of traffic, the fourth without any: the chart has one bar per calendar day
BY_DAY = {
    "2025-01-01": 5,
    "2025-01-02": 8,
    "2025-01-03": 7,
    "2025-01-05": 9,
    "2025-01-06": 6,
    "2025-01-07": 7,
}
TASK_COUNTS = {"extract-invoice": 20, HOSTILE_TASK: 12, "summarize": 10}


def _profile(**update: Any) -> Profile:
    p = Profile(
        exchanges=42,
        lines_read=45,
        files=["logs/<prod>.jsonl"],
        formats={"chat-jsonl": 43},
        skipped={"invalid JSON": 2, "no response": 1},
        skipped_total=3,
        first="2025-01-01T08:00:00+00:00",
        last="2025-01-07T18:30:00+00:00",
        by_day=BY_DAY,
        by_model={"gpt-4o-mini": 40, HOSTILE_MODEL: 2},
        tasks=[
            TaskVolume(name="extract-invoice", count=20, share=0.4762, source="suite", output="structured"),
            TaskVolume(name=HOSTILE_TASK, count=12, share=0.2857, source="metadata", output="tool_call"),
            TaskVolume(name="summarize", count=10, share=0.2381, source="system_prompt", output="free_text"),
        ],
        features={
            "tools": FeatureUse(count=12, share=0.2857),
            "json_schema": FeatureUse(count=20, share=0.4762),
            "images": FeatureUse(count=0, share=0.0),
            "multi_turn": FeatureUse(count=42, share=1.0),
        },
        prompt_tokens=Distribution(count=42, estimated=0, mean=120.5, p50=110, p95=400, max=1234, total=5061),
        completion_tokens=Distribution(count=40, estimated=14, mean=30.0, p50=25, p95=80, max=95, total=1200),
        finish_reasons={"stop": 28, "tool_calls": 12, "length": 2},
        duplicates=Duplicates(groups=3, duplicates=5, share=0.119),
        errors=LoggedErrors(count=2, rate=0.0476, by_kind={"rate_limit": 1, "http_503": 1}),
        notes=["token counts estimated from text length (4 characters a token) where the log has no usage: 0 prompt, 14 completion"],
    )  # fmt: skip
    return p.model_copy(update=update)


def _sampling(**update: Any) -> SamplingSummary:
    s = SamplingSummary(
        seed=7,
        dedupe=True,
        limit=10,
        ci_width=0.2,
        confidence=0.9,
        available=42,
        duplicates=5,
        sampled=30,
        tasks=[
            TaskSampling(task="extract-invoice", available=20, duplicates=3, unique=17, target=10, sampled=10),
            TaskSampling(task=HOSTILE_TASK, available=12, duplicates=2, unique=10, target=10, sampled=10),
            TaskSampling(task="summarize", available=10, duplicates=0, unique=10, target=None, sampled=10),
        ],
    )  # fmt: skip
    return s.model_copy(update=update)


def _redaction(enabled: bool = True) -> RedactionSummary:
    if not enabled:
        return RedactionSummary(enabled=False, entities=[], exchanges=30, exchanges_affected=0)
    return RedactionSummary(
        enabled=True,
        entities=["email", "phone", "secret"],
        exchanges=30,
        exchanges_affected=12,
        values=17,
        by_entity={"email": 9, "phone": 5, "secret": 3},
        occurrences_by_entity={"email": 14, "phone": 5, "secret": 4},
    )


def _results(run: Run, **update: Any) -> Results:
    fields: dict[str, Any] = {
        "profile": _profile(),
        "sampling": _sampling(),
        "redaction": _redaction(),
        **update,
    }
    return run.results.model_copy(update=fields)


def _html(run: Run, results: Results) -> str:
    return render_html_text(results, run.scores, run.exchanges, run.replays)


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start : html.index("</section>", start)]


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, tags dropped and entities left escaped."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))


# --------------------------------------------------------------------------- profile


def test_profile_section_shows_tasks_with_counts_and_shares(run: Run) -> None:
    page = build_page(_results(run), run.scores, run.exchanges, run.replays)
    assert page.traffic is not None
    rows = [(t.name, t.count, t.share) for t in page.traffic.tasks]
    assert rows == [
        ("extract-invoice", "20", "47.6%"),
        (HOSTILE_TASK, "12", "28.6%"),
        ("summarize", "10", "23.8%"),
    ]
    # discovered-from and output kind in words, and a link to the task's evidence
    assert [t.source for t in page.traffic.tasks] == [
        "suite definition",
        "metadata tag in the logs",
        "system-prompt template",
    ]
    assert [t.output for t in page.traffic.tasks] == ["structured JSON", "tool calls", "free text"]
    assert all(t.anchor and t.anchor.startswith("task-") for t in page.traffic.tasks)

    section = _section(_html(run, _results(run)), "profile")
    table = section[section.index('class="profile-tasks"') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 1 + len(TASKS)
    text = _text(table)
    for name, count in TASK_COUNTS.items():
        assert f"{escape(name)} {count} " in text
    assert "47.6%" in text and "28.6%" in text and "23.8%" in text
    assert 'class="share-fill" style="width: 47.62%"' in table


def test_profile_headline_figures(run: Run) -> None:
    section = _section(_html(run, _results(run)), "profile")
    headline = _text(section[section.index('<dl class="stats') : section.index("</dl>")])
    assert "Exchanges 42" in headline
    assert "2025-01-01 → 2025-01-07" in headline and "7 days" in headline
    assert "Lines read 45" in headline and "3 skipped" in headline
    assert "Duplicate requests 11.9%" in headline and "5 copies of 3 requests" in headline
    assert "Logged errors 4.8%" in headline and "2 failed calls" in headline
    assert "Models 2" in headline and "mostly gpt-4o-mini" in headline
    # finish reasons, errors by kind and models as compact tables; notes as a list
    assert "How answers ended" in section and "cut at the token limit" in section
    assert "Errors in the logs" in section and "rate limited" in section
    assert "HTTP status 503" in section
    assert "14 completion" in section


def test_day_chart_has_one_bar_per_day_and_the_exact_numbers(run: Run) -> None:
    section = _section(_html(run, _results(run)), "profile")
    svg = section[section.index("<svg") : section.index("</svg>")]
    assert svg.count('<rect class="vb"') == 7  # 2025-01-01 .. 2025-01-07, the 4th empty
    assert 'role="img"' in svg and "<title>Exchanges per day" in svg
    assert "2025-01-04: 0 exchanges" in svg and "2025-01-05: 9 exchanges" in svg
    details = section[section.index("<details") : section.index("</details>")]
    assert details.count("<tr>") == 1 + 7
    assert '<td>2025-01-05</td><td class="num">9</td>' in details
    assert "Volume per day" in section


def test_long_periods_are_aggregated_per_week_then_month() -> None:
    start = dt.date(2024, 1, 3)  # a Wednesday
    by_day = {(start + dt.timedelta(days=i)).isoformat(): 1 for i in range(0, 400, 2)}
    unit, buckets, unread = volume_buckets(by_day)
    assert unit == "week" and unread == 0
    assert len(buckets) <= MAX_BARS
    assert sum(c for _, c in buckets) == len(by_day)
    assert buckets[0][0] == "week of 2024-01-01"  # weeks start on Monday
    # up to MAX_BARS days stay days
    short = {(start + dt.timedelta(days=i)).isoformat(): 2 for i in range(MAX_BARS)}
    assert volume_buckets(short)[0] == "day" and len(volume_buckets(short)[1]) == MAX_BARS
    # years of logs: months; an absurd span still stays bounded
    years = {"2019-05-01": 3, "2024-12-31": 4}
    unit, buckets, _ = volume_buckets(years)
    assert unit == "month" and len(buckets) == 68 and buckets[0] == ("2019-05", 3)
    unit, buckets, _ = volume_buckets({"0001-01-01": 1, "9999-12-31": 1, "not a day": 5})
    assert unit == "year" and len(buckets) <= MAX_BARS
    assert volume_buckets({"not a day": 5}) == ("day", [], 5)


def test_long_period_renders_weekly_bars(run: Run) -> None:
    start = dt.date(2024, 1, 1)
    by_day = {(start + dt.timedelta(days=i)).isoformat(): i % 5 for i in range(365)}
    results = _results(
        run,
        profile=_profile(by_day=by_day, first="2024-01-01T00:00:00Z", last="2024-12-30T12:00:00Z"),
    )
    section = _section(_html(run, results), "profile")
    assert "Volume per week" in section and "each bar is one week" in section
    svg = section[section.index("<svg") : section.index("</svg>")]
    assert svg.count('<rect class="vb"') == 53
    assert "365 days" in _text(section)


def test_features_with_their_shares(run: Run) -> None:
    page = build_page(_results(run), run.scores, run.exchanges, run.replays)
    assert page.traffic is not None
    assert [(f.name, f.count, f.share) for f in page.traffic.features] == [
        ("Multi-turn conversations", "42", "100.0%"),
        ("Structured output with a JSON schema", "20", "47.6%"),
        ("Tools offered to the model (function calling)", "12", "28.6%"),
    ]
    assert page.traffic.features_unused == ["images in the prompt"]
    section = _section(_html(run, _results(run)), "profile")
    assert "Not used in these logs: images in the prompt." in section


def test_token_table_says_how_many_values_were_estimated(run: Run) -> None:
    section = _section(_html(run, _results(run)), "profile")
    table = section[section.index('class="profile-tokens"') :]
    text = _text(table[: table.index("</table>")])
    assert "Prompt (input) 110 400 1,234 120 5,061 none" in text
    assert "Completion (output) 25 80 95 30 1,200 14 of 40 (35.0%)" in text


def test_long_tables_show_the_top_rows_and_a_count_of_the_rest(run: Run) -> None:
    n = MAX_ROWS + 20
    tasks = [
        TaskVolume(name=f"task-{i:03d}", count=1000 - i, share=0.01, source="cluster", output="free_text")
        for i in range(n)
    ]  # fmt: skip
    models = {f"model-{i:03d}": 100 - i for i in range(n)}
    results = _results(run, profile=_profile(tasks=tasks, by_model=models))
    page = build_page(results, run.scores, run.exchanges, run.replays)
    assert page.traffic is not None
    assert len(page.traffic.tasks) == MAX_ROWS and page.traffic.tasks[0].name == "task-000"
    rest = sum(1000 - i for i in range(MAX_ROWS, n))
    assert page.traffic.tasks_more == f"… and 20 more tasks ({rest:,} exchanges)."
    assert len(page.traffic.models) == MAX_ROWS and page.traffic.models_more
    section = _section(_html(run, results), "profile")
    assert "task-049" in section and "task-050" not in section
    assert "… and 20 more tasks" in section


def test_profile_files_shown_only_when_they_differ_from_ingestion(run: Run) -> None:
    same = build_page(_results(run), run.scores, run.exchanges, run.replays).traffic
    # the same files, formats and skipped lines as the run's ingest: shown once, under Ingestion
    assert same is not None and (same.files, same.formats, same.skipped) == ([], [], [])
    other = _results(run, profile=_profile(files=["a.jsonl", "b.jsonl"]))
    view = build_page(other, run.scores, run.exchanges, run.replays).traffic
    assert view is not None and view.files == ["a.jsonl", "b.jsonl"]


# --------------------------------------------------------------------------- sampling


def test_sampling_settings_and_per_task_table(run: Run) -> None:
    section = _section(_html(run, _results(run)), "sampling")
    text = _text(section)
    assert "seed 7" in text and "deduplication on" in text
    assert "at most 10 exchanges per task" in text
    assert "90% interval no wider than 0.2" in text
    assert "30 of 42 logged exchanges were replayed (5 identical copies left out)" in text
    # per task: logged, distinct, copies, asked for, replayed
    assert "extract-invoice 20 17 3 10 10" in text
    assert f"{escape(HOSTILE_TASK)} 12 10 2 10 10" in text
    assert "summarize 10 10 0 all 10" in text
    assert "Total 42 37 5 30" in text
    plain = _text(_section(_html(run, _results(run, sampling=_sampling(dedupe=False, limit=None, ci_width=None))), "sampling"))  # fmt: skip
    assert "deduplication off, no limit per task." in plain and "interval" not in plain
    # without deduplication every logged copy is replayed: no distinct/left-out columns
    assert "Distinct requests" not in plain


# --------------------------------------------------------------------------- redaction


def test_redaction_off_is_stated(run: Run) -> None:
    html = _html(run, _results(run, redaction=_redaction(enabled=False)))
    text = _text(_section(html, "redaction"))
    assert "Redaction was off:" in text
    assert "sent to the candidates exactly as logged" in text
    assert "redaction-table" not in html


def test_redaction_counts_by_entity(run: Run) -> None:
    section = _section(_html(run, _results(run)), "redaction")
    text = _text(section)
    assert (
        "12 of 30 exchanges had personal data or secrets replaced before anything was sent "
        "to a candidate (17 values)."
    ) in text
    assert "Looked for: e-mail addresses, phone numbers, API keys and secrets." in text
    assert "E-mail addresses 9 14" in text
    assert "Phone numbers 5 5" in text
    assert "API keys and secrets 3 4" in text
    assert "Redaction was off" not in text


# --------------------------------------------------------------------------- the rest


def test_no_generic_comparisons_dump_but_task_comparisons_remain(run: Run) -> None:
    comparisons = [
        CandidateComparison(
            task=t, a=CANDIDATES[0], b=CANDIDATES[1], n=12, mean_diff=0.2,
            ci_low=0.1, ci_high=0.3, p_wilcoxon=0.001, p_mcnemar=0.01, p_adjusted=0.003,
        )
        for t in TASKS
    ]  # fmt: skip
    html = _html(run, _results(run, comparisons=comparisons))
    assert html.count('class="comparison-table"') == len(TASKS)
    assert "<h2>Comparisons</h2>" not in html
    assert '<section class="extra">' not in html
    assert "a_only_passes" not in html and "mean_diff=" not in html
    page = build_page(
        _results(run, comparisons=comparisons), run.scores, run.exchanges, run.replays
    )
    assert page.extras == []


def test_an_unknown_future_field_is_still_shown_generically(run: Run) -> None:
    class FutureResults(Results):
        carbon: dict[str, float] = Field(default_factory=dict)

    results = FutureResults(**_results(run).model_dump(), carbon={"grams": 12.5})
    html = _html(run, results)
    extra = html[html.index('<section class="extra">') :]
    assert "<h2>Carbon</h2>" in extra and "grams" in extra and "12.500" in extra


def test_old_results_without_profile_sampling_or_redaction_render(run: Run) -> None:
    data = _results(run).model_dump(mode="json")
    for key in ("profile", "sampling", "redaction", "comparisons"):
        data.pop(key)
    old = Results.model_validate(data)
    assert old.profile is None and old.sampling is None and old.redaction is None
    html = _html(run, old)
    for anchor in ("profile", "sampling", "redaction"):
        assert f'id="{anchor}"' not in html
        assert f'href="#{anchor}"' not in html
    assert 'id="ingest"' in html and 'id="method"' in html
    # None as well as absent
    html = _html(run, _results(run, profile=None, sampling=None, redaction=None))
    assert 'id="profile"' not in html and "Traffic profile" not in html


def test_new_sections_are_in_the_navigation_in_page_order(run: Run) -> None:
    html = _html(run, _results(run))
    nav = html[html.index('<nav class="toc"') : html.index("</nav>")]
    for anchor in ("profile", "sampling", "redaction"):
        assert f'href="#{anchor}"' in nav
    order = [
        html.index(f'id="{a}"') for a in ("cost", "profile", "sampling", "redaction", "ingest")
    ]
    assert order == sorted(order)


def test_an_empty_profile_renders(run: Run) -> None:
    html = _html(run, _results(run, profile=Profile(exchanges=0), sampling=_sampling(tasks=[])))
    section = _section(html, "profile")
    assert "the logs carry no timestamps" in section
    assert "<svg" not in section and "profile-tasks" not in section


@pytest.mark.parametrize("payload", [XSS["script"], XSS["img"], XSS["script_break"]])
def test_hostile_names_are_escaped_in_the_new_sections(run: Run, payload: str) -> None:
    task = f"task {payload}"
    profile = _profile(
        files=[f"logs/{payload}.jsonl"],
        formats={f"fmt {payload}": 42},
        skipped={f"reason {payload}": 3},
        by_model={f"model {payload}": 40, HOSTILE_MODEL: 2},
        tasks=[TaskVolume(name=task, count=42, share=1.0, source=payload, output=payload)],
        features={payload: FeatureUse(count=3, share=0.07)},
        finish_reasons={f"finish {payload}": 42},
        errors=LoggedErrors(count=1, rate=0.02, by_kind={HOSTILE_KIND: 1, payload: 1}),
        notes=[f"note {payload}"],
        by_day={"2025-01-01": 40, f"day {payload}": 2},
    )
    sampling = _sampling(
        tasks=[
            TaskSampling(task=task, available=42, duplicates=0, unique=42, target=None, sampled=42)
        ]
    )
    redaction = _redaction().model_copy(
        update={
            "entities": [payload],
            "by_entity": {payload: 1},
            "occurrences_by_entity": {payload: 2},
        }
    )
    html = _html(run, _results(run, profile=profile, sampling=sampling, redaction=redaction))
    sections = "".join(_section(html, a) for a in ("profile", "sampling", "redaction"))
    assert payload not in sections
    assert HOSTILE_MODEL not in html and HOSTILE_KIND not in html
    escaped = str(escape(payload))
    for shown in (
        f"logs/{escaped}.jsonl",
        f"model {escaped}",
        f"task {escaped}",
        f"finish {escaped}",
        f"note {escaped}",
        f"fmt {escaped}",
        f"reason {escaped}",
    ):
        assert shown in sections, shown
    assert str(escape(HOSTILE_MODEL)) in sections and str(escape(HOSTILE_KIND)) in sections
    assert _text(_section(html, "redaction")).count(escaped) >= 2  # looked for + table
    assert _section(html, "sampling").count(f"task {escaped}") == 1
