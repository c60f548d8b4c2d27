"""Replay engine overhead against a bare aiohttp loop, on a loopback server.

    python benchmarks/bench_replay.py [--n 2000] [--concurrency 64] [--delay 0.1] [--repeat 1]
                                      [--stream] [--instant-only] [--json]

Starts the loopback OpenAI-compatible server (``tests/servers.py``) in its own process, then:

1. with the server answering after ``--delay`` seconds: replays ``--n`` distinct requests at
   ``--concurrency`` through :func:`migrate_eval.replay.engine.replay_async` (fresh cache in a temp
   folder, answers committed to it) and times a bare aiohttp loop sending the same requests
   at the same concurrency (one session, ``concurrency`` workers: serialise, POST, read,
   ``json.loads``). Target: replay wall time <= 1.15x the bare loop's.
2. with a second server answering at once: the same two runs, as requests per second.
   Target: 2,500 requests/s for the whole replay, cache writes included.

Each figure also gives the client's CPU per request (this process, every thread: the cache
writer's and the lease claims' included), which a busy machine disturbs far less than the wall
time; ``--instant-only`` skips the first figure.

``--stream`` makes the replay candidate stream its answers (server-sent events reassembled,
time to first token recorded); the bare loop stays non-streamed, so the ratio includes the
cost of streaming.

Each figure is the best of ``--repeat`` alternating runs (the machine may be shared). Prints a
table and one JSON line (only the JSON line with ``--json``). Exits 0 whether or not the
targets are met; the JSON line's ``pass`` says.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from migrate_eval.core.records import Exchange, Source  # noqa: E402
from migrate_eval.core.suite import CandidateSpec  # noqa: E402
from migrate_eval.replay.cache import ResponseCache  # noqa: E402
from migrate_eval.replay.engine import build_request, replay_async  # noqa: E402
from tests.servers import SubprocessServer  # noqa: E402

SYSTEM = "You are a support assistant for an online shop. Answer in one short sentence."


def make_exchanges(n: int, tag: str) -> list[Exchange]:
    return [
        Exchange(
            id=f"{tag}-{i}",
            source=Source(file="bench", line=i + 1, format="bench"),
            request={
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"[{tag}] Where is my order number {i}?"},
                ],
                "temperature": 0.2,
                "max_tokens": 64,
            },
        )
        for i in range(n)
    ]


async def bare_loop(
    base_url: str, bodies: list[dict[str, Any]], concurrency: int
) -> tuple[float, float]:
    """Wall and CPU seconds (this process, every thread) for a minimal aiohttp client
    sending every body."""
    url = base_url + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        it = iter(bodies)

        async def worker() -> None:
            nonlocal failures
            for body in it:
                async with session.post(url, data=json.dumps(body).encode()) as resp:
                    payload = json.loads(await resp.read())
                    if resp.status != 200 or not payload.get("choices"):
                        failures += 1

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if failures:
        raise RuntimeError(f"bare loop: {failures} requests failed")
    return wall, cpu


async def replay_run(
    base_url: str,
    exchanges: list[Exchange],
    concurrency: int,
    cache_dir: Path,
    stream: bool = False,
) -> tuple[float, float]:
    """Wall and CPU seconds (this process, every thread: the cache's included) for
    :func:`replay_async` answering every exchange, committed to a fresh cache."""
    spec = CandidateSpec(
        name="bench", model="bench-model", base_url=base_url, concurrency=concurrency, stream=stream
    )
    with ResponseCache(cache_dir / "cache.db") as cache:
        start, cpu = time.perf_counter(), time.process_time()
        results = await replay_async(exchanges, [spec], cache=cache)
        cache.flush()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        stored = len(cache)
    bad = sum(1 for r in results if not r.ok)
    if bad or stored != len(exchanges):
        raise RuntimeError(f"replay: {bad} errors, {stored} of {len(exchanges)} cached")
    return wall, cpu


def measure(
    delay: float, n: int, concurrency: int, tag: str, repeat: int, stream: bool = False
) -> dict[str, float]:
    """Best of ``repeat`` alternating runs of the bare loop and of the replay engine."""
    spec = CandidateSpec(name="bench", model="bench-model", base_url="http://127.0.0.1:1/v1")
    bare_times: list[tuple[float, float]] = []
    replay_times: list[tuple[float, float]] = []
    with SubprocessServer(delay=delay, lifetime=900) as server:
        # Warm up both paths (imports, first connections) outside the timings.
        warm = make_exchanges(concurrency * 2, f"{tag}-warm")
        asyncio.run(
            bare_loop(server.base_url, [build_request(e.request, spec) for e in warm], concurrency)
        )
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(replay_run(server.base_url, warm, concurrency, Path(tmp), stream))
        for r in range(repeat):
            bodies = [build_request(e.request, spec) for e in make_exchanges(n, f"{tag}-bare{r}")]
            bare_times.append(asyncio.run(bare_loop(server.base_url, bodies, concurrency)))
            exchanges = make_exchanges(n, f"{tag}-replay{r}")  # distinct: nothing cached
            with tempfile.TemporaryDirectory() as tmp:
                replay_times.append(
                    asyncio.run(
                        replay_run(server.base_url, exchanges, concurrency, Path(tmp), stream)
                    )
                )
        sent = server.stats()["total"]
    expected = repeat * 2 * n + 4 * concurrency
    if sent != expected:
        raise RuntimeError(f"server saw {sent} requests, expected {expected}")
    bare, engine = min(t[0] for t in bare_times), min(t[0] for t in replay_times)
    bare_cpu, engine_cpu = min(t[1] for t in bare_times), min(t[1] for t in replay_times)
    return {
        "bare_s": bare,
        "replay_s": engine,
        "ratio": engine / bare,
        "bare_rps": n / bare,
        "replay_rps": n / engine,
        # client CPU per request: what the engine adds, whatever else the machine runs
        "bare_cpu_us": bare_cpu / n * 1e6,
        "replay_cpu_us": engine_cpu / n * 1e6,
        "cpu_ratio": engine_cpu / bare_cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="distinct requests per run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--delay", type=float, default=0.1, help="server delay of the first figure (s)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs of each")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--stream", action="store_true", help="the replay candidate streams")
    parser.add_argument(
        "--instant-only",
        action="store_true",
        help="only the server answering at once (the engine's own CPU per request)",
    )
    args = parser.parse_args(argv)

    repeat = max(1, args.repeat)
    slow = (
        {"bare_s": float("nan"), "replay_s": float("nan"), "ratio": float("nan")}
        if args.instant_only
        else measure(args.delay, args.n, args.concurrency, "slow", repeat, args.stream)
    )
    fast = measure(0.0, args.n, args.concurrency, "fast", repeat, args.stream)
    out = {
        "benchmark": "replay",
        "n": args.n,
        "concurrency": args.concurrency,
        "delay_s": args.delay,
        "repeat": args.repeat,
        "stream": args.stream,
        "delayed": {k: round(v, 4) for k, v in slow.items()},
        "instant": {k: round(v, 4) for k, v in fast.items()},
        "targets": {"delayed_ratio_max": 1.15, "instant_replay_rps_min": 2500},
        "pass": (args.instant_only or slow["ratio"] <= 1.15) and fast["replay_rps"] >= 2500,
    }
    if not args.json:
        print(f"replay benchmark: {args.n} distinct requests, concurrency {args.concurrency}")
        print(f"{'server answers':<22}{'bare aiohttp':>16}{'replay_async':>16}{'ratio':>8}")
        print(
            f"{f'after {args.delay:g} s':<22}{slow['bare_s']:>14.3f} s{slow['replay_s']:>14.3f} s"
            f"{slow['ratio']:>8.3f}   (target <= 1.15)"
        )
        print(
            f"{'at once':<22}{fast['bare_rps']:>12.0f} req/s{fast['replay_rps']:>10.0f} req/s"
            f"{fast['ratio']:>8.3f}   (target >= 2500 req/s for replay)"
        )
        print(
            f"{'client CPU, at once':<22}{fast['bare_cpu_us']:>11.0f} us/req"
            f"{fast['replay_cpu_us']:>9.0f} us/req{fast['cpu_ratio']:>8.3f}"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
