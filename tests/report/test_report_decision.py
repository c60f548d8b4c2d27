"""The report's first screen: the decision in words, one bar per task, plain words before
numbers, diffs that read the right way round, consistent volumes, explained cost gaps."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from migrate_eval.core.prices import price_table
from migrate_eval.core.records import Source
from migrate_eval.core.results import Profile, Reason, Results
from migrate_eval.report import render_html_text
from migrate_eval.report.decision import build_decision, cost_phrase, prices_age
from migrate_eval.report.html import build_page, display_path, log_root
from migrate_eval.report.traffic import profile_view
from migrate_eval.verdict.costs import logged_volume_per_day

from .conftest import CANDIDATES, Run


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))


def _first_screen(html: str) -> str:
    start = html.index('<section id="decision"')
    return html[start : html.index("</section>", start)]


def _all_ready(run: Run, name: str) -> Results:
    res = run.results.model_copy(deep=True)
    for c in res.candidates:
        if c.name == name:
            c.verdict = "ready_with_caveats"
            for i, t in enumerate(c.tasks):
                t.verdict = "ready" if i else "ready_with_caveats"
        else:
            c.verdict = "not_ready"
            c.tasks[0].verdict = "not_ready"
            c.tasks[0].reasons = [
                Reason(code="parity_below_threshold", message="parity 0.61 is below the bar 0.85")
            ]
        c.cost.monthly_usd = 30.0 if c.name == name else 10.0
        c.cost.baseline_monthly_usd = 20.0
        c.latency.p50_ms = 300.0
    return res


def test_decision_leads_and_names_who_takes_what_at_what_cost(run: Run) -> None:
    ready, other = CANDIDATES[1], CANDIDATES[0]
    html = render_html_text(_all_ready(run, ready), run.scores, run.exchanges, run.replays)
    first = _text(_first_screen(html))
    # the decision comes before everything else on the page, the gate after it
    assert html.index('id="decision"') < html.index('id="verdict"')
    sentence = first[: first.index(other)]
    assert f"{ready} can take all 3 tasks (1 with caveats)" in sentence
    assert "cost +50% ($30.00 vs $20.00 a month)" in sentence
    assert "latency" in sentence
    # what blocks the other one: one line per blocked task, from the verdict's reasons
    assert "extract-invoice (not ready): parity 0.61 is below the bar 0.85" in first
    # how sure: interval and sample size
    assert "How sure: parity 0.860 (95% interval 0.810–0.910) over" in first
    assert "CI gate: FAIL (exit code 1)" in first


def test_no_candidate_ready_says_do_not_switch(run: Run) -> None:
    res = run.results.model_copy(deep=True)
    for c in res.candidates:
        for t in c.tasks:
            t.verdict = "not_ready"
    d = build_decision(res, logged_p50=400.0)
    assert d.sentence == "Do not switch yet: no candidate can take any task."
    assert all(c.takes == "can take none of the 3 tasks yet" for c in d.candidates)


def test_missing_cost_says_why_and_prices_say_how_old(run: Run) -> None:
    res = run.results.model_copy(deep=True)
    c = res.candidates[0]
    c.cost.per_request_usd = None
    c.cost.monthly_usd = None
    c.cost.price_source = None
    assert "no price for " + c.model in cost_phrase(c)
    c.cost.price_source = "self-hosted"
    assert "self-hosted" in cost_phrase(c) and "throughput" in cost_phrase(c)
    as_of = price_table().as_of
    day = dt.date.fromisoformat(as_of) + dt.timedelta(days=10)
    assert prices_age(day) == f"the built-in price table of {as_of} (10 days old)"
    html = render_html_text(res, run.scores, run.exchanges, run.replays)
    assert f"price table of {as_of}" in _first_screen(html)
    cost = html[html.index('<section id="cost">') :]
    cost = cost[: cost.index("</section>")]
    assert "self-hosted" in cost and "n/a" in cost


def test_one_bar_per_task_explained_in_words(run: Run) -> None:
    res = run.results.model_copy(deep=True)
    for c in res.candidates:
        for t in c.tasks:
            t.effective_threshold = 0.75
            t.bar_source = "noise_floor"
            t.bar_explained = (
                "the bar 0.750 (the baseline's agreement with itself 0.800 minus 0.050)"
            )
            t.p_value = 0.0001
            t.non_inferior = True
    html = render_html_text(res, run.scores, run.exchanges, run.replays)
    verdict = html[html.index('id="verdict"') : html.index('id="tasks"')]
    # no dashed default bar, no separate noise-floor bar on the cards
    assert "dashed = minimum parity" not in verdict and "bar-threshold" not in verdict
    evidence = html[html.index('id="evidence"') : html.index('id="exchanges"')]
    first_task = evidence[
        : evidence.index("</details>\n  <details") if "</details>\n  <details" in evidence else None
    ]
    assert first_task.count("the baseline&#39;s agreement with itself 0.800") == 1
    assert "bar 0.750" in evidence and "minimum parity 0.85" not in evidence
    assert "The bar 0.750 (the baseline" in evidence and "The bar: the bar" not in evidence
    # raw internals only behind a details toggle
    for raw in ("p_value", "non_inferior", "effective_threshold"):
        for m in re.finditer(raw, html):
            before = html[: m.start()]
            assert before.rfind("<details") > before.rfind("</details>"), raw


def test_regression_labels_follow_parity_and_logged_answer_is_the_reference(run: Run) -> None:
    html = render_html_text(run.results, run.scores, run.exchanges, run.replays)
    assert "Logged OpenAI answer (the reference)" in html
    chips = re.findall(r'class="parity-chip[^"]*">parity ([0-9.]+) · ([a-z ]+)<', html)
    assert chips
    for parity, label in chips:
        if float(parity) < 0.8:
            assert label == "differs from logged"
        elif float(parity) < 1:
            assert label == "close to logged"
    css = (Path(__file__).parents[2] / "migrate_eval/report/templates/report.css").read_text()
    rules = dict(re.findall(r"\.diff (ins|del) \{([^}]*)\}", css))
    # the candidate's differences are not "good" (green), the logged answer is not "wrong" (red)
    assert "ready" not in rules["ins"] and "line-through" not in rules["del"]
    assert "notready" not in rules["del"]
    logged_box = re.search(r"\.answer-logged \{([^}]*)\}", css)
    assert logged_box is not None and "ready" not in logged_box.group(1)


def test_regression_source_is_relative_to_where_the_logs_were_named(run: Run) -> None:
    root = "/home/alice/acme/logs"
    exchanges = {
        k: ex.model_copy(
            update={
                "source": Source(
                    file=f"{root}/prod.jsonl", line=ex.source.line, format="chat-jsonl"
                )
            }
        )
        for k, ex in run.exchanges.items()
    }
    res = run.results.model_copy(deep=True)
    res.ingest.files = [f"{root}/prod.jsonl"]
    page = build_page(res, run.scores, exchanges, run.replays)
    sources = [r.source for t in page.tasks for g in t.groups for r in g.items if r.source]
    assert sources and all(s.startswith("prod.jsonl:") for s in sources)
    assert log_root([f"{root}/a/x.jsonl", f"{root}/b/y.jsonl"]) == root
    assert display_path(f"{root}/a/x.jsonl", root) == "a/x.jsonl"
    assert display_path("/elsewhere/z.jsonl", root) == "z.jsonl"


def test_requests_per_day_agree_between_cost_and_traffic_profile() -> None:
    start = dt.datetime(2026, 10, 5, 8, 30, tzinfo=dt.UTC)
    stamps = [start + dt.timedelta(minutes=32 * i) for i in range(100)]  # 2.2 days, 3 dates
    per_day = logged_volume_per_day({"t": stamps})["t"]
    by_day: dict[str, int] = {}
    for s in stamps:
        by_day[s.date().isoformat()] = by_day.get(s.date().isoformat(), 0) + 1
    profile = Profile(
        exchanges=100, first=stamps[0].isoformat(), last=stamps[-1].isoformat(), by_day=by_day
    )
    view = profile_view(profile)
    assert view is not None
    avg = next(s.value for s in view.headline if s.label == "Per day")
    # 100 / 2.2 days = 45, the figure the cost projection uses; not 100 / 3 dates = 33
    assert avg == f"{per_day:,.0f} on average" == "45 on average"


def test_summary_md_states_the_decision_and_why_a_cost_is_missing(run: Run) -> None:
    from migrate_eval.report.summary import render_summary_md

    res = _all_ready(run, CANDIDATES[1])
    res.candidates[0].cost.per_request_usd = None
    res.candidates[0].cost.total_usd = None
    res.candidates[0].cost.monthly_usd = None
    text = render_summary_md(res)
    assert text.splitlines()[0].startswith("# migrate-eval: gate FAIL")  # what CI reads
    decision = next(line for line in text.splitlines() if line.startswith("**Decision:**"))
    assert f"{CANDIDATES[1]} can take all 3 tasks" in decision
    assert "n/a (unknown: no price for" in text
