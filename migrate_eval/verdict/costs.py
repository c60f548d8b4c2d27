"""Cost projections: each candidate's (and the logged OpenAI model's) cost per request and per
month at the logged volume and task mix. Prices come from :mod:`migrate_eval.core.prices`.

* :func:`monthly_projection` - cost per request and requests per day, per task, to a
  month at the logged volume and task mix.
* :func:`logged_volume_per_day` - requests per day per task, from the log's timestamps.
* :func:`hourly_load` / :func:`self_hosted_projection` - a self-hosted model
  (``price.per_hour_usd``) is paid per server-hour, not per request: the servers needed for the
  logged peak rate (the busiest clock hour) at the throughput one server sustains, times the
  hours of a month (always on; ``price.scale_to_zero`` bills only the hours with traffic).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from migrate_eval.core.prices import (
    LoggedTraffic,
    candidate_price,
    cost_of,
    gpu_hour_price,
    is_self_hosted,
    logged_cost,
)
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.results import CandidateResult, CostStats
from migrate_eval.core.store import by_candidate
from migrate_eval.core.suite import CandidateSpec, Price

#: Days in an average month (365.25 / 12).
DAYS_PER_MONTH = 30.4375
#: Hours in an average month (730.5): what an always-on server is billed.
HOURS_PER_MONTH = 24.0 * DAYS_PER_MONTH


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


def _traffic(
    timestamps_by_task: Mapping[str, Iterable[datetime | None]] | LoggedTraffic,
) -> LoggedTraffic:
    """The traffic as gathered while it was read, or made from whole lists of timestamps."""
    if isinstance(timestamps_by_task, LoggedTraffic):
        return timestamps_by_task
    return LoggedTraffic.of(timestamps_by_task)


def logged_volume_per_day(
    timestamps_by_task: Mapping[str, Iterable[datetime | None]] | LoggedTraffic,
    *,
    min_days: float = 1.0,
) -> dict[str, float]:
    """Requests per day per task, over the time the whole log spans.

    The span runs from the earliest to the latest timestamp of any task (at least
    ``min_days``, so a log of one busy hour is not read as 24 such hours). Exchanges without
    a timestamp count in their task's volume over the same span. Without any timestamp
    every task's volume is its count over ``min_days``.
    """
    traffic = _traffic(timestamps_by_task)
    days = span_days(*traffic.span(), min_days=min_days)
    return {task: n / days for task, n in traffic.counts.items()}


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
    # Little's law: at most as many requests were in flight as there were to fetch
    return min(spec.concurrency, len(latencies)) / mean_s


@dataclass(frozen=True)
class HourlyLoad:
    """The logged traffic by clock hour (UTC; naive timestamps read as UTC).

    ``counts`` holds the requests of each clock hour that had any, in time order (requests
    without a timestamp are spread over the stamped hours in proportion); ``span_days`` is the
    time the log covers (at least one day, as in :func:`logged_volume_per_day`). A log without
    timestamps is read as one day of evenly spread traffic.
    """

    counts: tuple[float, ...]
    span_days: float

    @property
    def peak_rps(self) -> float:
        """Requests per second in the busiest clock hour (0.0 without traffic)."""
        return max(self.counts, default=0.0) / 3600.0


def hourly_load(
    timestamps_by_task: Mapping[str, Iterable[datetime | None]] | LoggedTraffic,
    *,
    min_days: float = 1.0,
) -> HourlyLoad:
    """The whole logged traffic (all tasks: one deployment serves them all) by clock hour."""
    traffic = _traffic(timestamps_by_task)
    buckets, total = traffic.hours, sum(traffic.counts.values())
    stamped = sum(buckets.values())
    if not stamped:
        return HourlyLoad(counts=(total / 24.0,) * 24 if total else (), span_days=min_days)
    hours = max(buckets) + 1 - min(buckets)  # the first hour's start to the last one's end
    span_days = max(min_days, hours / 24.0)
    scale = total / stamped
    counts = tuple(n * scale for _, n in sorted(buckets.items()))  # by hour, however read
    return HourlyLoad(counts=counts, span_days=span_days)


@dataclass(frozen=True)
class SelfHostedCost:
    """What a self-hosted candidate costs a month (:func:`self_hosted_projection`)."""

    servers: int
    monthly_usd: float
    per_request_usd: float | None
    basis: str


def self_hosted_projection(
    price: Price,
    load: HourlyLoad,
    throughput_rps: float,
    requests_per_day: float | None,
    *,
    throughput_source: str = "measured",
) -> SelfHostedCost:
    """Servers needed, monthly cost and cost per request of a model paid per server-hour.

    ``servers`` = ceil(peak rate / throughput), at least one, where the peak rate is the
    busiest clock hour's requests per second (hourly, not per minute: a minute's burst waits in
    the queue, and logs are often a sample in which a minute holds a handful of requests).
    Always on (the default): ``servers x per_hour_usd x 730.5`` hours. With
    ``price.scale_to_zero``: every clock hour with traffic is billed for the servers that hour
    needs, hours without traffic cost nothing, scaled from the log's span to a month. Per
    request: the monthly cost over the monthly requests (``requests_per_day x 30.44``).
    """
    if price.per_hour_usd is None or throughput_rps <= 0:
        raise ValueError("a self-hosted projection needs per_hour_usd and a positive throughput")

    def needed(count: float) -> int:
        return max(1, math.ceil(count / 3600.0 / throughput_rps - 1e-9))

    servers = needed(max(load.counts, default=0.0))
    per_hour = price.per_hour_usd
    sizing = (
        f"sized for the logged peak of {load.peak_rps:.3g} req/s (busiest hour) "
        f"at {throughput_rps:.3g} req/s per server ({throughput_source})"
    )
    if price.scale_to_zero:
        server_hours = (
            sum(needed(c) for c in load.counts if c > 0) * DAYS_PER_MONTH / load.span_days
        )
        monthly = server_hours * per_hour
        basis = (
            f"up to {servers} server{'s' if servers != 1 else ''} x ${per_hour:g}/h, scale to "
            f"zero: {server_hours:.0f} server-hours/month (hours with traffic only), {sizing}"
        )
    else:
        monthly = servers * per_hour * HOURS_PER_MONTH
        basis = (
            f"{servers} server{'s' if servers != 1 else ''} x ${per_hour:g}/h, always on "
            f"({HOURS_PER_MONTH:g} h/month), {sizing}"
        )
    monthly_requests = (requests_per_day or 0.0) * DAYS_PER_MONTH
    per_request = monthly / monthly_requests if monthly_requests > 0 else None
    return SelfHostedCost(
        servers=servers, monthly_usd=monthly, per_request_usd=per_request, basis=basis
    )


def measured_tokens_per_s(rps: float, rows: Iterable[ReplayResult]) -> float | None:
    """Answer tokens per second at ``rps`` requests per second: ``rps`` times the mean answer
    length (completion tokens) of the answers fetched in this run (cached ones when none was)."""
    fetched = [r for r in rows if r.ok and r.response is not None and r.response.usage]
    fresh = [r for r in fetched if not r.cached] or fetched
    lengths = [
        r.response.usage.completion_tokens
        for r in fresh
        if r.response is not None
        and r.response.usage is not None
        and r.response.usage.completion_tokens is not None
    ]
    if not lengths:
        return None
    return rps * sum(lengths) / len(lengths)


def gpu_price(
    spec: CandidateSpec, result: CandidateResult
) -> tuple[Price, str, str | None, int, float] | None:
    """A self-hosted candidate's price per server-hour from its GPU (``options.gpu`` with the
    GPU table, or ``options.gpu_hour_usd``): ``(price, source, gpu, GPUs per server, per GPU)``.

    GPUs per server: ``options.gpus``, or as many as the hardware fit needs (tensor parallel).
    """
    found = gpu_hour_price(spec)
    if found is None:
        return None
    per_gpu, gpu, source = found
    own = spec.options.get("gpus")
    per_server = own if isinstance(own, int) and not isinstance(own, bool) and own > 0 else 1
    fit = result.hardware
    if fit is not None and fit.gpus_needed is not None:
        per_server = max(per_server, fit.gpus_needed)
    price = Price(
        per_hour_usd=per_gpu * per_server,
        throughput_rps=spec.price.throughput_rps if spec.price is not None else None,
        scale_to_zero=bool(spec.price.scale_to_zero) if spec.price is not None else False,
    )
    return price, source, gpu, per_server, per_gpu


def _fill_self_hosted(
    cost: CostStats,
    spec: CandidateSpec,
    price: Price,
    rows: Sequence[ReplayResult],
    load: HourlyLoad,
    requests_per_day: float | None,
    gpus_per_server: int = 1,
) -> None:
    cost.price_source = cost.price_source or "self-hosted"
    cost.peak_rps = load.peak_rps
    # per-token figures do not apply to a model paid by the hour
    cost.per_request_usd = cost.total_usd = cost.monthly_usd = None
    if price.throughput_rps is not None:
        rps: float | None = price.throughput_rps
        source = "suite's throughput_rps"
    else:
        rps = measured_throughput_rps(spec, rows)
        source = f"measured at concurrency {spec.concurrency}"
    if rps is None:
        cost.cost_basis = (
            "throughput unknown (no answer measured): set price.throughput_rps in the suite"
        )
        return
    projection = self_hosted_projection(
        price, load, rps, requests_per_day, throughput_source=source
    )
    cost.throughput_rps = rps
    cost.throughput_tokens_per_s = measured_tokens_per_s(rps, rows)
    cost.servers = projection.servers
    cost.gpus = projection.servers * gpus_per_server
    cost.monthly_usd = projection.monthly_usd
    cost.per_request_usd = projection.per_request_usd
    cost.cost_basis = projection.basis
    if cost.gpu is not None and cost.gpu_hour_usd is not None:
        cost.cost_basis += (
            f"; a server is {gpus_per_server} x {cost.gpu} at ${cost.gpu_hour_usd:g}/GPU-hour"
        )
    if cost.throughput_tokens_per_s is not None:
        cost.cost_basis += f"; {cost.throughput_tokens_per_s:.3g} answer tokens/s per server"
    answered = sum(1 for r in rows if r.ok)
    if projection.per_request_usd is not None:
        cost.total_usd = projection.per_request_usd * answered


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
    left them empty (a price from the table rather than the suite). A self-hosted price
    (``per_hour_usd``) is projected by :func:`self_hosted_projection` instead: the servers the
    logged peak needs, at the suite's ``throughput_rps`` or the throughput measured in this run
    (:func:`measured_throughput_rps`, at the candidate's concurrency as the run applied it).
    """
    if not isinstance(traffic, LoggedTraffic):
        logged = LoggedTraffic()
        for ex in traffic:
            task = assignment.get(ex.id)
            if task is not None:
                logged.add(task, ex.timestamp, logged_cost(ex))
        traffic = logged
    baseline_costs = traffic.baseline_costs
    volume = logged_volume_per_day(traffic)
    baseline_by_task: dict[str, float | None] = {
        task: (sum(c) / len(c) if (c := baseline_costs.get(task)) else None) for task in volume
    }
    baseline_monthly = monthly_projection(baseline_by_task, volume)
    all_baseline = [c for costs in baseline_costs.values() for c in costs]
    baseline_per_request = sum(all_baseline) / len(all_baseline) if all_baseline else None
    per_day = sum(volume.values()) if volume else None
    load = hourly_load(traffic)

    by_name = {spec.name: spec for spec in specs}
    rows_by_candidate = by_candidate(replays)  # a large run's: read from disk, not held
    for result in candidates:
        cost = result.cost
        cost.baseline_per_request_usd = baseline_per_request
        cost.baseline_monthly_usd = baseline_monthly
        cost.requests_per_day = per_day
        spec = by_name.get(result.name)
        if spec is None:
            continue
        price, source = candidate_price(spec)
        rows = rows_by_candidate.get(spec.name, [])
        priced_gpu = gpu_price(spec, result) if price is None or is_self_hosted(price) else None
        if priced_gpu is not None and (price is None or price.per_hour_usd is None):
            price, source, cost.gpu, per_server, cost.gpu_hour_usd = priced_gpu
            cost.price_source = f"self-hosted on {per_server} x {cost.gpu or 'GPU'} ({source})"
            _fill_self_hosted(cost, spec, price, rows, load, per_day, per_server)
            continue
        if price is None:
            continue
        if is_self_hosted(price):
            if priced_gpu is not None:
                cost.gpu = priced_gpu[2]
            _fill_self_hosted(cost, spec, price, rows, load, per_day)
            continue
        cost.price_source = source
        per_task: dict[str, list[float]] = {}
        for row in rows:
            task = assignment.get(row.exchange_id)
            if task is None or not row.ok or row.response is None:
                continue
            row_cost = cost_of(row.response.usage, price)
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
