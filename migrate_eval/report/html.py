"""``report.html``: one self-contained page a stakeholder can open offline.

Layout: verdict per candidate (first screen), task x candidate matrix, evidence per task
(metric means and the worst regressions side by side), cost and latency, traffic profile, sampling
and redaction (built by :mod:`migrate_eval.report.traffic`), ingestion, method.

Safety: the page is rendered by jinja2 with autoescaping on; logged content only ever reaches
the template as data, never as template source. On top of escaping, every string value goes
through :func:`_finalize`, which also turns U+2028/U+2029 into character references and shows
control characters as text. The page carries a Content-Security-Policy that allows no network
access at all and only the page's own inline script (pinned by its SHA-256), so even a
hypothetical escaping bug could not run a planted script or load anything remote.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape
from pydantic import BaseModel

from migrate_eval.core.outputs import write_text_atomic
from migrate_eval.core.records import Exchange, ReplayResult, Response
from migrate_eval.core.results import (
    SCHEMA_VERSION,
    CandidateComparison,
    CandidateResult,
    Interval,
    Results,
    TaskResult,
)
from migrate_eval.core.version import __version__
from migrate_eval.report._format import (
    confidence_pct,
    fmt_ci,
    fmt_int,
    fmt_ms,
    fmt_num,
    fmt_pct,
    fmt_usd,
    gate_counts,
    gate_explanation,
    is_number,
    judge_controls_text,
    last_user_message,
    task_names,
    tool_calls_json,
    truncate,
    verdict_label,
    visible_controls,
)
from migrate_eval.report.adaptation import AdaptationView, adaptation_view
from migrate_eval.report.decision import Decision, build_decision, cost_missing_reason
from migrate_eval.report.explorer import (
    Confusion,
    FieldMismatch,
    confusion,
    embed_json,
    exchange_blob,
    field_mismatches,
    histogram,
    histogram_svg,
    text_codes,
    text_is,
    word_diff,
)
from migrate_eval.report.summary import dropped_text
from migrate_eval.report.traffic import (
    ProfileView,
    RedactionView,
    SamplingView,
    profile_view,
    redaction_view,
    sampling_view,
)

#: Worst regressions shown per task and candidate.
MAX_REGRESSIONS = 10
#: Failed candidate calls shown per task and candidate.
MAX_FAILURES = 5
#: Longest answer / message text shown (characters); the rest is cut with a note.
MAX_TEXT_CHARS = 2000
#: Longest tool-call JSON shown (characters).
MAX_JSON_CHARS = 4000
#: Skipped-line examples shown.
MAX_INGEST_EXAMPLES = 20

VERDICT_ICONS: dict[str, str] = {
    "ready": "✓",
    "ready_with_caveats": "!",
    "needs_evidence": "…",
    "not_ready": "✗",
    "cannot_judge": "?",
}

_TEMPLATES = Path(__file__).parent / "templates"

T = TypeVar("T")


# --------------------------------------------------------------------------- view models


@dataclass
class Badge:
    verdict: str
    label: str
    icon: str
    css: str


def _badge(verdict: str) -> Badge:
    return Badge(
        verdict=verdict,
        label=verdict_label(verdict),
        icon=VERDICT_ICONS.get(verdict, "?"),
        css="v-" + verdict.replace("_", "-") if verdict in VERDICT_ICONS else "v-cannot-judge",
    )


@dataclass
class Bar:
    """A parity bar: mean, interval and threshold as percentages of the width."""

    mean: float | None
    low: float | None
    high: float | None
    threshold: float | None


def _pct_pos(x: float | None) -> float | None:
    if x is None or not is_number(x):
        return None
    return round(min(max(float(x), 0.0), 1.0) * 100, 2)


def _bar(iv: Interval, threshold: float | None) -> Bar:
    return Bar(
        mean=_pct_pos(iv.mean),
        low=_pct_pos(iv.ci_low),
        high=_pct_pos(iv.ci_high),
        threshold=_pct_pos(threshold),
    )


@dataclass
class CandidateView:
    name: str
    provider: str
    model: str
    base_url: str | None
    badge: Badge
    parity: str
    ci: str
    bar: Bar
    noise_floor: str | None
    reasons: list[tuple[str, str]]
    error_rate: str
    error_count: int
    errors_by_kind: list[tuple[str, int]]
    p50: str
    p95: str
    p99: str
    per_request: str
    total_cost: str
    input_tokens: str
    output_tokens: str
    n_tasks: int
    tasks_by_verdict: list[tuple[Badge, int]]
    unsupported_rate: str = "n/a"
    latency_change: str | None = None
    monthly: str | None = None
    cost_change: str | None = None
    cost_basis: str | None = None
    hardware: str | None = None
    ttft: str | None = None
    #: (task, "temperature dropped on 50 of 50, ...") for tasks with dropped parameters
    dropped: list[tuple[str, str]] = field(default_factory=list)
    noise_interval: str | None = None
    extras: list[tuple[str, str]] = field(default_factory=list)
    cost_note: str = ""


@dataclass
class MatrixCell:
    badge: Badge
    parity: str
    ci: str
    n: int
    n_total: int
    sort: str
    small_sample: bool
    errors: int


@dataclass
class MatrixRow:
    name: str
    anchor: str
    output: str
    n: str
    n_sort: str
    cells: list[MatrixCell | None]


@dataclass
class AnswerView:
    text: str | None = None
    text_cut: int = 0
    refusal: str | None = None
    tool_calls: str | None = None
    tool_calls_cut: int = 0
    finish_reason: str | None = None
    latency: str | None = None
    error: str | None = None
    error_kind: str | None = None
    missing: str | None = None
    empty: bool = False
    diff: Markup | None = None


@dataclass
class RegressionView:
    exchange_id: str
    parity: str
    metrics: list[tuple[str, str]]
    source: str | None
    user_message: str | None
    user_cut: int
    n_messages: int
    logged: AnswerView
    candidate: AnswerView
    status: str = "ok"
    severity: str = "low"
    outcome: str = ""


@dataclass
class RegressionGroup:
    candidate: str
    badge: Badge | None
    items: list[RegressionView]
    below_one: int
    scored: int
    failures: list[RegressionView]
    failure_total: int


@dataclass
class TaskSummaryRow:
    candidate: str
    badge: Badge
    parity: str
    ci: str
    bar: Bar
    pass_rate: str
    n: int
    n_total: int
    errors: str
    reasons: list[tuple[str, str]]
    bar_explained: str = ""


@dataclass
class ComparisonRow:
    """One pair of candidates compared on the same exchanges of a task (Results.comparisons)."""

    a: str
    b: str
    n: str
    mean_diff: str
    ci: str
    p_wilcoxon: str
    p_mcnemar: str
    p_adjusted: str
    finding: str


def _fmt_p(p: float | None) -> str:
    if p is None or not is_number(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _comparison_row(c: CandidateComparison, alpha: float) -> ComparisonRow:
    p = c.p_adjusted if c.p_adjusted is not None else c.p_wilcoxon
    if p is not None and is_number(p) and p <= alpha and is_number(c.mean_diff) and c.mean_diff:
        finding = f"{c.a if c.mean_diff > 0 else c.b} higher"
    else:
        finding = "no significant difference"
    return ComparisonRow(
        a=c.a,
        b=c.b,
        n=fmt_int(c.n),
        mean_diff=f"{c.mean_diff:+.3f}" if is_number(c.mean_diff) else "n/a",
        ci=fmt_ci(Interval(mean=c.mean_diff, ci_low=c.ci_low, ci_high=c.ci_high)),
        p_wilcoxon=_fmt_p(c.p_wilcoxon),
        p_mcnemar=_fmt_p(c.p_mcnemar),
        p_adjusted=_fmt_p(c.p_adjusted),
        finding=finding,
    )


@dataclass
class TaskView:
    name: str
    anchor: str
    description: str
    output: str
    metrics: list[str]
    min_parity: str
    n: str
    source: str
    rows: list[TaskSummaryRow]
    metric_rows: list[tuple[str, list[str]]]
    groups: list[RegressionGroup]
    charts: list[tuple[str, Markup, str]] = field(default_factory=list)
    confusions: list[tuple[str, Confusion]] = field(default_factory=list)
    mismatches: list[tuple[str, list[FieldMismatch]]] = field(default_factory=list)
    task_extras: list[tuple[str, str, str]] = field(default_factory=list)
    comparisons: list[ComparisonRow] = field(default_factory=list)
    judge_lines: list[str] = field(default_factory=list)
    bar: str = ""
    bar_explained: str = ""


@dataclass
class IngestView:
    files: list[str]
    formats: list[tuple[str, int]]
    lines_read: str
    exchanges: str
    skipped: str
    by_reason: list[tuple[str, int]]
    examples: list[str]
    examples_more: int


@dataclass
class Page:
    title: str
    suite: str
    simulated: bool
    created: str
    tool_version: str
    schema_version: str
    command: str
    gate: str
    gate_css: str
    gate_counts: str
    gate_explanation: str
    exit_code: int
    confidence: str
    candidates: list[CandidateView]
    candidate_names: list[str]
    matrix: list[MatrixRow]
    tasks: list[TaskView]
    ingest: IngestView
    thresholds: list[tuple[str, str]]
    min_parity: str
    pass_threshold: str
    min_samples: str
    max_error_rate: str
    sample_sizes: list[tuple[str, str, list[str]]]
    legend: list[Badge] = field(default_factory=list)
    max_regressions: int = MAX_REGRESSIONS
    blob: Markup = field(default_factory=lambda: Markup("{}"))
    task_verdicts: Markup = field(default_factory=lambda: Markup("{}"))
    text_limit: int = 0
    n_exchanges: int = 0
    #: the run's exchanges (more than ``n_exchanges`` when the browser shows a selection)
    n_run_exchanges: int = 0
    logged_p50: str = "n/a"
    traffic: ProfileView | None = None
    sampling: SamplingView | None = None
    redaction: RedactionView | None = None
    extras: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    decision: Decision | None = None
    adaptation: AdaptationView | None = None
    badges: dict[str, Badge] = field(default_factory=lambda: {v: _badge(v) for v in VERDICT_ICONS})


# --------------------------------------------------------------------------- building


def _f(x: Any) -> float | None:
    """A finite float from a pandas/numpy/python value, else None."""
    if x is None or isinstance(x, bool | str):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _threshold(results: Results, key: str) -> Any:
    return results.thresholds.get(key)


def _task_bar(tr: TaskResult) -> float | None:
    """THE bar of a task's verdict: the effective threshold, else the task's minimum parity."""
    v = _f(tr.effective_threshold)
    return v if v is not None else _f(tr.min_parity)


def bar_sentence(explained: str | None) -> str:
    """``bar_explained`` as the start of a sentence: "The bar 0.900 (the task's minimum ...)"."""
    text = (explained or "").strip().replace("min_parity", "minimum parity")
    if not text:
        return ""
    if text.lower().startswith("the bar"):
        return "The bar" + text[len("the bar") :]
    return "The bar: " + text


def log_root(files: Sequence[str]) -> str | None:
    """The folder the logs were named from: the common folder of the files read."""
    dirs = [os.path.dirname(f) for f in files if f]
    if not dirs:
        return None
    try:
        return os.path.commonpath(dirs)
    except ValueError:  # mixed absolute and relative, or different drives
        return None


def display_path(file: str, root: str | None) -> str:
    """A log file as a reader knows it: relative to where the logs were named, else its name."""
    if root is not None:
        try:
            rel = os.path.relpath(file, root)
        except ValueError:
            rel = ""
        if rel and not rel.startswith(".."):
            return rel
    return os.path.basename(file) or file


def _candidate_view(c: CandidateResult, default_min: float | None) -> CandidateView:
    counts: dict[str, int] = {}
    for t in c.tasks:
        counts[t.verdict] = counts.get(t.verdict, 0) + 1
    order = ["not_ready", "cannot_judge", "needs_evidence", "ready_with_caveats", "ready"]
    return CandidateView(
        name=c.name,
        provider=c.provider,
        model=c.model,
        base_url=c.base_url,
        badge=_badge(c.verdict),
        parity=fmt_num(c.parity.mean),
        ci=fmt_ci(c.parity),
        bar=_bar(c.parity, None),
        noise_floor=fmt_num(c.noise_floor) if is_number(c.noise_floor) else None,
        reasons=[(r.code, r.message) for r in c.reasons],
        error_rate=fmt_pct(c.errors.rate),
        error_count=c.errors.count,
        errors_by_kind=sorted(c.errors.by_kind.items(), key=lambda kv: (-kv[1], kv[0])),
        p50=fmt_ms(c.latency.p50_ms),
        p95=fmt_ms(c.latency.p95_ms),
        p99=fmt_ms(c.latency.p99_ms),
        per_request=fmt_usd(c.cost.per_request_usd),
        cost_note=cost_missing_reason(c),
        total_cost=fmt_usd(c.cost.total_usd),
        input_tokens=fmt_int(c.cost.input_tokens),
        output_tokens=fmt_int(c.cost.output_tokens),
        n_tasks=len(c.tasks),
        tasks_by_verdict=[(_badge(v), counts[v]) for v in order if counts.get(v)],
        dropped=[(t.task, dropped_text(t)) for t in c.tasks if t.dropped_params],
    )


def _task_result(c: CandidateResult, task: str) -> TaskResult | None:
    return next((t for t in c.tasks if t.task == task), None)


def _sort_key(tr: TaskResult) -> str:
    v = _f(tr.parity.mean)
    return f"{v:.6f}" if v is not None else "-1"


def _answer_from_response(resp: Response, *, latency_ms: float | None = None) -> AnswerView:
    a = AnswerView()
    if resp.text:
        a.text, a.text_cut = truncate(resp.text, MAX_TEXT_CHARS)
    if resp.refusal:
        a.refusal, _ = truncate(resp.refusal, MAX_TEXT_CHARS)
    tc = tool_calls_json(resp)
    if tc is not None:
        a.tool_calls, a.tool_calls_cut = truncate(tc, MAX_JSON_CHARS)
    a.finish_reason = resp.finish_reason
    lat = latency_ms if latency_ms is not None else resp.latency_ms
    a.latency = fmt_ms(lat) if is_number(lat) else None
    a.empty = not (resp.text or resp.refusal or resp.tool_calls)
    return a


def _logged_answer(ex: Exchange | None) -> AnswerView:
    if ex is None:
        return AnswerView(missing="The logged exchange is not available in this run folder.")
    if ex.response is None:
        if ex.error:
            return AnswerView(
                error=truncate(ex.error, MAX_TEXT_CHARS)[0], error_kind="logged error"
            )
        return AnswerView(missing="The log has no response for this request.")
    return _answer_from_response(ex.response)


def _candidate_answer(rep: ReplayResult | None, row: Mapping[Hashable, Any]) -> AnswerView:
    row_error = row.get("error")
    row_error = row_error if isinstance(row_error, str) and row_error else None
    if rep is None:
        if row_error:
            return AnswerView(
                error=truncate(row_error, MAX_TEXT_CHARS)[0], error_kind=_s(row.get("status"))
            )
        return AnswerView(missing="The candidate's answer is not available in this run folder.")
    if rep.response is not None:
        a = _answer_from_response(rep.response, latency_ms=rep.latency_ms)
    else:
        a = AnswerView()
        if rep.latency_ms is not None:
            a.latency = fmt_ms(rep.latency_ms)
    err = rep.error or row_error
    if err:
        a.error = truncate(err, MAX_TEXT_CHARS)[0]
        a.error_kind = rep.error_kind or (_s(row.get("status")) or None)
        if rep.status is not None and str(rep.status) not in (a.error_kind or ""):
            a.error_kind = (
                f"{a.error_kind}, HTTP {rep.status}" if a.error_kind else f"HTTP {rep.status}"
            )
    elif rep.response is None:
        a.missing = "The candidate returned no answer."
    return a


def _s(x: Any) -> str:
    return x if isinstance(x, str) else ""


def _regression_view(
    row: Mapping[Hashable, Any],
    metrics: Sequence[str],
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
    pass_threshold: float | None,
    root: str | None = None,
) -> RegressionView:
    ex_id = str(row.get("exchange_id"))
    cand = str(row.get("candidate"))
    ex = exchanges.get(ex_id)
    user = last_user_message(ex) if ex is not None else None
    user_text, user_cut = truncate(user, MAX_TEXT_CHARS) if user is not None else (None, 0)
    msgs = ex.request.get("messages") if ex is not None else None
    source = (
        f"{display_path(ex.source.file, root)}:{ex.source.line} ({ex.source.format})"
        if ex is not None
        else None
    )
    mvals = [
        (m, fmt_num(_f(row.get(m)))) for m in metrics if m in row and _f(row.get(m)) is not None
    ]
    parity = _f(row.get("parity"))
    if parity is None:
        severity = "failed"
    elif pass_threshold is not None and parity < pass_threshold:
        severity = "low"
    else:
        severity = "mid"
    outcome = _outcome(parity, pass_threshold)
    logged = _logged_answer(ex)
    candidate = _candidate_answer(replays.get((ex_id, cand)), row)
    if logged.text and candidate.text:
        logged.diff, candidate.diff = word_diff(logged.text, candidate.text)
    return RegressionView(
        exchange_id=ex_id,
        parity=fmt_num(parity),
        severity=severity,
        metrics=mvals,
        source=source,
        user_message=user_text,
        user_cut=user_cut,
        n_messages=len(msgs) if isinstance(msgs, list) else 0,
        logged=logged,
        candidate=candidate,
        status=_s(row.get("status")) or "ok",
        outcome=outcome,
    )


def _outcome(parity: float | None, pass_threshold: float | None) -> str:
    """A scored answer in words, following its parity (a returned call is not "OK" by itself)."""
    if parity is None:
        return "not scored"
    if parity >= 1.0 - 1e-9:
        return "same as logged"
    if pass_threshold is not None and parity >= pass_threshold:
        return "close to logged"
    return "differs from logged"


class _Rows:
    """The score rows of one task and candidate: their positions in the scores frame (in its
    order), read a column at a time; no copy of the frame (a million exchanges are two
    million rows)."""

    def __init__(self, frame: pd.DataFrame, positions: np.ndarray) -> None:
        self.frame = frame
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def empty(self) -> bool:
        return not len(self.positions)

    def __contains__(self, column: object) -> bool:
        return column in self.frame.columns

    def column(self, name: str, end: int | None = None) -> pd.Series:
        """The column's values of these rows (the first ``end``)."""
        return self.frame[name].iloc[self.positions[:end]]

    def rows(self, at: np.ndarray) -> pd.DataFrame:
        """The rows at ``at`` (positions among these rows)."""
        rows: pd.DataFrame = self.frame.iloc[self.positions[at]]
        return rows


def _groups(scores: pd.DataFrame) -> dict[tuple[str, str], _Rows]:
    needed = {"task", "candidate", "exchange_id"}
    if scores.empty or not needed.issubset(scores.columns):
        return {}
    task, task_texts = text_codes(scores["task"])
    cand, cand_texts = text_codes(scores["candidate"])
    key = task * len(cand_texts) + cand
    del task, cand
    order = np.argsort(key, kind="stable")  # each group's rows in the frame's order
    key = key[order]
    starts = np.flatnonzero(np.diff(key, prepend=-1))
    out: dict[tuple[str, str], _Rows] = {}
    for start, positions in zip(starts.tolist(), np.split(order, starts[1:]), strict=True):
        t, c = divmod(int(key[start]), len(cand_texts))
        out[(str(task_texts[t]), str(cand_texts[c]))] = _Rows(scores, positions)
    return out


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[Hashable, Any]]:
    """``frame[columns].to_dict("records")`` (the columns it has), built from one ``tolist``
    a column: the same Python values (a missing nullable value is None) without pandas'
    per-cell boxing."""
    cols = [c for c in dict.fromkeys(columns) if c in frame.columns]
    values = [[None if v is pd.NA else v for v in frame[c].tolist()] for c in cols]
    return (
        [dict(zip(cols, row, strict=True)) for row in zip(*values, strict=True)]
        if cols
        else [{} for _ in range(len(frame))]
    )


def _first_by(parity: np.ndarray | None, ids: pd.Series, at: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of the rows ``at`` ordered by (``parity``, id), equal ones in the
    frame's order (what ``sorted(at, key=lambda i: (parity[i], ids[i]))[:k]`` gives), without
    a Python object for each row: only rows that tie with the ``k``-th parity are ordered by
    id, and that by an array sort."""
    if parity is not None and len(at) > k > 0:
        kth = np.partition(parity[at], k - 1)[k - 1]
        at = at[parity[at] <= kth]
    if len(at) <= 1 or k <= 0:
        return at[:k] if k > 0 else at[:0]
    texts = ids.iloc[at]
    if not isinstance(texts.dtype, pd.StringDtype) and pd.api.types.infer_dtype(
        texts, skipna=True
    ) not in ("string", "empty"):
        texts = texts.astype(str)
    by_id = np.asarray(texts.array.argsort(kind="stable"), dtype=np.intp)
    rank = np.empty(len(at), dtype=np.intp)
    rank[by_id] = np.arange(len(at))  # equal ids: in the frame's order
    keys = (rank,) if parity is None else (rank, parity[at])
    return at[np.lexsort(keys)[:k]]


@dataclass
class _Picked:
    """The score rows a task's evidence shows for one candidate (before its exchanges and
    answers are read)."""

    items: list[dict[Hashable, Any]] = field(default_factory=list)
    failures: list[dict[Hashable, Any]] = field(default_factory=list)
    below_one: int = 0
    scored: int = 0
    failure_total: int = 0

    def shown_keys(self) -> list[tuple[str, str]]:
        """(exchange id, candidate) of the rows shown."""
        return [
            (str(row.get("exchange_id")), str(row.get("candidate")))
            for row in (*self.items, *self.failures)
        ]


def _pick_rows(group: _Rows | None, metrics: Sequence[str]) -> _Picked:
    """The worst regressions (lowest parity below 1, then id) and the first failures (by id)
    of a task and candidate: arrays over the group's rows, Python values only for the rows
    shown (a task of a million exchanges is a million rows a candidate)."""
    picked = _Picked()
    if group is None or group.empty:
        return picked
    n = len(group)
    status_ok = text_is(group.column("status"), "ok") if "status" in group else np.ones(n, bool)
    parity = (
        pd.to_numeric(group.column("parity"), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        if "parity" in group
        else np.full(n, np.nan)
    )
    ok = status_ok & ~np.isnan(parity)
    picked.scored = int(np.count_nonzero(ok))
    low = np.flatnonzero(ok & (parity < 1.0 - 1e-9))
    picked.below_one = len(low)
    ids = group.column("exchange_id")
    columns = ("exchange_id", "candidate", "status", "error", "parity", *metrics)
    picked.items = _records(group.rows(_first_by(parity, ids, low, MAX_REGRESSIONS)), columns)
    failed = np.flatnonzero(~status_ok) if "status" in group else np.zeros(0, np.intp)
    picked.failure_total = len(failed)
    picked.failures = _records(group.rows(_first_by(None, ids, failed, MAX_FAILURES)), columns)
    return picked


def _regression_group(
    cand: CandidateResult,
    task: str,
    metrics: Sequence[str],
    picked: _Picked,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
    pass_threshold: float | None,
    root: str | None = None,
) -> RegressionGroup:
    tr = _task_result(cand, task)
    return RegressionGroup(
        candidate=cand.name,
        badge=_badge(tr.verdict) if tr is not None else None,
        items=[
            _regression_view(row, metrics, exchanges, replays, pass_threshold, root)
            for row in picked.items
        ],
        below_one=picked.below_one,
        scored=picked.scored,
        failures=[
            _regression_view(row, metrics, exchanges, replays, pass_threshold, root)
            for row in picked.failures
        ],
        failure_total=picked.failure_total,
    )


def read_many(mapping: Mapping[Any, T], keys: Sequence[Any]) -> dict[Any, T]:
    """``mapping``'s values of ``keys`` (those it has) as a dict: a run on disk reads them
    in one ordered pass (``get_many``: each batch of records it touches decoded once, not
    once a key)."""
    get_many = getattr(mapping, "get_many", None)
    if get_many is not None:
        got: dict[Any, T] = get_many(keys)
        return got
    out: dict[Any, T] = {}
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            out[key] = value
    return out


def _slug_anchor(prefix: str, i: int) -> str:
    return f"{prefix}-{i + 1}"


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return format(v, "g") if math.isfinite(v) else "n/a"
    if isinstance(v, str | int | bool) or v is None:
        return json.dumps(v) if not isinstance(v, str) else v
    return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


#: Fields of the results models the page shows in their own place; any other field (added by a
#: newer version of the results schema) is shown generically, so nothing present is hidden.
_KNOWN_RESULTS = {
    "schema_version", "tool_version", "suite", "simulated", "created", "command", "thresholds",
    "ingest", "tasks", "candidates", "gate", "exit_code", "profile", "sampling", "redaction",
    "comparisons", "adaptation",
}  # fmt: skip
_KNOWN_CANDIDATE = {
    "name", "provider", "model", "base_url", "verdict", "reasons", "parity", "noise_floor",
    "errors", "latency", "cost", "tasks",
}  # fmt: skip
_KNOWN_TASK = {
    "task", "n", "n_total", "verdict", "reasons", "parity", "pass_rate", "min_parity", "metrics",
    "errors", "confusion", "bar_explained",
}  # fmt: skip
#: Mismatch analysis and confusion matrices read at most this many exchanges per task/candidate.
MAX_ANALYSED = 20_000


def _plain(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json")
    return v


def _flat_items(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """``(key path, text)`` pairs of a nested value, for generic key/value tables."""
    value = _plain(value)
    if isinstance(value, dict) and depth < 3 and value:
        out: list[tuple[str, str]] = []
        for k in value:
            out.extend(_flat_items(value[k], f"{prefix}.{k}" if prefix else str(k), depth + 1))
        return out
    if isinstance(value, float):
        return [(prefix, fmt_num(value) if abs(value) < 1000 else f"{value:,.2f}")]
    text = _value_text(value)
    return [(prefix, truncate(text, 600)[0])]


def _extra_fields(model: BaseModel, known: set[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in type(model).model_fields:
        if name in known:
            continue
        value = getattr(model, name, None)
        if value is None or value == {} or value == []:
            continue
        out.extend(_flat_items(value, name))
    return out


def _attr(obj: Any, *names: str) -> Any:
    for n in names:
        v = getattr(obj, n, None)
        if v is not None:
            return v
    return None


def _change(new: float | None, old: float | None) -> str | None:
    if new is None or old is None or old == 0:
        return None
    d = (new - old) / old
    return f"{'+' if d >= 0 else '−'}{abs(d) * 100:.0f}%"


def _candidate_extras(
    view: CandidateView,
    c: CandidateResult,
    scores: pd.DataFrame,
    logged_p50: float | None,
    baseline_cost: float | None,
) -> None:
    if not scores.empty and {"candidate", "status"}.issubset(scores.columns):
        mine = text_is(scores["candidate"], c.name)
        if mine.any():
            unsupported = np.count_nonzero(mine & text_is(scores["status"], "unsupported"))
            view.unsupported_rate = fmt_pct(unsupported / np.count_nonzero(mine))
    change = _change(_f(c.latency.p50_ms), logged_p50)
    if change is not None:
        view.latency_change = f"{change} p50 vs logged OpenAI ({fmt_ms(logged_p50)})"
    monthly = _f(_attr(c.cost, "monthly_usd", "projected_monthly_usd"))
    if monthly is None:
        monthly = _f(_attr(c, "monthly_usd", "projected_monthly_usd"))
    view.monthly = fmt_usd(monthly) if monthly is not None else None
    view.cost_basis = c.cost.cost_basis  # self-hosted: servers, hours, rates
    if c.hardware is not None:  # self-hosted: memory needed, fit on the named GPU
        view.hardware = "; ".join([c.hardware.summary(), *c.hardware.notes])
    # like with like: monthly vs the baseline's monthly, else per request vs per request
    base_monthly = _f(_attr(c.cost, "baseline_monthly_usd"))
    if base_monthly is None:
        base_monthly = baseline_cost
    base_per_req = _f(_attr(c.cost, "baseline_per_request_usd"))
    per_req = _f(c.cost.per_request_usd)
    if monthly is not None and base_monthly is not None:
        ch = _change(monthly, base_monthly)
        view.cost_change = f"{ch} vs OpenAI ({fmt_usd(base_monthly)}/month)" if ch else None
    elif per_req is not None and base_per_req is not None:
        ch = _change(per_req, base_per_req)
        view.cost_change = f"{ch} vs OpenAI ({fmt_usd(base_per_req)}/request)" if ch else None
    ttft = _attr(c.latency, "ttft_p50_ms", "ttft_ms")
    if ttft is None:
        ttft = _attr(c, "ttft")
    ttft95 = _f(_attr(c.latency, "ttft_p95_ms"))
    if ttft is not None:
        tt = _f(ttft) if not isinstance(ttft, BaseModel | dict) else None
        view.ttft = (
            fmt_ms(tt) if tt is not None else "; ".join(f"{k} {v}" for k, v in _flat_items(ttft))
        )
        if tt is not None and ttft95 is not None:
            view.ttft = f"p50 {view.ttft}, p95 {fmt_ms(ttft95)}"
    nf = _attr(c, "noise_floor_interval")
    if isinstance(nf, Interval):
        view.noise_interval = fmt_ci(nf)
    view.extras = _extra_fields(c, _KNOWN_CANDIDATE | {"noise_floor_interval", "ttft"})
    view.extras += [
        (f"latency.{k}", v)
        for k, v in _extra_fields(
            c.latency, {"p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms", "ttft_p95_ms"}
        )
    ]
    view.extras += [
        (f"cost.{k}", v)
        for k, v in _extra_fields(
            c.cost, {"input_tokens", "output_tokens", "total_usd", "per_request_usd"}
        )
    ]


def _stored_confusion(value: Any) -> Confusion | None:
    """A confusion matrix the results carry (logged label -> candidate label -> count)."""
    if not isinstance(value, Mapping) or not value:
        return None
    labels = sorted(
        {str(k) for k in value}
        | {str(k) for row in value.values() if isinstance(row, Mapping) for k in row}
    )
    index = {lbl: i for i, lbl in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for a, row in value.items():
        if not isinstance(row, Mapping):
            continue
        for b, n in row.items():
            if is_number(n):
                counts[index[str(a)]][index[str(b)]] += int(n)
    total = sum(map(sum, counts))
    if not total:
        return None
    agree = sum(counts[i][i] for i in range(len(labels))) / total
    return Confusion(labels=labels, counts=counts, n=total, agreement=agree)


def _task_analysis(
    view: TaskView,
    output: str,
    cands: Sequence[CandidateResult],
    groups: Mapping[tuple[str, str], _Rows],
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
    min_parity: float | None,
) -> None:
    for c in cands:
        g = groups.get((view.name, c.name))
        tr = _task_result(c, view.name)
        if tr is not None:
            for k, v in _extra_fields(tr, _KNOWN_TASK):
                view.task_extras.append((c.name, k, v))
        if g is None or g.empty:
            continue
        parity = (
            pd.to_numeric(g.column("parity"), errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
            if "parity" in g
            else np.zeros(0)
        )
        counts = histogram(parity)
        del parity
        scored = sum(counts)
        view.charts.append(
            (
                c.name,
                histogram_svg(
                    counts,
                    f"{c.name}: parity histogram, {scored} scored exchanges",
                    threshold=min_parity,
                ),
                f"{scored} scored",
            )
        )
        ids = [str(i) for i in g.column("exchange_id", MAX_ANALYSED).tolist()]
        if output == "classification":
            stored = _stored_confusion(getattr(tr, "confusion", None)) if tr is not None else None
            conf = stored or confusion(ids, c.name, exchanges, replays)
            if conf is not None:
                view.confusions.append((c.name, conf))
        elif output in ("structured", "tool_call"):
            mm = field_mismatches(output, ids, c.name, exchanges, replays)
            if mm:
                view.mismatches.append((c.name, mm))


def build_page(
    results: Results,
    scores: pd.DataFrame,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
    *,
    blob_utf8: list[bytes] | None = None,
) -> Page:
    """Everything the template shows, already formatted. With ``blob_utf8`` the exchange
    browser's data is appended to it as UTF-8 and the page holds :data:`BLOB_MARK` in its
    place (see :func:`render_html`)."""
    cands = list(results.candidates)
    min_parity_default = _f(_threshold(results, "min_parity"))
    pass_threshold = _f(_threshold(results, "pass_threshold"))
    min_samples = _threshold(results, "min_samples")
    min_samples_i = int(min_samples) if is_number(min_samples) else None
    infos = {t.name: t for t in results.tasks}
    names = task_names(results)
    anchors = {n: _slug_anchor("task", i) for i, n in enumerate(names)}
    groups = _groups(scores)
    root = log_root(results.ingest.files)
    confidence = _threshold(results, "confidence")
    alpha = 1.0 - (float(confidence) if is_number(confidence) else 0.95)

    matrix: list[MatrixRow] = []
    tasks: list[TaskView] = []
    picks: list[tuple[TaskView, str, list[str], list[tuple[CandidateResult, _Picked]]]] = []
    sample_sizes: list[tuple[str, str, list[str]]] = []
    for name in names:
        info = infos.get(name)
        cells: list[MatrixCell | None] = []
        rows: list[TaskSummaryRow] = []
        trs = [_task_result(c, name) for c in cands]
        for c, tr in zip(cands, trs, strict=True):
            if tr is None:
                cells.append(None)
                continue
            cells.append(
                MatrixCell(
                    badge=_badge(tr.verdict),
                    parity=fmt_num(tr.parity.mean),
                    ci=fmt_ci(tr.parity),
                    n=tr.n,
                    n_total=tr.n_total,
                    sort=_sort_key(tr),
                    small_sample=min_samples_i is not None and tr.n < min_samples_i,
                    errors=tr.errors.count,
                )
            )
            rows.append(
                TaskSummaryRow(
                    candidate=c.name,
                    badge=_badge(tr.verdict),
                    parity=fmt_num(tr.parity.mean),
                    ci=fmt_ci(tr.parity),
                    bar=_bar(tr.parity, _task_bar(tr)),
                    pass_rate=fmt_pct(tr.pass_rate),
                    n=tr.n,
                    n_total=tr.n_total,
                    errors=f"{tr.errors.count} ({fmt_pct(tr.errors.rate)})",
                    reasons=[(r.code, r.message) for r in tr.reasons],
                    bar_explained=bar_sentence(tr.bar_explained),
                )
            )
        metric_names: list[str] = list(info.metrics) if info is not None else []
        for tr in trs:
            if tr is not None:
                metric_names.extend(m for m in tr.metrics if m not in metric_names)
        metric_rows = [
            (m, [fmt_num(tr.metrics.get(m)) if tr is not None else "-" for tr in trs])
            for m in metric_names
        ]
        task_min = (
            info.min_parity
            if info is not None
            else next((tr.min_parity for tr in trs if tr is not None), min_parity_default)
        )
        bars = [(_task_bar(tr), bar_sentence(tr.bar_explained)) for tr in trs if tr is not None]
        task_bar = next((b for b, _ in bars if b is not None), _f(task_min))
        explained = sorted({e for _, e in bars if e})
        matrix.append(
            MatrixRow(
                name=name,
                anchor=anchors[name],
                output=info.output if info is not None else "",
                n=fmt_int(info.n) if info is not None else "",
                n_sort=str(info.n) if info is not None else "-1",
                cells=cells,
            )
        )
        tasks.append(
            TaskView(
                name=name,
                anchor=anchors[name],
                description=info.description if info is not None else "",
                output=info.output if info is not None else "",
                metrics=metric_names,
                min_parity=fmt_num(task_min, 2),
                bar=fmt_num(task_bar),
                bar_explained=explained[0] if len(explained) == 1 else "",
                n=fmt_int(info.n) if info is not None else "n/a",
                source=info.source if info is not None else "",
                rows=rows,
                metric_rows=metric_rows,
                judge_lines=[
                    judge_controls_text(jc)
                    for jc in ((info.judge_controls or {}) if info is not None else {}).values()
                ],
                comparisons=[
                    _comparison_row(c, alpha) for c in results.comparisons if c.task == name
                ],
                groups=[],
            )
        )
        picks.append(
            (
                tasks[-1],
                name,
                metric_names,
                [
                    (c, _pick_rows(groups.get((name, c.name)), metric_names))
                    for c, tr in zip(cands, trs, strict=True)
                    if tr is not None or (name, c.name) in groups
                ],
            )
        )
        sample_sizes.append(
            (
                name,
                fmt_int(info.n) if info is not None else "n/a",
                [f"{tr.n} / {tr.n_total}" if tr is not None else "-" for tr in trs],
            )
        )

    # the exchanges and answers of the examples shown, read together (a run on disk: in one
    # ordered pass), then the examples
    shown = [key for *_, per_cand in picks for _, p in per_cand for key in p.shown_keys()]
    shown_exchanges = read_many(exchanges, list(dict.fromkeys(ex_id for ex_id, _ in shown)))
    shown_replays = read_many(replays, shown)
    for view, name, metric_names, per_cand in picks:
        view.groups = [
            _regression_group(
                c, name, metric_names, p, shown_exchanges, shown_replays, pass_threshold, root
            )
            for c, p in per_cand
        ]
    del shown, shown_exchanges, shown_replays, picks

    ing = results.ingest
    examples = [visible_controls(truncate(e, 500)[0]) for e in ing.examples[:MAX_INGEST_EXAMPLES]]
    ingest = IngestView(
        files=list(ing.files),
        formats=sorted(ing.formats.items(), key=lambda kv: (-kv[1], kv[0])),
        lines_read=fmt_int(ing.lines_read),
        exchanges=fmt_int(ing.exchanges),
        skipped=fmt_int(ing.skipped),
        by_reason=sorted(ing.skipped_by_reason.items(), key=lambda kv: (-kv[1], kv[0])),
        examples=examples,
        examples_more=max(0, len(ing.examples) - MAX_INGEST_EXAMPLES),
    )

    def thr(key: str, digits: int = 2, pct: bool = False) -> str:
        v = _f(_threshold(results, key))
        if v is None:
            return "n/a"
        return fmt_pct(v, 0) if pct else fmt_num(v, digits)

    logged_lat = np.fromiter(  # an array: 8 bytes an exchange, not a float object
        (
            float(e.response.latency_ms)
            for e in exchanges.values()
            if e.response is not None and is_number(e.response.latency_ms)
        ),
        dtype=float,
    )
    logged_p50 = float(pd.Series(logged_lat).median()) if len(logged_lat) else None
    del logged_lat
    baseline_cost = _f(_attr(results, "baseline_cost_usd", "baseline_monthly_usd"))
    cand_views: list[CandidateView] = []
    for c in cands:
        cv = _candidate_view(c, min_parity_default)
        _candidate_extras(cv, c, scores, logged_p50, baseline_cost)
        cand_views.append(cv)
    for tv in tasks:
        info = infos.get(tv.name)
        _task_analysis(
            tv,
            info.output if info is not None else "",
            cands,
            groups,
            exchanges,
            replays,
            float(tv.bar) if tv.bar != "n/a" else None,
        )
    raw: bytes | None = None
    if blob_utf8 is not None:
        from migrate_eval.report.explorer import exchange_blob_utf8

        raw, limit, n_blob, n_total = exchange_blob_utf8(results, scores, exchanges, replays)
        if raw is not None:
            blob_utf8.append(raw)
    if raw is None:
        blob, limit, n_blob, n_total = exchange_blob(results, scores, exchanges, replays)
    else:
        blob = BLOB_MARK
    extras: list[tuple[str, list[tuple[str, str]]]] = []
    for name in type(results).model_fields:
        if name in _KNOWN_RESULTS:
            continue
        value = getattr(results, name, None)
        if value is None or value == {} or value == []:
            continue
        extras.append((name.replace("_", " ").capitalize(), _flat_items(value)))
    return Page(
        title=f"migrate-eval report: {results.suite}",
        suite=results.suite,
        simulated=results.simulated,
        created=results.created,
        tool_version=results.tool_version,
        schema_version=results.schema_version or SCHEMA_VERSION,
        command=results.command,
        gate=results.gate.upper(),
        gate_css=f"gate-{results.gate}"
        if results.gate in ("pass", "fail", "error")
        else "gate-error",
        gate_counts=gate_counts(results),
        gate_explanation=gate_explanation(results),
        exit_code=results.exit_code,
        confidence=confidence_pct(results),
        candidates=cand_views,
        candidate_names=[c.name for c in cands],
        matrix=matrix,
        tasks=tasks,
        ingest=ingest,
        thresholds=[(k, _value_text(results.thresholds[k])) for k in sorted(results.thresholds)],
        min_parity=thr("min_parity"),
        pass_threshold=thr("pass_threshold"),
        min_samples=str(min_samples_i) if min_samples_i is not None else "n/a",
        max_error_rate=thr("max_error_rate", pct=True),
        sample_sizes=sample_sizes,
        blob=Markup(blob),
        task_verdicts=Markup(
            embed_json(
                json.dumps(
                    {c.name: {t.task: t.verdict for t in c.tasks} for c in cands},
                    ensure_ascii=False,
                )
            )
        ),
        text_limit=limit,
        n_exchanges=n_blob,
        n_run_exchanges=n_total,
        logged_p50=fmt_ms(logged_p50),
        traffic=profile_view(results.profile, anchors, results.ingest),
        sampling=sampling_view(results.sampling, anchors),
        redaction=redaction_view(
            results.redaction, results.profile.pii if results.profile is not None else None
        ),
        extras=extras,
        decision=build_decision(results, logged_p50),
        adaptation=adaptation_view(results.adaptation, anchors),
        legend=[
            _badge(v)
            for v in ("ready", "ready_with_caveats", "needs_evidence", "not_ready", "cannot_judge")
        ],
    )


# --------------------------------------------------------------------------- rendering

_LINE_SEPARATORS = {"\u2028": "&#x2028;", "\u2029": "&#x2029;"}


def _finalize(value: Any) -> Any:
    """Escape every string (jinja's autoescape would too) and make odd characters visible.

    Markup (the page's own CSS/JS and pre-escaped fragments) is left exactly as is.
    """
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        out = str(escape(visible_controls(value)))
        if "\u2028" in out or "\u2029" in out:
            for ch, ref in _LINE_SEPARATORS.items():
                out = out.replace(ch, ref)
        return Markup(out)
    return value


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """``report.html.j2`` compiled once per machine, not on every run (compiling it is ~0.2 s).

    jinja2's own bytecode cache, in its per-user private temporary folder (created 0700 and
    checked to be the user's own): an entry is used only for the same template text (jinja2
    checks its SHA-1), the same migrate-eval, jinja2 and Python versions (the key) and the
    same Python (the entry's magic). A folder or entry that cannot be written is no error:
    that run only compiles the template, as it would without a cache.
    """

    #: the environment's options that shape the compiled code (set by :func:`_environment`)
    options = ""

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        key = "|".join(
            (__version__, jinja2.__version__, sys.version, self.options, name, str(filename))
        )
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """The compiled-template cache; ``MIGRATE_EVAL_TEMPLATE_CACHE`` names another folder
    (created, private to the user, when missing), or turns it off with ``off``."""
    folder = os.environ.get("MIGRATE_EVAL_TEMPLATE_CACHE") or None
    if folder == "off":
        return None
    try:
        if folder is not None:
            Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        return _CompiledTemplates(folder, pattern="migrate_eval_%s.cache")
    except (OSError, RuntimeError):  # no private temporary folder: compile every time
        return None


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=_bytecode_cache(),
    )
    if isinstance(env.bytecode_cache, _CompiledTemplates):
        env.bytecode_cache.options = repr(
            (
                env.autoescape,
                env.trim_blocks,
                env.lstrip_blocks,
                env.keep_trailing_newline,
                env.newline_sequence,
                env.finalize is not None,
                env.optimized,
                sorted(env.extensions),
            )
        )
    env.filters["pos"] = lambda x: "" if x is None else f"{float(x):.2f}"
    return env


@cache
def _static(name: str) -> str:
    return (_TEMPLATES / name).read_text(encoding="utf-8")


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


#: Where the exchange browser's data goes in a page rendered without it (:func:`render_html`).
BLOB_MARK = "\x00migrate-eval:exchange-data\x00"


def render_html_text(
    results: Results,
    scores: pd.DataFrame,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
    *,
    blob_utf8: list[bytes] | None = None,
) -> str:
    """The text of ``report.html`` (with ``blob_utf8``: see :func:`build_page`)."""
    page = build_page(results, scores, exchanges, replays, blob_utf8=blob_utf8)
    script = _static("report.js")
    csp = (
        "default-src 'none'; "
        "style-src 'unsafe-inline'; "
        f"script-src '{_script_hash(script)}'; "
        "base-uri 'none'; form-action 'none'"
    )
    template = _environment().get_template("report.html.j2")
    return template.render(
        page=page,
        css=Markup(_static("report.css")),
        script=Markup(script),
        csp=csp,
    )


def render_html(
    results: Results,
    scores: pd.DataFrame,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
    path: str | os.PathLike[str],
) -> None:
    """Write ``report.html``: one self-contained, offline, escaped page.

    ``scores`` is the per-exchange scores DataFrame (see :mod:`migrate_eval.core.results`),
    ``exchanges`` maps exchange id to the logged exchange and ``replays`` maps
    ``(exchange_id, candidate)`` to the candidate's answer. Missing entries are shown as
    missing, never raise.
    """
    # The exchange browser's data, as large as the rest of the page or much larger, stays UTF-8
    # bytes (1 byte a character, against up to 4 in a str): the page is rendered around a mark
    # and the bytes are written in its place, never decoded.
    blob: list[bytes] = []
    text = render_html_text(results, scores, exchanges, replays, blob_utf8=blob)
    if blob:
        if text.count(BLOB_MARK) == 1:
            from migrate_eval.core.outputs import write_bytes_atomic

            head, _, tail = text.partition(BLOB_MARK)
            write_bytes_atomic(Path(path), [head.encode(), blob[0], tail.encode()])
            return
        # the page's own text has the mark too (a logged text with it): rendered as text
        del blob, text
        text = render_html_text(results, scores, exchanges, replays)
    write_text_atomic(Path(path), text)


__all__ = ["build_page", "render_html", "render_html_text"]
