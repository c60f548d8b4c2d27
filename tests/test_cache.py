"""The SQLite response cache: keys, batching, durability, recordings."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import InfrastructureError, UserError
from migrate_eval.core.json import canonical_json
from migrate_eval.core.records import Response
from migrate_eval.replay import cache as cache_module
from migrate_eval.replay.cache import ResponseCache, key_from_json
from tests.servers import make_completion

IDENTITY = {"provider": "openai-compatible", "base_url": "http://127.0.0.1:1/v1", "model": "m"}


def request(i: int, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": f"q {i} ünïcode"}], **extra}


def put(cache: ResponseCache, i: int, identity: dict[str, Any] = IDENTITY) -> str:
    req = request(i)
    raw = make_completion(req)
    key = ResponseCache.key_for(identity, req)
    cache.put(key, identity, req, raw, Response.from_chat_completion(raw, 12.5), 12.5)
    return key


def committed_keys(path: Path) -> set[str]:
    """What another process would see: only committed rows."""
    with sqlite3.connect(path) as conn:
        keys = {r[0] for r in conn.execute("SELECT key FROM responses")}
    conn.close()
    return keys


def wait_committed(path: Path, expected: set[str], timeout: float = 5.0) -> set[str]:
    """Committed keys once they equal ``expected`` (the writer thread commits them)."""
    deadline = time.monotonic() + timeout
    while (keys := committed_keys(path)) != expected and time.monotonic() < deadline:
        time.sleep(0.005)
    return keys


def test_key_is_sha256_of_canonical_identity_and_request() -> None:
    req = request(1, temperature=0.0, tools=[{"type": "function", "function": {"name": "f"}}])
    key = ResponseCache.key_for(IDENTITY, req)
    assert len(key) == 64
    assert key == key_from_json(canonical_json(IDENTITY), canonical_json(req))
    # Key order does not matter, any change of content does.
    assert key == ResponseCache.key_for(
        dict(reversed(IDENTITY.items())), dict(reversed(req.items()))
    )
    assert key != ResponseCache.key_for({**IDENTITY, "model": "other"}, req)
    assert key != ResponseCache.key_for(IDENTITY, {**req, "temperature": 0.1})


def test_put_get_round_trip_and_persistence(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "cache.db"
    with ResponseCache(db) as cache:
        key = put(cache, 1)
        entry = cache.get(key)  # visible before commit
        assert entry is not None and entry.response.text == "echo: q 1 ünïcode"
    with ResponseCache(db) as cache:
        entry = cache.get(key)
        assert entry is not None
        assert entry.identity == IDENTITY
        assert entry.request == request(1)
        assert entry.raw == make_completion(request(1)) | {"created": entry.raw["created"]}
        assert entry.response == Response.from_chat_completion(entry.raw, 12.5)
        assert entry.latency_ms == 12.5
        assert entry.created > 0
        assert cache.get("0" * 64) is None
        assert key in cache and len(cache) == 1


def test_get_many(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.db", batch_size=1000) as cache:
        keys = [put(cache, i) for i in range(1200)]
        cache.flush()
        pending_key = put(cache, 5000)
        found = cache.get_many([*keys, pending_key, "missing"])
        assert set(found) == {*keys, pending_key}
        assert found[keys[700]].response.text == "echo: q 700 ünïcode"


def test_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with ResponseCache(db) as cache:
        put(cache, 1)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_writes_are_batched_and_flushed(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with ResponseCache(db, batch_size=4, batch_interval=3600) as cache:
        first = [put(cache, i) for i in range(3)]
        time.sleep(0.1)
        assert committed_keys(db) == set()  # still pending
        first.append(put(cache, 3))  # the 4th answer commits the batch
        assert wait_committed(db, set(first)) == set(first)
        last = put(cache, 4)
        cache.flush()  # flush waits until the answers are on disk
        assert committed_keys(db) == {*first, last}
        assert cache.get(last) is not None


def test_old_answers_are_committed_without_further_calls(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with ResponseCache(db, batch_size=1000, batch_interval=0.05) as cache:
        key = put(cache, 1)
        assert wait_committed(db, {key}) == {key}
        assert cache.maybe_flush() is False  # nothing pending


def test_a_failing_disk_is_an_infrastructure_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: sqlite3.Connection, rows: list[Any]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(cache_module, "_write", broken)
    cache = ResponseCache(tmp_path / "c.db")
    key = put(cache, 1)
    with pytest.raises(InfrastructureError, match="disk I/O error"):
        cache.flush()
    assert cache.get(key) is not None  # still served from memory
    with pytest.raises(InfrastructureError):
        put(cache, 2)
    with pytest.raises(InfrastructureError):
        cache.close()
    assert cache.closed


def test_memory_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a file"):
        ResponseCache(":memory:")


def test_close_commits_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    cache = ResponseCache(db, batch_size=1000, batch_interval=3600)
    key = put(cache, 1)
    cache.close()
    cache.close()
    assert cache.closed
    assert committed_keys(db) == {key}
    with pytest.raises(RuntimeError, match="closed"):
        cache.get(key)


def test_not_a_cache_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(UserError, match=r"damaged .*file is not a database.*cache export"):
        ResponseCache(bad)  # exit 2, with how to recover


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    ResponseCache(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(UserError, match="newer migrate-eval"):
        ResponseCache(db)


def test_recordings_round_trip(tmp_path: Path) -> None:
    other = {**IDENTITY, "model": "other"}
    with ResponseCache(tmp_path / "a.db") as a:
        keys = [put(a, i) for i in range(5)]
        other_key = put(a, 99, other)
        assert a.export_recordings(tmp_path / "all.jsonl") == 6
        assert a.export_recordings(tmp_path / "m.jsonl", identity_filter={"model": "m"}) == 5
        assert (
            a.export_recordings(tmp_path / "o.jsonl", lambda ident: ident["model"] == "other") == 1
        )
        originals = {k: a.get(k) for k in [*keys, other_key]}
    lines = [json.loads(x) for x in (tmp_path / "all.jsonl").read_text("utf-8").splitlines()]
    assert set(lines[0]) >= {"identity", "request", "response", "latency_ms"}
    assert lines[0]["response"]["object"] == "chat.completion"  # the raw body
    with ResponseCache(tmp_path / "b.db") as b:
        assert b.import_recordings(tmp_path / "all.jsonl") == 6
        assert b.keys() == set(originals)  # keys recomputed on import
        for key, original in originals.items():
            copy = b.get(key)
            assert copy is not None and original is not None
            assert copy.raw == original.raw
            assert copy.response == original.response
            assert copy.latency_ms == original.latency_ms
        # Importing again is idempotent.
        assert b.import_recordings(tmp_path / "all.jsonl") == 6
        assert len(b) == 6


def test_a_recordings_file_imported_before_is_not_read_again_while_its_rows_stand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a suite's recordings are imported at every run: once the cache holds exactly what a
    # file's import stored, the file is not parsed again (the demo: 620 lines, ~0.13 s)
    with ResponseCache(tmp_path / "a.db") as a:
        keys = [put(a, i) for i in range(4)]
        a.export_recordings(tmp_path / "rec.jsonl")
        live = {k: a.get(k) for k in keys}
    parsed: list[int] = []
    real = ResponseCache._recording_row

    def counted(src: Path, lineno: int, line: str, now: float) -> Any:
        parsed.append(lineno)
        return real(src, lineno, line, now)

    monkeypatch.setattr(ResponseCache, "_recording_row", staticmethod(counted))
    rec = tmp_path / "rec.jsonl"
    with ResponseCache(tmp_path / "b.db") as b:
        assert b.import_recordings(rec) == 4
        assert len(parsed) == 4
        assert b.import_recordings(rec) == 4  # the same file again: not read
        assert len(parsed) == 4
    with ResponseCache(tmp_path / "b.db") as b:  # the record is in the file, not the process
        assert b.import_recordings(rec) == 4
        assert len(parsed) == 4
        # another answer for one of its requests replaces a recorded row: imported again,
        # and the recording is what the cache holds after it, as on every import before
        req = request(0)
        other = {**make_completion(req), "id": "chatcmpl-live"}
        b.put(keys[0], IDENTITY, req, other, Response.from_chat_completion(other, 1.0), 1.0)
        b.flush()
        assert b.import_recordings(rec) == 4
        assert len(parsed) == 8
        entry = b.get(keys[0])
        assert entry is not None and entry.raw == live[keys[0]].raw  # type: ignore[union-attr]
        # a changed file (one more recording) is imported again
        with ResponseCache(tmp_path / "a.db") as a:
            put(a, 9)
            a.export_recordings(rec)
        assert b.import_recordings(rec) == 5
        assert len(parsed) == 13
        assert len(b) == 5
    # a read-only cache (--offline on a cache it cannot write) that imported the file before
    # answers from its record
    with ResponseCache(tmp_path / "c.db") as c:
        assert c.import_recordings(rec) == 5
    with ResponseCache(tmp_path / "c.db", read_only=True) as c:
        assert c.import_recordings(rec) == 5
        assert len(parsed) == 18  # the first import only


def test_import_hand_written_recording(tmp_path: Path) -> None:
    req = request(7)
    raw = make_completion(req)
    rec = tmp_path / "rec.jsonl"
    rec.write_text(
        json.dumps({"identity": IDENTITY, "request": req, "response": raw, "latency_ms": 80})
        + "\n\n",
        encoding="utf-8",
    )
    with ResponseCache(tmp_path / "c.db") as cache:
        assert cache.import_recordings(rec) == 1
        entry = cache.get(ResponseCache.key_for(IDENTITY, req))
        assert entry is not None
        assert entry.response.text == "echo: q 7 ünïcode"
        assert entry.response.latency_ms == 80
        assert entry.latency_ms == 80.0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"identity": {}, "request": {}}', "field 'response' must be an object"),
        ('{"identity": {}, "request": {}, "response": {}, "latency_ms": "x"}', "latency_ms"),
        ('{"identity": {}, "request": {}, "response": {"choices": []}}', "not a chat completion"),
    ],
)
def test_bad_recording_line_names_the_line_and_stores_nothing(
    tmp_path: Path, line: str, reason: str
) -> None:
    req = request(1)
    good = json.dumps({"identity": IDENTITY, "request": req, "response": make_completion(req)})
    rec = tmp_path / "rec.jsonl"
    rec.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with ResponseCache(tmp_path / "c.db") as cache:
        with pytest.raises(UserError, match=f"rec.jsonl:2: .*{reason}"):
            cache.import_recordings(rec)
        assert len(cache) == 0


def test_missing_recordings_file(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.db") as cache, pytest.raises(UserError, match="cannot read"):
        cache.import_recordings(tmp_path / "nope.jsonl")


# -- stats, timings and the `migrate-eval cache` commands ----------------------------------


def test_stats_per_identity(tmp_path: Path) -> None:
    other = {**IDENTITY, "model": "other"}
    with ResponseCache(tmp_path / "c.db") as cache:
        for i in range(3):
            put(cache, i)
        put(cache, 0, other)
        stats = cache.stats()
    assert [(s.identity["model"], s.answers) for s in stats] == [("m", 3), ("other", 1)]
    assert stats[0].mean_latency_ms == 12.5 and stats[0].oldest <= stats[0].newest


def test_timings_travel_with_recordings(tmp_path: Path) -> None:
    req = request(1)
    raw = make_completion(req)
    response = Response.from_chat_completion(raw, 80.0)
    response.ttft_ms = 21.0
    with ResponseCache(tmp_path / "a.db") as a:
        a.put(ResponseCache.key_for(IDENTITY, req), IDENTITY, req, raw, response, 80.0)
        a.export_recordings(tmp_path / "rec.jsonl")
    line = json.loads((tmp_path / "rec.jsonl").read_text(encoding="utf-8"))
    assert (line["latency_ms"], line["ttft_ms"]) == (80.0, 21.0)
    del line["normalized"]  # a hand-made recording: the timings come from the top level
    (tmp_path / "hand.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    with ResponseCache(tmp_path / "b.db") as b:
        assert b.import_recordings(tmp_path / "hand.jsonl") == 1
        (entry,) = b.entries()
    assert entry.latency_ms == 80.0 and entry.response.ttft_ms == 21.0


def test_cache_cli_export_import_stats(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from migrate_eval.cli import main

    db = tmp_path / "c.db"
    with ResponseCache(db) as cache:
        for i in range(3):
            put(cache, i)
        put(cache, 9, {**IDENTITY, "model": "other"})
    runner = CliRunner()
    out = tmp_path / "m.jsonl"
    res = runner.invoke(main, ["cache", "export", str(out), "--candidate", "m", "--cache", str(db)])
    assert res.exit_code == 0, res.output
    assert "3 answers written" in res.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3
    db2 = tmp_path / "d.db"
    res = runner.invoke(main, ["cache", "import", str(out), "--cache", str(db2)])
    assert res.exit_code == 0 and "3 answers imported" in res.output
    res = runner.invoke(main, ["cache", "stats", "--cache", str(db), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [(r["model"], r["answers"]) for r in data["identities"]] == [("m", 3), ("other", 1)]
    res = runner.invoke(main, ["cache", "stats", "--cache", str(db2)])
    assert res.exit_code == 0 and "3 answers" in res.output
    # Usage errors exit 2 with one line.
    res = runner.invoke(main, ["cache", "stats", "--cache", str(tmp_path / "none.db")])
    assert res.exit_code == 2 and "no response cache" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    res = runner.invoke(main, ["cache", "import", str(bad), "--cache", str(db2)])
    assert res.exit_code == 2 and "bad.jsonl:1" in res.output


def test_cache_cli_export_a_suite_candidate(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from migrate_eval.cli import main

    db = tmp_path / "c.db"
    with ResponseCache(db) as cache:
        put(cache, 1)
        put(cache, 2, {**IDENTITY, "base_url": "http://127.0.0.1:2/v1"})  # same model elsewhere
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: s\nlogs: [log.jsonl]\ncandidates:\n"
        f"  - {{name: local, model: m, base_url: '{IDENTITY['base_url']}'}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "local.jsonl"
    args = ["cache", "export", str(out), "--candidate", "local", "--suite", str(suite)]
    res = CliRunner().invoke(main, [*args, "--cache", str(db)])
    assert res.exit_code == 0 and "1 answers written" in res.output, res.output
    (line,) = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["identity"] == IDENTITY
    res = CliRunner().invoke(main, [*args[:3], "--candidate", "nope", "--suite", str(suite)])
    assert res.exit_code == 2 and "not a candidate" in res.output


# -- leases claimed in batches ---------------------------------------------------------------


def test_claim_many_claims_answers_and_holds_in_one_call(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with ResponseCache(db) as a, ResponseCache(db) as b:
        answered = put(a, 1)  # not committed yet: a knows it is answered
        assert a.claim_many([answered, "k2", "k3", "k2"]) == {
            answered: "answered",
            "k2": "claimed",
            "k3": "claimed",
        }
        a.flush()
        # b sees the committed answer, a's fresh leases, and takes what nobody holds
        assert b.claim_many([answered, "k2", "k3", "k4"]) == {
            answered: "answered",
            "k2": "held",
            "k3": "held",
            "k4": "claimed",
        }
        assert a.claim_many(["k2", "k4"]) == {"k2": "claimed", "k4": "held"}  # its own again
        assert a.claim_many([]) == {}
        a.release(["k2", "k3"])
        assert b.claim_many(["k2", "k3"]) == {"k2": "claimed", "k3": "claimed"}
        assert b.claim("k3") == "claimed"  # claim is claim_many of one key


def test_claim_many_takes_over_dead_and_expired_leases(tmp_path: Path) -> None:
    import socket
    import subprocess

    db = tmp_path / "c.db"
    gone = subprocess.Popen(["true"])
    gone.wait()
    with ResponseCache(db) as a, ResponseCache(db) as b:
        assert a.claim_many(["old"], ttl=-1.0) == {"old": "claimed"}  # expires at once
        with sqlite3.connect(db) as conn:
            conn.executemany(
                "INSERT INTO leases VALUES (?, 'other', ?, ?, 1e12)",
                [
                    ("dead", gone.pid, socket.gethostname()),  # its process is gone
                    ("far", gone.pid, "another-host"),  # another host: cannot tell, wait
                ],
            )
        conn.close()
        assert b.claim_many(["old", "dead", "far"]) == {
            "old": "claimed",
            "dead": "claimed",
            "far": "held",
        }
    with sqlite3.connect(db) as conn:
        owners = dict(conn.execute("SELECT key, owner FROM leases").fetchall())
    conn.close()
    assert owners["dead"] == owners["old"] != "other"


def test_claim_many_renews_its_own_lease(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with ResponseCache(db) as a:
        a.claim_many(["k"], ttl=10.0)
        first = _expires(db, "k")
        a.claim_many(["k"], ttl=1000.0)
        assert _expires(db, "k") > first + 900


def test_claim_many_on_a_read_only_cache_claims_everything(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    ResponseCache(db).close()
    with ResponseCache(db, read_only=True) as ro:
        assert ro.claim_many(["a", "b"]) == {"a": "claimed", "b": "claimed"}


def test_claim_many_of_more_keys_than_one_select_holds(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(cache_module._SELECT_CHUNK * 2 + 3)]
    with ResponseCache(tmp_path / "c.db") as a, ResponseCache(tmp_path / "c.db") as b:
        assert set(a.claim_many(keys).values()) == {"claimed"}
        assert set(b.claim_many(keys).values()) == {"held"}


def _expires(db: Path, key: str) -> float:
    with sqlite3.connect(db) as conn:
        value: float = conn.execute("SELECT expires FROM leases WHERE key = ?", (key,)).fetchone()[
            0
        ]
    conn.close()
    return value
