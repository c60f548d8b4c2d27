"""Two checkouts of migrate-eval timed against each other, their runs interleaved (issue 17).

    python benchmarks/bench_ab.py OTHER [--rounds 6] [--n 10000] [--delay 0.1] [--json]
    python benchmarks/bench_ab.py OTHER --demo [--rounds 10]

On a shared machine the speed moves by 10-30% from one minute to the next, more than most
changes this benchmark is asked about, so one build's figures taken after the other's do not
compare. Here each round runs both builds back to back (their order swapped every round)
against the same loopback vendor, and the medians are compared.

``OTHER`` is the repository root of the other build (e.g. ``git worktree add /tmp/base main``;
a compiled extension it lacks is copied from this checkout, as its sources are the same or it
falls back to Python). Both run in fresh interpreters of this Python with ``PYTHONPATH`` set to
their root, each with a fresh cache, run folder and reports folder.

- Default: ``bench_scale``'s log of ``--n`` distinct exchanges and its suite (chrF, one
  candidate, concurrency 64) against the loopback OpenAI-compatible server answering after
  ``--delay`` seconds: the whole ``migrate-eval run`` from the process's start to its exit.
- ``--demo``: the shipped demo suite ``--offline``, every answer cached (``bench_fixed``'s
  cached demo run), after one run of each build that fills its caches.

Prints each build's best, median and mean wall time and the median difference; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_scale import write_log, write_suite  # noqa: E402

from tests.servers import SubprocessServer  # noqa: E402

#: The compiled extensions a checkout may lack (built by ``pip install`` or ``setup.py``).
_EXTENSIONS = ("migrate_eval/core/_chrfc", "migrate_eval/ingest/_fastrows")


def _with_extensions(root: Path) -> None:
    for stem in _EXTENSIONS:
        folder = (root / stem).parent
        name = Path(stem).name
        if any(folder.glob(f"{name}.*.so")):
            continue
        for built in (REPO / stem).parent.glob(f"{name}.*.so"):
            shutil.copy2(built, folder / built.name)


def _one(root: Path, args: list[str], tmp: Path, tag: str) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "MIGRATE_EVAL_REPORTS_DIR": str(tmp / f"reports-{tag}"),
        "MIGRATE_EVAL_EMBEDDING_CACHE": str(tmp / f"embeddings-{tag}.sqlite"),
        "MIGRATE_EVAL_TEMPLATE_CACHE": str(tmp / f"templates-{tag}"),
    }
    for name in ("OPENAI_API_KEY", "MIGRATE_EVAL_CACHE", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "migrate_eval.cli", *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: a gate that fails (the demo's, by design)
        raise SystemExit(f"{root}: migrate-eval failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("other", type=Path, help="the other build's repository root")
    ap.add_argument("--rounds", type=int, default=6, help="runs of each build")
    ap.add_argument("--n", type=int, default=10_000, help="exchanges (not with --demo)")
    ap.add_argument("--delay", type=float, default=0.1, help="the vendor's answer time (s)")
    ap.add_argument("--demo", action="store_true", help="the cached demo run instead")
    ap.add_argument("--json", action="store_true", help="only the JSON line")
    args = ap.parse_args(argv)
    builds = {"this": REPO, "other": args.other.resolve()}
    _with_extensions(builds["other"])
    walls: dict[str, list[float]] = {name: [] for name in builds}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        order = list(builds)

        def rounds(make: Callable[[str, int], list[str]]) -> None:
            for r in range(args.rounds):
                for name in order if r % 2 == 0 else order[::-1]:
                    walls[name].append(_one(builds[name], make(name, r), tmp, name))

        if args.demo:

            def demo(name: str, r: int) -> list[str]:
                out = tmp / f"run-{name}-{r}"
                return ["run", "--offline", "-q", "--out", str(out)]

            for name in order:  # fill each build's caches (embeddings, templates)
                _one(builds[name], demo(name, -1), tmp, name)
            rounds(demo)
        else:
            log = tmp / "logs.jsonl"
            write_log(log, args.n)
            with SubprocessServer(
                delay=args.delay,
                max_requests=2 * args.rounds * args.n + 10_000,
                lifetime=7200,
            ) as server:
                suite = write_suite(tmp, log, server.base_url, "chrf", 1)

                def scale(name: str, r: int) -> list[str]:
                    return [
                        "run", str(suite), "--no-baseline", "-q", "--concurrency", "64",
                        "--out", str(tmp / f"run-{name}-{r}"),
                        "--cache", str(tmp / f"cache-{name}-{r}.sqlite"),
                    ]  # fmt: skip

                rounds(scale)
    stats = {
        name: {
            "best_s": round(min(w), 3),
            "median_s": round(statistics.median(w), 3),
            "mean_s": round(statistics.mean(w), 3),
            "runs_s": [round(x, 3) for x in w],
        }
        for name, w in walls.items()
    }
    diff = stats["this"]["median_s"] - stats["other"]["median_s"]
    if not args.json:
        what = "cached demo run" if args.demo else f"{args.n:,} exchanges, vendor {args.delay:g} s"
        print(f"{what}, {args.rounds} rounds interleaved")
        for name, st in stats.items():
            print(
                f"{name:6s} {builds[name]!s:40s} best {st['best_s']:.3f}s "
                f"median {st['median_s']:.3f}s mean {st['mean_s']:.3f}s"
            )
        print(f"this - other, medians: {diff:+.3f}s")
    print(
        json.dumps(
            {
                "benchmark": "ab",
                "mode": "demo" if args.demo else "scale",
                "exchanges": None if args.demo else args.n,
                "delay": None if args.demo else args.delay,
                "builds": {name: str(root) for name, root in builds.items()},
                **stats,
                "median_difference_s": round(diff, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
