"""``migrate-eval profile`` at scale: time and peak memory against a bare JSON Lines loop.

    python benchmarks/bench_profile.py [--n 1000000] [--keep DIR] [--json]

Writes ``--n`` realistic ``chat-jsonl`` lines (as ``benchmarks/bench_ingest.py`` does: about
1.35 KB a line, seven tagged features), then, in a child process each, times the bare loop
(read the file line by line and ``orjson.loads`` each line) and
``migrate_eval.tasks.profile_logs`` (what ``migrate-eval profile`` runs: every exchange read by
the full reader, counted and dropped, the tasks discovered). Prints both, the ratio and the
peak RSS of each. Target: peak RSS < 1.5 GB whatever the number of exchanges (the profile
streams); the time is reported, with no target (the full reader builds every exchange).
Exits 0 whether or not the target is met; the JSON line's ``pass`` says.
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
from migrate_eval.tasks import profile_logs
p = profile_logs([sys.argv[1]])
print(p.exchanges, len(p.tasks))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="folder to write the log to")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
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
        prof_s, prof_rss, out = run_child(PROFILE, str(log), str(REPO))
    exchanges, tasks = (int(x) for x in out.split())
    result: dict[str, Any] = {
        "n": args.n,
        "file_mb": round(size / 1e6, 1),
        "bare_s": round(bare_s, 2),
        "profile_s": round(prof_s, 2),
        "profile_exchanges_per_s": round(args.n / prof_s),
        "ratio": round(prof_s / bare_s, 2),
        "bare_peak_rss_mb": round(bare_rss / 1e6, 1),
        "profile_peak_rss_mb": round(prof_rss / 1e6, 1),
        "exchanges": exchanges,
        "tasks": tasks,
    }
    result["pass"] = bool(result["profile_peak_rss_mb"] < 1500 and exchanges == args.n)
    if not args.json:
        print(f"log: {args.n:,} lines, {size / 1e6:,.0f} MB")
        print(f"bare loop (read + orjson.loads): {bare_s:7.1f} s  peak RSS {bare_rss / 1e6:6.0f} MB")
        print(
            f"profile_logs:                    {prof_s:7.1f} s  peak RSS {prof_rss / 1e6:6.0f} MB"
            f"  ({args.n / prof_s:,.0f} exchanges/s, {tasks} tasks)"
        )
        print(f"ratio {result['ratio']}x; peak RSS target < 1500 MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
