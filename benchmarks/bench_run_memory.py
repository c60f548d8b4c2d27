"""Peak memory of ``migrate-eval run`` as the number of replayed exchanges grows (issue 15:
``run`` grows by about 13 KB an exchange, while ``profile`` stays flat).

    python benchmarks/bench_run_memory.py [--n 10000 50000] [--json]

For each ``--n``: writes ``bench_ingest``'s realistic ``chat-jsonl`` log of ``n`` distinct
exchanges (about 1.35 KB a line), starts the loopback OpenAI-compatible server
(``tests/servers.py``) in its own process, and runs ``migrate-eval run --logs LOG --candidate
c=openai-compatible:bench-model@URL --no-baseline -q`` in a child process, with a fresh
cache and run folder, measuring its wall time and peak RSS (``wait4``); then
``migrate-eval profile`` on the same log, for comparison. Prints a table, the growth per
exchange between the smallest and largest ``n``, and one JSON line. Nothing is asserted: it
measures (the fix is the scale-out issue's).
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

from bench_ingest import generate  # noqa: E402

from tests.servers import SubprocessServer  # noqa: E402


def child(
    args: list[str], env_extra: dict[str, str] | None = None
) -> tuple[float, float, int, int]:
    """Run ``migrate-eval ARGS`` in a fresh interpreter (``env_extra`` added to its environment):
    (seconds, CPU seconds, peak RSS bytes, exit code)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    env.pop("OPENAI_API_KEY", None)  # never a real vendor
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrate_eval.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1, 4):
        raise SystemExit(f"migrate-eval {args[0]} failed ({code}): {err[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start, cpu, usage.ru_maxrss * 1024, code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "logs.jsonl"
            generate(log, n)
            with SubprocessServer(max_requests=10 * n + 1000, lifetime=3600) as server:
                run_s, _, run_rss, code = child(
                    [
                        "run", "--logs", str(log),
                        "--candidate", f"c=openai-compatible:bench-model@{server.base_url}",
                        "--out", str(Path(tmp) / "run"), "--cache", str(Path(tmp) / "c.sqlite"),
                        "--concurrency", str(args.concurrency), "--no-baseline", "-q",
                    ]
                )  # fmt: skip
            prof_s, _, prof_rss, _ = child(["profile", str(log), "--json"])
        rows.append(
            {
                "exchanges": n,
                "run_s": round(run_s, 1),
                "run_peak_rss_mb": round(run_rss / 1e6, 1),
                "run_exit": code,
                "profile_s": round(prof_s, 1),
                "profile_peak_rss_mb": round(prof_rss / 1e6, 1),
            }
        )
        if not args.json:
            print(
                f"{n:>9,} exchanges: run {run_s:6.1f} s, peak RSS {run_rss / 1e6:7,.0f} MB | "
                f"profile {prof_s:5.1f} s, peak RSS {prof_rss / 1e6:5,.0f} MB",
                flush=True,
            )
    result: dict[str, object] = {"benchmark": "run_memory", "rows": rows}
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        span = int(b["exchanges"]) - int(a["exchanges"])  # type: ignore[call-overload]
        growth = (float(b["run_peak_rss_mb"]) - float(a["run_peak_rss_mb"])) * 1e6 / span  # type: ignore[arg-type]
        result["run_growth_kb_per_exchange"] = round(growth / 1e3, 1)
        if not args.json:
            print(f"run grows by about {growth / 1e3:.1f} KB an exchange")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
