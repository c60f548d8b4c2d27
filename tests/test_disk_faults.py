"""Disk and cache faults: unwritable or full output locations, a full disk under the cache,
damaged cache files, read-only caches. Full and read-only disks are simulated (a failing
probe, ``ENOSPC`` from SQLite through a patched write) and, where this test may mount one, a
real tiny tmpfs is used too (skipped elsewhere)."""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import socket
import sqlite3
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

import migrate_eval
from migrate_eval.cli import main
from migrate_eval.core import outputs
from migrate_eval.core.errors import CacheCorruptError, DiskFullError, UserError
from migrate_eval.core.outputs import atomic_folder, check_writable
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay import cache as cache_module
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import replay
from tests.servers import LoopbackServer


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: LoopbackServer) -> None:
    server.reset()


def _line(i: int) -> dict[str, Any]:
    return {
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]},
        "response": {
            "id": f"c{i}",
            "object": "chat.completion",
            "created": 1760000000,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"echo: q{i}"},
                    "finish_reason": "stop",
                }
            ],
        },
    }


def logs(tmp_path: Path, n: int = 20) -> Path:
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(_line(i)) + "\n" for i in range(n)), encoding="utf-8")
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def run_args(tmp_path: Path, server: LoopbackServer, out: Path, *extra: str) -> list[str]:
    return [
        "run", "--logs", str(logs(tmp_path)), "--candidate",
        f"c=openai-compatible:m@{server.base_url}", "--out", str(out),
        "--cache", str(tmp_path / "cache" / "c.db"), "-q", *extra,
    ]  # fmt: skip


def exchange(i: int) -> Exchange:
    req = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"question {i}"}]}
    return Exchange(id=f"ex{i}", source=Source(file="l", line=i + 1, format="t"), request=req)


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "256k") -> Iterator[Path]:
    """A small tmpfs at ``path``; skips the test where it cannot be mounted."""
    path.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot mount a tmpfs here (the simulated variant covers this)")
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the simulated variant covers this)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


# -- output locations checked before the first request ----------------------------------------


def test_an_out_path_that_cannot_be_a_folder_stops_before_any_request(
    tmp_path: Path, server: LoopbackServer
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, output = invoke(*run_args(tmp_path, server, blocker / "run"))
    assert code == 2, output
    assert "run folder (--out)" in output and "Traceback" not in output
    assert server.total == 0


def test_an_unwritable_out_stops_before_any_request(
    tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = outputs.tempfile.mkstemp
    readonly = tmp_path / "ro"
    readonly.mkdir()

    def mkstemp(*a: Any, dir: Any = None, **kw: Any) -> Any:
        if dir is not None and Path(dir) == readonly:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **kw)

    monkeypatch.setattr(outputs.tempfile, "mkstemp", mkstemp)
    code, output = invoke(*run_args(tmp_path, server, readonly / "run"))
    assert code == 2, output
    assert "Read-only file system" in output and "Traceback" not in output
    assert server.total == 0 and not (readonly / "run").exists()


def test_a_full_disk_at_out_stops_before_any_request(
    tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Usage:
        free = 1024

    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: Usage())
    code, output = invoke(*run_args(tmp_path, server, tmp_path / "run"))
    assert code == 3, output
    assert "disk full at" in output
    assert server.total == 0


def test_a_real_full_disk_at_out_is_found_by_the_probe(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "mnt") as mnt:
        (mnt / "filler").write_bytes(b"\0" * 200_000)
        with pytest.raises(DiskFullError, match="disk full at"):
            check_writable(mnt / "run", "the run folder (--out)")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]  # the probe is gone


# -- run folders: complete or absent ----------------------------------------------------------


def test_a_run_folder_that_fails_to_write_is_absent_not_half_written(
    tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migrate_eval.api as api

    def render(*a: Any, **kw: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(api, "_render", render)
    out = tmp_path / "run"
    code, output = invoke(*run_args(tmp_path, server, out))
    assert code == 3, output
    assert "disk full at" in output and "Traceback" not in output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run")] == []


def test_atomic_folder_replaces_an_old_folder_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
        (tmp / "old.txt").write_text("rewritten")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt", "old.txt"]
    assert (target / "old.txt").read_text() == "rewritten"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (target / "baseline.jsonl").write_text("kept")  # a file the next run does not write
    with atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("newer")
    assert (target / "baseline.jsonl").read_text() == "kept"
    assert (target / "new.txt").read_text() == "newer"


# -- a full disk under the cache --------------------------------------------------------------


def test_a_full_disk_under_the_cache_says_so_and_keeps_what_was_committed(
    tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = cache_module._write
    calls = {"n": 0}

    def write(conn: sqlite3.Connection, rows: list[Any]) -> None:
        calls["n"] += 1
        if calls["n"] > 1:  # the first batch is committed, then the disk is full
            raise sqlite3.OperationalError("database or disk is full")
        real_write(conn, rows)

    monkeypatch.setattr(cache_module, "_write", write)
    db = tmp_path / "c.db"
    cache = ResponseCache(db, batch_size=5, batch_interval=3600)
    spec = CandidateSpec(name="c", model="m", base_url=server.base_url, concurrency=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DiskFullError, match=f"disk full at {db}") as info:
            replay([exchange(i) for i in range(40)], [spec], cache=cache)
        gc.collect()
    assert "cannot rollback" not in str(info.value)
    assert not [w for w in caught if "Unclosed" in str(w.message)]
    with contextlib.suppress(DiskFullError):
        cache.close()
    monkeypatch.setattr(cache_module, "_write", real_write)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 5


def test_a_failed_commit_does_not_hide_its_cause_behind_a_failed_rollback() -> None:
    class Conn:
        in_transaction = False  # SQLite rolled back by itself, as on a full disk
        executed: ClassVar[list[str]] = []

        def execute(self, sql: str) -> None:
            if sql == "ROLLBACK":
                raise sqlite3.OperationalError("cannot rollback - no transaction is active")
            self.executed.append(sql)

        def executemany(self, sql: str, rows: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        cache_module._write(Conn(), [])  # type: ignore[arg-type]


def test_a_real_full_disk_under_the_cache(tmp_path: Path, server: LoopbackServer) -> None:
    with tiny_tmpfs(tmp_path / "mnt", size="512k") as mnt:
        db = mnt / "c.db"
        spec = CandidateSpec(name="c", model="m", base_url=server.base_url, concurrency=4)
        big = [
            Exchange(
                id=f"ex{i}",
                source=Source(file="l", line=i + 1, format="t"),
                request={"model": "m", "messages": [{"role": "user", "content": f"{i} " * 4000}]},
            )
            for i in range(200)
        ]
        cache = ResponseCache(db, batch_size=4)
        with pytest.raises(DiskFullError, match="disk full at"):
            replay(big, [spec], cache=cache)
        with contextlib.suppress(DiskFullError):
            cache.close()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            kept = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        conn.close()
        assert kept > 0


# -- damaged cache files -----------------------------------------------------------------------


def damaged_cache(tmp_path: Path, *, spare_roots: bool = False) -> Path:
    """A cache file with every third page after the schema's scribbled over (``spare_roots``:
    no table's or index's first page: rows are lost, every table can still be read from)."""
    db = tmp_path / "c.db"
    with ResponseCache(db) as cache:
        for i in range(300):
            resp = migrate_eval.core.records.Response.from_chat_completion(_line(i)["response"])
            cache.put(
                f"k{i:04d}", {"p": 1}, {"i": i, "pad": "x" * 500}, _line(i)["response"], resp, 1.0
            )
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = {r[0] for r in conn.execute("SELECT rootpage FROM sqlite_master")}
    conn.close()
    data = bytearray(db.read_bytes())
    for number in range(3, len(data) // page + 1, 3):  # SQLite numbers pages from 1
        if not (spare_roots and number in roots):
            at = (number - 1) * page
            data[at : at + 200] = uuid.uuid4().bytes * 12 + b"\xff" * 8
    db.write_bytes(bytes(data))
    return db


def test_a_damaged_cache_is_exit_2_with_how_to_recover(
    tmp_path: Path, server: LoopbackServer
) -> None:
    db = damaged_cache(tmp_path)
    code, output = invoke(
        "run", "--logs", str(logs(tmp_path)), "--candidate",
        f"c=openai-compatible:m@{server.base_url}", "--out", str(tmp_path / "run"),
        "--cache", str(db), "-q",
    )  # fmt: skip
    assert code == 2, output
    assert "damaged" in output and "cache export" in output
    assert "Traceback" not in output and "this is a bug" not in output


def test_a_file_that_is_not_a_database_is_named_damaged(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CacheCorruptError, match="cache export"):
        ResponseCache(bad)


def test_cache_export_saves_what_is_readable_from_a_damaged_file(tmp_path: Path) -> None:
    db = damaged_cache(tmp_path, spare_roots=True)
    with ResponseCache(db) as cache:
        count = cache.export_recordings(tmp_path / "saved.jsonl")
    lines = (tmp_path / "saved.jsonl").read_text().splitlines()
    assert 0 < count == len(lines) < 300
    fresh = tmp_path / "new.db"
    with ResponseCache(fresh) as cache:
        assert cache.import_recordings(tmp_path / "saved.jsonl") == count


# -- a read-only cache -------------------------------------------------------------------------


def test_a_read_only_cache_serves_offline_runs(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with ResponseCache(db) as cache:
        resp = migrate_eval.core.records.Response.from_chat_completion(_line(0)["response"])
        cache.put("k0", {"p": 1}, {"i": 0}, _line(0)["response"], resp, 1.0)
    with ResponseCache(db, read_only=True) as cache:
        assert cache.get("k0") is not None and len(cache) == 1
        with pytest.raises(UserError, match="read-only"):
            cache.put("k1", {"p": 1}, {"i": 1}, _line(0)["response"], resp, 1.0)


def test_offline_run_on_a_read_only_mount(tmp_path: Path, server: LoopbackServer) -> None:
    cache_dir = tmp_path / "mnt"
    with tiny_tmpfs(cache_dir, size="4m"):
        db = cache_dir / "c.db"
        args = [
            "run", "--logs", str(logs(tmp_path)), "--candidate",
            f"c=openai-compatible:m@{server.base_url}", "--cache", str(db), "-q",
        ]  # fmt: skip
        code, output = invoke(*args, "--out", str(tmp_path / "online"))
        assert code == 0, output
        sent = server.total
        remount = subprocess.run(
            ["mount", "-o", "remount,ro", str(cache_dir)], capture_output=True, timeout=10
        )
        if remount.returncode != 0:
            pytest.skip("cannot remount the tmpfs read-only here")
        code, output = invoke(*args, "--offline", "--out", str(tmp_path / "offline"))
        assert code == 0, output
        assert server.total == sent  # every answer from the read-only cache
        assert sorted(p.name for p in cache_dir.iterdir()) == ["c.db"]
        code, output = invoke(*args, "--out", str(tmp_path / "again"))
        assert code == 2 and "--cache" in output  # online runs need a writable cache


# -- runs sharing one cache --------------------------------------------------------------------


def test_two_runs_sharing_a_cache_send_each_request_once(
    tmp_path: Path, server: LoopbackServer
) -> None:
    import threading

    server.delay = 0.02
    db = tmp_path / "shared.db"
    spec = CandidateSpec(name="c", model="m", base_url=server.base_url, concurrency=8)
    exchanges = [exchange(i) for i in range(60)]
    outcomes: list[list[Any]] = []
    start = threading.Barrier(2)

    def one_run() -> None:
        with ResponseCache(db) as cache:  # each run its own cache object (its own leases)
            start.wait()
            outcomes.append(replay(exchanges, [spec], cache=cache, interruptible=False))

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(outcomes) == 2 and all(r.ok for rows in outcomes for r in rows)
    assert server.total == 60  # before leases: up to 120
    assert sum(r.cached for rows in outcomes for r in rows) == 60  # the other run's answers
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    conn.close()


def test_a_lease_of_a_killed_run_or_an_expired_one_is_taken_over(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with ResponseCache(db) as a, ResponseCache(db) as b:
        assert a.claim("k1") == "claimed"
        assert b.claim("k1") == "held"  # a is alive and its lease is fresh
        assert a.claim("k1") == "claimed"  # its own lease
        assert a.claim("k2", ttl=-1.0) == "claimed"
        assert b.claim("k2") == "claimed"  # expired
        gone = subprocess.Popen(["true"])
        gone.wait()
        with sqlite3.connect(db) as conn:  # a lease of a process that no longer runs
            conn.execute(
                "INSERT INTO leases VALUES ('k3', 'other', ?, ?, 1e12)",
                (gone.pid, socket.gethostname()),
            )
        conn.close()
        assert b.claim("k3") == "claimed"
        a.release(["k1"])
        assert b.claim("k1") == "claimed"  # a's request failed: b may send it


def test_a_run_that_stops_early_releases_its_claims(
    tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate_eval.core.errors import ConfigError

    monkeypatch.delenv("H15_NO_SUCH_KEY", raising=False)
    spec = CandidateSpec(
        name="c", model="m", base_url=server.base_url, api_key_env="H15_NO_SUCH_KEY"
    )
    db = tmp_path / "c.db"
    with ResponseCache(db) as cache, pytest.raises(ConfigError, match="H15_NO_SUCH_KEY"):
        replay([exchange(i) for i in range(10)], [spec], cache=cache)
    with sqlite3.connect(db) as conn:  # a later run (a new process) need not wait for them
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    conn.close()


class _CountingCache(ResponseCache):
    """A cache that counts its claim transactions and the keys each claimed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.claims: list[int] = []

    def claim_many(self, keys: Any, ttl: float = cache_module.LEASE_TTL) -> dict[str, str]:
        wanted = list(keys)
        self.claims.append(len(wanted))
        return super().claim_many(wanted, ttl)


def test_requests_are_claimed_a_chunk_at_a_time(tmp_path: Path, server: LoopbackServer) -> None:
    spec = CandidateSpec(name="c", model="m", base_url=server.base_url, concurrency=8)
    with _CountingCache(tmp_path / "c.db") as cache:
        results = replay([exchange(i) for i in range(100)], [spec], cache=cache)
    assert all(r.ok for r in results) and server.total == 100
    assert sum(cache.claims) == 100  # each request claimed once
    assert len(cache.claims) <= 100 // 16 + 1  # in chunks, not one transaction a request
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    conn.close()


def test_a_lease_claimed_long_before_its_request_is_sent_is_renewed(
    tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate_eval.replay import engine

    monkeypatch.setattr(engine, "_RENEW_SHARE", 0.0)  # every claim is already "old"
    spec = CandidateSpec(name="c", model="m", base_url=server.base_url, concurrency=4)
    with _CountingCache(tmp_path / "c.db") as cache:
        results = replay([exchange(i) for i in range(20)], [spec], cache=cache)
    assert all(r.ok for r in results) and server.total == 20
    # claimed in chunks ahead, then each claimed again (renewed) just before it was sent
    assert sum(cache.claims) == 40
    assert cache.claims.count(1) == 20
