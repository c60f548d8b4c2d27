"""Fixtures for the report tests: a small run (2 candidates x 3 tasks) with hostile content."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from migrate_eval.core.records import Exchange, ReplayResult, Response, Source, ToolCall, Usage
from migrate_eval.core.results import (
    SCORE_COLUMNS,
    CandidateResult,
    CostStats,
    ErrorStats,
    IngestSummary,
    Interval,
    LatencyStats,
    Reason,
    Results,
    TaskInfo,
    TaskResult,
)

#: Payloads that must only ever appear escaped in the HTML report.
XSS = {
    "script": "<script>alert(1)</script>",
    "img": '"><img src=x onerror=alert(1)>',
    "jinja_expr": "{{ 7*7 }}",
    "jinja_raw": "{% raw %}",
    "script_break": "</script><script>alert(2)</script>",
    "js_url": "javascript:alert(3)",
    "line_sep": "before\u2028after",
}
HOSTILE_TASK = "route <script>alert(1)</script> | {{ 7*7 }}"
TASKS = ("extract-invoice", HOSTILE_TASK, "summarize")
CANDIDATES = ("llama-70b", "mistral-large")
METRICS = {
    "extract-invoice": ["json_valid", "field_parity"],
    HOSTILE_TASK: ["tool_name", "tool_args"],
    "summarize": ["semantic_similarity", "chrf"],
}
OUTPUTS: dict[str, Any] = {
    "extract-invoice": "structured",
    HOSTILE_TASK: "tool_call",
    "summarize": "free_text",
}
PER_TASK = 14  # more than 10, so that the "10 worst" cap is exercised


@dataclass
class Run:
    results: Results
    scores: pd.DataFrame
    exchanges: dict[str, Exchange]
    replays: dict[tuple[str, str], ReplayResult]


def _payload_text(i: int) -> str:
    keys = list(XSS)
    return XSS[keys[i % len(keys)]]


def _exchange(task: str, i: int) -> Exchange:
    eid = f"{task[:7]}-{i:02d}".replace(" ", "_").replace("<", "_")
    user = f"question {i} {_payload_text(i)} end"
    request: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": f"You do {task}."},
            {"role": "user", "content": "earlier question"},
            {"role": "assistant", "content": "earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": user}]},
        ],
    }
    if OUTPUTS[task] == "tool_call":
        response = Response(
            tool_calls=[ToolCall.from_raw("route", {"queue": _payload_text(i + 1), "n": i})],
            finish_reason="tool_calls",
            usage=Usage(prompt_tokens=10, completion_tokens=5),
            latency_ms=420.0,
        )
    else:
        response = Response(
            text=f"logged answer {i}: {_payload_text(i + 2)}",
            finish_reason="stop",
            latency_ms=380.0,
        )
    return Exchange(
        id=eid,
        source=Source(file="logs/<prod>.jsonl", line=i + 1, format="chat-jsonl"),
        request=request,
        response=response,
    )


def _parity(task_idx: int, cand_idx: int, i: int) -> float:
    # distinct values; candidate 1 is worse
    return round(0.99 - 0.03 * i - 0.2 * cand_idx - 0.01 * task_idx, 4)


def _interval(mean: float) -> Interval:
    return Interval(mean=mean, ci_low=max(0.0, mean - 0.05), ci_high=min(1.0, mean + 0.05))


def build_run(*, simulated: bool = False) -> Run:
    exchanges: dict[str, Exchange] = {}
    replays: dict[tuple[str, str], ReplayResult] = {}
    rows: list[dict[str, Any]] = []
    for t_idx, task in enumerate(TASKS):
        for i in range(PER_TASK):
            ex = _exchange(task, i)
            exchanges[ex.id] = ex
            for c_idx, cand in enumerate(CANDIDATES):
                failed = c_idx == 1 and i >= PER_TASK - 2
                if failed:
                    rep = ReplayResult(
                        exchange_id=ex.id,
                        candidate=cand,
                        error=f"HTTP 500 {XSS['script_break']} | upstream",
                        error_kind="http_500",
                        status=500,
                        attempts=3,
                    )
                    parity = math.nan
                elif OUTPUTS[task] == "tool_call":
                    rep = ReplayResult(
                        exchange_id=ex.id,
                        candidate=cand,
                        response=Response(
                            tool_calls=[
                                ToolCall.from_raw("route", '{"queue": "' + "<b>x</b>" + '"')
                            ],
                            finish_reason="tool_calls",
                        ),
                        latency_ms=300.0 + i,
                    )
                    parity = _parity(t_idx, c_idx, i)
                else:
                    rep = ReplayResult(
                        exchange_id=ex.id,
                        candidate=cand,
                        response=Response(text=f"candidate {cand} says {_payload_text(i + 3)}"),
                        latency_ms=300.0 + i,
                    )
                    parity = _parity(t_idx, c_idx, i)
                replays[(ex.id, cand)] = rep
                row: dict[str, Any] = {
                    "exchange_id": ex.id,
                    "task": task,
                    "candidate": cand,
                    "status": "error" if failed else "ok",
                    "error": rep.error or "",
                    "parity": parity,
                    "latency_ms": rep.latency_ms if rep.latency_ms is not None else math.nan,
                    "prompt_tokens": 10,
                    "completion_tokens": 5,
                    "cached": False,
                }
                for m in METRICS[task]:
                    row[m] = parity
                rows.append(row)
    scores = pd.DataFrame(rows)
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == list(SCORE_COLUMNS)

    task_infos = [
        TaskInfo(
            name=task,
            description=f"Task {task} - {XSS['img']}" if task == HOSTILE_TASK else f"Task {task}",
            output=OUTPUTS[task],
            metrics=METRICS[task],
            min_parity=0.85,
            n=PER_TASK,
            source="suite",
        )
        for task in TASKS
    ]

    def task_result(c_idx: int, t_idx: int, task: str) -> TaskResult:
        errors = 2 if c_idx == 1 else 0
        n = PER_TASK - errors
        mean = sum(_parity(t_idx, c_idx, i) for i in range(n)) / n
        ready = c_idx == 0
        return TaskResult(
            task=task,
            n=n,
            n_total=PER_TASK,
            verdict="ready_with_caveats" if ready else "not_ready",
            reasons=[
                Reason(code="small_sample", message=f"only {n} scored exchanges (< 30)")
                if ready
                else Reason(
                    code="below_min_parity", message=f"parity {mean:.3f} < 0.85 | {XSS['script']}"
                )
            ],
            parity=_interval(mean),
            pass_rate=0.7 if ready else 0.2,
            min_parity=0.85,
            metrics={m: mean for m in METRICS[task]},
            errors=ErrorStats(
                count=errors, rate=errors / PER_TASK, by_kind={"http_500": errors} if errors else {}
            ),
        )

    candidates = [
        CandidateResult(
            name=cand,
            provider="openai-compatible",
            model=f"meta/{cand}" if c_idx == 0 else f"model {XSS['img']}",
            base_url="http://127.0.0.1:8000/v1" if c_idx == 0 else None,
            verdict="ready_with_caveats" if c_idx == 0 else "not_ready",
            reasons=[
                Reason(code="small_sample", message="3 tasks have fewer than 30 scored exchanges")
            ]
            if c_idx == 0
            else [
                Reason(
                    code="below_min_parity",
                    message=f"3 of 3 tasks below minimum parity | {XSS['script']}",
                )
            ],
            parity=_interval(0.86 if c_idx == 0 else 0.62),
            noise_floor=0.93,
            errors=ErrorStats(
                count=6 * c_idx,
                rate=6 * c_idx / (3 * PER_TASK),
                by_kind={"http_500": 6} if c_idx else {},
            ),
            latency=LatencyStats(p50_ms=310.0, p95_ms=1250.0, p99_ms=15000.0),
            cost=CostStats(
                input_tokens=420, output_tokens=210, total_usd=0.0123, per_request_usd=0.000293
            ),
            tasks=[task_result(c_idx, t_idx, task) for t_idx, task in enumerate(TASKS)],
        )
        for c_idx, cand in enumerate(CANDIDATES)
    ]
    results = Results(
        tool_version="0.1.0",
        suite="demo-suite",
        simulated=simulated,
        created="2025-01-02T03:04:05+00:00",
        command="migrate-eval run suites/demo --out reports/demo",
        thresholds={
            "min_parity": 0.85,
            "pass_threshold": 0.8,
            "max_error_rate": 0.2,
            "min_samples": 30,
            "confidence": 0.95,
        },
        ingest=IngestSummary(
            files=["logs/<prod>.jsonl"],
            formats={"chat-jsonl": 43},
            lines_read=45,
            exchanges=42,
            skipped=3,
            skipped_by_reason={"invalid JSON": 2, "no response": 1},
            examples=[f"logs/prod.jsonl:7: invalid JSON near {XSS['script']}"],
        ),
        tasks=task_infos,
        candidates=candidates,
        gate="fail",
        exit_code=1,
    )
    return Run(results=results, scores=scores, exchanges=exchanges, replays=replays)


@pytest.fixture
def run() -> Run:
    return build_run()


@pytest.fixture
def simulated_run() -> Run:
    return build_run(simulated=True)
