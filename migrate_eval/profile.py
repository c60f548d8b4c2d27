"""The traffic profile: what the logs hold, before anything is replayed.

:func:`profile` summarises exchanges and the task plan: volume by day, model and task; the
request features in use (tools, parallel tool calls, JSON schema / JSON mode, images,
streaming, multi-turn, ``n > 1``, logprobs, tool results in the history); prompt and completion
token distributions (from the logged ``usage``; estimated at 4 characters a token where it is
absent, and counted as estimated); identical requests; errors in the logs by kind; and the
ingest summary (formats, skipped lines by reason). ``migrate-eval profile`` prints it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from migrate_eval.records import Exchange

if TYPE_CHECKING:
    from migrate_eval.results import IngestSummary
    from migrate_eval.tasks import TaskPlan

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


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distribution(_M):
    """Percentiles of a token count (nearest-rank)."""

    count: int = 0
    estimated: int = Field(default=0, description="values estimated from text (no usage logged)")
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None
    total: float = 0.0


class FeatureUse(_M):
    count: int
    share: float


class TaskVolume(_M):
    name: str
    count: int
    share: float
    source: str
    output: str


class Duplicates(_M):
    """Identical requests (same canonical body, bookkeeping fields aside)."""

    groups: int = Field(default=0, description="distinct requests logged more than once")
    duplicates: int = Field(default=0, description="copies beyond the first")
    share: float = Field(default=0.0, description="duplicates / exchanges")


class LoggedErrors(_M):
    count: int = 0
    rate: float = 0.0
    by_kind: dict[str, int] = Field(default_factory=dict)


class Profile(_M):
    """A traffic profile (``migrate-eval profile --json`` prints one)."""

    exchanges: int
    lines_read: int = 0
    files: list[str] = Field(default_factory=list)
    formats: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict, description="skipped lines by reason")
    skipped_total: int = 0
    first: str | None = Field(default=None, description="earliest timestamp (ISO 8601)")
    last: str | None = None
    by_day: dict[str, int] = Field(default_factory=dict, description="exchanges per UTC day")
    undated: int = 0
    by_model: dict[str, int] = Field(default_factory=dict)
    tasks: list[TaskVolume] = Field(default_factory=list)
    features: dict[str, FeatureUse] = Field(default_factory=dict)
    prompt_tokens: Distribution = Field(default_factory=Distribution)
    completion_tokens: Distribution = Field(default_factory=Distribution)
    finish_reasons: dict[str, int] = Field(default_factory=dict)
    duplicates: Duplicates = Field(default_factory=Duplicates)
    errors: LoggedErrors = Field(default_factory=LoggedErrors)
    notes: list[str] = Field(default_factory=list)


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


def request_features(ex: Exchange) -> set[str]:
    """The features of :data:`FEATURES` the exchange uses."""
    req = ex.request
    found: set[str] = set()
    if req.get("tools") or req.get("functions"):
        found.add("tools")
    if ex.response is not None and len(ex.response.tool_calls) > 1:
        found.add("parallel_tool_calls")
    rf = req.get("response_format")
    if isinstance(rf, dict):
        if rf.get("type") == "json_schema":
            found.add("json_schema")
        elif rf.get("type") == "json_object":
            found.add("json_mode")
    if req.get("stream") is True:
        found.add("streaming")
    n = req.get("n")
    if isinstance(n, int) and n > 1:
        found.add("n_gt_1")
    if req.get("logprobs") or req.get("top_logprobs"):
        found.add("logprobs")
    messages = [m for m in req.get("messages") or [] if isinstance(m, dict)]
    if sum(1 for m in messages if m.get("role") == "assistant") >= 1 and any(
        m.get("role") == "user" for m in messages
    ):
        found.add("multi_turn")
    for m in messages:
        if m.get("role") in ("tool", "function"):
            found.add("tool_results_in_history")
        content = m.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") in ("image_url", "input_image", "image")
            for p in content
        ):
            found.add("images")
    return found


_STATUS_RE = re.compile(r"\bHTTP (\d{3})\b")


def error_kind(error: str) -> str:
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


def profile(
    exchanges: Sequence[Exchange],
    plan: TaskPlan | None = None,
    ingest: IngestSummary | None = None,
) -> Profile:
    """Profile the logged traffic (``plan`` adds task volumes, ``ingest`` the read counts)."""
    from migrate_eval.sampling import request_fingerprint

    total = len(exchanges)
    by_day: Counter[str] = Counter()
    by_model: Counter[str] = Counter()
    feats: Counter[str] = Counter()
    finish: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    fingerprints: Counter[str] = Counter()
    prompt: list[float] = []
    completion: list[float] = []
    est_prompt = est_completion = undated = 0
    stamps = []
    for ex in exchanges:
        if ex.timestamp is not None:
            stamps.append(ex.timestamp)
            by_day[ex.timestamp.date().isoformat()] += 1
        else:
            undated += 1
        by_model[ex.model or "(none)"] += 1
        feats.update(request_features(ex))
        if ex.error is not None:
            errors[error_kind(ex.error)] += 1
        fingerprints[request_fingerprint(ex)] += 1
        usage = ex.response.usage if ex.response is not None else None
        if usage is not None and usage.prompt_tokens is not None:
            prompt.append(float(usage.prompt_tokens))
        else:
            prompt.append(_estimate(_text_chars(ex.request.get("messages"))))
            est_prompt += 1
        if ex.response is not None:
            if ex.response.finish_reason:
                finish[ex.response.finish_reason] += 1
            if usage is not None and usage.completion_tokens is not None:
                completion.append(float(usage.completion_tokens))
            else:
                chars = len(ex.response.text or "") + sum(
                    len(c.name) + len(c.arguments) for c in ex.response.tool_calls
                )
                completion.append(_estimate(chars))
                est_completion += 1
    groups = [c for c in fingerprints.values() if c > 1]
    dup = sum(c - 1 for c in groups)
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
    if est_prompt or est_completion:
        notes.append(
            f"token counts estimated from text length ({CHARS_PER_TOKEN:g} characters a token) "
            f"where the log has no usage: {est_prompt} prompt, {est_completion} completion"
        )
    if undated:
        notes.append(f"{undated} exchanges have no timestamp (not in by_day)")
    return Profile(
        exchanges=total,
        lines_read=ingest.lines_read if ingest else 0,
        files=list(ingest.files) if ingest else [],
        formats=dict(ingest.formats) if ingest else {},
        skipped=dict(ingest.skipped_by_reason) if ingest else {},
        skipped_total=ingest.skipped if ingest else 0,
        first=min(stamps).isoformat() if stamps else None,
        last=max(stamps).isoformat() if stamps else None,
        by_day=dict(sorted(by_day.items())),
        undated=undated,
        by_model=dict(by_model.most_common()),
        tasks=tasks,
        features={
            f: FeatureUse(count=feats[f], share=round(feats[f] / total, 4) if total else 0.0)
            for f in FEATURES
        },
        prompt_tokens=_distribution(prompt, est_prompt),
        completion_tokens=_distribution(completion, est_completion),
        finish_reasons=dict(finish.most_common()),
        duplicates=Duplicates(
            groups=len(groups), duplicates=dup, share=round(dup / total, 4) if total else 0.0
        ),
        errors=LoggedErrors(
            count=sum(errors.values()),
            rate=round(sum(errors.values()) / total, 4) if total else 0.0,
            by_kind=dict(errors.most_common()),
        ),
        notes=notes,
    )


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
    table(
        "Volume by day",
        [(d, f"{c:,}") for d, c in p.by_day.items()],
        ("day", "exchanges"),
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
    for note in p.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"
