"""The traffic profile: what the logs hold, before anything is replayed.

:func:`profile` summarises exchanges and the task plan: volume by day, model and task; the
request features in use (tools, parallel tool calls, JSON schema / JSON mode, images,
streaming, multi-turn, ``n > 1``, logprobs, tool results in the history); prompt and completion
token distributions (from the logged ``usage``; estimated at 4 characters a token where it is
absent, and counted as estimated); identical requests; errors in the logs by kind; and the
ingest summary (formats, skipped lines by reason); and the personal data and secrets the
text holds, counted per kind with the ``--redact`` detectors (no values kept;
:class:`~migrate_eval.plan.redact.PiiCounter`). ``migrate-eval profile`` prints it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from migrate_eval.core.records import Exchange, LoggedExchange
from migrate_eval.core.request import request_digest
from migrate_eval.core.results import (
    Distribution,
    Duplicates,
    FeatureUse,
    LoggedErrors,
    PiiCounts,
    Profile,
    TaskVolume,
)
from migrate_eval.plan.redact import PiiCounter

if TYPE_CHECKING:
    from migrate_eval.core.results import IngestSummary
    from migrate_eval.plan.tasks import TaskPlan

#: Most rows of the terminal's volume table (longer logs are counted per week, month, year).
MAX_TEXT_PERIODS = 31
#: Characters per token used when the log has no usage (OpenAI's rule of thumb for English).
CHARS_PER_TOKEN = 4.0

FEATURES = (
    "tools",
    "parallel_tool_calls",
    "json_schema",
    "json_mode",
    "images",
    "streaming",
    "multi_turn",
    "n_gt_1",
    "logprobs",
    "tool_results_in_history",
)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    k = max(0, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[min(k, len(sorted_values) - 1)]


def _distribution(values: Sequence[float], estimated: int) -> Distribution:
    if not values:
        return Distribution()
    v = sorted(values)
    return Distribution(
        count=len(v),
        estimated=estimated,
        mean=round(sum(v) / len(v), 2),
        p50=_percentile(v, 0.5),
        p95=_percentile(v, 0.95),
        max=v[-1],
        total=float(sum(v)),
    )


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_chars(v) for k, v in value.items() if k not in ("type", "role", "id"))
    return 0


def _estimate(chars: int) -> float:
    return float(max(1, math.ceil(chars / CHARS_PER_TOKEN)))


def request_features(ex: LoggedExchange) -> set[str]:
    """The features of :data:`FEATURES` the exchange uses."""
    req = ex.request
    get = req.get
    found: set[str] = set()
    if get("tools") or get("functions"):
        found.add("tools")
    if ex.response is not None and len(ex.response.tool_calls) > 1:
        found.add("parallel_tool_calls")
    kind = req.output_format.kind
    if kind == "json_schema":
        found.add("json_schema")
    elif kind == "json_object":
        found.add("json_mode")
    if get("stream") is True:
        found.add("streaming")
    n = get("n")
    if isinstance(n, int) and n > 1:
        found.add("n_gt_1")
    if get("logprobs") or get("top_logprobs"):
        found.add("logprobs")
    assistant = user = False
    for m in get("messages") or ():  # one pass over the messages that are objects
        if not isinstance(m, dict):
            continue
        role = m.get("role")
        if role == "assistant":
            assistant = True
        elif role == "user":
            user = True
        elif role in ("tool", "function"):
            found.add("tool_results_in_history")
        content = m.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("image_url", "input_image", "image")
            for p in content
        ):
            found.add("images")
    if assistant and user:
        found.add("multi_turn")
    return found


_STATUS_RE = re.compile(r"\bHTTP (\d{3})\b")


def logged_error_kind(error: str) -> str:
    """A short kind for a logged error message (``http_429``, ``rate_limit``, ``timeout``...)."""
    low = error.lower()
    for kind, words in (
        ("rate_limit", ("rate limit", "rate_limit", "too many requests")),
        ("context_length", ("context_length", "maximum context", "context length")),
        ("content_filter", ("content_filter", "content policy", "content management")),
        ("timeout", ("timeout", "timed out")),
        ("invalid_request", ("invalid_request", "invalid request", "invalid_value")),
        ("model_not_found", ("model_not_found", "does not exist")),
        ("server_error", ("server_error", "internal error", "server error")),
    ):
        if any(w in low for w in words):
            return kind
    m = _STATUS_RE.search(error)
    if m:
        return f"http_{m.group(1)}"
    return "other"


class TrafficTally:
    """The profile's counts, gathered one exchange at a time (:meth:`add`), so that logs of
    any size are profiled in bounded memory: counters, two token counts an exchange (8 bytes
    each) and a 16-byte digest of each distinct request (for duplicates)."""

    def __init__(self, *, count_pii: bool = True, defer_pii_chars: int = 0) -> None:
        self.total = 0
        self.by_day: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.features: Counter[str] = Counter()
        self.finish: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.prompt = array("d")
        self.completion = array("d")
        self.estimated_prompt = 0
        self.estimated_completion = 0
        self.undated = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self._seen: set[bytes] = set()
        self._repeated: set[bytes] = set()
        self.duplicates = 0
        #: with ``defer_pii_chars``, the texts to examine are kept (up to that many
        #: characters) and examined by :meth:`profile` or the caller (``pii.counts()``)
        self.pii = PiiCounter(defer_chars=defer_pii_chars) if count_pii else None

    def add(self, ex: LoggedExchange, digest: bytes | None = None) -> None:
        """Count one exchange (``digest``: its :func:`~migrate_eval.plan.sampling.request_digest`,
        when the caller has it already)."""
        self.total += 1
        ts = ex.timestamp
        if ts is not None:
            if self.first is None or ts < self.first:
                self.first = ts
            if self.last is None or ts > self.last:
                self.last = ts
            self.by_day[ts.date().isoformat()] += 1
        else:
            self.undated += 1
        self.by_model[ex.model or "(none)"] += 1
        features = request_features(ex)
        if features:
            self.features.update(features)
        if self.pii is not None:
            self.pii.add(ex)
        if ex.error is not None:
            self.errors[logged_error_kind(ex.error)] += 1
        if digest is None:
            digest = request_digest(ex)
        if digest in self._seen:
            self.duplicates += 1
            self._repeated.add(digest)
        else:
            self._seen.add(digest)
        usage = ex.response.usage if ex.response is not None else None
        if usage is not None and usage.prompt_tokens is not None:
            self.prompt.append(float(usage.prompt_tokens))
        else:
            self.prompt.append(_estimate(_text_chars(ex.request.get("messages"))))
            self.estimated_prompt += 1
        if ex.response is not None:
            if ex.response.finish_reason:
                self.finish[ex.response.finish_reason] += 1
            if usage is not None and usage.completion_tokens is not None:
                self.completion.append(float(usage.completion_tokens))
            else:
                chars = len(ex.response.text or "") + sum(
                    len(c.name) + len(c.arguments) for c in ex.response.tool_calls
                )
                self.completion.append(_estimate(chars))
                self.estimated_completion += 1

    def profile(
        self,
        plan: TaskPlan | None = None,
        ingest: IngestSummary | None = None,
        *,
        pii: bool = True,
    ) -> Profile:
        """The profile of the exchanges added (``plan`` adds task volumes, ``ingest`` the read
        counts; ``pii=False``: without the PII counts, for the caller to add)."""
        total = self.total
        tasks: list[TaskVolume] = []
        if plan is not None:
            for t in plan.tasks:
                tasks.append(
                    TaskVolume(
                        name=t.name,
                        count=t.n,
                        share=round(t.n / total, 4) if total else 0.0,
                        source=t.source,
                        output=t.output,
                    )
                )
        notes = []
        if self.estimated_prompt or self.estimated_completion:
            notes.append(
                f"token counts estimated from text length ({CHARS_PER_TOKEN:g} characters a "
                f"token) where the log has no usage: {self.estimated_prompt} prompt, "
                f"{self.estimated_completion} completion"
            )
        if self.undated:
            notes.append(f"{self.undated} exchanges have no timestamp (not in by_day)")
        errors = sum(self.errors.values())
        return Profile(
            exchanges=total,
            lines_read=ingest.lines_read if ingest else 0,
            files=list(ingest.files) if ingest else [],
            formats=dict(ingest.formats) if ingest else {},
            skipped=dict(ingest.skipped_by_reason) if ingest else {},
            skipped_total=ingest.skipped if ingest else 0,
            skipped_examples=list(ingest.examples) if ingest else [],
            first=self.first.isoformat() if self.first is not None else None,
            last=self.last.isoformat() if self.last is not None else None,
            by_day=dict(sorted(self.by_day.items())),
            undated=self.undated,
            by_model=dict(self.by_model.most_common()),
            tasks=tasks,
            features={
                f: FeatureUse(
                    count=self.features[f],
                    share=round(self.features[f] / total, 4) if total else 0.0,
                )
                for f in FEATURES
            },
            prompt_tokens=_distribution(self.prompt, self.estimated_prompt),
            completion_tokens=_distribution(self.completion, self.estimated_completion),
            finish_reasons=dict(self.finish.most_common()),
            duplicates=Duplicates(
                groups=len(self._repeated),
                duplicates=self.duplicates,
                share=round(self.duplicates / total, 4) if total else 0.0,
            ),
            errors=LoggedErrors(
                count=errors,
                rate=round(errors / total, 4) if total else 0.0,
                by_kind=dict(self.errors.most_common()),
            ),
            notes=notes,
            pii=self.pii.counts() if self.pii is not None and pii else None,
        )


def profile(
    exchanges: Iterable[Exchange],
    plan: TaskPlan | None = None,
    ingest: IngestSummary | None = None,
) -> Profile:
    """Profile the logged traffic (``plan`` adds task volumes, ``ingest`` the read counts)."""
    tally = TrafficTally()
    for ex in exchanges:
        tally.add(ex)
    return tally.profile(plan, ingest)


def _parse_day(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value[:10]) if len(value) >= 10 else None
    except ValueError:
        return None


def _count(x: Any) -> int:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) else 0


def volume_buckets(
    by_day: Mapping[str, int], max_periods: int
) -> tuple[str, list[tuple[str, int]], int]:
    """Exchanges per period, gaps filled with zeros: ``(unit, [(label, count)], unread)``.

    ``unit`` is "day" while the logs span at most ``max_periods`` days, else "week" (weeks
    start on Monday, labelled by that Monday), "month" or "year". ``unread`` counts exchanges
    under keys that are not ISO dates (left out of the buckets).
    """
    days: dict[dt.date, int] = {}
    unread = 0
    for key, n in by_day.items():
        day = _parse_day(str(key))
        if day is None:
            unread += _count(n)
        else:
            days[day] = days.get(day, 0) + _count(n)
    if not days:
        return "day", [], unread
    first, last = min(days), max(days)

    def week(d: dt.date) -> dt.date:
        return d - dt.timedelta(days=d.weekday())

    def month(d: dt.date) -> dt.date:
        return d.replace(day=1)

    def year(d: dt.date) -> dt.date:
        return d.replace(month=1, day=1)

    def following(unit: str, d: dt.date) -> dt.date:
        if unit == "day":
            return d + dt.timedelta(days=1)
        if unit == "week":
            return d + dt.timedelta(days=7)
        if unit == "month":
            return (d + dt.timedelta(days=32)).replace(day=1)
        return d.replace(year=d.year + 1)

    def label(unit: str, d: dt.date) -> str:
        if unit == "week":
            return f"week of {d.isoformat()}"
        if unit == "month":
            return d.strftime("%Y-%m")
        if unit == "year":
            return str(d.year)
        return d.isoformat()

    spans = {
        "day": (last - first).days + 1,
        "week": (week(last) - week(first)).days // 7 + 1,
        "month": (last.year - first.year) * 12 + last.month - first.month + 1,
        "year": last.year - first.year + 1,
    }
    unit = next((u for u in ("day", "week", "month") if spans[u] <= max_periods), "year")
    start = {"day": lambda d: d, "week": week, "month": month, "year": year}[unit]
    grouped: dict[dt.date, int] = {}
    for d, n in days.items():
        grouped[start(d)] = grouped.get(start(d), 0) + n
    if spans[unit] > max_periods:  # centuries of (bogus) timestamps: only the periods with traffic
        return unit, [(label(unit, d), grouped[d]) for d in sorted(grouped)], unread
    out: list[tuple[str, int]] = []
    d = start(first)
    while d <= last:
        out.append((label(unit, d), grouped.get(d, 0)))
        try:
            d = following(unit, d)
        except (OverflowError, ValueError):  # the end of the calendar
            break
    return unit, out, unread


def render_text(p: Profile) -> str:
    """The profile as aligned plain-text tables (what ``migrate-eval profile`` prints)."""
    lines: list[str] = []

    def table(title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
        lines.append("")
        lines.append(title)
        if not rows:
            lines.append("  (none)")
            return
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for r in [header, *rows]:
            cells = [
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:,.0f}"

    span = f"{p.first} .. {p.last}" if p.first else "no timestamps"
    lines.append(f"{p.exchanges:,} exchanges from {len(p.files)} file(s); {span}")
    if p.formats:
        lines.append("formats: " + ", ".join(f"{k} {v:,}" for k, v in p.formats.items()))
    lines.append(
        f"skipped lines: {p.skipped_total:,}"
        + (" (" + ", ".join(f"{k} {v:,}" for k, v in p.skipped.items()) + ")" if p.skipped else "")
    )
    for example in p.skipped_examples:
        lines.append(f"  {example}")
    rest = p.skipped_total - len(p.skipped_examples)
    if p.skipped_examples and rest > 0:
        lines.append(
            f"  ... and {rest:,} more: `migrate-eval profile ... --skipped FILE` writes every "
            "skipped line (JSONL: file, line, field, reason)"
        )
    n = max(p.exchanges, 1)
    table(
        "Tasks",
        [(t.name, f"{t.count:,}", pct(t.share), t.output, t.source) for t in p.tasks],
        ("task", "exchanges", "share", "output", "found by"),
    )
    table(
        "Models",
        [(m, f"{c:,}", pct(c / n)) for m, c in p.by_model.items()],
        ("model", "exchanges", "share"),
    )
    unit, periods, _ = volume_buckets(p.by_day, MAX_TEXT_PERIODS)
    table(
        f"Volume by {unit}",
        [(label, f"{c:,}") for label, c in periods],
        (unit, "exchanges"),
    )
    table(
        "Features in use",
        [(f, f"{u.count:,}", pct(u.share)) for f, u in p.features.items()],
        ("feature", "exchanges", "share"),
    )
    table(
        "Tokens per request",
        [
            (name, num(d.p50), num(d.p95), num(d.max), f"{d.estimated:,}")
            for name, d in (("prompt", p.prompt_tokens), ("completion", p.completion_tokens))
        ],
        ("", "p50", "p95", "max", "estimated"),
    )
    lines.append("")
    lines.append(
        f"Duplicate requests: {p.duplicates.duplicates:,} copies of {p.duplicates.groups:,} "
        f"requests ({pct(p.duplicates.share)})"
    )
    lines.append(
        f"Logged errors: {p.errors.count:,} ({pct(p.errors.rate)})"
        + (
            ": " + ", ".join(f"{k} {v:,}" for k, v in p.errors.by_kind.items())
            if p.errors.by_kind
            else ""
        )
    )
    if p.finish_reasons:
        lines.append(
            "Finish reasons: " + ", ".join(f"{k} {v:,}" for k, v in p.finish_reasons.items())
        )
    if p.pii is not None:
        lines.append(pii_sentence(p.pii))
    for note in p.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def pii_sentence(pii: PiiCounts) -> str:
    """One line on the personal data and secrets the logs hold (counts, never values)."""
    where = (
        f"a sample of {pii.examined:,} exchanges" if pii.sampled else f"{pii.examined:,} exchanges"
    )
    if not pii.exchanges_with_pii:
        return f"Personal data and secrets: none found in {where} (--redact detectors)"
    kinds = ", ".join(f"{k} {v:,}" for k, v in pii.by_kind.items())
    share = pii.exchanges_with_pii / max(pii.examined, 1)
    return (
        f"Personal data and secrets: {pii.exchanges_with_pii:,} of {where} ({100 * share:.1f}%) "
        f"hold some: {kinds} (--redact replaces them before replay)"
    )
