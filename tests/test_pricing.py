"""Prices, costs per request and monthly projections."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from migrate_eval.core.prices import (
    LoggedTraffic,
    candidate_price,
    cost_of,
    price_for,
    price_table,
)
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source, Usage
from migrate_eval.core.results import (
    CandidateResult,
    CostStats,
    ErrorStats,
    Interval,
    LatencyStats,
)
from migrate_eval.core.suite import CandidateSpec, Price
from migrate_eval.verdict.costs import (
    DAYS_PER_MONTH,
    HOURS_PER_MONTH,
    fill_cost_projections,
    hourly_load,
    logged_volume_per_day,
    measured_throughput_rps,
    monthly_projection,
)


def test_the_table_is_dated_and_covers_common_vendors() -> None:
    table = price_table()
    datetime.strptime(table.as_of, "%Y-%m-%d")
    for vendor in ("openai", "anthropic", "google", "mistral", "together", "groq", "fireworks"):
        assert table.providers[vendor], vendor


def test_price_for_exact_dated_and_vendor_specific_names() -> None:
    gpt4o = price_for("gpt-4o")
    assert gpt4o is not None and gpt4o.input_per_mtok == 2.5 and gpt4o.output_per_mtok == 10.0
    assert price_for("gpt-4o-2024-08-06") == gpt4o  # snapshot priced as its family
    old = price_for("gpt-4o-2024-05-13")  # a snapshot with its own price wins
    assert old is not None and old.input_per_mtok == 5.0
    mini = price_for("gpt-4o-mini-2024-07-18")
    assert mini is not None and mini.input_per_mtok == 0.15
    sonnet = price_for("claude-3-5-sonnet-20241022", "anthropic")
    assert sonnet is not None and sonnet.output_per_mtok == 15.0
    bedrock = price_for("anthropic.claude-3-5-sonnet-20241022-v2:0", "bedrock")
    assert bedrock == sonnet
    groq = price_for(
        "llama-3.3-70b-versatile", "openai-compatible", "https://api.groq.com/openai/v1"
    )
    assert groq is not None and groq.input_per_mtok == 0.59
    assert price_for("my-finetune-7b") is None


def test_candidate_price_prefers_the_suite_and_ignores_local_endpoints() -> None:
    own = Price(input_per_mtok=1.0, output_per_mtok=2.0)
    assert candidate_price(CandidateSpec(name="a", model="gpt-4o", price=own)) == (own, "suite")
    price, source = candidate_price(CandidateSpec(name="b", model="gpt-4o-mini", provider="openai"))
    assert price is not None and source == f"table {price_table().as_of}"
    local = CandidateSpec(name="c", model="gpt-4o", base_url="http://127.0.0.1:8000/v1")
    assert candidate_price(local) == (None, None)


def test_cost_of_prices_cached_input_and_output() -> None:
    price = Price(input_per_mtok=2.0, cached_input_per_mtok=0.5, output_per_mtok=8.0)
    usage = Usage(prompt_tokens=1_000_000, cached_tokens=400_000, completion_tokens=500_000)
    assert cost_of(usage, price) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5 + 0.5 * 8.0)
    no_cache_price = Price(input_per_mtok=2.0, output_per_mtok=8.0)
    assert cost_of(usage, no_cache_price) == pytest.approx(2.0 + 4.0)
    assert cost_of(None, price) is None
    assert cost_of(Usage(), price) is None


def test_self_hosted_cost_is_the_hour_over_the_requests_served() -> None:
    gpu = Price(per_hour_usd=3.6, throughput_rps=2.0)
    assert cost_of(None, gpu) == pytest.approx(3.6 / 3600 / 2.0)
    measured = Price(per_hour_usd=3.6)
    assert cost_of(None, measured) is None
    assert cost_of(None, measured, throughput_rps=4.0) == pytest.approx(0.00025)
    spec = CandidateSpec(name="gpu", model="m", concurrency=8)
    rows = [
        ReplayResult(
            exchange_id=str(i), candidate="gpu", response=Response(text="x"), latency_ms=2000
        )
        for i in range(10)
    ]
    assert measured_throughput_rps(spec, rows) == pytest.approx(4.0)
    # three requests were never eight in flight: Little's law with the three there were
    assert measured_throughput_rps(spec, rows[:3]) == pytest.approx(1.5)


def test_monthly_projection_weighs_tasks_by_volume() -> None:
    monthly = monthly_projection({"a": 0.01, "b": 0.001}, {"a": 100.0, "b": 1000.0})
    assert monthly == pytest.approx((1.0 + 1.0) * DAYS_PER_MONTH)
    assert monthly_projection({"a": None}, {"a": 10.0}) is None  # unknown: never understated
    assert monthly_projection({"a": None}, {"a": 0.0}) is None
    assert monthly_projection({}, {}) is None


def test_logged_volume_per_day_uses_the_log_span() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    stamps = {
        "a": [t0 + timedelta(days=i) for i in range(10)],  # 10 over 9 days... with b: 4 days
        "b": [t0 + timedelta(hours=6 * i) for i in range(4)] + [None],
    }
    volume = logged_volume_per_day(stamps)
    assert volume == pytest.approx({"a": 10 / 9, "b": 5 / 9})
    assert logged_volume_per_day({"a": [None, None]}) == {"a": 2.0}  # no stamps: one day


def _span_of_lists(
    stamps_by_task: dict[str, list[datetime | None]],
) -> tuple[datetime | None, datetime | None]:
    """The log's span as the volume read it from whole lists of timestamps, task by task."""
    first: datetime | None = None
    last: datetime | None = None
    for stamps in stamps_by_task.values():
        for ts in stamps:
            if ts is None or (ts.tzinfo is None and first is not None and first.tzinfo):
                continue
            try:
                first = ts if first is None or ts < first else first
                last = ts if last is None or ts > last else last
            except TypeError:  # aware after naive
                continue
    return first, last


def test_logged_traffic_read_in_log_order_keeps_no_timestamp_per_exchange() -> None:
    # a large log's volume, span and hourly load come from a few numbers per task and hour,
    # gathered in log order (tasks interleaved), and equal what the whole lists give
    t0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
    naive = datetime(2025, 2, 1, 8)
    rows: list[tuple[str, datetime | None, float | None]] = []
    for i in range(3_000):
        task = ("a", "b", "c")[i % 3]
        if task == "a":
            ts: datetime | None = None if i < 30 else naive + timedelta(minutes=i)
        elif task == "b":
            ts = t0 + timedelta(seconds=7 * i) if i % 5 else naive - timedelta(minutes=i)
        else:
            ts = (t0 - timedelta(minutes=i)).astimezone(timezone(timedelta(hours=5)))
        rows.append((task, ts, None if i % 7 == 0 else 0.001 * (i % 11)))
    logged = LoggedTraffic()
    by_task: dict[str, list[datetime | None]] = {}
    costs: dict[str, list[float]] = {}
    for task, ts, cost in rows:
        logged.add(task, ts, cost)
        by_task.setdefault(task, []).append(ts)
        if cost is not None:
            costs.setdefault(task, []).append(cost)
    # task "a" appears first, with no timestamp: its first naive one decides the kind
    first, last = logged.span()
    assert (first, last) == _span_of_lists(by_task)
    assert first is not None and first.tzinfo is None and last == naive + timedelta(minutes=2_997)
    assert logged_volume_per_day(logged) == logged_volume_per_day(by_task)
    assert hourly_load(logged) == hourly_load(by_task)
    assert {t: sum(c) for t, c in logged.baseline_costs.items()} == {
        t: sum(c) for t, c in costs.items()
    }
    distinct_hours = {
        (ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts).replace(minute=0, second=0)
        for _, ts, _ in rows
        if ts is not None
    }
    assert len(logged.hours) == len(distinct_hours) < len(rows) / 10
    assert all(len(kinds) <= 2 for kinds in logged.spans.values())


def _result(name: str) -> CandidateResult:
    return CandidateResult(
        name=name,
        provider="openai",
        model="m",
        verdict="ready",
        reasons=[],
        parity=Interval(mean=None, ci_low=None, ci_high=None),
        errors=ErrorStats(),
        latency=LatencyStats(),
        cost=CostStats(),
        tasks=[],
    )


def test_fill_cost_projections_for_candidates_and_the_baseline() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    usage = Usage(prompt_tokens=1000, completion_tokens=100)
    traffic = [
        Exchange(
            id=f"e{i}",
            source=Source(file="f", line=i + 1, format="t"),
            timestamp=t0 + timedelta(days=i / 10),
            request={"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "q"}]},
            response=Response(text="a", usage=usage),
        )
        for i in range(21)  # 21 requests over 2 days
    ]
    assignment = {ex.id: ("t1" if i % 3 else "t2") for i, ex in enumerate(traffic)}
    specs = [
        CandidateSpec(name="mini", model="gpt-4o-mini", provider="openai"),
        CandidateSpec(name="local", model="llama", base_url="http://127.0.0.1:1/v1"),
    ]
    replays = [
        ReplayResult(exchange_id=f"e{i}", candidate=c, response=Response(text="a", usage=usage))
        for i in range(0, 21, 2)
        for c in ("mini", "local")
    ]
    results = [_result("mini"), _result("local")]
    fill_cost_projections(results, specs, replays, assignment, traffic)
    mini, local = (r.cost for r in results)
    per_request_4o = (1000 * 2.5 + 100 * 10.0) / 1e6
    per_request_mini = (1000 * 0.15 + 100 * 0.6) / 1e6
    assert mini.baseline_per_request_usd == pytest.approx(per_request_4o)
    assert mini.requests_per_day == pytest.approx(10.5)
    assert mini.baseline_monthly_usd == pytest.approx(per_request_4o * 10.5 * DAYS_PER_MONTH)
    assert mini.per_request_usd == pytest.approx(per_request_mini)
    assert mini.monthly_usd == pytest.approx(per_request_mini * 10.5 * DAYS_PER_MONTH)
    assert mini.price_source == f"table {price_table().as_of}"
    assert local.monthly_usd is None and local.price_source is None  # no price known
    assert local.baseline_monthly_usd == mini.baseline_monthly_usd


def _self_hosted_run(
    price: Price, stamps: list[datetime | None], *, latency_ms: float = 1000.0
) -> CostStats:
    """One self-hosted candidate (concurrency 4) answering 8 of the logged exchanges."""
    traffic = [
        Exchange(
            id=f"e{i}",
            source=Source(file="f", line=i + 1, format="t"),
            timestamp=ts,
            request={"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}]},
            response=Response(text="a"),
        )
        for i, ts in enumerate(stamps)
    ]
    assignment = {ex.id: "t" for ex in traffic}
    spec = CandidateSpec(name="gpu", model="llama", concurrency=4, price=price)
    replays = [
        ReplayResult(
            exchange_id=f"e{i}", candidate="gpu", response=Response(text="a"), latency_ms=latency_ms
        )
        for i in range(8)
    ]
    result = _result("gpu")
    result.cost.per_request_usd = 0.0  # what the aggregate gives a price with no token rates
    fill_cost_projections([result], [spec], replays, assignment, traffic)
    return result.cost


def test_an_always_on_gpu_costs_its_hours_not_its_busy_seconds() -> None:
    # bug: 2.5 USD/h projected 0.02 USD a month (each request's share of a busy hour)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    stamps: list[datetime | None] = [t0 + timedelta(minutes=30 * i) for i in range(96)]  # 2 days
    cost = _self_hosted_run(Price(per_hour_usd=2.5), stamps)
    assert cost.price_source == "self-hosted"
    assert cost.servers == 1
    assert cost.monthly_usd == pytest.approx(2.5 * HOURS_PER_MONTH)  # 1,826.25 USD
    assert cost.throughput_rps == pytest.approx(4.0)  # concurrency 4 / 1 s
    assert cost.peak_rps == pytest.approx(2 / 3600)
    assert cost.requests_per_day == pytest.approx(96 / (47.5 / 24))  # over the log span
    assert cost.per_request_usd == pytest.approx(
        2.5 * HOURS_PER_MONTH / (cost.requests_per_day * DAYS_PER_MONTH)
    )
    assert cost.cost_basis is not None and "always on" in cost.cost_basis
    assert "measured at concurrency 4" in cost.cost_basis


def test_servers_are_sized_for_the_busiest_hour() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    # a quiet day, then one hour at 10 requests a second (36,000 requests)
    stamps: list[datetime | None] = [t0 + timedelta(hours=h) for h in range(24)]
    busy = t0 + timedelta(days=1)
    stamps += [busy + timedelta(seconds=i * 0.1) for i in range(36_000)]
    load = hourly_load({"t": stamps})
    assert load.peak_rps == pytest.approx(10.0)
    # one server sustains 4 req/s (the suite says so): 3 servers for the peak of 10 req/s
    cost = _self_hosted_run(Price(per_hour_usd=2.0, throughput_rps=4.0), stamps)
    assert cost.servers == 3
    assert cost.throughput_rps == 4.0
    assert cost.monthly_usd == pytest.approx(3 * 2.0 * HOURS_PER_MONTH)
    assert cost.cost_basis is not None and "suite's throughput_rps" in cost.cost_basis


def test_scale_to_zero_bills_only_the_hours_with_traffic() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    # 10 days; traffic in 2 clock hours of each day (09:00 and 10:00)
    stamps: list[datetime | None] = [
        t0 + timedelta(days=d, hours=h, minutes=m)
        for d in range(10)
        for h in (9, 10)
        for m in (0, 30)
    ]
    always_on = _self_hosted_run(Price(per_hour_usd=3.0), stamps)
    scaled = _self_hosted_run(Price(per_hour_usd=3.0, scale_to_zero=True), stamps)
    assert always_on.monthly_usd == pytest.approx(3.0 * HOURS_PER_MONTH)
    span_days = (9 * 24 + 2) / 24  # 09:00 of day 0 to 11:00 of day 9
    assert scaled.monthly_usd == pytest.approx(20 * 3.0 * DAYS_PER_MONTH / span_days)
    assert scaled.monthly_usd is not None and scaled.monthly_usd < always_on.monthly_usd / 10
    assert scaled.cost_basis is not None and "scale to zero" in scaled.cost_basis


def test_self_hosted_cost_without_a_throughput_says_what_is_missing() -> None:
    cost = _self_hosted_run(Price(per_hour_usd=2.5), [None] * 10, latency_ms=0.0)
    assert cost.monthly_usd is None and cost.per_request_usd is None
    assert cost.cost_basis is not None and "throughput_rps" in cost.cost_basis


def test_logs_without_timestamps_read_as_one_evenly_spread_day() -> None:
    load = hourly_load({"a": [None] * 48, "b": [None] * 24})
    assert load.peak_rps == pytest.approx(3 / 3600) and load.span_days == 1.0


@pytest.mark.slow  # a whole pipeline run (scoring imports)
def test_the_run_time_concurrency_reaches_the_self_hosted_projection(tmp_path: Path) -> None:
    from migrate_eval.api import run
    from migrate_eval.core.suite import LogSpec, Suite
    from tests.servers import LoopbackServer, make_completion

    log = tmp_path / "log.jsonl"
    with log.open("w", encoding="utf-8") as f:
        for i in range(12):
            request = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"q {i}"}]}
            f.write(json.dumps({"request": request, "response": make_completion(request)}) + "\n")
    with LoopbackServer() as srv:
        suite = Suite(
            name="gpu",
            logs=[LogSpec(path=str(log))],
            candidates=[
                CandidateSpec(
                    name="gpu",
                    model="m",
                    base_url=srv.base_url,
                    concurrency=16,
                    price=Price(per_hour_usd=2.5),
                )
            ],
            base_dir=tmp_path,
        )
        outcome = run(suite, out=tmp_path / "run", cache=tmp_path / "c.db", concurrency=3)
    cost = outcome.results.candidates[0].cost
    assert cost.cost_basis is not None and "measured at concurrency 3" in cost.cost_basis
    assert cost.servers == 1 and cost.monthly_usd == pytest.approx(2.5 * HOURS_PER_MONTH)
    assert cost.per_request_usd == pytest.approx(2.5 * HOURS_PER_MONTH / (12 * DAYS_PER_MONTH))
    saved = json.loads((outcome.run_dir / "suite.json").read_text(encoding="utf-8"))
    assert saved["candidates"][0]["concurrency"] == 3


@pytest.mark.slow  # a whole pipeline run (scoring imports)
def test_a_run_fills_cost_projections_and_writes_the_baseline_rerun(tmp_path: Path) -> None:
    from migrate_eval.api import run
    from migrate_eval.core.suite import BaselineSpec, LogSpec, Suite
    from migrate_eval.replay.baseline import read_baseline
    from tests.servers import LoopbackServer, make_completion

    log = tmp_path / "log.jsonl"
    with log.open("w", encoding="utf-8") as f:
        for i in range(12):
            request = {
                "model": "gpt-4o-2024-08-06",
                "messages": [{"role": "user", "content": f"question {i}"}],
            }
            response = make_completion(request)
            response["model"] = "gpt-4o-2024-08-06"
            f.write(json.dumps({"request": request, "response": response}) + "\n")
    with LoopbackServer() as srv:
        suite = Suite(
            name="costs",
            logs=[LogSpec(path=str(log))],
            candidates=[
                CandidateSpec(
                    name="cheap",
                    model="m",
                    base_url=srv.base_url,
                    price=Price(input_per_mtok=1.0, output_per_mtok=2.0),
                )
            ],
            baseline=BaselineSpec(
                candidate=CandidateSpec(name="baseline", model="gpt-4o", base_url=srv.base_url),
                repeats=2,
                sample=5,
            ),
            base_dir=tmp_path,
        )
        outcome = run(suite, out=tmp_path / "run", cache=tmp_path / "cache.db")
        assert srv.total == 12 + 5 * 2
    cost = outcome.results.candidates[0].cost
    assert cost.price_source == "suite"
    assert cost.requests_per_day == pytest.approx(12.0)  # no timestamps: one day of traffic
    assert cost.monthly_usd is not None and cost.monthly_usd > 0
    assert cost.baseline_monthly_usd is not None and cost.baseline_per_request_usd is not None
    assert cost.baseline_monthly_usd > cost.monthly_usd  # gpt-4o list price vs $1/$2
    rows = read_baseline(outcome.run_dir / "baseline.jsonl")
    assert len(rows) == 10 and {r.repeat for r in rows} == {0, 1} and all(r.ok for r in rows)
    saved = json.loads((outcome.run_dir / "results.json").read_text(encoding="utf-8"))
    assert saved["candidates"][0]["cost"]["monthly_usd"] == pytest.approx(cost.monthly_usd)
