"""Large logs through ``migrate-eval profile`` and ``migrate-eval run``: time and peak memory
against a bare JSON Lines loop; and the run's read stage alone.

    python benchmarks/bench_traffic.py [--n 1000000] [--keep DIR] [--json]
    python benchmarks/bench_traffic.py --read-stage 10000 50000 [--runs 3] [--keep DIR] [--json]

Writes ``--n`` realistic ``chat-jsonl`` lines (as ``benchmarks/bench_ingest.py`` does: about
1.35 KB a line, seven tagged features), then, in a child process each, times:

* the bare loop: read the file line by line and ``orjson.loads`` each line;
* ``migrate_eval.profile`` (what ``migrate-eval profile`` runs): every exchange
  read, counted and dropped, the tasks discovered;
* ``migrate_eval.run`` with ``--limit 100`` and an offline candidate that has no cached answer
  (so no network: the run reads, profiles, discovers and samples the whole log, finds the
  duplicate pairs for the noise floor, then every replay is an offline miss and it writes
  the run folder and report).

Prints each time, its ratio to the bare loop and its peak RSS. Target: peak RSS < 1.5 GB for
both (the traffic is streamed); the times are reported, with no target. Exits 0 whether or not
the target is met; the JSON line's ``pass`` says.

``--read-stage N...`` times instead the first stage of a run alone,
:func:`~migrate_eval.plan.traffic.read_traffic` as ``migrate_eval.run`` calls it (the logs
copied to an Arrow file, then every exchange profiled, its task found, its request keys and
logged cost taken), on ``bench_scale.write_log``'s log of each size (every request distinct):
in this process, one warm-up then the best of ``--runs``, in seconds and microseconds per
exchange. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import BARE_LOOP, REPO, generate, run_child

PROFILE = """
import sys
sys.path.insert(0, sys.argv[2])
from migrate_eval.api import profile as profile_logs
p = profile_logs([sys.argv[1]])
print(p.exchanges, len(p.tasks))
"""

RUN = """
import sys
sys.path.insert(0, sys.argv[2])
import migrate_eval
out = migrate_eval.run(
    logs=[sys.argv[1]],
    candidates=["bench=openai-compatible:bench-model@http://127.0.0.1:9/v1"],
    limit=100,
    offline=True,
    out=sys.argv[3] + "/run",
    cache=sys.argv[3] + "/cache/replay.sqlite",
)
print(out.results.ingest.exchanges, len(out.results.tasks))
"""


def read_stage(sizes: list[int], runs: int, folder: Path) -> list[dict[str, Any]]:
    """Best-of-``runs`` seconds of ``read_traffic`` over a log of each size (see the module
    docstring), after one warm-up."""
    import time

    sys.path.insert(0, str(REPO))
    from bench_scale import write_log

    from migrate_eval.plan.traffic import read_traffic

    out = []
    for n in sizes:
        log = folder / f"distinct-{n}.jsonl"
        if not log.exists() or sum(1 for _ in log.open("rb")) != n:
            write_log(log, n)
        times = []
        for _ in range(runs + 1):
            with tempfile.TemporaryDirectory(prefix="read-stage-", dir=folder) as work:
                start = time.perf_counter()
                traffic = read_traffic([("auto", None, [str(log)])], Path(work))
                times.append(time.perf_counter() - start)
            assert traffic.exchanges == n, traffic.summary
        best = min(times[1:])
        out.append({"n": n, "read_s": round(best, 3), "us_per_exchange": round(best / n * 1e6, 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="folder to write the log to")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument(
        "--read-stage",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="time only the run's read stage (read_traffic) at these sizes",
    )
    parser.add_argument("--runs", type=int, default=3, help="--read-stage: best of this many")
    args = parser.parse_args(argv)
    if args.read_stage:
        with tempfile.TemporaryDirectory(prefix="bench-read-stage-") as tmp:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            rows = read_stage(args.read_stage, args.runs, folder)
        if not args.json:
            print(f"read stage (read_traffic), best of {args.runs}:")
            for row in rows:
                print(
                    f"  {row['n']:>9,} exchanges: {row['read_s']:7.3f} s  "
                    f"{row['us_per_exchange']:7.1f} us/exchange"
                )
        print(json.dumps({"read_stage": rows}))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "traffic.jsonl"
        if log.exists() and sum(1 for _ in log.open("rb")) == args.n:
            size = log.stat().st_size
        else:
            size = generate(log, args.n)
        with log.open("rb") as fh:  # both runs read from the page cache
            while fh.read(1 << 24):
                pass
        bare_s, bare_rss, _ = run_child(BARE_LOOP, str(log))
        prof_s, prof_rss, prof_out = run_child(PROFILE, str(log), str(REPO))
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
        run_s, run_rss, run_out = run_child(RUN, str(log), str(REPO), str(run_dir))
    result: dict[str, Any] = {
        "n": args.n,
        "file_mb": round(size / 1e6, 1),
        "bare_s": round(bare_s, 2),
        "bare_peak_rss_mb": round(bare_rss / 1e6, 1),
    }
    for name, seconds, rss, out in (
        ("profile", prof_s, prof_rss, prof_out),
        ("run", run_s, run_rss, run_out),
    ):
        exchanges, tasks = (int(x) for x in out.split())
        result[f"{name}_s"] = round(seconds, 2)
        result[f"{name}_ratio"] = round(seconds / bare_s, 2)
        result[f"{name}_exchanges_per_s"] = round(args.n / seconds)
        result[f"{name}_peak_rss_mb"] = round(rss / 1e6, 1)
        result[f"{name}_exchanges"] = exchanges
        result[f"{name}_tasks"] = tasks
    result["pass"] = bool(
        result["profile_peak_rss_mb"] < 1500
        and result["run_peak_rss_mb"] < 1500
        and result["profile_exchanges"] == result["run_exchanges"] == args.n
    )
    if not args.json:
        print(f"log: {args.n:,} lines, {size / 1e6:,.0f} MB")
        print(
            f"bare loop (read + orjson.loads): {bare_s:7.1f} s  peak RSS {bare_rss / 1e6:6.0f} MB"
        )
        for name, label in (("profile", "migrate-eval profile"), ("run", "migrate-eval run")):
            print(
                f"{label + ':':33}{result[name + '_s']:7.1f} s  peak RSS "
                f"{result[name + '_peak_rss_mb']:6.0f} MB  ({result[name + '_ratio']}x the bare "
                f"loop, {result[name + '_exchanges_per_s']:,} exchanges/s)"
            )
        print("peak RSS target < 1500 MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
