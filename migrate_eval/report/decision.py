"""The decision in words: what the report's first screen and ``summary.md`` lead with.

One sentence says which candidate can take which tasks; one line per candidate gives its
verdict, the cost and latency change against the logged OpenAI traffic, what blocks it (one line
per blocked task, from the verdict's reasons) and how sure the figures are (interval, sample
size). The CI gate is a consequence of these verdicts and is said after them, not before.

Cost figures that are missing say why, and every figure priced with the shipped price table
says how old that table is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from migrate_eval.core.prices import price_table
from migrate_eval.core.results import CandidateResult, Results, TaskResult
from migrate_eval.report._format import (
    GATE_LABELS,
    VERDICT_SEVERITY,
    confidence_pct,
    fmt_int,
    fmt_ms,
    fmt_num,
    fmt_usd,
    gate_counts,
    gate_explanation,
    is_number,
    verdict_label,
)

#: Blocking tasks listed per candidate on the first screen; the rest are counted.
MAX_BLOCKERS = 4

_TAKES = ("ready", "ready_with_caveats")
_BLOCKING = ("not_ready", "cannot_judge", "needs_evidence")
_BLOCK_WORDS = {
    "not_ready": "not ready",
    "cannot_judge": "cannot be judged",
    "needs_evidence": "needs evidence",
}


@dataclass
class CandidateDecision:
    """One candidate, in words."""

    name: str
    verdict: str
    verdict_label: str
    takes: str
    cost: str
    latency: str
    sure: str
    blockers: list[str] = field(default_factory=list)
    blockers_more: int = 0


@dataclass
class Decision:
    sentence: str
    candidates: list[CandidateDecision]
    gate: str
    prices: str | None
    volume: str | None = None


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _tasks_phrase(tasks: list[str], limit: int = 3) -> str:
    if len(tasks) <= limit:
        return _join(tasks)
    return ", ".join(tasks[:limit]) + f" and {len(tasks) - limit} more"


def _change_pct(new: float | None, old: float | None) -> str | None:
    if not is_number(new) or not is_number(old) or old == 0:
        return None
    d = (new - old) / old
    return f"{'+' if d >= 0 else '−'}{abs(d) * 100:.0f}%"


def prices_age(today: date | None = None) -> str:
    """``the built-in price table of 2025-08-01 (493 days old)``."""
    as_of = price_table().as_of
    try:
        then = date.fromisoformat(str(as_of)[:10])
    except ValueError:
        return f"the built-in price table of {as_of}"
    days = ((today or date.today()) - then).days
    if days < 0:
        return f"the built-in price table of {as_of}"
    return f"the built-in price table of {as_of} ({days} day{'s' if days != 1 else ''} old)"


def _run_day(results: Results) -> date | None:
    try:
        return datetime.fromisoformat(results.created.replace("Z", "+00:00")).date()
    except (ValueError, AttributeError):
        return None


def cost_missing_reason(c: CandidateResult) -> str:
    """Why a candidate's cost is unknown, in words (empty when it is known)."""
    cost = c.cost
    if is_number(cost.per_request_usd):
        if cost.monthly_usd is None:
            if not is_number(cost.requests_per_day):
                return "no monthly figure: the logs give no volume to project"
            return "no monthly figure: a task with logged volume has no priced answer"
        return ""
    if cost.price_source == "self-hosted":
        return "unknown: self-hosted (priced per GPU hour), and no answer measured its throughput"
    if cost.price_source is None:
        return (
            f"unknown: no price for {c.model} in the suite or in the built-in price table "
            "(self-hosted or unlisted; set `price` on the candidate in the suite)"
        )
    return "unknown: no answer reported its token usage"


def cost_phrase(c: CandidateResult) -> str:
    """``cost +486% ($0.37 vs $0.06 a month)`` or why it is unknown."""
    cost = c.cost
    monthly, base_m = cost.monthly_usd, cost.baseline_monthly_usd
    ch = _change_pct(monthly, base_m)
    if ch is not None:
        return f"cost {ch} ({fmt_usd(monthly)} vs {fmt_usd(base_m)} a month)"
    per, base_p = cost.per_request_usd, cost.baseline_per_request_usd
    ch = _change_pct(per, base_p)
    if ch is not None:
        return f"cost {ch} per request ({fmt_usd(per)} vs {fmt_usd(base_p)})"
    why = cost_missing_reason(c)
    if why:
        return f"cost {why}"
    return "cost change unknown: the logged OpenAI cost is not known"


def latency_phrase(c: CandidateResult, logged_p50: float | None) -> str:
    ch = _change_pct(c.latency.p50_ms, logged_p50)
    if ch is None:
        if not is_number(c.latency.p50_ms):
            return "latency unknown (no answer timed)"
        return f"latency p50 {fmt_ms(c.latency.p50_ms)}"
    return f"latency {ch} ({fmt_ms(c.latency.p50_ms)} vs {fmt_ms(logged_p50)} logged, median)"


def _blocker(tr: TaskResult) -> str:
    why = tr.reasons[0].message if tr.reasons else _BLOCK_WORDS.get(tr.verdict, tr.verdict)
    why = why.replace("min_parity", "minimum parity")  # the suite key, in words
    return f"{tr.task} ({_BLOCK_WORDS.get(tr.verdict, tr.verdict)}): {why}"


def candidate_decision(
    c: CandidateResult, n_tasks: int, logged_p50: float | None, confidence: str
) -> CandidateDecision:
    ready = [t.task for t in c.tasks if t.verdict == "ready"]
    caveats = [t.task for t in c.tasks if t.verdict == "ready_with_caveats"]
    blocked = [t for t in c.tasks if t.verdict in _BLOCKING]
    n_take = len(ready) + len(caveats)
    if n_take == 0:
        takes = f"can take none of the {n_tasks} tasks yet"
    elif n_take == n_tasks and not caveats:
        takes = f"can take all {n_tasks} tasks"
    elif n_take == n_tasks:
        takes = f"can take all {n_tasks} tasks ({len(caveats)} with caveats)"
    else:
        takes = f"can take {n_take} of {n_tasks} tasks ({_tasks_phrase(ready + caveats)})"
        if caveats:
            takes += f", {len(caveats)} with caveats"
    scored = sum(t.n for t in c.tasks)
    smallest = min((t.n for t in c.tasks), default=0)
    iv = c.parity
    if is_number(iv.mean):
        sure = f"parity {fmt_num(iv.mean)}"
        if is_number(iv.ci_low) and is_number(iv.ci_high):
            sure += f" ({confidence} interval {fmt_num(iv.ci_low)}–{fmt_num(iv.ci_high)})"
        sure += f" over {fmt_int(scored)} scored exchanges"
        if len(c.tasks) > 1:
            sure += f", the smallest task {fmt_int(smallest)}"
    else:
        sure = "no scored exchange: nothing to be sure of"
    order = {"not_ready": 0, "cannot_judge": 1, "needs_evidence": 2}
    blocked.sort(key=lambda t: order.get(t.verdict, 3))
    return CandidateDecision(
        name=c.name,
        verdict=c.verdict,
        verdict_label=verdict_label(c.verdict),
        takes=takes,
        cost=cost_phrase(c),
        latency=latency_phrase(c, logged_p50),
        sure=sure,
        blockers=[_blocker(t) for t in blocked[:MAX_BLOCKERS]],
        blockers_more=max(0, len(blocked) - MAX_BLOCKERS),
    )


def decision_sentence(results: Results, per: list[CandidateDecision]) -> str:
    if not results.candidates:
        return "No candidate was run: there is nothing to decide."
    whole = [c for c in results.candidates if c.tasks and all(t.verdict in _TAKES for t in c.tasks)]
    partial = [
        c
        for c in results.candidates
        if c not in whole and any(t.verdict in _TAKES for t in c.tasks)
    ]
    by_name = {d.name: d for d in per}
    if whole:
        parts = [
            f"{c.name} {by_name[c.name].takes}: {by_name[c.name].cost}, {by_name[c.name].latency}"
            for c in whole
        ]
        out = "Switch possible: " + "; ".join(parts) + "."
    elif partial:
        parts = [f"{c.name} {by_name[c.name].takes}" for c in partial]
        out = "No candidate can take every task yet: " + "; ".join(parts) + "."
    else:
        return "Do not switch yet: no candidate can take any task."
    others = [c.name for c in results.candidates if c not in whole and c not in partial]
    if whole and partial:
        others = [c.name for c in partial] + others
    if others:
        verb = "is" if len(others) == 1 else "are"
        out += f" {_join(others)} {verb} not ready for every task (see below)."
    return out


def gate_line(results: Results) -> str:
    """The CI gate, said after the decision: what the exit code means."""
    gate = GATE_LABELS.get(results.gate, results.gate.upper())
    return (
        f"CI gate: {gate} (exit code {results.exit_code}), {gate_counts(results)}. "
        f"{gate_explanation(results)}"
    )


def build_decision(results: Results, logged_p50: float | None) -> Decision:
    n_tasks = len({t.task for c in results.candidates for t in c.tasks})
    conf = confidence_pct(results)
    per = [candidate_decision(c, n_tasks, logged_p50, conf) for c in results.candidates]
    # the candidates that can take the most come first; suite order among equals
    per.sort(key=lambda d: VERDICT_SEVERITY.get(d.verdict, 9))
    sources = {c.cost.price_source for c in results.candidates}
    prices = None
    if results.candidates:
        prices = (
            "Prices: the logged OpenAI cost and candidates without a suite price come from "
            f"{prices_age(_run_day(results))}"
        )
        if "suite" in sources:
            prices += "; candidates with a `price` in the suite use it"
        prices += "."
    per_day = next(
        (c.cost.requests_per_day for c in results.candidates if is_number(c.cost.requests_per_day)),
        None,
    )
    volume = (
        f"Monthly figures project the logged volume, {per_day:,.0f} requests a day "
        "(every logged exchange over the days from the first to the last timestamp, as in the "
        "traffic profile), over a month of 30.4 days."
        if per_day is not None
        else None
    )
    return Decision(
        sentence=decision_sentence(results, per),
        candidates=per,
        gate=gate_line(results),
        prices=prices,
        volume=volume,
    )


__all__ = [
    "CandidateDecision",
    "Decision",
    "build_decision",
    "cost_missing_reason",
    "cost_phrase",
    "latency_phrase",
    "prices_age",
]
