"""Where a run's peak memory is: peak RSS per stage of ``migrate_eval.run`` (issue 17,
"peak memory flat in the number of exchanges").

    python benchmarks/bench_memory_stages.py [--n 10000] [--candidates 1] [--from-cache] [--json]

Writes ``bench_scale``'s log of ``--n`` distinct exchanges and its suite (``chrf``, the
loopback server answering at once), then runs ``migrate_eval.run`` in this process while a
thread reads the process's resident set (``/proc/self/statm``) every 10 ms. The pipeline's
stage functions are wrapped so that each sample is charged to the stage running then (or to
``after <stage>`` between stages). Prints, per stage in the order first met, the peak RSS and
its growth over the RSS when the logs began to be read; ``ru_maxrss`` last (a peak shorter
than 10 ms may be missed by the samples, never by it). Linux only. Nothing is asserted.

``--from-cache``: every candidate's answers are put in the run's response cache first, by
another process (the requests the run will send, built as the run builds them, each with an
answer), so that the measured run is a resumed one that finds every answer cached and sends
nothing: what a million exchanges hold, measured in minutes instead of the hours two million
loopback requests take on a 2-core machine. The HTTP client's buffers (a few in-flight
requests) are then the only part of a live run not measured; the server counts the requests
that reached it (0 expected).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_scale import write_log, write_suite  # noqa: E402

from tests.servers import SubprocessServer  # noqa: E402

#: (module, function, stage): what is wrapped; ``api.run`` imports them when it runs.
STAGES = [
    ("migrate_eval.plan.traffic", "read_traffic", "read the logs (traffic pass)"),
    ("migrate_eval.plan.sampling", "sample_ids", "sample"),
    ("migrate_eval.plan.redact", "redact_exchanges", "redact"),
    ("migrate_eval.replay.engine", "replay", "replay"),
    ("migrate_eval.score", "score", "score"),
    ("migrate_eval.score.scoring", "score_chunks", "score"),  # a spilled run's
    ("migrate_eval.verdict.noise", "chance_levels", "chance levels"),
    ("migrate_eval.verdict.noise", "noise_floor_for_run", "noise floor"),
    ("migrate_eval.verdict.aggregate", "aggregate", "aggregate"),
    ("migrate_eval.verdict.costs", "fill_cost_projections", "cost projections"),
    ("migrate_eval.core.run_folder", "write_records", "write exchanges/responses"),
    ("migrate_eval.report", "write_results_json", "results.json"),
    ("migrate_eval.report", "render_html", "report.html"),
    ("migrate_eval.verdict.history", "history_records", "run history"),
]

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


class Sampler:
    """Peak RSS per stage, sampled by a thread."""

    def __init__(self) -> None:
        self.stage = "imports"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.01)

    def sample(self) -> None:
        value, stage = rss(), self.stage
        if value > self.peaks.get(stage, 0):
            self.peaks[stage] = value

    def wrap(self, module: str, name: str, label: str) -> None:
        mod = importlib.import_module(module)
        func = getattr(mod, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.sample()
            self.stage = label
            try:
                return func(*args, **kwargs)
            finally:
                self.sample()
                self.stage = f"after {label}"

        setattr(mod, name, wrapped)

    def wrap_load(self) -> None:
        """``Traffic.load``: the sample read back from the Arrow copy of the logs."""
        from migrate_eval.plan.traffic import Traffic

        load: Callable[..., Any] = Traffic.load

        def wrapped(traffic: Traffic, *args: Any, **kwargs: Any) -> Any:
            self.stage = "load the sample"
            try:
                return load(traffic, *args, **kwargs)
            finally:
                self.stage = "after load the sample"

        Traffic.load = wrapped  # type: ignore[method-assign]

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def fill_cache(suite_path: Path, log: Path, cache_path: Path) -> int:
    """Put an answer to every request each candidate of the suite will send for the log in
    the cache (``--from-cache``; run in its own process). Returns the answers put."""
    from migrate_eval.core.records import Response
    from migrate_eval.core.suite import load_suite
    from migrate_eval.replay.cache import ResponseCache
    from migrate_eval.replay.engine import build_request
    from migrate_eval.replay.providers import get_provider

    suite = load_suite(suite_path)
    put = 0
    with ResponseCache(cache_path) as cache:
        for spec in suite.candidates:
            identity = get_provider(spec).identity()
            with log.open(encoding="utf-8") as lines:
                for n, line in enumerate(lines):
                    row = json.loads(line)
                    request = build_request(row["request"], spec)
                    logged = row["response"]["choices"][0]["message"]["content"] or ""
                    text = f"{logged} ({spec.name} {n % 7})"
                    raw = {
                        "id": f"chatcmpl-{spec.name}-{n}",
                        "object": "chat.completion",
                        "model": spec.model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 40,
                            "completion_tokens": 20,
                            "total_tokens": 60,
                        },
                    }
                    response = Response.from_chat_completion(raw, latency_ms=5.0)
                    key = ResponseCache.key_for(identity, request)
                    cache.put(key, identity, request, raw, response, 5.0)
                    put += 1
    return put


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--candidates", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--from-cache", action="store_true", help="every answer cached first (see the module)"
    )
    ap.add_argument(
        "--dir",
        type=Path,
        help="work in this folder and keep it; with --from-cache, a folder an earlier "
        "--from-cache run of the same --n/--candidates filled is run again as it is",
    )
    ap.add_argument("--fill-cache", nargs=3, metavar=("SUITE", "LOG", "CACHE"), help="internal")
    args = ap.parse_args(argv)
    if args.fill_cache:
        suite_path, log_path, cache_path = map(Path, args.fill_cache)
        print(f"{fill_cache(suite_path, log_path, cache_path):,} answers put in the cache")
        return 0
    tmp = args.dir or Path(tempfile.mkdtemp(prefix="bench-memory-stages-"))
    filled = tmp / "filled.json"  # what an earlier --from-cache run in --dir filled
    shape = {"n": args.n, "candidates": args.candidates}
    again = bool(
        args.dir and args.from_cache and filled.exists() and json.loads(filled.read_text()) == shape
    )
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for made in ("run", "reports"):  # a kept folder's last run
            shutil.rmtree(tmp / made, ignore_errors=True)
        (tmp / "embeddings.sqlite").unlink(missing_ok=True)
        os.environ["MIGRATE_EVAL_REPORTS_DIR"] = str(tmp / "reports")
        os.environ["MIGRATE_EVAL_EMBEDDING_CACHE"] = str(tmp / "embeddings.sqlite")
        os.environ.pop("OPENAI_API_KEY", None)  # never a real vendor
        log = tmp / "logs.jsonl"
        if not again:
            filled.unlink(missing_ok=True)
            (tmp / "c.sqlite").unlink(missing_ok=True)
            write_log(log, args.n)
        with Sampler() as sampler:
            import migrate_eval.api as api

            for module, name, label in STAGES:
                sampler.wrap(module, name, label)
            sampler.wrap_load()
            sampler.stage = "setup"
            start = rss()
            with SubprocessServer(
                max_requests=10 * args.n * args.candidates + 10_000, lifetime=7200
            ) as server:
                if again:  # the suite the cache was filled for (its server's address)
                    suite = tmp / "suite.yaml"
                else:
                    suite = write_suite(tmp, log, server.base_url, "chrf", args.candidates)
                if args.from_cache and not again:  # in another process: not the run's memory
                    subprocess.run(
                        [sys.executable, __file__, "--fill-cache", str(suite), str(log),
                         str(tmp / "c.sqlite")],
                        check=True,
                    )  # fmt: skip
                    filled.write_text(json.dumps(shape))
                    start = rss()
                api.run(
                    str(suite),
                    out=str(tmp / "run"),
                    cache=str(tmp / "c.sqlite"),
                    baseline=False,
                    concurrency=args.concurrency,
                )
                sent = server.stats().get("total")
            sampler.stage = "end"
            sampler.sample()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        {"stage": k, "peak_rss_mib": round(v / 2**20, 1), "over_start_mib": round((v - start) / 2**20, 1)}
        for k, v in sampler.peaks.items()
    ]  # fmt: skip
    if not args.json:
        print(f"{args.n:,} exchanges, {args.candidates} candidate(s); RSS before the run "
              f"{start / 2**20:,.0f} MiB; requests that reached the server: {sent}"
              + (" (every answer cached first)" if args.from_cache else ""))  # fmt: skip
        print("| stage | peak RSS | over the start |")
        print("|---|---|---|")
        for row in rows:
            print(f"| {row['stage']} | {row['peak_rss_mib']:,.0f} MiB | "
                  f"{row['over_start_mib']:+,.0f} MiB |")  # fmt: skip
        print(f"| (ru_maxrss) | {maxrss / 2**20:,.0f} MiB | |")
    print(
        json.dumps(
            {
                "benchmark": "memory_stages",
                "exchanges": args.n,
                "candidates": args.candidates,
                "from_cache": args.from_cache,
                "requests_sent": sent,
                "start_mib": round(start / 2**20, 1),
                "maxrss_mib": round(maxrss / 2**20, 1),
                "stages": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
