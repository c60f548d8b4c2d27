"""The whole ``migrate-eval run`` as the number of exchanges grows, against a bare replay loop
(issue 17, "One machine").

    python benchmarks/bench_scale.py [--n 10000 100000] [--concurrency 64] [--delay 0.1] [--json]
    BENCH_SCALE_1M=1 python benchmarks/bench_scale.py      # adds 1,000,000 (long on 2 cores)

For each size: writes ``bench_ingest``'s realistic ``chat-jsonl`` log of ``n`` exchanges
(about 1.35 KB a line), every request made distinct (no answer comes from the cache), starts
the loopback OpenAI-compatible server (``tests/servers.py``, answering at once) in its own
process, then, against the same server:

1. the bare replay loop, in this process: one aiohttp session and ``--concurrency`` workers
   that read the log line by line, ``json.loads`` it, POST its request, read and ``json.loads``
   the answer. Nothing else: no cache, no scoring, no report.
2. the whole ``migrate-eval run SUITE --no-baseline -q`` in a child process with a fresh
   cache, run folder, run history and embedding cache: wall time and peak RSS (``wait4``). The
   suite has the log's seven ``feature-N`` free-text tasks scored by ``--metrics`` (default
   ``chrf``: the pipeline's own cost; ``default`` adds the MiniLM embedding model, which then
   dominates) and ``--candidates`` candidates (default 1) on the same server; the bare loop
   sends every candidate's requests too;
3. the bare loop again. The ratio is the run's wall time over the mean of the two bare loops:
   on a shared machine the speed drifts within minutes, and a bare loop on one side only
   moved the ratio by as much as the changes it measures.

Prints the table ``exchanges | wall | per exchange | peak RSS | run / bare replay loop`` and one
JSON line (``bare_s``: the mean; ``bare_before_s``, ``bare_after_s``). Nothing is asserted: it measures (goals: run within 1.3x of the bare loop at 50k,
fixed cost under 1 s, peak RSS flat in the number of exchanges).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_ingest import generate  # noqa: E402
from bench_run_memory import child as run_child  # noqa: E402

from tests.servers import SubprocessServer  # noqa: E402


async def bare_loop(
    base_url: str,
    log: Path,
    concurrency: int,
    model: str,
    trace: list[tuple[float, float]] | None = None,
) -> float:
    """Wall seconds for a minimal client replaying every request of ``log`` (``trace``: the
    ``time.perf_counter()`` each request was sent and answered, appended)."""
    url = base_url + "/chat/completions"
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    start = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=connector, headers={"Content-Type": "application/json"}
    ) as session:
        with log.open(encoding="utf-8") as fh:

            async def worker() -> None:
                nonlocal failures
                for line in fh:
                    body = json.loads(line)["request"]
                    body["model"] = model
                    sent = time.perf_counter()
                    async with session.post(url, data=json.dumps(body).encode()) as resp:
                        payload = json.loads(await resp.read())
                        if resp.status != 200 or not payload.get("choices"):
                            failures += 1
                    if trace is not None:
                        trace.append((sent, time.perf_counter()))

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"bare loop: {failures} requests failed")
    return wall


def child(args: list[str], tmp: Path) -> tuple[float, float, int]:
    """``migrate-eval ARGS`` in a fresh interpreter: (seconds, CPU seconds, peak RSS bytes). Its
    run history and embedding cache live in ``tmp`` (nothing is reused from an earlier bench)."""
    seconds, cpu, rss, _ = run_child(
        args,
        {
            "MIGRATE_EVAL_REPORTS_DIR": str(tmp / "reports"),
            "MIGRATE_EVAL_EMBEDDING_CACHE": str(tmp / "embeddings.sqlite"),
        },
    )
    return seconds, cpu, rss


def write_log(path: Path, n: int) -> None:
    """``bench_ingest``'s log of ``n`` lines with every request made distinct (its questions
    repeat: the run would answer the repeats from its cache while the bare loop sends them)."""
    raw = path.with_suffix(".raw")
    generate(raw, n)
    with raw.open("rb") as src, path.open("wb") as dst:
        for i, line in enumerate(src):
            row = json.loads(line)
            row["request"]["messages"][-1]["content"] += f" (ticket {i})"
            dst.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    raw.unlink()


def write_suite(folder: Path, log: Path, base_url: str, metrics: str, candidates: int) -> Path:
    """The bench suite: the log's seven ``feature-N`` tasks (free text), scored by ``metrics``
    (``default``: the free-text defaults), and ``candidates`` candidates on the loopback server."""
    lines = [
        "name: bench-scale",
        "logs:",
        f"  - {json.dumps(str(log))}",
        "tasks:",
    ]
    for i in range(7):
        lines += [
            f"  - name: feature-{i}",
            f"    match: {{metadata: {{feature: feature-{i}}}}}",
            "    output: free_text",
        ]
        if metrics != "default":
            lines.append(f"    metrics: [{metrics}]")
    lines.append("candidates:")
    for c in range(candidates):
        lines += [
            f"  - name: c{c}",
            "    provider: openai-compatible",
            f"    model: bench-model-{c}",
            f"    base_url: {json.dumps(base_url)}",
        ]
    path = folder / "suite.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure(
    n: int, concurrency: int, metrics: str, candidates: int, delay: float = 0.0
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "logs.jsonl"
        write_log(log, n)
        with SubprocessServer(
            delay=delay, max_requests=10 * n * candidates + 10_000, lifetime=7200
        ) as server:

            def bare() -> float:  # the bare loop sends every candidate's requests too
                return sum(
                    asyncio.run(bare_loop(server.base_url, log, concurrency, f"bench-{c}"))
                    for c in range(candidates)
                )

            # the bare loop before and after the run, the ratio against their mean: the
            # machine's speed drifts within minutes (docs/performance.md, bench_ab.py)
            bare_before = bare()
            suite = write_suite(Path(tmp), log, server.base_url, metrics, candidates)
            run_s, run_cpu, rss = child(
                [
                    "run", str(suite),
                    "--out", str(Path(tmp) / "run"), "--cache", str(Path(tmp) / "c.sqlite"),
                    "--concurrency", str(concurrency), "--no-baseline", "-q",
                ],
                Path(tmp),
            )  # fmt: skip
            bare_after = bare()
    bare_s = (bare_before + bare_after) / 2
    return {
        "exchanges": n,
        "wall_s": round(run_s, 2),
        "per_exchange_ms": round(run_s * 1e3 / n, 3),
        "peak_rss_mib": round(rss / 2**20, 1),
        "cpu_s": round(run_cpu, 2),
        "bare_s": round(bare_s, 2),
        "bare_before_s": round(bare_before, 2),
        "bare_after_s": round(bare_after, 2),
        "ratio": round(run_s / bare_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=None)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=1)
    ap.add_argument(
        "--delay",
        type=float,
        default=0.0,
        help="the vendor's latency in seconds (goal at 0.1: 1.1x)",
    )
    ap.add_argument(
        "--metrics",
        default="chrf",
        help="the free-text tasks' metrics (comma-separated; 'default': the free-text defaults, "
        "whose embedding model dominates the time)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = args.n or [10_000, 100_000] + ([1_000_000] if os.environ.get("BENCH_SCALE_1M") else [])
    rows = []
    if not args.json:
        print("| exchanges | wall | per exchange | peak RSS | run / bare replay loop |")
        print("|---|---|---|---|---|")
    for n in sizes:
        row = measure(n, args.concurrency, args.metrics, args.candidates, args.delay)
        rows.append(row)
        if not args.json:
            print(
                f"| {n:,} | {row['wall_s']:.1f} s | {row['per_exchange_ms']:.2f} ms | "
                f"{row['peak_rss_mib']:,.0f} MiB | {row['ratio']:.2f}x "
                f"(bare {row['bare_before_s']:.1f} s before, {row['bare_after_s']:.1f} s after) |",
                flush=True,
            )
    print(
        json.dumps(
            {
                "benchmark": "scale",
                "concurrency": args.concurrency,
                "metrics": args.metrics,
                "candidates": args.candidates,
                "delay": args.delay,
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
