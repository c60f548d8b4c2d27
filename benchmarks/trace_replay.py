"""Where a whole run spends its time beyond a bare replay loop, against a vendor that waits
(issue 17, "within 1.1x at 100 ms latency").

    python benchmarks/trace_replay.py [--n 10000] [--delay 0.1] [--concurrency 64] [--json]

Against ``bench_scale``'s loopback vendor and log (every request distinct), in this process:

1. the bare loop of ``bench_scale`` with each request's send and answer times recorded;
2. ``api.run`` on ``bench_scale``'s suite (chrF, one candidate, no baseline) with the same
   trace of every POST (``OpenAICompatibleProvider._post``), the wall and CPU time (this
   thread's and the process's) of each stage, and the event loop's lag during the replay (a
   task that sleeps 5 ms and records how late it wakes).

Prints, for the bare loop and the run's replay: the first send after the start, the replay's
span (first send to last answer), the mean answer time (send to parsed answer), the mean
number of requests in flight, the time with fewer than ``concurrency`` in flight, the tail
(last answer after the last send)... then the run's stages. Nothing is asserted: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_scale import bare_loop, write_log, write_suite  # noqa: E402

from tests.servers import SubprocessServer  # noqa: E402

Trace = list[tuple[float, float]]


def summary(trace: Trace, start: float, concurrency: int) -> dict[str, float]:
    """The replay's shape from its (sent, answered) pairs; ``start``: when the replay began."""
    sends = sorted(s for s, _ in trace)
    ends = sorted(e for _, e in trace)
    first, last = sends[0], ends[-1]
    span = last - first
    busy = sum(e - s for s, e in trace)
    events = sorted([(s, 1) for s, _ in trace] + [(e, -1) for _, e in trace])
    in_flight, at, below = 0, first, 0.0
    for t, d in events:
        if in_flight < concurrency:
            below += t - at
        in_flight += d
        at = t
    return {
        "requests": len(trace),
        "first_send_s": round(first - start, 3),
        "span_s": round(span, 3),
        "mean_answer_ms": round(busy / len(trace) * 1e3, 2),
        "p99_answer_ms": round(statistics.quantiles([e - s for s, e in trace], n=100)[98] * 1e3, 2),
        "mean_in_flight": round(busy / span, 2),
        "below_limit_s": round(below, 3),
        "tail_s": round(last - sends[-1], 3),
    }


@contextlib.contextmanager
def patched(obj: Any, name: str, make: Callable[[Any], Any]) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, make(old))
    try:
        yield
    finally:
        setattr(obj, name, old)


def staged(stages: dict[str, list[float]], label: str) -> Callable[[Any], Any]:
    """A wrapper that adds (wall, this thread's CPU, the process's CPU) of each call."""

    def make(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            w, t, c = time.perf_counter(), time.thread_time(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                got = stages.setdefault(label, [0.0, 0.0, 0.0, 0])
                got[0] += time.perf_counter() - w
                got[1] += time.thread_time() - t
                got[2] += time.process_time() - c
                got[3] += 1

        return wrapper

    return make


def traced_run(
    suite: Path, tmp: Path, concurrency: int, off: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``api.run`` with every POST traced, its stages timed and the loop's lag sampled;
    ``off``: parts left out to see what they cost (``chance``: the chance levels, ``early``:
    chrF during the replay). Leaving parts out changes results.json: for measuring only."""
    import migrate_eval.api as api
    import migrate_eval.core.run_folder as run_folder
    import migrate_eval.plan.redact as redact
    import migrate_eval.plan.sampling as sampling
    import migrate_eval.plan.traffic as traffic_mod
    import migrate_eval.replay.engine as engine
    import migrate_eval.score as score_mod
    import migrate_eval.score.early as early_mod
    import migrate_eval.verdict.aggregate as aggregate_mod
    import migrate_eval.verdict.noise as noise_mod
    from migrate_eval.replay.providers.openai_compatible import OpenAICompatibleProvider

    trace: Trace = []
    lags: list[float] = []
    stages: dict[str, list[float]] = {}
    replay_start: list[float] = []
    replay_end: list[float] = []

    def post(fn: Any) -> Any:
        async def wrapper(self: Any, data: bytes) -> Any:
            sent = time.perf_counter()
            answer = await fn(self, data)
            trace.append((sent, time.perf_counter()))
            return answer

        return wrapper

    def rows(fn: Any) -> Any:
        async def wrapper(*a: Any, **k: Any) -> Any:
            replay_start.append(time.perf_counter())
            stop = asyncio.Event()

            async def monitor() -> None:
                loop = asyncio.get_running_loop()
                while not stop.is_set():
                    t = loop.time()
                    await asyncio.sleep(0.005)
                    lags.append(loop.time() - t - 0.005)

            task = asyncio.ensure_future(monitor())
            try:
                return await fn(*a, **k)
            finally:
                replay_end.append(time.perf_counter())
                stop.set()
                await task

        return wrapper

    import gc

    # CPU seconds of each collection during the replay, by generation
    gc_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if not replay_start or replay_end:
            return
        if phase == "start":
            gc_started[0] = time.thread_time()
        else:
            gc_pauses[info["generation"]].append(time.thread_time() - gc_started[0])

    with contextlib.ExitStack() as stack:
        gc.callbacks.append(on_gc)
        stack.callback(gc.callbacks.remove, on_gc)
        stack.enter_context(patched(OpenAICompatibleProvider, "_post", post))
        stack.enter_context(patched(engine, "replay_rows", rows))
        for obj, name in (
            (traffic_mod, "read_traffic"),
            (traffic_mod.Traffic, "load"),
            (engine, "replay"),
            (noise_mod, "chance_levels"),
            (score_mod, "score"),
            (noise_mod, "noise_floor_for_run"),
            (aggregate_mod, "aggregate"),
            (api, "_write_run_folder"),
            (run_folder, "write_records"),
            (api, "_render"),
            (api, "_append_run_history"),
            (sampling, "sample_ids"),
            (redact, "redact_exchanges"),
            (early_mod, "EarlyChrf"),
            (early_mod.EarlyChrf, "finish"),
        ):
            stack.enter_context(patched(obj, name, staged(stages, name)))
        if "chance" in off:
            stack.enter_context(patched(noise_mod, "chance_levels", lambda _: lambda *a, **k: {}))
        if "early" in off:
            stack.enter_context(patched(early_mod, "MINIMUM", lambda _: 10**12))
        w, c = time.perf_counter(), time.process_time()
        api.run(
            suite,
            out=tmp / "run",
            cache=tmp / "c.sqlite",
            concurrency=concurrency,
            baseline=False,
            history=tmp / "history",
        )
        wall, cpu = time.perf_counter() - w, time.process_time() - c
    import resource

    out: dict[str, Any] = {
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "replay": summary(trace, replay_start[0], concurrency),
        "loop_lag_ms": {
            "mean": round(statistics.fmean(lags) * 1e3, 2),
            "p99": round(statistics.quantiles(lags, n=100)[98] * 1e3, 2),
            "max": round(max(lags) * 1e3, 2),
        },
        "gc_in_replay": {
            str(g): {
                "count": len(v),
                "total_ms": round(sum(v) * 1e3, 1),
                "max_ms": round(max(v, default=0) * 1e3, 1),
            }
            for g, v in gc_pauses.items()
        },
        "stages": {
            k: {
                "wall_s": round(v[0], 3),
                "thread_cpu_s": round(v[1], 3),
                "process_cpu_s": round(v[2], 3),
                "calls": int(v[3]),
            }
            for k, v in stages.items()
        },
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--delay", type=float, default=0.1)
    ap.add_argument("--skip-bare", action="store_true", help="trace the run only")
    ap.add_argument(
        "--off",
        nargs="*",
        default=[],
        choices=["chance", "early"],
        help="leave parts of the run out (for measuring only: results change)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.environ["MIGRATE_EVAL_REPORTS_DIR"] = str(tmp / "reports")
        os.environ["MIGRATE_EVAL_EMBEDDING_CACHE"] = str(tmp / "embeddings.sqlite")
        os.environ.pop("OPENAI_API_KEY", None)  # never a real vendor
        log = tmp / "logs.jsonl"
        write_log(log, args.n)
        with SubprocessServer(
            delay=args.delay, max_requests=10 * args.n + 10_000, lifetime=7200
        ) as server:
            result: dict[str, Any] = {
                "n": args.n,
                "delay": args.delay,
                "off": args.off,
                "load": os.getloadavg(),
            }
            if not args.skip_bare:
                trace: Trace = []
                c = time.process_time()
                start = time.perf_counter()
                wall = asyncio.run(
                    bare_loop(server.base_url, log, args.concurrency, "bench-0", trace)
                )
                result["bare"] = {
                    "wall_s": round(wall, 3),
                    "cpu_s": round(time.process_time() - c, 3),
                    **summary(trace, start, args.concurrency),
                }
            suite = write_suite(tmp, log, server.base_url, "chrf", 1)
            result["run"] = traced_run(suite, tmp, args.concurrency, tuple(args.off))
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
