"""Peak memory and time of reading a log with one very long valid line (issue 15: a 50 MB
line took 4.15 GB and 146 s before the line limit).

    python benchmarks/bench_bigline.py [--mb 50] [--json] [--accept]

Writes a ``chat-jsonl`` file of 1,000 ordinary lines and one valid line whose user message is
``--mb`` MB, then runs ``migrate-eval profile`` on it in a child process (so its peak RSS is
its own) and, as the baseline, on the same file without the long line. By default the line is
over the 16 MiB limit and is skipped (``line too long``); ``--accept`` raises the limit
(``--max-line-bytes``) above it, to measure what parsing such a line costs. ``--run``
measures ``migrate-eval run`` against the loopback server (``tests/servers.py``) instead of
``profile`` (replay, scoring and report of the long exchange included). Prints the peak RSS of
both, the difference as a multiple of the line's size, the time, and one JSON line.
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
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _line(i: int, text: str) -> str:
    return json.dumps(
        {
            "id": f"r{i}",
            "request": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You are a support assistant."},
                    {"role": "user", "content": text},
                ],
            },
            "response": {
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": f"answer {i}"},
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            },
        }
    )


def write(path: Path, big_mb: float | None) -> int:
    words = "the customer asks where the order is and when it ships "
    with path.open("w", encoding="utf-8") as fh:
        for i in range(1000):
            fh.write(_line(i, f"question {i}: {words}") + "\n")
            if i == 500 and big_mb:
                n = int(big_mb * 1_000_000)
                fh.write(_line(10_000, (words * (n // len(words) + 1))[:n]) + "\n")
    return path.stat().st_size


def measure(
    path: Path, max_line: str | None, base_url: str | None = None
) -> tuple[float, int, dict[str, object]]:
    cmd = [sys.executable, "-m", "migrate_eval.cli", "profile", str(path), "--json"]
    if base_url is not None:
        tmp = path.parent / f"run-{path.stem}"
        cmd = [
            sys.executable, "-m", "migrate_eval.cli", "run", "--logs", str(path),
            "--candidate", f"c=openai-compatible:bench-model@{base_url}", "--out", str(tmp),
            "--cache", str(tmp) + ".sqlite", "--no-baseline", "-q",
        ]  # fmt: skip
    if max_line:
        cmd += ["--max-line-bytes", max_line]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OPENAI_API_KEY", None)
    # A fresh embeddings cache per measurement (by default it is shared, beside the replay
    # cache's default place): a text embedded by an earlier measurement would cost nothing.
    env["MIGRATE_EVAL_EMBEDDING_CACHE"] = str(path.parent / f"embeddings-{path.stem}.sqlite")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if base_url is not None:
        if code not in (0, 1, 4):
            raise SystemExit(f"migrate-eval run failed ({code})")
        results = json.loads((path.parent / f"run-{path.stem}" / "results.json").read_text())
        ingest = results["ingest"]
        return (
            seconds,
            usage.ru_maxrss * 1024,
            {
                "exchanges": ingest["exchanges"],
                "skipped": ingest.get("skipped_by_reason", {}),
            },
        )
    if code:
        raise SystemExit(f"migrate-eval profile failed: {out[-2000:]}")
    return seconds, usage.ru_maxrss * 1024, json.loads(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50.0, help="size of the long line (MB)")
    ap.add_argument("--accept", action="store_true", help="raise the limit above the line")
    ap.add_argument("--run", action="store_true", help="measure `run` instead of `profile`")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    limit = f"{int(args.mb * 1.1) + 1}M" if args.accept else None
    with tempfile.TemporaryDirectory() as tmp:
        base_path = Path(tmp) / "base.jsonl"
        big_path = Path(tmp) / "big.jsonl"
        write(base_path, None)
        write(big_path, args.mb)
        if args.run:
            from tests.servers import SubprocessServer

            with SubprocessServer(lifetime=1800) as server:
                base_s, base_rss, _ = measure(base_path, limit, server.base_url)
                big_s, big_rss, prof = measure(big_path, limit, server.base_url)
        else:
            base_s, base_rss, _ = measure(base_path, limit)
            big_s, big_rss, prof = measure(big_path, limit)
    line_bytes = int(args.mb * 1_000_000)
    extra = big_rss - base_rss
    result = {
        "benchmark": "bigline",
        "command": "run" if args.run else "profile",
        "line_mb": args.mb,
        "accepted": bool(args.accept),
        "exchanges": prof["exchanges"],
        "skipped": prof["skipped"],
        "base_peak_rss_mb": round(base_rss / 1e6, 1),
        "peak_rss_mb": round(big_rss / 1e6, 1),
        "extra_rss_mb": round(extra / 1e6, 1),
        "extra_per_line_byte": round(extra / line_bytes, 2),
        "base_s": round(base_s, 2),
        "seconds": round(big_s, 2),
    }
    if not args.json:
        what = "read" if args.accept else "skipped (line too long)"
        print(
            f"{'run' if args.run else 'profile'}, one {args.mb:g} MB line, {what}: peak RSS {big_rss / 1e6:,.0f} MB against "
            f"{base_rss / 1e6:,.0f} MB without it (+{extra / 1e6:,.0f} MB, "
            f"{extra / line_bytes:.2f}x the line); {big_s:.1f} s against {base_s:.1f} s"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
