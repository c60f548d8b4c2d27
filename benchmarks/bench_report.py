"""Benchmark: render the report of a large run, measure its size and time to interactive.

Run: ``python benchmarks/bench_report.py [--exchanges 100000] [--candidates 3] [--tasks 8]``

Builds synthetic results, scores, logged exchanges and candidate answers of the given size
(realistic text lengths: user messages of ~40 words, answers of ~30-60 words, a quarter of the
tasks structured JSON, one tool-call task, one classification task), renders ``report.html``
and prints:

* render time (``render_html``: building the page, the charts, the exchange browser's data);
* file size (target: under 25 MB for 100,000 exchanges x 3 candidates);
* time to interactive in headless Chromium: from ``Page.navigate`` until the page's script has
  parsed the embedded data and set ``window.__ready`` (target: under 3 s), when Chromium is
  installed;
* whether the exchange browser answers a text search over every exchange, and how fast.

Exit code 1 when a target is missed (so CI can run it as a check).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

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
from migrate_eval.report import render_html
from migrate_eval.report.chromium import Chromium, find_chromium

WORDS = [
    "order",
    "refund",
    "shipping",
    "invoice",
    "account",
    "password",
    "delivery",
    "warranty",
    "return",
    "size",
    "colour",
    "jacket",
    "boots",
    "tent",
    "backpack",
    "price",
    "discount",
    "store",
    "customer",
    "support",
    "ticket",
    "urgent",
    "please",
    "thanks",
    "status",
    "tracking",
    "number",
    "address",
    "change",
    "cancel",
    "subscription",
    "email",
    "phone",
    "weekend",
]
LABELS = ("billing", "shipping", "returns", "product", "account", "other")
SIZE_TARGET_MB = 25.0
TTI_TARGET_S = 3.0


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def build(
    n_exchanges: int, n_candidates: int, n_tasks: int, seed: int = 0
) -> tuple[Results, pd.DataFrame, dict[str, Exchange], dict[tuple[str, str], ReplayResult]]:
    rng = random.Random(seed)
    outputs: list[Any] = ["classification", "tool_call"] + [
        "structured" if i % 3 == 0 else "free_text" for i in range(max(0, n_tasks - 2))
    ]
    tasks = [f"task-{i:02d}-{outputs[i]}" for i in range(n_tasks)]
    cands = [f"candidate-{c}" for c in range(n_candidates)]
    exchanges: dict[str, Exchange] = {}
    replays: dict[tuple[str, str], ReplayResult] = {}
    cols: dict[str, list[Any]] = {k: [] for k in SCORE_COLUMNS}
    src = Source(file="logs/prod.jsonl", line=1, format="chat-jsonl")
    for i in range(n_exchanges):
        t = i % n_tasks
        kind = outputs[t]
        ex_id = f"ex-{i:06d}"
        user = _sentence(rng, 40)
        if kind == "classification":
            logged = Response.model_construct(text=rng.choice(LABELS), tool_calls=[])
        elif kind == "tool_call":
            logged = Response.model_construct(
                text=None,
                tool_calls=[ToolCall.from_raw("lookup_order", {"order": f"N{i}", "n": i % 7})],
            )
        elif kind == "structured":
            logged = Response.model_construct(
                text=json.dumps({"name": rng.choice(WORDS), "total": i % 500, "items": i % 9}),
                tool_calls=[],
            )
        else:
            logged = Response.model_construct(text=_sentence(rng, 45), tool_calls=[])
        logged.latency_ms = 300.0 + (i % 400)
        exchanges[ex_id] = Exchange.model_construct(
            id=ex_id,
            source=src,
            timestamp=None,
            request={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}]},
            response=logged,
            error=None,
            metadata={},
            gold=None,
        )
        for c, cand in enumerate(cands):
            failed = rng.random() < 0.01
            if failed:
                rep = ReplayResult.model_construct(
                    exchange_id=ex_id,
                    candidate=cand,
                    response=None,
                    error="HTTP 503",
                    error_kind="http_503",
                    status=503,
                    attempts=3,
                    cached=False,
                    latency_ms=None,
                )
                parity = math.nan
            else:
                if kind == "classification":
                    resp = Response.model_construct(
                        text=logged.text if rng.random() < 0.85 else rng.choice(LABELS),
                        tool_calls=[],
                    )
                elif kind == "tool_call":
                    resp = Response.model_construct(
                        text=None,
                        tool_calls=[
                            ToolCall.from_raw("lookup_order", {"order": f"N{i}", "n": i % 5})
                        ],
                    )
                else:
                    resp = Response.model_construct(
                        text=(logged.text or "") if rng.random() < 0.3 else _sentence(rng, 40),
                        tool_calls=[],
                        usage=Usage(prompt_tokens=60, completion_tokens=50),
                    )
                rep = ReplayResult.model_construct(
                    exchange_id=ex_id,
                    candidate=cand,
                    response=resp,
                    error=None,
                    error_kind=None,
                    status=200,
                    attempts=1,
                    cached=False,
                    latency_ms=200.0 + (i % 700),
                )
                parity = min(1.0, max(0.0, rng.gauss(0.9 - 0.05 * c, 0.12)))
            replays[(ex_id, cand)] = rep
            cols["exchange_id"].append(ex_id)
            cols["task"].append(tasks[t])
            cols["candidate"].append(cand)
            cols["status"].append("error" if failed else "ok")
            cols["error"].append("HTTP 503" if failed else "")
            cols["parity"].append(parity)
            cols["latency_ms"].append(None if failed else 200.0 + (i % 700))
            cols["prompt_tokens"].append(60)
            cols["completion_tokens"].append(50)
            cols["cached"].append(False)
    scores = pd.DataFrame(cols)
    per_task = n_exchanges // n_tasks

    def iv(m: float) -> Interval:
        return Interval(mean=m, ci_low=m - 0.01, ci_high=m + 0.01)

    cand_results = [
        CandidateResult(
            name=cand,
            provider="openai-compatible",
            model=f"model-{c}",
            verdict="ready" if c == 0 else "not_ready",
            reasons=[] if c == 0 else [Reason(code="below_min_parity", message="parity low")],
            parity=iv(0.88 - 0.05 * c),
            noise_floor=0.93,
            errors=ErrorStats(count=n_exchanges // 100, rate=0.01, by_kind={"http_503": 1}),
            latency=LatencyStats(p50_ms=540.0, p95_ms=860.0, p99_ms=890.0),
            cost=CostStats(
                input_tokens=60 * n_exchanges,
                output_tokens=50 * n_exchanges,
                total_usd=12.5,
                per_request_usd=12.5 / n_exchanges,
            ),
            tasks=[
                TaskResult(
                    task=name,
                    n=per_task,
                    n_total=per_task,
                    verdict="ready" if c == 0 else "not_ready",
                    reasons=[],
                    parity=iv(0.88 - 0.05 * c),
                    pass_rate=0.8,
                    min_parity=0.85,
                    metrics={"parity": 0.88},
                    errors=ErrorStats(),
                )
                for name in tasks
            ],
        )
        for c, cand in enumerate(cands)
    ]
    results = Results(
        tool_version="bench",
        suite="bench",
        created="2026-01-01T00:00:00+00:00",
        command="python benchmarks/bench_report.py",
        thresholds={"min_parity": 0.85, "pass_threshold": 0.8, "min_samples": 30},
        ingest=IngestSummary(
            files=["logs/prod.jsonl"],
            formats={"chat-jsonl": n_exchanges},
            lines_read=n_exchanges,
            exchanges=n_exchanges,
            skipped=0,
            skipped_by_reason={},
        ),
        tasks=[
            TaskInfo(
                name=name,
                output=outputs[i],
                metrics=["parity"],
                min_parity=0.85,
                n=per_task,
                source="suite",
            )
            for i, name in enumerate(tasks)
        ],
        candidates=cand_results,
        gate="fail",
        exit_code=1,
    )
    return results, scores, exchanges, replays


async def time_to_interactive(path: Path, runs: int) -> tuple[list[float], float, int]:
    """Seconds from navigation to ``window.__ready``; then a text search over every exchange."""
    times: list[float] = []
    search_s, matched = math.nan, -1
    async with Chromium.launch() as browser:
        for _ in range(runs):
            page = await browser.new_page()
            start = time.perf_counter()
            await page.goto(path.resolve().as_uri())
            await page.wait_for("window.__ready === true", timeout=60)
            times.append(time.perf_counter() - start)
            before = await page.evaluate("document.getElementById('xb-count').textContent")
            t0 = time.perf_counter()
            await page.type_text("#xb-search", "refund warranty")
            await page.wait_for(
                "document.getElementById('xb-count').textContent !== " + json.dumps(before),
                timeout=30,
            )
            # includes the page's 150 ms typing debounce
            search_s = time.perf_counter() - t0
            text = await page.evaluate("document.getElementById('xb-count').textContent")
            matched = int(str(text).split(" ", 1)[0])
            await page.close()
    return times, search_s, matched


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--exchanges", type=int, default=100_000)
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3, help="page loads measured")
    ap.add_argument("--out", type=Path, default=None, help="keep report.html here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    results, scores, exchanges, replays = build(args.exchanges, args.candidates, args.tasks)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "report.html"
        t0 = time.perf_counter()
        render_html(results, scores, exchanges, replays, out)
        render_s = time.perf_counter() - t0
        size_mb = out.stat().st_size / 1e6
        print(
            f"run: {args.exchanges:,} exchanges x {args.candidates} candidates, {args.tasks} tasks"
        )
        print(f"synthetic data built in {build_s:.1f} s")
        print(f"render_html: {render_s:.1f} s")
        print(f"report.html: {size_mb:.1f} MB (target < {SIZE_TARGET_MB:g} MB)")
        ok = size_mb < SIZE_TARGET_MB
        if find_chromium() is None:
            print("time to interactive: skipped (no Chromium; set MIGRATE_EVAL_CHROMIUM)")
        else:
            times, search_s, matched = asyncio.run(time_to_interactive(out, args.runs))
            best, worst = min(times), max(times)
            print(
                f"time to interactive (headless Chromium, {len(times)} loads): "
                f"best {best:.2f} s, worst {worst:.2f} s (target < {TTI_TARGET_S:g} s)"
            )
            print(
                f"text search over all exchanges: {matched:,} matches in {search_s:.2f} s (incl. 150 ms debounce)"
            )
            ok = ok and worst < TTI_TARGET_S
    print("PASS" if ok else "FAIL: a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
