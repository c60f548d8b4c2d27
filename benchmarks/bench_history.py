"""Benchmark: list a large run history and render its "Over time" section.

Run: ``python benchmarks/bench_history.py [--runs 10000] [--tasks 20]``

Builds the history folder as 10,000 appends leave it (the automatic compaction keeps at most
``COMPACT_AFTER`` small files beside the merged ones): one merged file with the older runs and
200 single-run files, 20 tasks each, then times :func:`migrate_eval.history` (every record,
read and sorted) and :func:`~migrate_eval.report.over_time.over_time_html` (one SVG trend per
task). Target: each under 2 s. Exit code 1 when a target is missed.

Each step runs ``--repeat`` times (default 3): the first is a cold call (what one ``migrate-eval
history`` pays, lazy imports included), the target applies to the best. Wall and CPU seconds
(``time.process_time``: every thread of this process) are both printed: on a machine shared
with other work the wall time grows with the load and the CPU time does not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import migrate_eval
from migrate_eval.report.over_time import over_time_html
from migrate_eval.verdict.history import HISTORY_COLUMNS, _write_atomic, append_history

TARGET_S = 2.0


def records(first: int, count: int, tasks: int, rng: np.random.Generator) -> pd.DataFrame:
    n = count * tasks
    runs = np.repeat(np.arange(first, first + count), tasks)
    df = pd.DataFrame({c: [None] * n for c in HISTORY_COLUMNS})
    df["run_id"] = [f"20260101T000000.{r:06d}Z-bench" for r in runs]
    df["created"] = "2026-01-01T00:00:00+00:00"
    df["suite"] = "prod"
    df["kind"] = "watch"
    df["candidate"] = "chosen"
    df["provider"] = "openai"
    df["model"] = "gpt-4o-mini"
    df["task"] = [f"task-{t:02d}" for t in np.tile(np.arange(tasks), count)]
    df["n"] = 50
    df["n_total"] = 50
    df["parity"] = rng.uniform(0.7, 1.0, n)
    df["response_models"] = "gpt-4o-mini-2024-07-18"
    df["system_fingerprints"] = "fp_1"
    df["drift"] = rng.random(n) < 0.01
    df["fingerprint_changed"] = False
    return df


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    singles = min(200, args.runs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "history"
        older = args.runs - singles
        if older:
            _write_atomic(
                records(0, older, args.tasks, rng), folder / "merged.parquet", records=True
            )
        for r in range(older, args.runs):
            append_history(folder, records(r, 1, args.tasks, rng), compact_after=None)
        history_times, trend_times = [], []
        for _ in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), time.process_time()
            df = migrate_eval.history(folder)
            history_times.append((time.perf_counter() - t0, time.process_time() - c0))
            t0, c0 = time.perf_counter(), time.process_time()
            page = over_time_html(df[df["suite"] == "prod"])
            trend_times.append((time.perf_counter() - t0, time.process_time() - c0))

    def shown(times: list[tuple[float, float]]) -> str:
        (cold_wall, cold_cpu), (wall, cpu) = times[0], min(times)
        return f"{wall:.2f} s wall, {cpu:.2f} s CPU (cold: {cold_wall:.2f} s wall, {cold_cpu:.2f} s CPU)"

    print(
        f"history: {len(df):,} records ({args.runs:,} runs x {args.tasks} tasks) in "
        f"{shown(history_times)}"
    )
    print(f"over time section: {len(page):,} bytes in {shown(trend_times)}")
    t_history, t_trend = min(history_times)[0], min(trend_times)[0]
    missed = t_history > TARGET_S or t_trend > TARGET_S
    print("targets: " + ("MISSED" if missed else f"met (each under {TARGET_S:.0f} s)"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
