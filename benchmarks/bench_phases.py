"""Where a whole ``migrate-eval run`` spends its time outside the replay (issue 17: "1.1x at
100 ms", fixed cost), timed inside the child process.

    python benchmarks/bench_phases.py [--n 10000] [--delay 0.1] [--repeat 3] [--json]

Writes ``bench_scale``'s log of ``n`` distinct exchanges and its suite (chrF, one candidate,
concurrency 64), starts the loopback OpenAI-compatible server answering after ``--delay``, and
runs the ``migrate-eval`` executable's entry point (``cli.console_script``) ``--repeat`` times in
fresh interpreters, each with a fresh cache and run folder. The child marks, on
``time.perf_counter`` from its first line: ``import migrate_eval.api`` done, the run's start
(``api.run`` called), the replay's start and end (``replay.engine.replay``), the run's end
(``api.run`` returned) and its last ``atexit`` handler; this process times the child from
start to exit. Prints, per phase, the fastest and slowest of the repeats, then one JSON line.
Nothing is asserted; the bare loop is ``bench_scale``'s (``--delay 0.1``: ~16.6 s at 10k).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_scale import write_log, write_suite  # noqa: E402

from tests.servers import SubprocessServer  # noqa: E402

#: The child: marks each phase, prints them as JSON on stderr from its last atexit handler.
_CHILD = r"""
import atexit, json, sys, time
start = time.perf_counter()
marks = {}
def mark(name):
    marks[name] = time.perf_counter() - start
atexit.register(lambda: (mark("atexit"), print("PHASES " + json.dumps(marks), file=sys.stderr)))
import migrate_eval.api as api
mark("imported")
import migrate_eval.replay.engine as engine
def timed(fn, before, after):
    def wrapper(*args, **kwargs):
        mark(before)
        try:
            return fn(*args, **kwargs)
        finally:
            mark(after)
    return wrapper
api.run = timed(api.run, "run start", "run end")
engine.replay = timed(engine.replay, "replay start", "replay end")
from migrate_eval.cli import console_script
sys.argv = ["migrate-eval", *sys.argv[1:]]
console_script()
"""

#: (label, from mark, to mark): marks count from the child's first line, "exit" is its exit seen
#: from here (so the interpreter's start-up, ~0.03 s, falls in the next to last phase).
PHASES = [
    ("interpreter, imports, CLI", None, "run start"),
    ("run start -> first request", "run start", "replay start"),
    ("replay", "replay start", "replay end"),
    ("last answer -> run end", "replay end", "run end"),
    ("run end -> last atexit handler", "run end", "atexit"),
    ("start-up + after the last atexit handler", "atexit", "exit"),
    ("whole process", None, "exit"),
]


def one_run(suite: Path, tmp: Path, i: int) -> dict[str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MIGRATE_EVAL_REPORTS_DIR": str(tmp / f"reports-{i}"),
        "MIGRATE_EVAL_EMBEDDING_CACHE": str(tmp / f"embeddings-{i}.sqlite"),
    }
    env.pop("OPENAI_API_KEY", None)  # never a real vendor
    args = [
        "run", str(suite), "--no-baseline", "-q", "--concurrency", "64",
        "--out", str(tmp / f"run-{i}"), "--cache", str(tmp / f"cache-{i}.sqlite"),
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"migrate-eval run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    line = next(x for x in proc.stderr.splitlines() if x.startswith("PHASES "))
    marks: dict[str, float] = json.loads(line.removeprefix("PHASES "))
    marks["exit"] = wall
    return {
        label: marks[to] - (marks[frm] if frm is not None else 0.0) for label, frm, to in PHASES
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="exchanges")
    ap.add_argument("--delay", type=float, default=0.1, help="the vendor's answer time (s)")
    ap.add_argument("--repeat", type=int, default=3, help="runs")
    ap.add_argument("--json", action="store_true", help="only the JSON line")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "logs.jsonl"
        write_log(log, args.n)
        with SubprocessServer(
            delay=args.delay, max_requests=args.repeat * args.n + 10_000, lifetime=7200
        ) as server:
            suite = write_suite(tmp, log, server.base_url, "chrf", 1)
            runs = [one_run(suite, tmp, i) for i in range(args.repeat)]
    if not args.json:
        print(f"{args.n:,} exchanges, vendor {args.delay:g} s, {args.repeat} runs")
        print(f"{'phase':40s} {'fastest':>9s} {'slowest':>9s}")
        for label, _, _ in PHASES:
            values = [r[label] for r in runs]
            print(f"{label:40s} {min(values):8.2f}s {max(values):8.2f}s")
    print(
        json.dumps(
            {
                "benchmark": "phases",
                "exchanges": args.n,
                "delay": args.delay,
                "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
