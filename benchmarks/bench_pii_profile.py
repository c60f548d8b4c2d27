"""What counting PII in the profile costs: ``migrate-eval profile`` on a generated log with and
without the count (``TrafficTally(count_pii=False)``), in this process, best of ``--runs``.

    python benchmarks/bench_pii_profile.py [--n 100000] [--runs 2] [--json]

The log is ``bench_ingest``'s (about 1.35 KB a line); one line in five gets an e-mail address,
a phone number and a "Hi First," greeting planted in the user message, so the detectors have
something to find. Prints seconds for both, the slowdown and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def plant(path: Path) -> None:
    out = path.with_suffix(".pii.jsonl")
    with path.open(encoding="utf-8") as src, out.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i % 5 == 0:
                row = json.loads(line)
                msg = row["request"]["messages"][-1]
                msg["content"] = (
                    f"Hi Anna, I am reachable at user{i}@example.com or +44 20 7946 {i % 10000:04d}. "
                    + msg["content"]
                )
                line = json.dumps(row, ensure_ascii=False) + "\n"
            dst.write(line)
    out.replace(path)


def timed(path: Path, count_pii: bool) -> tuple[float, dict[str, int]]:
    import migrate_eval.api as api
    from migrate_eval.plan import profile as profile_mod

    original = profile_mod.TrafficTally.__init__

    def init(self: profile_mod.TrafficTally, *, count_pii: bool = count_pii) -> None:
        original(self, count_pii=count_pii)

    profile_mod.TrafficTally.__init__ = init  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        p = api.profile([path])
        seconds = time.perf_counter() - start
    finally:
        profile_mod.TrafficTally.__init__ = original  # type: ignore[method-assign]
    return seconds, (p.pii.by_kind if p.pii else {})


def main(argv: list[str] | None = None) -> int:
    from bench_ingest import generate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "logs.jsonl"
        generate(path, args.n)
        plant(path)
        without = min(timed(path, False)[0] for _ in range(args.runs))
        runs = [timed(path, True) for _ in range(args.runs)]
        with_pii = min(r[0] for r in runs)
        found = runs[0][1]
    result = {
        "benchmark": "pii_profile",
        "exchanges": args.n,
        "profile_s": round(without, 2),
        "profile_with_pii_s": round(with_pii, 2),
        "slowdown": round(with_pii / without, 3),
        "found": found,
    }
    if not args.json:
        print(
            f"profile of {args.n:,} exchanges: {without:.2f} s without the PII count, "
            f"{with_pii:.2f} s with it (x{with_pii / without:.2f}); found {found}"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
