"""Soak: a vendor that misbehaves against a clean one, in the same process, on loopback.

    python benchmarks/bench_faults.py [--n 500] [--concurrency 32] [--delay 0.3] [--seed 0]
                                      [--retry-after-ms MS] [--json]

Two loopback OpenAI-compatible servers (``tests/servers.py``, threads of this process) answer
after ``--delay`` seconds; the flaky one (:class:`tests.servers.Flaky`) also answers 7.5% of
requests 429, 7.5% 503, 2% a truncated JSON body with status 200, and lets 1% hang for 60 s
(the candidate's timeout). Each gets ``--n`` distinct requests at ``--concurrency`` through
:func:`migrate_eval.replay.engine.replay_async`, with a fresh cache each. Prints:

* wall time of each run and the ratio flaky / clean (target: <= 2.0),
* requests each server received beyond ``--n`` (re-sent: retries and hedges) and hedges,
* exchanges answered / failed (every exchange is accounted for),
* the process's peak RSS.

Bounded: the servers stop answering after ``4 * n`` requests or 10 minutes (then 503), and
the whole run is cancelled after 10 minutes. Exits 0 whether or not the target is met; the
JSON line's ``pass`` says.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from migrate_eval.core.records import Exchange, Source  # noqa: E402
from migrate_eval.core.suite import CandidateSpec  # noqa: E402
from migrate_eval.replay.cache import ResponseCache  # noqa: E402
from migrate_eval.replay.engine import replay_async  # noqa: E402
from tests.servers import Flaky, LoopbackServer  # noqa: E402

TARGET_RATIO = 2.0
BUDGET_S = 600.0


def make_exchanges(n: int, tag: str) -> list[Exchange]:
    return [
        Exchange(
            id=f"{tag}-{i}",
            source=Source(file="bench", line=i + 1, format="bench"),
            request={
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"[{tag}] Where is my order {i}?"}],
            },
        )
        for i in range(n)
    ]


def one_run(server: LoopbackServer, n: int, concurrency: int, tag: str) -> dict[str, Any]:
    spec = CandidateSpec(
        name=tag, model="m", base_url=server.base_url, concurrency=concurrency, timeout=60.0
    )
    exchanges = make_exchanges(n, tag)
    with tempfile.TemporaryDirectory() as tmp, ResponseCache(Path(tmp) / "cache.db") as cache:
        start = time.perf_counter()
        results = asyncio.run(
            asyncio.wait_for(
                replay_async(exchanges, [spec], cache=cache, interruptible=False), BUDGET_S
            )
        )
        wall = time.perf_counter() - start
    ok = sum(r.ok for r in results)
    kinds: dict[str, int] = {}
    for r in results:
        if not r.ok:
            kinds[r.error_kind or "?"] = kinds.get(r.error_kind or "?", 0) + 1
    return {
        "wall_s": round(wall, 3),
        "exchanges": len(results),
        "answered": ok,
        "failed": kinds,
        "requests": server.total,
        "resent": server.total - n,
        "attempts": sum(r.attempts for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--delay", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retry-after-ms", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    bounds = {"max_requests": 4 * args.n, "lifetime": BUDGET_S, "record": False}
    flaky = Flaky(seed=args.seed, retry_after_ms=args.retry_after_ms)
    with (
        LoopbackServer(delay=args.delay, **bounds) as clean_srv,  # type: ignore[arg-type]
        LoopbackServer(delay=args.delay, flaky=flaky, **bounds) as flaky_srv,  # type: ignore[arg-type]
    ):
        clean = one_run(clean_srv, args.n, args.concurrency, "clean")
        bad = one_run(flaky_srv, args.n, args.concurrency, "flaky")
    ratio = bad["wall_s"] / clean["wall_s"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out = {
        "n": args.n,
        "concurrency": args.concurrency,
        "delay_s": args.delay,
        "clean": clean,
        "flaky": bad,
        "ratio": round(ratio, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "target_ratio": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO and bad["exchanges"] == args.n,
    }
    if not args.json:
        print(f"{'run':<7}{'wall s':>8}{'answered':>10}{'requests':>10}{'re-sent':>9}  failed")
        for name, r in (("clean", clean), ("flaky", bad)):
            print(
                f"{name:<7}{r['wall_s']:>8.2f}{r['answered']:>10}{r['requests']:>10}"
                f"{r['resent']:>9}  {r['failed'] or '-'}"
            )
        print(f"flaky / clean: {ratio:.2f}x (target <= {TARGET_RATIO}x); peak RSS {peak_mb:.0f} MB")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
