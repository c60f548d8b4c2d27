"""Cost projections: each candidate's (and the logged OpenAI model's) cost per request and per
month at the logged volume and task mix. Prices come from :mod:`migrate_eval.core.prices`.

* :func:`monthly_projection` - cost per request and requests per day, per task, to a
  month at the logged volume and task mix.
* :func:`logged_volume_per_day` - requests per day per task, from the log's timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from migrate_eval.core.prices import (
    LoggedTraffic,
    candidate_price,
    cost_of,
    is_self_hosted,
    logged_cost,
)
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.results import CandidateResult
from migrate_eval.core.suite import CandidateSpec

#: Days in an average month (365.25 / 12).
DAYS_PER_MONTH = 30.4375


def monthly_projection(
    cost_per_request_by_task: Mapping[str, float | None],
    logged_volume_per_day_by_task: Mapping[str, float],
    *,
    days: float = DAYS_PER_MONTH,
) -> float | None:
    """US dollars a month: each task's cost per request times its requests per day, summed.

    Tasks with no volume count nothing. None when a task with volume has no known cost
    (a partial sum would understate the bill) or when there is no volume at all.
    """
    total = 0.0
    any_volume = False
    for task, per_day in logged_volume_per_day_by_task.items():
        if per_day <= 0:
            continue
        cost = cost_per_request_by_task.get(task)
        if cost is None:
            return None
        any_volume = True
        total += cost * per_day * days
    return total * 1.0 if any_volume else None


def span_days(first: datetime | None, last: datetime | None, *, min_days: float = 1.0) -> float:
    """Days a log spans, earliest to latest timestamp, at least ``min_days``.

    The one definition of "per day" that the cost projection and the traffic profile share.
    """
    if first is None or last is None:
        return min_days
    return max(min_days, (last - first).total_seconds() / 86400.0)


def logged_volume_per_day(
    timestamps_by_task: Mapping[str, Iterable[datetime | None]], *, min_days: float = 1.0
) -> dict[str, float]:
    """Requests per day per task, over the time the whole log spans.

    The span runs from the earliest to the latest timestamp of any task (at least
    ``min_days``, so a log of one busy hour is not read as 24 such hours). Exchanges without
    a timestamp count in their task's volume over the same span. Without any timestamp
    every task's volume is its count over ``min_days``.
    """
    counts: dict[str, int] = {}
    first: datetime | None = None
    last: datetime | None = None
    for task, stamps in timestamps_by_task.items():
        n = 0
        for ts in stamps:
            n += 1
            if ts is None:
                continue
            if ts.tzinfo is None and first is not None and first.tzinfo is not None:
                continue  # naive and aware stamps cannot be compared: count, don't span
            try:
                first = ts if first is None or ts < first else first
                last = ts if last is None or ts > last else last
            except TypeError:
                continue
        counts[task] = n
    days = span_days(first, last, min_days=min_days)
    return {task: n / days for task, n in counts.items()}


def measured_throughput_rps(spec: CandidateSpec, rows: Iterable[ReplayResult]) -> float | None:
    """Requests per second the candidate sustained, by Little's law: concurrency / latency.

    Uses the answers actually fetched in this run (not cache hits); None without any.
    """
    latencies = [
        r.latency_ms for r in rows if r.ok and not r.cached and r.latency_ms and r.latency_ms > 0
    ]
    if not latencies:
        latencies = [r.latency_ms for r in rows if r.ok and r.latency_ms and r.latency_ms > 0]
    if not latencies:
        return None
    mean_s = sum(latencies) / len(latencies) / 1000.0
    return spec.concurrency / mean_s


def fill_cost_projections(
    candidates: Sequence[CandidateResult],
    specs: Sequence[CandidateSpec],
    replays: Sequence[ReplayResult],
    assignment: Mapping[str, str],
    traffic: Sequence[Exchange] | LoggedTraffic,
) -> None:
    """Fill each candidate's cost per request and monthly projections, and the baseline's.

    ``assignment`` maps exchange ids to tasks for the whole logged traffic (before
    sampling) and ``traffic`` is that traffic (or its :class:`LoggedTraffic`, gathered while
    it was read): it gives the volume per task and day (:func:`logged_volume_per_day`) and,
    priced with the table at each exchange's logged model and logged usage
    (:func:`logged_cost`), the baseline cost. Each candidate's cost per request, per task,
    is the mean cost of its answers (:func:`cost_of`); the monthly figure weighs tasks by
    their logged volume. ``total_usd`` / ``per_request_usd`` are filled when the aggregate
    left them empty (a price from the table rather than the suite).
    """
    if not isinstance(traffic, LoggedTraffic):
        logged = LoggedTraffic()
        for ex in traffic:
            task = assignment.get(ex.id)
            if task is not None:
                logged.add(task, ex.timestamp, logged_cost(ex))
        traffic = logged
    stamps, baseline_costs = traffic.stamps, traffic.baseline_costs
    volume = logged_volume_per_day(stamps)
    baseline_by_task: dict[str, float | None] = {
        task: (sum(c) / len(c) if (c := baseline_costs.get(task)) else None) for task in volume
    }
    baseline_monthly = monthly_projection(baseline_by_task, volume)
    all_baseline = [c for costs in baseline_costs.values() for c in costs]
    baseline_per_request = sum(all_baseline) / len(all_baseline) if all_baseline else None
    per_day = sum(volume.values()) if volume else None

    by_name = {spec.name: spec for spec in specs}
    rows_by_candidate: dict[str, list[ReplayResult]] = {}
    for row in replays:
        rows_by_candidate.setdefault(row.candidate, []).append(row)
    for result in candidates:
        cost = result.cost
        cost.baseline_per_request_usd = baseline_per_request
        cost.baseline_monthly_usd = baseline_monthly
        cost.requests_per_day = per_day
        spec = by_name.get(result.name)
        if spec is None:
            continue
        price, source = candidate_price(spec)
        if price is None:
            continue
        rows = rows_by_candidate.get(spec.name, [])
        rps = measured_throughput_rps(spec, rows) if is_self_hosted(price) else None
        cost.price_source = "self-hosted" if is_self_hosted(price) else source
        per_task: dict[str, list[float]] = {}
        for row in rows:
            task = assignment.get(row.exchange_id)
            if task is None or not row.ok or row.response is None:
                continue
            row_cost = cost_of(row.response.usage, price, throughput_rps=rps)
            if row_cost is not None:
                per_task.setdefault(task, []).append(row_cost)
        costs = [c for values in per_task.values() for c in values]
        if not costs:
            continue
        if cost.per_request_usd is None:  # the aggregate had no price (from the table)
            cost.per_request_usd = sum(costs) / len(costs)
            cost.total_usd = sum(costs)
        by_task: dict[str, float | None] = {
            task: (sum(v) / len(v) if (v := per_task.get(task)) else None) for task in volume
        }
        # A task the sample did not cover is priced at the candidate's overall mean.
        overall = sum(costs) / len(costs)
        cost.monthly_usd = monthly_projection(
            {t: (c if c is not None else overall) for t, c in by_task.items()}, volume
        )
