"""Prices: what one answer costs, from the suite's ``price:`` or the shipped, dated table.

The table is ``migrate_eval/data/prices.yaml`` (:func:`price_table`; list prices change: the
table says when it was checked). Token-priced models cost ``input``/``cached_input``/``output``
per million tokens of the usage each answer reports; self-hosted models cost ``per_hour_usd``
per server and hour: :func:`cost_of` gives the cost of one request on a fully busy server,
and :mod:`migrate_eval.verdict.costs` projects the servers the logged peak needs to a month.

* :func:`price_for` - a model's price from the table (exact name, then without its date
  suffix; the provider / base URL narrows the vendor).
* :func:`cost_of` - the cost of one answer's usage.
* :func:`logged_cost` - what a logged call cost (its logged usage, its logged model).

Projections to a month live in :mod:`migrate_eval.verdict.costs`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import LoggedExchange, LoggedUsage, StrictModel, Usage
from migrate_eval.core.suite import CandidateSpec, Price

_DATE_SUFFIX = re.compile(
    r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-latest|-preview(-[\w-]+)?|-v\d+(:\d+)?)$"
)


#: Which vendor's prices apply to a base URL (substring of the host) or provider name.
_VENDOR_HINTS = (
    ("openai.azure.com", "openai"),
    ("api.openai.com", "openai"),
    ("anthropic", "anthropic"),
    ("generativelanguage", "google"),
    ("gemini", "google"),
    ("vertex", "google"),
    ("mistral", "mistral"),
    ("cohere", "cohere"),
    ("together", "together"),
    ("groq", "groq"),
    ("fireworks", "fireworks"),
    ("azure", "openai"),
    ("openai", "openai"),
)


class _Entry(StrictModel):
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class PriceTable(StrictModel):
    """The shipped price table (``prices.yaml``)."""

    as_of: str
    currency: str = "USD"
    unit: str = "per million tokens"
    sources: dict[str, str] = Field(default_factory=dict)
    providers: dict[str, dict[str, _Entry]]

    def lookup(self, vendor: str, model: str) -> Price | None:
        models = self.providers.get(vendor) or {}
        lowered = {name.lower(): entry for name, entry in models.items()}
        entry = lowered.get(model.lower())
        if entry is None:
            return None
        return Price(
            input_per_mtok=entry.input,
            output_per_mtok=entry.output,
            cached_input_per_mtok=entry.cached_input,
        )


#: libyaml's parser where PyYAML has it (the same safe subset, ~5x faster: the shipped table
#: is read on every run)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=1)
def price_table() -> PriceTable:
    """The shipped price table (read once)."""
    text = resources.files("migrate_eval").joinpath("data/prices.yaml").read_text("utf-8")
    try:
        return PriceTable.model_validate(yaml.load(text, Loader=_SAFE_LOADER))
    except (yaml.YAMLError, ValidationError) as e:  # pragma: no cover - a packaging bug
        raise ConfigError(f"migrate_eval/data/prices.yaml is not a valid price table: {e}") from e


def _vendors(provider: str | None, base_url: str | None, table: PriceTable) -> list[str]:
    hinted: list[str] = []
    for text in (base_url, provider):
        if not text:
            continue
        low = text.lower()
        for needle, vendor in _VENDOR_HINTS:
            if needle in low and vendor not in hinted:
                hinted.append(vendor)
                break
    if provider in table.providers and provider not in hinted:
        hinted.insert(0, provider)
    if hinted:
        return hinted
    return list(table.providers)


def _candidates_names(model: str) -> list[str]:
    names = [model]
    short = model
    while True:
        stripped = _DATE_SUFFIX.sub("", short)
        if stripped == short or not stripped:
            break
        names.append(stripped)
        short = stripped
    # Bedrock / Vertex style ids: "anthropic.claude-3-5-sonnet-20241022-v2:0", "models/gemini..."
    for name in list(names):
        for sep in (".", "/"):
            if sep in name:
                tail = name.rsplit(sep, 1)[1] if sep == "/" else name.split(sep, 1)[1]
                if tail and tail not in names:
                    names.append(tail)
                    names.extend(n for n in _candidates_names(tail)[1:] if n not in names)
    return names


def price_for(model: str, provider: str | None = None, base_url: str | None = None) -> Price | None:
    """The table's price for ``model`` at a vendor, or None if the table does not know it.

    The vendor comes from ``provider`` / ``base_url`` (``api.groq.com`` means Groq prices);
    without a hint every vendor's table is searched. The exact model name is tried first,
    then without its date or version suffix (``gpt-4o-2024-08-06`` costs what ``gpt-4o``
    costs, ``claude-3-5-sonnet-20241022`` what ``claude-3-5-sonnet`` costs).
    """
    table = price_table()
    vendors = _vendors(provider, base_url, table)
    for name in _candidates_names(model):
        for vendor in vendors:
            price = table.lookup(vendor, name)
            if price is not None:
                return price
    return None


#: Providers that serve a model on hardware the user pays by the hour (no per-token list price).
SELF_HOSTED_PROVIDERS = frozenset({"vllm", "sglang", "llama-server", "llama-cpp"})


def candidate_price(spec: CandidateSpec) -> tuple[Price | None, str | None]:
    """The price of a candidate and where it comes from (``suite`` or ``table <as_of>``)."""
    if spec.price is not None:
        return spec.price, "suite"
    if spec.provider in SELF_HOSTED_PROVIDERS:
        return None, None  # priced per GPU-hour (gpu_hour_price), never per token
    if spec.base_url and _is_local(spec.base_url):
        return None, None  # a model served on this machine or network: no list price
    price = price_for(spec.model, spec.provider, spec.base_url)
    if price is None:
        return None, None
    return price, f"table {price_table().as_of}"


def gpu_hour_price(spec: CandidateSpec) -> tuple[float, str | None, str] | None:
    """One GPU-hour's price for a candidate that names a GPU: ``(usd, gpu, source)``.

    ``options.gpu_hour_usd`` wins; else the GPU table's dated entry for ``options.gpu``
    (:func:`migrate_eval.core.hardware.gpu_table`). None when neither is known.
    """
    from migrate_eval.core.hardware import gpu_entry, gpu_table

    gpu = spec.options.get("gpu")
    gpu_name = str(gpu) if gpu is not None else None
    own = spec.options.get("gpu_hour_usd")
    if isinstance(own, int | float) and not isinstance(own, bool) and own >= 0:
        return float(own), gpu_name, "options.gpu_hour_usd"
    if isinstance(gpu, str):
        found = gpu_entry(gpu)
        if found is not None:
            name, entry = found
            return entry.per_hour_usd, name, f"GPU table {gpu_table().as_of}: {entry.offer}"
    return None


def _is_local(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith((".local", ".internal", ".svc", ".lan")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def is_self_hosted(price: Price) -> bool:
    return price.per_hour_usd is not None


def cost_of(
    usage: LoggedUsage | None, price: Price, *, throughput_rps: float | None = None
) -> float | None:
    """US dollars one answer costs, or None when it cannot be known.

    Token prices: uncached input at ``input_per_mtok``, cached input at
    ``cached_input_per_mtok`` (input price when absent), output (reasoning included) at
    ``output_per_mtok``. Self-hosted (``per_hour_usd``): the hour's cost divided by the
    requests served in an hour, at ``price.throughput_rps`` or else ``throughput_rps``
    (measured); None when neither is known.
    """
    if price.per_hour_usd is not None:
        rps = price.throughput_rps or throughput_rps
        if not rps or rps <= 0:
            return None
        return price.per_hour_usd / 3600.0 / rps
    if usage is None or (usage.prompt_tokens is None and usage.completion_tokens is None):
        return None
    prompt = usage.prompt_tokens or 0
    cached = min(usage.cached_tokens or 0, prompt)
    cached_price = (
        price.cached_input_per_mtok
        if price.cached_input_per_mtok is not None
        else price.input_per_mtok
    )
    return (
        (prompt - cached) * price.input_per_mtok
        + cached * cached_price
        + (usage.completion_tokens or 0) * price.output_per_mtok
    ) / 1_000_000.0


def mean_cost(
    usages: Iterable[Usage | None], price: Price, *, throughput_rps: float | None = None
) -> float | None:
    """Mean :func:`cost_of` over answers whose cost is known (None if none is)."""
    costs = [
        c for u in usages if (c := cost_of(u, price, throughput_rps=throughput_rps)) is not None
    ]
    return sum(costs) / len(costs) if costs else None


def describe(price: Price) -> dict[str, Any]:
    """A price as plain data, for reports."""
    return price.model_dump(exclude_none=True)


@functools.lru_cache(maxsize=1024)
def _openai_price(model: str) -> Price | None:
    """:func:`price_for` an OpenAI model, looked up once per model (logs repeat a few models
    millions of times; the price is only read)."""
    return price_for(model, "openai")


def logged_cost(ex: LoggedExchange) -> float | None:
    """What the logged call cost: its logged usage priced with the table at its model."""
    model = ex.model
    if not isinstance(model, str) and ex.response is not None:
        model = ex.response.model
    price = _openai_price(model) if isinstance(model, str) else None
    usage = ex.response.usage if ex.response is not None else None
    return cost_of(usage, price) if price is not None else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
_HOUR = 3_600_000_000  # microseconds

#: :func:`instant`'s kinds of timestamp
NO_TIME, NAIVE, AWARE = 0, 1, 2


def instant(timestamp: datetime | None) -> tuple[int, int]:
    """``(kind, microseconds since the epoch)`` of a timestamp: :data:`NO_TIME` (and 0),
    :data:`NAIVE` (read as UTC) or :data:`AWARE`; two integers instead of an object."""
    if timestamp is None:
        return NO_TIME, 0
    if timestamp.utcoffset() is None:
        return NAIVE, (timestamp.replace(tzinfo=None) - _NAIVE_EPOCH) // _MICROSECOND
    return AWARE, (timestamp - _EPOCH) // _MICROSECOND


def moment(kind: int, microseconds: int) -> datetime | None:
    """The timestamp of :func:`instant`'s pair (an aware one in UTC)."""
    if kind == NO_TIME:
        return None
    return (_NAIVE_EPOCH if kind == NAIVE else _EPOCH) + microseconds * _MICROSECOND


@dataclass
class LoggedTraffic:
    """What cost projections need of the whole logged traffic, gathered while it is read, with
    nothing kept per exchange but its logged cost (8 bytes): per task its requests and the
    earliest and latest timestamp of each kind (time-zone aware or naive), the requests of
    each clock hour, and per task the logged costs in log order (the baseline's cost, summed
    as a list of them would be)."""

    #: requests per task, in the order the tasks first appear in the log
    counts: dict[str, int] = field(default_factory=dict)
    #: per task, by :func:`instant` kind (the first key is that of the task's first
    #: timestamp): the earliest and the latest timestamp, in microseconds since the epoch
    spans: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    #: requests per clock hour (hours since the epoch, UTC; naive timestamps read as UTC)
    hours: dict[int, int] = field(default_factory=dict)
    baseline_costs: dict[str, array[float]] = field(default_factory=dict)

    def add(self, task: str, timestamp: datetime | None, cost: float | None) -> None:
        kind, microseconds = instant(timestamp)
        self.add_instant(task, kind, microseconds, cost)

    def add_instant(self, task: str, kind: int, microseconds: int, cost: float | None) -> None:
        """:meth:`add` with the timestamp as :func:`instant` gives it."""
        self.counts[task] = self.counts.get(task, 0) + 1
        if kind != NO_TIME:
            span = self.spans.setdefault(task, {}).get(kind)
            if span is None:
                self.spans[task][kind] = [microseconds, microseconds]
            elif microseconds < span[0]:
                span[0] = microseconds
            elif microseconds > span[1]:
                span[1] = microseconds
            hour = microseconds // _HOUR
            self.hours[hour] = self.hours.get(hour, 0) + 1
        if cost is not None and cost == cost:  # NaN: no known cost
            self.baseline_costs.setdefault(task, array("d")).append(cost)

    @classmethod
    def of(cls, timestamps_by_task: Mapping[str, Iterable[datetime | None]]) -> LoggedTraffic:
        """The traffic of these timestamps (per task, in log order), without costs."""
        traffic = cls()
        for task, stamps in timestamps_by_task.items():
            traffic.counts.setdefault(task, 0)
            for ts in stamps:
                traffic.add(task, ts, None)
        return traffic

    def span(self) -> tuple[datetime | None, datetime | None]:
        """The earliest and the latest timestamp of the log. Time-zone aware and naive
        timestamps cannot be compared: the span is that of the kind of the first timestamp of
        the first task (in log order) that has any, and the other kind only counts."""
        for task in self.counts:
            spans = self.spans.get(task)
            if spans:
                kind = next(iter(spans))
                first = min(s[kind][0] for s in self.spans.values() if kind in s)
                last = max(s[kind][1] for s in self.spans.values() if kind in s)
                return moment(kind, first), moment(kind, last)
        return None, None
