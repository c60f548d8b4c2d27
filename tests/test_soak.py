"""The soak test of issue 15: everything that goes wrong at once, on loopback, with real
``migrate-eval run`` processes sharing one cache.

One flaky vendor (seeded, per request body: 429 with ``Retry-After``, 503, truncated 200
bodies, hung requests) serves four runs of the same command over the same logs and cache:

1. a run whose cache disk fills up mid-replay (``ENOSPC`` from SQLite, simulated in the child
   as :mod:`tests.test_disk_faults` does in-process): it says so and leaves no run folder;
2. a run killed with SIGKILL mid-replay;
3. two runs started together that resume what is left, sharing the cache.

At the end: every exchange is accounted for in both completed run folders, each request body
was answered successfully by the vendor at most once (once more only for answers that a run
received but had not committed when it died, counted and bounded), the cache passes
``PRAGMA integrity_check`` and holds no lease, the run folders are complete, and the API key
is in no file. Event counts only, no wall-clock assertion (the waits are stall guards).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.run_rows import response_rows
from tests.servers import Flaky, LoopbackServer, body_hash

REPO = Path(__file__).resolve().parents[1]
N = 120  # exchanges
CONCURRENCY = 8
#: Seconds after which a run that has not finished is a stall (a guard, far above the few
#: seconds a run takes; shared CI machines can be slow).
STALL = 600
SECRET = "sk-soak-canary-5f1d0c7e9a2b4d6f8e0a1c3b5d7f9e1a"
RUN_FILES = (
    "report.html",
    "results.json",
    "summary.md",
    "scores.parquet",
    "exchanges/state.json",  # the Arrow datasets of the run's exchanges and answers
    "responses/state.json",
    "suite.json",
    "tasks.json",
)

# `migrate-eval run` in a child process; SOAK_DISK_FULL_AFTER=k makes the cache's (k+1)-th
# batch write fail as SQLite does on a full disk.
_CHILD = """
import os, sqlite3, sys
from migrate_eval.replay import cache as cache_module
after = int(os.environ.get("SOAK_DISK_FULL_AFTER") or 0)
if after:
    real = cache_module._write
    batches = [0]
    def write(conn, rows):
        batches[0] += 1
        if batches[0] > after:
            raise sqlite3.OperationalError("database or disk is full")
        real(conn, rows)
    cache_module._write = write
from migrate_eval.cli import main
main(sys.argv[1:], prog_name="migrate-eval")
"""


def _line(i: int) -> str:
    question = f"soak question {i}: where is order {1000 + i}?"
    return json.dumps(
        {
            "request": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": question}],
            },
            "response": {
                "id": f"c{i}",
                "object": "chat.completion",
                "created": 1760000000,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo: {question}"},
                        "finish_reason": "stop",
                    }
                ],
            },
        }
    )


def _start(
    tmp_path: Path, base_url: str, out: Path, *, disk_full_after: int = 0
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SOAK_KEY": SECRET,
        "MIGRATE_EVAL_REPORTS_DIR": str(tmp_path / "reports"),
        "SOAK_DISK_FULL_AFTER": str(disk_full_after),
    }
    env.pop("OPENAI_API_KEY", None)
    args = [
        "run", "--logs", str(tmp_path / "logs.jsonl"),
        "--candidate", f"c=openai-compatible:m@{base_url}",
        "--candidate-param", "c.api_key_env=SOAK_KEY",
        "--candidate-param", "c.timeout=8",
        "--candidate-param", "c.max_retries=8",
        "--concurrency", str(CONCURRENCY),
        "--cache", str(tmp_path / "cache" / "shared.db"),
        "--out", str(out), "--no-baseline", "-q",
    ]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = STALL) -> tuple[int, str]:
    try:
        output, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:  # a stalled run: stop it, the assertion below says so
            proc.kill()
            proc.communicate()
    return proc.returncode, output


def _committed(db: Path) -> set[str]:
    """Body hashes of the requests whose answers the cache holds (committed)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT request FROM responses").fetchall()
    finally:
        conn.close()
    return {body_hash(json.loads(r[0])) for r in rows}


def _lost(srv: LoopbackServer, before: Counter[str], db: Path, allowed: Counter[str]) -> set[str]:
    """Bodies answered during a run that died and not in the cache after it: they may be
    answered once more (the in-flight window). Adds them to ``allowed``."""
    answered = srv.successes - before
    lost = set(answered) - _committed(db)
    allowed.update(lost)
    return lost


def _files_containing(root: Path, needle: bytes) -> list[str]:
    return [
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    ]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_soak_flaky_vendor_kill_full_disk_and_concurrent_runs_lose_and_repeat_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "logs.jsonl").write_text(
        "".join(_line(i) + "\n" for i in range(N)), encoding="utf-8"
    )
    db = tmp_path / "cache" / "shared.db"
    flaky = Flaky(
        p429=0.08,
        p5xx=0.08,
        p_garbage=0.04,
        p_hang=0.02,
        hang=30.0,
        retry_after="0.2",
        seed=15,
        keyed=True,
    )
    allowed: Counter[str] = Counter()  # bodies that may be answered twice, and why
    with LoopbackServer(delay=0.005, flaky=flaky, max_requests=5000, lifetime=3 * STALL) as srv:
        # 1. the cache's disk fills up mid-replay
        before = srv.successes
        code, output = _finish(
            _start(tmp_path, srv.base_url, tmp_path / "out-full", disk_full_after=2)
        )
        assert code == 3, output
        assert f"disk full at {db}" in output and "Traceback" not in output, output
        assert "Unclosed" not in output and "cannot rollback" not in output, output
        assert not (tmp_path / "out-full").exists()  # no half-written run folder
        after_full = _committed(db)
        assert 0 < len(after_full) < N  # what was committed before the disk filled is kept
        lost_full = _lost(srv, before, db, allowed)

        # 2. a run killed mid-replay, once it received a third of what is left
        before = srv.successes
        child = _start(tmp_path, srv.base_url, tmp_path / "out-killed")
        target = (N - len(after_full)) // 3
        deadline = time.monotonic() + STALL  # a stall guard, not a timing assertion
        while sum((srv.successes - before).values()) < target and child.poll() is None:
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        code, output = _finish(child)
        assert code == -signal.SIGKILL, output
        assert not (tmp_path / "out-killed").exists()
        after_kill = _committed(db)
        assert after_full <= after_kill  # nothing committed was lost
        assert len(after_kill) < N  # killed mid-replay
        lost_kill = _lost(srv, before, db, allowed)

        # 3. two runs resume together, sharing the cache
        outs = [tmp_path / "out-a", tmp_path / "out-b"]
        runs = [_start(tmp_path, srv.base_url, out) for out in outs]
        finished = [_finish(proc) for proc in runs]
        sent_auth = set(srv.auth_headers)
        successes = srv.successes
        drawn = Counter(flaky.drawn)
        total = srv.total

    for code, output in finished:
        assert code in (0, 1, 4), output  # a verdict, whatever it is; not an error
        assert "Traceback" not in output, output

    # The vendor misbehaved in every way it can.
    assert set(drawn) == {"429", "5xx", "garbage", "hang"}, drawn
    assert total > sum(successes.values())

    # Every exchange accounted for: answered, in both run folders.
    bodies = _committed(db)
    assert len(bodies) == N
    assert set(successes) == bodies  # every answer the vendor gave is in the cache
    for out in outs:
        rows = response_rows(out)
        assert len(rows) == N and len({r["exchange_id"] for r in rows}) == N, out
        assert all(r.get("error") is None and r.get("response") for r in rows), out
        results = json.loads((out / "results.json").read_text())
        assert results["ingest"]["exchanges"] == N

    # Each request answered at most once; once more only when a run died holding its answer
    # uncommitted (bounded by what a run has in flight plus one cache batch).
    twice = {b: n for b, n in successes.items() if n > 1 + allowed[b]}
    assert not twice, f"{len(twice)} requests answered more than once: {twice}"
    assert len(lost_kill) <= 2 * CONCURRENCY + 64, len(lost_kill)
    assert len(lost_full) <= 2 * CONCURRENCY + 64, len(lost_full)
    assert sum(successes.values()) <= N + len(lost_full) + len(lost_kill)

    # The cache is sound and holds no lease of any of the four runs.
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    finally:
        conn.close()

    # The completed run folders are complete, the others absent, no temporary folder left.
    for out in outs:
        for name in RUN_FILES:
            assert (out / name).stat().st_size > 0, f"{out.name}/{name}"
    assert {p.name for p in tmp_path.iterdir()} - {"reports"} == {
        "cache",
        "logs.jsonl",
        "out-a",
        "out-b",
    }

    # The key was used and never written down.
    assert sent_auth == {f"Bearer {SECRET}"}
    assert _files_containing(tmp_path, SECRET.encode()) == []
