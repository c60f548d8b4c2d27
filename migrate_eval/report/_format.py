"""Formatting shared by every output: human labels, numbers, gate sentence, text helpers."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from migrate_eval.core.records import Exchange, Response
from migrate_eval.core.results import CandidateResult, Interval, JudgeControls, Results, Verdict

VERDICT_LABELS: dict[str, str] = {
    "ready": "Ready",
    "ready_with_caveats": "Ready with caveats",
    "needs_evidence": "Needs evidence",
    "not_ready": "Not ready",
    "cannot_judge": "Cannot judge",
}

#: Order in which verdicts are "worse" (used to sort tasks for truncated outputs).
VERDICT_SEVERITY: dict[str, int] = {
    "not_ready": 3,
    "cannot_judge": 2,
    "needs_evidence": 2,
    "ready_with_caveats": 1,
    "ready": 0,
}

GATE_LABELS: dict[str, str] = {"pass": "PASS", "fail": "FAIL", "error": "ERROR"}


def verdict_label(verdict: Verdict | str) -> str:
    """The human label of a verdict ("Ready", "Ready with caveats", ...)."""
    return VERDICT_LABELS.get(verdict, str(verdict))


def is_number(x: Any) -> TypeGuard[int | float]:
    """True for a finite int/float (not bool, not NaN, not None)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    return math.isfinite(x)


def fmt_num(x: float | int | None, digits: int = 3) -> str:
    """A score with a fixed number of decimals, or "n/a"."""
    return f"{x:.{digits}f}" if is_number(x) else "n/a"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return f"{x * 100:.{digits}f}%" if x is not None and is_number(x) else "n/a"


def fmt_interval(iv: Interval, digits: int = 3) -> str:
    """``0.873 [0.820, 0.910]``; the bracket is left out when there is no interval."""
    if not is_number(iv.mean):
        return "n/a"
    if is_number(iv.ci_low) and is_number(iv.ci_high):
        return f"{fmt_num(iv.mean, digits)} [{fmt_num(iv.ci_low, digits)}, {fmt_num(iv.ci_high, digits)}]"
    return fmt_num(iv.mean, digits)


def fmt_ci(iv: Interval, digits: int = 3) -> str:
    """Only the bracket: ``[0.820, 0.910]`` or "" when there is none."""
    if is_number(iv.ci_low) and is_number(iv.ci_high):
        return f"[{fmt_num(iv.ci_low, digits)}, {fmt_num(iv.ci_high, digits)}]"
    return ""


def fmt_ms(x: float | None) -> str:
    if x is None or not is_number(x):
        return "n/a"
    if x >= 10_000:
        return f"{x / 1000:.1f} s"
    return f"{x:.0f} ms"


def fmt_usd(x: float | None) -> str:
    if x is None or not is_number(x):
        return "n/a"
    if x == 0:
        return "$0"
    if abs(x) < 0.000001:
        return "under $0.000001" if x > 0 else "$0"
    if abs(x) < 0.01:
        return f"${x:.6f}".rstrip("0")
    return f"${x:,.2f}"


def fmt_int(x: int | None) -> str:
    return f"{x:,}" if isinstance(x, int) else "n/a"


def judge_controls_text(c: JudgeControls) -> str:
    """One line on how the LLM judge did on a task's planted controls (report and summary)."""
    parts = [
        f"{c.correct}/{c.checks} controls right (accuracy {fmt_num(c.accuracy, 2)}, "
        f"bar {fmt_num(c.min_accuracy, 2)})"
    ]
    if c.position_bias is not None:
        parts.append(
            f"position bias {fmt_num(c.position_bias, 2)} (bar {fmt_num(c.max_position_bias, 2)})"
        )
    if c.self_agreement is not None:
        parts.append(f"self-agreement {fmt_num(c.self_agreement, 2)}")
    if c.errors:
        parts.append(f"{c.errors} unanswered")
    if c.feedback_kappa is not None:
        parts.append(f"kappa with user feedback {fmt_num(c.feedback_kappa, 2)}")
    if c.cost_usd is not None:
        parts.append(f"cost {fmt_usd(c.cost_usd)}")
    status = "passed" if c.passed else "FAILED: its metric is not used"
    return f"{c.metric}: judge controls {status}; " + ", ".join(parts)


def confidence_pct(results: Results) -> str:
    """The confidence level of the intervals, e.g. "95%"."""
    c = results.thresholds.get("confidence")
    if is_number(c) and 0 < c < 1:
        return f"{c * 100:g}%"
    return "95%"


def gate_sentence(results: Results) -> str:
    """ "gate FAIL - 1 of 2 candidates not ready" (no markup)."""
    gate = GATE_LABELS.get(results.gate, results.gate.upper())
    return f"gate {gate} - {gate_counts(results)}"


def gate_counts(results: Results) -> str:
    """ "1 of 2 candidates not ready" (no markup)."""
    n = len(results.candidates)
    counts = {v: 0 for v in VERDICT_LABELS}
    for c in results.candidates:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    word = "candidate" if n == 1 else "candidates"
    if n == 0:
        return "no candidates"
    parts: list[str] = []
    if counts["not_ready"]:
        parts.append(f"{counts['not_ready']} of {n} {word} not ready")
    if counts["cannot_judge"]:
        parts.append(
            f"{counts['cannot_judge']} of {n} {word} cannot be judged"
            if not parts
            else f"{counts['cannot_judge']} cannot be judged"
        )
    if counts["needs_evidence"]:
        parts.append(
            f"{counts['needs_evidence']} of {n} {word} need more evidence"
            if not parts
            else f"{counts['needs_evidence']} need more evidence"
        )
    if not parts:
        ready = counts["ready"] + counts["ready_with_caveats"]
        parts.append(f"{ready} of {n} {word} ready")
        if counts["ready_with_caveats"]:
            parts.append(f"{counts['ready_with_caveats']} with caveats")
    return ", ".join(parts)


def gate_explanation(results: Results) -> str:
    if results.gate == "pass":
        return "Every candidate the gate reads is ready for the tasks the gate reads."
    if results.gate == "fail":
        return "At least one candidate the gate reads is not ready."
    return "The run could not judge every candidate (infrastructure or configuration error)."


def sorted_candidates(results: Results) -> list[CandidateResult]:
    """Candidates in the run's order (the suite's order)."""
    return list(results.candidates)


def task_names(results: Results) -> list[str]:
    """Every task name: the run's tasks first (their order), then any only candidates report."""
    names = [t.name for t in results.tasks]
    seen = set(names)
    for c in results.candidates:
        for t in c.tasks:
            if t.task not in seen:
                seen.add(t.task)
                names.append(t.task)
    return names


_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def visible_controls(text: str) -> str:
    """Show C0 control characters (other than tab/newline/CR) as ``\\u001b`` text."""
    return _CONTROL_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def truncate(text: str, limit: int) -> tuple[str, int]:
    """Cut ``text`` to ``limit`` characters; returns the text and how many were cut."""
    if len(text) <= limit:
        return text, 0
    return text[:limit], len(text) - limit


def one_line(text: str, limit: int) -> str:
    """Collapse whitespace (newlines included) and cut with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        return flat[: max(0, limit - 1)].rstrip() + "…"
    return flat


def content_text(content: Any) -> str:
    """Text of a message's content (a string or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out: list[str] = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Mapping):
                kind = part.get("type")
                if isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif kind in ("image_url", "input_image", "image"):
                    out.append("[image]")
                elif kind in ("input_audio", "audio"):
                    out.append("[audio]")
                elif kind in ("file", "input_file"):
                    out.append("[file]")
                else:
                    out.append(f"[{kind or 'part'}]")
        return "\n".join(out)
    return json.dumps(content, ensure_ascii=False, indent=2, default=str)


def last_user_message(exchange: Exchange) -> str | None:
    """Text of the last ``user`` message of the logged request, or None."""
    messages = exchange.request.get("messages")
    if not isinstance(messages, list):
        prompt = exchange.request.get("prompt")
        return prompt if isinstance(prompt, str) else None
    for m in reversed(messages):
        if isinstance(m, Mapping) and m.get("role") == "user":
            return content_text(m.get("content"))
    return None


def tool_calls_json(response: Response) -> str | None:
    """The response's tool calls as pretty JSON (parsed arguments where valid), or None."""
    if not response.tool_calls:
        return None
    calls: list[dict[str, Any]] = []
    for tc in response.tool_calls:
        args: Any = tc.parsed_arguments if tc.arguments_valid_json else tc.arguments
        entry: dict[str, Any] = {"name": tc.name, "arguments": args}
        if not tc.arguments_valid_json:
            entry["arguments_valid_json"] = False
        calls.append(entry)
    return json.dumps(calls, ensure_ascii=False, indent=2, sort_keys=True, default=str)
