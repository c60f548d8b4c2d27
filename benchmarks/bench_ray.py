"""The Ray executor's replay against the local executor and the bare N*L/C limit.

    python benchmarks/bench_ray.py [--n 20000] [--concurrency 256] [--delay 0.1] [--workers 2]
                                   [--json]

Starts the loopback OpenAI-compatible server (``tests/servers.py``) in its own process,
answering after ``--delay`` seconds, then replays ``--n`` distinct requests with a total
concurrency of ``--concurrency``, each run on a fresh response cache:

1. the local executor (:func:`migrate_eval.replay.engine.replay`);
2. ``--executor ray`` (:func:`migrate_eval.replay.cluster.replay_on_ray`) on a local Ray
   cluster of ``--workers`` CPUs, one shard per worker; the cluster is started before the
   timing (its start-up is printed apart).

Prints wall times against the bare limit ``N * delay / concurrency`` (no client can do
better with that many requests in flight), and the driver's CPU seconds per exchange of each
run: for Ray, everything the driver does is what Ray adds (sharding, shipping exchanges and
rows, polling the progress board; the requests are sent by the workers). Target: under 1 ms
per exchange. Then ``--semantic`` texts are embedded (caches off) locally and with 1 and 2 Ray
workers (:class:`migrate_eval.score.cluster.RayEmbedder`). Exits 0 whether or not the target is met; the JSON line's ``pass`` says.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_replay import make_exchanges  # noqa: E402

from migrate_eval.core.suite import CandidateSpec  # noqa: E402
from migrate_eval.replay.cache import ResponseCache  # noqa: E402
from migrate_eval.replay.engine import replay  # noqa: E402
from tests.servers import SubprocessServer  # noqa: E402


def _check(rows: list[object], n: int, what: str) -> None:
    bad = sum(1 for r in rows if not getattr(r, "ok", False))
    if bad or len(rows) != n:
        raise RuntimeError(f"{what}: {bad} errors in {len(rows)} rows of {n}")


def run_local(spec: CandidateSpec, n: int, tag: str) -> tuple[float, float]:
    exchanges = make_exchanges(n, tag)
    with tempfile.TemporaryDirectory() as tmp, ResponseCache(Path(tmp) / "c.db") as cache:
        cpu, start = time.process_time(), time.perf_counter()
        rows = replay(exchanges, [spec], cache=cache, interruptible=False)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    _check(list(rows), n, "local")
    return wall, cpu


def run_ray(spec: CandidateSpec, n: int, tag: str, workers: int) -> tuple[float, float]:
    from migrate_eval.replay.cluster import replay_on_ray

    exchanges = make_exchanges(n, tag)
    with tempfile.TemporaryDirectory() as tmp:
        cpu, start = time.process_time(), time.perf_counter()
        rows = replay_on_ray(
            exchanges, [spec], cache_path=Path(tmp) / "c.db", workers=workers, progress=None
        )
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    _check(list(rows), n, "ray")
    return wall, cpu


def semantic_times(n: int, worker_counts: list[int]) -> dict[int, float]:
    """Seconds to embed ``n`` distinct texts (embedding caches off) with 0 (local) and with
    each count of Ray workers; each run with its actors started and the model loaded first."""
    import numpy as np

    from migrate_eval.score import semantic
    from migrate_eval.score.cluster import RayEmbedder

    os.environ["MIGRATE_EVAL_EMBEDDING_CACHE"] = "off"
    words = [
        "order",
        "shipping",
        "refund",
        "boots",
        "tent",
        "jacket",
        "size",
        "colour",
        "warranty",
        "return",
    ]
    out: dict[int, float] = {}
    for workers in [0, *worker_counts]:
        texts = [
            f"[{workers}] " + " ".join(words[(i * 7 + j) % len(words)] for j in range(5 + i % 40))
            for i in range(n)
        ]
        embed = RayEmbedder(workers=workers) if workers else None
        with semantic.embedding_backend(embed):
            semantic._MEMORY.clear()
            semantic.embed_texts(["warm up the model", "and the actors"] * max(1, workers))
            start = time.perf_counter()
            vectors = semantic.embed_texts(texts)
            out[workers] = time.perf_counter() - start
        if embed is not None:
            embed.close()  # its actors hold a CPU each
        if vectors.shape[0] != n or not np.isfinite(vectors).all():
            raise RuntimeError("semantic: bad vectors")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=20_000, help="distinct requests per run")
    parser.add_argument("--concurrency", type=int, default=256, help="in flight, in total")
    parser.add_argument("--delay", type=float, default=0.1, help="server answer delay (s)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (CPUs, shards)")
    parser.add_argument(
        "--semantic", type=int, default=2000, help="texts embedded with 1 and 2 workers (0: skip)"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)

    os.environ.pop("RAY_ADDRESS", None)
    from migrate_eval.core.executor import ensure_ray

    started = time.perf_counter()
    ray = ensure_ray(num_cpus=args.workers)
    ray_start = time.perf_counter() - started
    bare = args.n * args.delay / args.concurrency
    with SubprocessServer(delay=args.delay, lifetime=1800) as server:
        spec = CandidateSpec(
            name="bench", model="bench-model", base_url=server.base_url,
            concurrency=args.concurrency,
        )  # fmt: skip
        # warm both paths (imports, worker processes, first connections) outside the timings
        warm = 2 * args.concurrency
        run_local(spec, warm, "warm-local")
        run_ray(spec, warm, "warm-ray", args.workers)
        local_s, local_cpu = run_local(spec, args.n, "local")
        ray_s, ray_cpu = run_ray(spec, args.n, "ray", args.workers)
    semantic = semantic_times(args.semantic, [1, 2]) if args.semantic else {}
    ray.shutdown()
    per_ex_ms = 1000.0 * ray_cpu / args.n
    out = {
        "benchmark": "ray",
        "n": args.n,
        "concurrency": args.concurrency,
        "delay_s": args.delay,
        "workers": args.workers,
        "bare_limit_s": round(bare, 3),
        "local_s": round(local_s, 3),
        "ray_s": round(ray_s, 3),
        "local_vs_bare": round(local_s / bare, 3),
        "ray_vs_bare": round(ray_s / bare, 3),
        "ray_vs_local": round(ray_s / local_s, 3),
        "local_driver_cpu_ms_per_exchange": round(1000.0 * local_cpu / args.n, 4),
        "ray_driver_cpu_ms_per_exchange": round(per_ex_ms, 4),
        "ray_start_s": round(ray_start, 2),
        "semantic_texts": args.semantic,
        "semantic_s": {
            ("local" if k == 0 else f"ray_{k}"): round(v, 3) for k, v in semantic.items()
        },
        "target": {"ray_driver_cpu_ms_per_exchange_max": 1.0},
        "pass": per_ex_ms < 1.0,
    }
    if not args.json:
        print(
            f"ray benchmark: {args.n} distinct requests, {args.delay:g} s vendor, concurrency "
            f"{args.concurrency} in total, {args.workers} Ray workers (cluster start "
            f"{ray_start:.1f} s, not timed)"
        )
        print(f"{'':<28}{'wall':>10}{'x bare':>9}{'driver CPU/exchange':>22}")
        print(f"{'bare limit N*L/C':<28}{bare:>8.2f} s{1.0:>9.2f}")
        print(
            f"{'local executor':<28}{local_s:>8.2f} s{local_s / bare:>9.2f}"
            f"{1000 * local_cpu / args.n:>19.3f} ms"
        )
        print(
            f"{'--executor ray':<28}{ray_s:>8.2f} s{ray_s / bare:>9.2f}"
            f"{per_ex_ms:>19.3f} ms   (target < 1 ms)"
        )
        for workers, seconds in semantic.items():
            what = "local (this process)" if workers == 0 else f"{workers} Ray worker(s)"
            print(f"semantic, {args.semantic} texts, {what:<22}{seconds:>8.2f} s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
