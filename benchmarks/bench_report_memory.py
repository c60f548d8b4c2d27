"""What rendering ``report.html`` costs a large run (issue 17): the traced peak (tracemalloc)
and the RSS growth inside ``render_html``, at several sizes, the run's records on disk.

    python benchmarks/bench_report_memory.py [--sizes 20000 80000] [--candidates 2]
                                             [--parts] [--json]

For each size: ``bench_scale``'s log and suite (seven free-text tasks, chrF, the loopback
server answering at once), ``migrate_eval.run`` with ``MIGRATE_EVAL_SPILL_ABOVE=0`` (the
exchanges and answers on disk, as a run above 50,000 keeps them), and ``render_html`` wrapped:
it is called with tracemalloc on (peak over the bytes traced when it starts), then again
without (CPU seconds, and the RSS growth sampled every 5 ms). The slope between two sizes is
what the report costs an exchange. ``--parts``: also the traced growth inside the report's
main steps (a third call). ``--synthetic``: no replay, a synthetic run of the report tests'
results (three tasks, two candidates) with its records on disk (minutes less).
``--browser-cap N``: the browser shows at most N exchanges (below
both sizes, the slope is what grows per exchange, not the browser filling up to its 50,000).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_memory_stages import rss  # noqa: E402
from bench_scale import write_log, write_suite  # noqa: E402

from tests.servers import SubprocessServer  # noqa: E402

#: The report's steps measured with ``--parts`` (module, function).
PARTS = [
    ("migrate_eval.report.html", "_groups"),
    ("migrate_eval.report.html", "_regression_group"),
    ("migrate_eval.report.html", "_candidate_extras"),
    ("migrate_eval.report.html", "_task_analysis"),
    ("migrate_eval.report.explorer", "_blob_data"),
    ("migrate_eval.report.explorer", "_blob_bytes"),
    ("migrate_eval.report.html", "build_page"),
]


class Parts:
    """Traced growth inside each wrapped function (peak during the call over the bytes
    traced at its start; nested calls accounted for)."""

    def __init__(self) -> None:
        self.growth: dict[str, int] = {}
        self._running: list[int] = []  # per open call: the peak seen so far

    def wrap(self, module: str, name: str) -> Callable[[], None]:
        mod = importlib.import_module(module)
        func = getattr(mod, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            current, peak = tracemalloc.get_traced_memory()
            if self._running:
                self._running[-1] = max(self._running[-1], peak)
            tracemalloc.reset_peak()
            self._running.append(current)
            try:
                return func(*args, **kwargs)
            finally:
                mine = max(self._running.pop(), tracemalloc.get_traced_memory()[1])
                self.growth[name] = max(self.growth.get(name, 0), mine - current)
                if self._running:
                    self._running[-1] = max(self._running[-1], mine)
                tracemalloc.reset_peak()

        setattr(mod, name, wrapped)
        return lambda: setattr(mod, name, func)


def measure(render: Callable[..., Any], args: tuple[Any, ...], parts: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        render(*args)
        out["traced_peak_mib"] = round((tracemalloc.get_traced_memory()[1] - start) / 2**20, 1)
    finally:
        tracemalloc.stop()
    gc.collect()
    peak = [rss()]
    base = peak[0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    cpu = time.process_time()
    render(*args)
    out["cpu_s"] = round(time.process_time() - cpu, 2)
    stop.set()
    thread.join()
    out["rss_growth_mib"] = round((max(peak[0], rss()) - base) / 2**20, 1)
    if parts:
        p = Parts()
        undo = [p.wrap(m, n) for m, n in PARTS]
        gc.collect()
        tracemalloc.start()
        try:
            render(*args)
        finally:
            tracemalloc.stop()
            for u in undo:
                u()
        out["parts_mib"] = {k: round(v / 2**20, 1) for k, v in p.growth.items()}
    return out


def one_size(n: int, candidates: int, parts: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-memory-"))
    measured: dict[str, Any] = {}
    try:
        os.environ["MIGRATE_EVAL_REPORTS_DIR"] = str(tmp / "reports")
        os.environ["MIGRATE_EVAL_EMBEDDING_CACHE"] = str(tmp / "embeddings.sqlite")
        os.environ["MIGRATE_EVAL_SPILL_ABOVE"] = "0"
        os.environ.pop("OPENAI_API_KEY", None)  # never a real vendor
        log = tmp / "logs.jsonl"
        write_log(log, n)
        import migrate_eval.api as api
        import migrate_eval.report as report

        render = report.render_html

        def wrapped(*args: Any) -> None:
            measured.update(measure(render, args, parts))

        report.render_html = wrapped  # type: ignore[assignment]
        try:
            with SubprocessServer(max_requests=10 * n * candidates + 10_000, lifetime=7200) as srv:
                suite = write_suite(tmp, log, srv.base_url, "chrf", candidates)
                api.run(
                    str(suite),
                    out=str(tmp / "run"),
                    cache=str(tmp / "c.sqlite"),
                    baseline=False,
                    history=False,
                )
        finally:
            report.render_html = render
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"exchanges": n, **measured}


def synthetic_size(n: int, parts: bool) -> dict[str, Any]:
    """``render_html`` of a synthetic run of ``n`` exchanges (the report tests' results: three
    tasks, two candidates), its exchanges and answers in ``SpilledRecords`` as a run on disk
    keeps them, and a scores frame of the run's columns plus a metric; no replay."""
    import numpy as np
    import pandas as pd

    from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
    from migrate_eval.core.store import ById, ByPair, Spill, interleave
    from migrate_eval.report import render_html
    from tests.report.conftest import CANDIDATES, TASKS, build_run

    rng = np.random.default_rng(n)
    results = build_run().results
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-memory-"))
    try:
        with Spill(tmp) as spill:
            records = spill.new("exchanges", ids=True)
            columns = [spill.new(c) for c in CANDIDATES]
            names = ("exchange_id", "task", "candidate", "status", "error", "parity",
                     "latency_ms", "prompt_tokens", "completion_tokens", "cached", "chrf")  # fmt: skip
            rows: dict[str, list[Any]] = {k: [] for k in names}
            for i in range(n):
                ex_id = f"ex-{i:07d}"
                records.append(
                    Exchange(
                        id=ex_id,
                        source=Source(file="logs.jsonl", line=i + 1, format="chat-jsonl"),
                        request={
                            "messages": [{"role": "user", "content": f"where is parcel {i}?"}]
                        },
                        response=Response(text=f"parcel {i} left the depot", latency_ms=300.0),
                    )
                )
                for c, column in zip(CANDIDATES, columns, strict=True):
                    p = float(np.round(rng.random(), 3))
                    ok = rng.random() >= 0.02
                    column.append(
                        ReplayResult(
                            exchange_id=ex_id,
                            candidate=c,
                            response=Response(text=f"parcel {i} is on its way") if ok else None,
                            error=None if ok else "HTTP 500",
                            latency_ms=200.0,
                        )
                    )
                    values = (ex_id, TASKS[i % len(TASKS)], c, "ok" if ok else "error",
                              "" if ok else "HTTP 500", p if ok else np.nan, 200.0, 10, 5, False, p)  # fmt: skip
                    for k, v in zip(names, values, strict=True):
                        rows[k].append(v)
            scores = pd.DataFrame(rows)
            del rows
            by_id = ById(records, store_ids(records))
            by_pair = ByPair(interleave(columns), by_id, list(CANDIDATES))
            out = measure(
                render_html, (results, scores, by_id, by_pair, tmp / "report.html"), parts
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"exchanges": n, **out}


def store_ids(records: Any) -> list[str]:
    from migrate_eval.core.store import record_ids

    return record_ids(records)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 80_000])
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument("--parts", action="store_true")
    ap.add_argument("--synthetic", action="store_true", help="no replay: a synthetic run")
    ap.add_argument(
        "--browser-cap",
        type=int,
        default=None,
        help="exchanges the browser shows at most (below both sizes: the slope is then what "
        "grows per exchange, not the browser filling up to its 50,000)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.browser_cap is not None:
        from migrate_eval.report import explorer

        explorer.MAX_BROWSER_EXCHANGES = args.browser_cap
    if args.synthetic:
        rows = [synthetic_size(n, args.parts) for n in args.sizes]
    else:
        rows = [one_size(n, args.candidates, args.parts) for n in args.sizes]
    slope = None
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        slope = round(
            (b["traced_peak_mib"] - a["traced_peak_mib"])
            * 2**20
            / (b["exchanges"] - a["exchanges"])
        )
    if not args.json:
        cap = args.browser_cap or 50_000
        kind = "synthetic run, 2" if args.synthetic else f"{args.candidates}"
        print(f"render_html, {kind} candidate(s), records on disk, browser cap {cap:,}")
        print("| exchanges | traced peak | RSS growth | CPU |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['exchanges']:,} | {r['traced_peak_mib']:,} MiB | "
                  f"{r['rss_growth_mib']:,} MiB | {r['cpu_s']} s |")  # fmt: skip
            if "parts_mib" in r:
                print("|   parts (traced growth) | " + ", ".join(
                    f"{k} {v} MiB" for k, v in r["parts_mib"].items()) + " | | |")  # fmt: skip
        if slope is not None:
            print(f"traced peak per exchange (slope): {slope} bytes")
    print(json.dumps({"benchmark": "report_memory", "candidates": args.candidates,
                      "slope_bytes": slope, "sizes": rows}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
