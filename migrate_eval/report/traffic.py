"""Readable report sections for what the run read and sent: traffic profile, sampling, redaction.

:func:`profile_view`, :func:`sampling_view` and :func:`redaction_view` turn the ``profile``,
``sampling`` and ``redaction`` parts of the results into already-formatted view models for
``report.html`` (headline figures, tables in words, a volume chart); each returns None when the
results do not carry that part (an older ``results.json``), and the page leaves the section out.

Everything here is data for the autoescaping template, except the volume chart, which
:func:`volume_svg` builds as inline SVG with every piece of text escaped. Long lists are bounded:
at most :data:`MAX_ROWS` rows per table (the rest summed up in a "N more" line) and at most
:data:`MAX_BARS` bars in the chart (days become weeks, then months, then years).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from migrate_eval.core.results import (
    IngestSummary,
    PiiCounts,
    Profile,
    RedactionSummary,
    SamplingSummary,
)
from migrate_eval.plan.profile import volume_buckets as profile_volume_buckets
from migrate_eval.report._format import fmt_int, fmt_pct, is_number, truncate
from migrate_eval.verdict.costs import span_days

#: At most this many rows per table; the rest are counted in a "N more" line.
MAX_ROWS = 50
#: At most this many bars in the volume chart; more days are grouped per week (then month, year).
MAX_BARS = 120
#: Longest name (task, model, file, error kind...) shown; the rest is cut with an ellipsis.
MAX_NAME_CHARS = 300

#: How a task was found (``TaskInfo.source``), in words.
TASK_SOURCES: dict[str, str] = {
    "suite": "suite definition",
    "metadata": "metadata tag in the logs",
    "system_prompt": "system-prompt template",
    "cluster": "clustering by meaning",
    "fallback": "fallback (no tag, template or cluster)",
}
#: Output kinds, in words.
OUTPUT_KINDS: dict[str, str] = {
    "tool_call": "tool calls",
    "structured": "structured JSON",
    "classification": "classification label",
    "free_text": "free text",
}
#: Request features of the profile (``migrate_eval.plan.profile.FEATURES``), in words.
FEATURE_LABELS: dict[str, str] = {
    "tools": "Tools offered to the model (function calling)",
    "parallel_tool_calls": "Several tool calls in one answer",
    "json_schema": "Structured output with a JSON schema",
    "json_mode": "JSON mode",
    "images": "Images in the prompt",
    "streaming": "Streamed answers",
    "multi_turn": "Multi-turn conversations",
    "n_gt_1": "Several answers per request (n > 1)",
    "logprobs": "Log probabilities",
    "tool_results_in_history": "Tool results in the conversation",
}
#: Finish reasons, explained.
FINISH_REASONS: dict[str, str] = {
    "stop": "finished normally",
    "length": "cut at the token limit",
    "tool_calls": "called a tool",
    "function_call": "called a function",
    "content_filter": "blocked by the content filter",
}
#: Kinds of logged errors (``migrate_eval.plan.profile.error_kind``), explained.
ERROR_KINDS: dict[str, str] = {
    "rate_limit": "rate limited",
    "context_length": "prompt too long for the model",
    "content_filter": "blocked by the content filter",
    "timeout": "timed out",
    "invalid_request": "invalid request",
    "model_not_found": "model not found",
    "server_error": "server error",
    "other": "other error",
}
#: Redaction entity kinds (``migrate_eval.plan.redact``), in words.
ENTITY_LABELS: dict[str, str] = {
    "secret": "API keys and secrets",
    "email": "E-mail addresses",
    "iban": "Bank account numbers (IBAN)",
    "card": "Payment card numbers",
    "ssn": "US social security numbers",
    "nino": "UK national insurance numbers",
    "ip": "IP addresses",
    "phone": "Phone numbers",
    "passport": "Passport numbers",
    "dob": "Dates of birth",
    "address": "Postal addresses",
    "person": "Person names",
    "location": "Places and street addresses",
}


# --------------------------------------------------------------------------- view models


@dataclass
class Stat:
    """One headline figure (``dl.stats``): label, value and an optional muted line under it."""

    label: str
    value: str
    sub: str | None = None


@dataclass
class ShareRow:
    """A name with a count and its share of the traffic (a bar of ``width`` percent)."""

    name: str
    count: str
    share: str
    width: float
    detail: str | None = None


@dataclass
class TaskRow:
    name: str
    anchor: str | None
    count: str
    share: str
    width: float
    source: str
    output: str


@dataclass
class TokenRow:
    label: str
    p50: str
    p95: str
    max: str
    mean: str
    total: str
    estimated: str


@dataclass
class Volume:
    """Exchanges per period: the chart and the exact numbers behind it."""

    unit: str
    svg: Markup
    rows: list[tuple[str, str]]
    note: str | None = None


@dataclass
class ProfileView:
    headline: list[Stat]
    volume: Volume | None = None
    tasks: list[TaskRow] = field(default_factory=list)
    tasks_more: str | None = None
    features: list[ShareRow] = field(default_factory=list)
    features_unused: list[str] = field(default_factory=list)
    tokens: list[TokenRow] = field(default_factory=list)
    models: list[ShareRow] = field(default_factory=list)
    models_more: str | None = None
    finish_reasons: list[ShareRow] = field(default_factory=list)
    finish_more: str | None = None
    errors: list[ShareRow] = field(default_factory=list)
    errors_more: str | None = None
    files: list[str] = field(default_factory=list)
    files_more: int = 0
    formats: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class SamplingRow:
    task: str
    anchor: str | None
    available: str
    unique: str
    duplicates: str
    target: str
    sampled: str


@dataclass
class SamplingView:
    settings: str
    outcome: str
    rows: list[SamplingRow]
    total: SamplingRow | None
    more: str | None = None
    #: identical requests were replayed once: the distinct/dropped columns mean something
    dedupe: bool = False


@dataclass
class RedactionView:
    enabled: bool
    sentence: str
    lead: str = ""
    looked_for: str | None = None
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    #: with redaction off: what the logs hold (from the profile), counts per kind
    found: str | None = None
    found_rows: list[tuple[str, str]] = field(default_factory=list)
    #: how person names were looked for, when only by heuristics
    names_note: str | None = None


# --------------------------------------------------------------------------- helpers


def _int(x: Any) -> int:
    return int(x) if is_number(x) else 0


def _name(x: Any) -> str:
    """A name from the logs as display text, cut at :data:`MAX_NAME_CHARS` (escaped later)."""
    text, cut = truncate(str(x), MAX_NAME_CHARS)
    return text + "…" if cut else text


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{fmt_int(n)} {word if n == 1 else (plural or word + 's')}"


def _width(share: float) -> float:
    return round(min(max(share, 0.0), 1.0) * 100, 2)


def _share(count: int, total: int) -> float:
    return count / total if total > 0 else 0.0


def _counts(value: Any) -> list[tuple[str, int]]:
    """``{name: count}`` as pairs, largest first (name order breaks ties)."""
    if not isinstance(value, Mapping):
        return []
    pairs = [(str(k), _int(v)) for k, v in value.items()]
    return sorted(pairs, key=lambda kv: (-kv[1], kv[0]))


def _more(pairs: Sequence[tuple[str, int]], noun: str, unit: str = "exchange") -> str | None:
    rest = pairs[MAX_ROWS:]
    if not rest:
        return None
    return f"… and {_plural(len(rest), 'more ' + noun)} ({_plural(sum(c for _, c in rest), unit)})."


def _share_rows(
    pairs: Sequence[tuple[str, int]],
    total: int,
    describe: Callable[[str], str | None] | None = None,
) -> list[ShareRow]:
    return [
        ShareRow(
            name=_name(k),
            count=fmt_int(c),
            share=fmt_pct(_share(c, total)),
            width=_width(_share(c, total)),
            detail=describe(k) if describe is not None else None,
        )
        for k, c in pairs[:MAX_ROWS]
    ]


def _error_words(kind: str) -> str | None:
    if kind.startswith("http_") and kind[5:].isdigit():
        return f"HTTP status {kind[5:]}"
    return ERROR_KINDS.get(kind)


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.astimezone(dt.UTC) if t.tzinfo is not None else t


def _lower_first(label: str) -> str:
    """A label lower-cased for use inside a sentence ("Images in the prompt" -> "images in the
    prompt"); acronyms ("JSON mode", "API keys") keep their capitals."""
    if len(label) > 1 and label[0].isupper() and not label[1].isupper():
        return label[0].lower() + label[1:]
    return label


def _tokens(x: Any) -> str:
    return f"{float(x):,.0f}" if is_number(x) else "n/a"


# --------------------------------------------------------------------------- volume chart


def volume_buckets(by_day: Mapping[str, int]) -> tuple[str, list[tuple[str, int]], int]:
    """:func:`migrate_eval.plan.profile.volume_buckets` with at most :data:`MAX_BARS` bars."""
    return profile_volume_buckets(by_day, MAX_BARS)


def volume_svg(buckets: Sequence[tuple[str, int]], title: str) -> Markup:
    """An inline SVG bar chart of exchanges per period; every text in it is escaped.

    One ``rect.vb`` per bucket (a zero-height one for a period without traffic), each with a
    ``<title>`` tooltip; the chart has ``role="img"`` and ``title`` as its accessible name.
    """
    n = max(1, len(buckets))
    top = max((c for _, c in buckets), default=0) or 1
    left, right, head, foot = 44, 6, 8, 18
    bw = min(40.0, 680.0 / n)
    plot_w, plot_h = bw * n, 110
    width, height = left + plot_w + right, head + plot_h + foot
    gap = 1.0 if bw >= 3 else 0.0
    t = escape(title)
    parts = [
        f'<svg class="hist volume-chart" viewBox="0 0 {width:.0f} {height}" width="{width:.0f}" '
        f'height="{height}" role="img" aria-label="{t}"><title>{t}</title>',
        f'<line class="vc-grid" x1="{left}" x2="{left + plot_w:.1f}" y1="{head}" y2="{head}"/>',
        f'<line class="vc-base" x1="{left}" x2="{left + plot_w:.1f}" '
        f'y1="{head + plot_h}" y2="{head + plot_h}"/>',
        f'<text class="hist-axis" x="{left - 4}" y="{head + 4}" text-anchor="end">'
        f"{escape(fmt_int(top))}</text>",
        f'<text class="hist-axis" x="{left - 4}" y="{head + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (lbl, c) in enumerate(buckets):
        h = 0.0 if c <= 0 else max(1.0, plot_h * c / top)
        x = left + i * bw
        parts.append(
            f'<rect class="vb" x="{x:.1f}" y="{head + plot_h - h:.1f}" '
            f'width="{max(bw - gap, 0.5):.1f}" height="{h:.1f}">'
            f"<title>{escape(lbl)}: {escape(_plural(c, 'exchange'))}</title></rect>"
        )
    if buckets:
        y = height - 4
        parts.append(f'<text class="hist-axis" x="{left}" y="{y}">{escape(buckets[0][0])}</text>')
        if len(buckets) > 1:
            parts.append(
                f'<text class="hist-axis" x="{left + plot_w:.1f}" y="{y}" text-anchor="end">'
                f"{escape(buckets[-1][0])}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _volume(by_day: Mapping[str, int]) -> Volume | None:
    unit, buckets, unread = volume_buckets(by_day)
    if not buckets:
        return None
    total = sum(c for _, c in buckets)
    peak_label, peak = max(buckets, key=lambda b: b[1])
    span = f"{buckets[0][0]} to {buckets[-1][0]}" if len(buckets) > 1 else buckets[0][0]
    title = (
        f"Exchanges per {unit}, {span}: {_plural(total, 'exchange')} in "
        f"{_plural(len(buckets), unit)}, at most {fmt_int(peak)} ({peak_label})"
    )
    notes: list[str] = []
    if unit != "day":
        notes.append(
            f"The logs span more than {MAX_BARS} days, so each bar is one {unit} "
            f"(the first and the last {unit} may be partial)."
        )
    if unread:
        notes.append(
            f"{_plural(unread, 'exchange')} under dates that could not be read are not shown."
        )
    return Volume(
        unit=unit,
        svg=volume_svg(buckets, title),
        rows=[(lbl, fmt_int(c)) for lbl, c in buckets],
        note=" ".join(notes) or None,
    )


# --------------------------------------------------------------------------- profile


def _period(p: Profile) -> list[Stat]:
    first, last = _parse_time(p.first), _parse_time(p.last)
    if first is None or last is None:
        if p.first or p.last:
            return [Stat("Period", f"{_name(p.first or '?')} → {_name(p.last or '?')}")]
        return [Stat("Period", "unknown", "the logs carry no timestamps")]
    days = max(1, (last.date() - first.date()).days + 1)
    if days == 1:
        zone = " UTC" if first.tzinfo is not None else ""
        out = [Stat("Period", first.date().isoformat(), f"{first:%H:%M} to {last:%H:%M}{zone}")]
    else:
        span = f"{first.date().isoformat()} → {last.date().isoformat()}"
        out = [Stat("Period", span, _plural(days, "day"))]
    by_day = _counts(p.by_day)
    dated = sum(c for _, c in by_day)
    if days > 1 and dated > 0:
        peak_day, peak = by_day[0]
        # the same figure the cost projection uses (verdict.costs.span_days): every exchange
        # over the time from the first to the last timestamp
        try:
            per_day = _int(p.exchanges) / span_days(first, last)
        except TypeError:  # one naive and one aware timestamp
            per_day = dated / days
        out.append(
            Stat(
                "Per day",
                f"{per_day:,.0f} on average",
                f"busiest {_name(peak_day)}: {fmt_int(peak)}",
            )
        )
    if p.undated:
        out.append(Stat("Without timestamp", fmt_int(_int(p.undated)), "not in the volume chart"))
    return out


def _headline(p: Profile) -> list[Stat]:
    total = _int(p.exchanges)
    out = [Stat("Exchanges", fmt_int(total)), *_period(p)]
    lines, skipped = _int(p.lines_read), _int(p.skipped_total)
    if lines or skipped:
        out.append(
            Stat(
                "Lines read",
                fmt_int(lines),
                f"{fmt_int(skipped)} skipped ({fmt_pct(_share(skipped, lines))})"
                if skipped
                else "none skipped",
            )
        )
    copies, groups = _int(p.duplicates.duplicates), _int(p.duplicates.groups)
    out.append(
        Stat(
            "Duplicate requests",
            fmt_pct(p.duplicates.share if is_number(p.duplicates.share) else None),
            f"{_plural(copies, 'copy', 'copies')} of {_plural(groups, 'request')}"
            if copies
            else "every request is distinct",
        )
    )
    errors = _int(p.errors.count)
    out.append(
        Stat(
            "Logged errors",
            fmt_pct(p.errors.rate if is_number(p.errors.rate) else None),
            f"{_plural(errors, 'failed call')} in the logs" if errors else "none in the logs",
        )
    )
    models = _counts(p.by_model)
    if len(models) == 1:
        out.append(Stat("Model", _name(models[0][0])))
    elif models:
        name, c = models[0]
        out.append(
            Stat(
                "Models",
                fmt_int(len(models)),
                f"mostly {_name(name)} ({fmt_pct(_share(c, total), 0)})",
            )
        )
    return out


def _task_rows(p: Profile, anchors: Mapping[str, str]) -> tuple[list[TaskRow], str | None]:
    tasks = sorted(p.tasks, key=lambda t: -_int(t.count))
    rows: list[TaskRow] = []
    for t in tasks[:MAX_ROWS]:
        share = float(t.share) if is_number(t.share) else _share(_int(t.count), _int(p.exchanges))
        rows.append(
            TaskRow(
                name=_name(t.name),
                anchor=anchors.get(t.name),
                count=fmt_int(_int(t.count)),
                share=fmt_pct(share),
                width=_width(share),
                source=TASK_SOURCES.get(t.source, _name(t.source)),
                output=OUTPUT_KINDS.get(t.output, _name(t.output)),
            )
        )
    return rows, _more([(t.name, _int(t.count)) for t in tasks], "task")


def _token_rows(p: Profile) -> list[TokenRow]:
    rows: list[TokenRow] = []
    for label, d in (
        ("Prompt (input)", p.prompt_tokens),
        ("Completion (output)", p.completion_tokens),
    ):
        count, est = _int(d.count), _int(d.estimated)
        if not count:
            continue
        rows.append(
            TokenRow(
                label=label,
                p50=_tokens(d.p50),
                p95=_tokens(d.p95),
                max=_tokens(d.max),
                mean=_tokens(d.mean),
                total=_tokens(d.total),
                estimated=f"{fmt_int(est)} of {fmt_int(count)} ({fmt_pct(_share(est, count))})"
                if est
                else "none",
            )
        )
    return rows


def profile_view(
    profile: Profile | None,
    anchors: Mapping[str, str] | None = None,
    ingest: IngestSummary | None = None,
) -> ProfileView | None:
    """The traffic profile in words, or None when the results carry none.

    ``anchors`` maps task names to the evidence sections they link to; ``ingest`` is the run's
    ingest summary: files, formats and skipped lines are only repeated here when they differ
    from it (the Ingestion section right below shows them).
    """
    if profile is None:
        return None
    p = profile
    total = _int(p.exchanges)
    view = ProfileView(headline=_headline(p))
    view.volume = _volume(p.by_day) if p.by_day else None
    view.tasks, view.tasks_more = _task_rows(p, anchors or {})

    used: list[tuple[str, int, float]] = []
    for key, use in p.features.items():
        label = FEATURE_LABELS.get(key, _name(key))
        if _int(use.count) > 0:
            used.append((label, _int(use.count), float(use.share) if is_number(use.share) else 0.0))
        else:
            view.features_unused.append(_lower_first(label))
    used.sort(key=lambda u: (-u[1], u[0]))
    view.features = [
        ShareRow(name=lbl, count=fmt_int(c), share=fmt_pct(s), width=_width(s))
        for lbl, c, s in used[:MAX_ROWS]
    ]
    view.tokens = _token_rows(p)

    models = _counts(p.by_model)
    if len(models) > 1:  # one model is in the headline
        view.models = _share_rows(models, total)
        view.models_more = _more(models, "model")
    finish = _counts(p.finish_reasons)
    view.finish_reasons = _share_rows(finish, total, FINISH_REASONS.get)
    view.finish_more = _more(finish, "finish reason")
    kinds = _counts(p.errors.by_kind)
    view.errors = _share_rows(kinds, total, _error_words)
    view.errors_more = _more(kinds, "kind")

    formats, skipped = _counts(p.formats), _counts(p.skipped)
    if ingest is None or list(p.files) != list(ingest.files):
        view.files = [_name(f) for f in p.files[:MAX_ROWS]]
        view.files_more = max(0, len(p.files) - MAX_ROWS)
    if ingest is None or formats != _counts(ingest.formats):
        view.formats = [(_name(k), fmt_int(c)) for k, c in formats[:MAX_ROWS]]
    if ingest is None or skipped != _counts(ingest.skipped_by_reason):
        view.skipped = [(_name(k), fmt_int(c)) for k, c in skipped[:MAX_ROWS]]
    view.notes = [_name(n) for n in p.notes[:MAX_ROWS]]
    return view


# --------------------------------------------------------------------------- sampling


def _sampling_settings(s: SamplingSummary) -> str:
    settings = [
        f"seed {s.seed}",
        "deduplication on (identical requests replayed once)" if s.dedupe else "deduplication off",
        f"at most {_plural(int(s.limit), 'exchange')} per task"
        if is_number(s.limit)
        else "no limit per task",
    ]
    if is_number(s.ci_width):
        conf = fmt_pct(s.confidence, 0) if is_number(s.confidence) else "95%"
        settings.append(f"sample sizes chosen for a {conf} interval no wider than {s.ci_width:g}")
    return "Settings: " + ", ".join(settings) + "."


def sampling_view(
    sampling: SamplingSummary | None, anchors: Mapping[str, str] | None = None
) -> SamplingView | None:
    """How the replayed exchanges were chosen, or None when the results do not say."""
    if sampling is None:
        return None
    s = sampling
    anchors = anchors or {}
    available, sampled, dups = _int(s.available), _int(s.sampled), _int(s.duplicates)
    outcome = f"{fmt_int(sampled)} of {_plural(available, 'logged exchange')} were replayed"
    if dups:
        outcome += f" ({_plural(dups, 'identical copy', 'identical copies')} left out)"
    tasks = sorted(s.tasks, key=lambda t: -_int(t.available))
    rows = [
        SamplingRow(
            task=_name(t.task),
            anchor=anchors.get(t.task),
            available=fmt_int(_int(t.available)),
            unique=fmt_int(_int(t.unique)),
            duplicates=fmt_int(_int(t.duplicates)),
            target=fmt_int(int(t.target)) if is_number(t.target) else "all",
            sampled=fmt_int(_int(t.sampled)),
        )
        for t in tasks[:MAX_ROWS]
    ]
    total = None
    if len(tasks) > 1:
        total = SamplingRow(
            task="Total",
            anchor=None,
            available=fmt_int(available),
            unique=fmt_int(sum(_int(t.unique) for t in tasks)),
            duplicates=fmt_int(dups),
            target="",
            sampled=fmt_int(sampled),
        )
    return SamplingView(
        settings=_sampling_settings(s),
        outcome=outcome[0].upper() + outcome[1:] + ".",
        rows=rows,
        total=total,
        more=_more([(t.task, _int(t.sampled)) for t in tasks], "task", "replayed exchange"),
        dedupe=bool(s.dedupe),
    )


# --------------------------------------------------------------------------- redaction


def _entity_list(entities: Iterable[str]) -> str:
    names = [ENTITY_LABELS.get(e, _name(e)) for e in entities]
    return ", ".join(_lower_first(n) for n in names)


NAMES_NOTE = (
    "Person names were looked for by heuristics only (after a title, a greeting or sign-off, "
    '"my name is", a list of common first names, name fields): their recall is modest and '
    "some names reached the candidates. names: true with the presidio extra finds more."
)


def _found(pii: PiiCounts | None) -> tuple[str | None, list[tuple[str, str]]]:
    if pii is None or not pii.examined:
        return None, []
    where = (
        f"a sample of {_plural(pii.examined, 'logged exchange')}"
        if pii.sampled
        else _plural(pii.examined, "logged exchange")
    )
    if not pii.exchanges_with_pii:
        return f"The redaction detectors found no personal data or secrets in {where}.", []
    share = pii.exchanges_with_pii / pii.examined
    sentence = (
        f"The redaction detectors found personal data or secrets in "
        f"{fmt_int(pii.exchanges_with_pii)} of {where} ({100 * share:.1f}%)."
    )
    rows = [(ENTITY_LABELS.get(k, _name(k)), fmt_int(_int(v))) for k, v in pii.by_kind.items()]
    return sentence, rows[:MAX_ROWS]


def redaction_view(
    redaction: RedactionSummary | None, pii: PiiCounts | None = None
) -> RedactionView | None:
    """What redaction did before replay (with it off, what the logs hold: ``pii``, the
    profile's counts), or None when the results do not say."""
    if redaction is None:
        return None
    r = redaction
    if not r.enabled:
        found, found_rows = _found(pii)
        return RedactionView(
            found=found,
            found_rows=found_rows,
            enabled=False,
            lead="Redaction was off:",
            sentence=(
                "the logged content (system prompts, messages, tool arguments and logged answers) "
                "was sent to the candidates exactly as logged, including any personal data or "
                "secrets it holds."
            ),
        )
    sentence = (
        f"{fmt_int(_int(r.exchanges_affected))} of {_plural(_int(r.exchanges), 'exchange')} had "
        "personal data or secrets replaced before anything was sent to a candidate "
        f"({_plural(_int(r.values), 'value')})."
    )
    values, occurrences = r.by_entity, r.occurrences_by_entity
    keys = sorted(
        set(values) | set(occurrences),
        key=lambda k: (-_int(values.get(k, 0)), -_int(occurrences.get(k, 0)), k),
    )
    return RedactionView(
        enabled=True,
        sentence=sentence,
        names_note=NAMES_NOTE if r.names == "heuristic" else None,
        looked_for=_entity_list(r.entities) if r.entities else None,
        rows=[
            (
                ENTITY_LABELS.get(k, _name(k)),
                fmt_int(_int(values.get(k, 0))),
                fmt_int(_int(occurrences.get(k, 0))),
            )
            for k in keys[:MAX_ROWS]
        ],
    )


__all__ = [
    "ProfileView",
    "RedactionView",
    "SamplingView",
    "profile_view",
    "redaction_view",
    "sampling_view",
    "volume_buckets",
    "volume_svg",
]
