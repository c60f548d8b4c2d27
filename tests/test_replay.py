"""The replay engine against a loopback OpenAI-compatible server."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange, ReplayResult, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import (
    DROPPED_FIELDS,
    PROGRESS_INTERVAL,
    HedgePolicy,
    ProgressEvent,
    backoff_delay,
    build_request,
    replay,
    replay_async,
)
from tests.servers import LoopbackServer, body_hash
from tests.virtual_time import FakeVendor, run_virtual, use_fake_vendor

REPO = Path(__file__).resolve().parents[1]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def exchange(i: int, text: str | None = None, **extra: Any) -> Exchange:
    req = {
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text if text is not None else f"question {i}"},
        ],
        **extra,
    }
    return Exchange(
        id=f"ex{i}", source=Source(file="log.jsonl", line=i + 1, format="test"), request=req
    )


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: LoopbackServer) -> None:
    server.reset()
    server.delay = 0.0


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    with ResponseCache(tmp_path / "cache.db") as c:
        yield c


def cand(server: LoopbackServer, name: str = "local", **kw: Any) -> CandidateSpec:
    kw.setdefault("model", "llama-3.1-8b")
    return CandidateSpec(name=name, base_url=server.base_url, **kw)


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch) -> FakeVendor:
    """An in-loop endpoint for the timing tests, which run on virtual time (see
    tests/virtual_time.py): exact times, whatever the machine's load."""
    fake = FakeVendor()
    use_fake_vendor(monkeypatch, fake)
    return fake


def replay_virtual(
    exchanges: list[Exchange], candidates: list[CandidateSpec], **kw: Any
) -> tuple[list[ReplayResult], float]:
    """``replay`` on virtual time: the results and the virtual seconds the run took.

    Hedging of hung attempts and cache leases are off here (these tests time the limiter,
    Retry-After and AIMD; tests/test_faults.py tests both): leases are claimed in a worker
    thread, which a virtual clock cannot wait for, and hedging polls on timers."""
    kw.setdefault("hedge", HedgePolicy(enabled=False))
    kw.setdefault("leases", False)
    return run_virtual(replay_async(exchanges, candidates, interruptible=False, **kw))


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# -- build_request -------------------------------------------------------------------------


def test_build_request_swaps_model_drops_account_fields_keeps_the_rest() -> None:
    logged = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 100,
        "stop": ["END"],
        "seed": 1,
        "n": 1,
        **{name: "x" for name in DROPPED_FIELDS},
    }
    spec = CandidateSpec(
        name="c", model="qwen", params={"temperature": 0.0, "seed": None, "max_tokens": 64}
    )
    built = build_request(logged, spec)
    assert built == {
        "model": "qwen",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "temperature": 0.0,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["END"],
        "n": 1,
    }
    # A deep copy: changing the built request leaves the log untouched.
    built["messages"][0]["content"] = "changed"
    built["tools"][0]["function"]["name"] = "changed"
    assert logged["messages"] == [{"role": "user", "content": "hi"}]
    assert WEATHER_TOOL["function"]["name"] == "get_weather"  # type: ignore[index]


def test_params_may_set_a_dropped_field_explicitly() -> None:
    spec = CandidateSpec(name="c", model="m", params={"service_tier": "flex"})
    built = build_request({"messages": [], "service_tier": "default"}, spec)
    assert built["service_tier"] == "flex"


def test_backoff_honours_retry_after_and_caps() -> None:
    from migrate_eval.core.errors import VendorError

    assert 2.0 <= backoff_delay(1, VendorError("x", retry_after=2.0), 0.5) <= 2.25
    assert backoff_delay(1, VendorError("x", retry_after=600.0), 0.5) == 60.0
    delays = [backoff_delay(a, VendorError("x"), 0.5) for a in (1, 2, 3, 20)]
    assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0 and 1.0 <= delays[2] <= 2.0
    assert 30.0 <= delays[3] <= 60.0


# -- replay ---------------------------------------------------------------------------------


def test_replay_success_order_and_faithful_requests(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    exchanges = [
        exchange(0),
        exchange(1, tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False),
        exchange(
            2,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": True},
            },
            temperature=0.7,
            stream=True,
            user="end-user-42",
        ),
    ]
    a, b = cand(server, "a"), cand(server, "b", model="qwen2.5-7b")
    results = replay(exchanges, [a, b], cache=cache)
    assert [(r.exchange_id, r.candidate) for r in results] == [
        (f"ex{i}", c) for i in range(3) for c in ("a", "b")
    ]
    assert all(r.ok and not r.cached and r.attempts == 1 for r in results)
    # What reached the server is exactly build_request's output: tools and schemas unchanged.
    expected = [build_request(ex.request, spec) for ex in exchanges for spec in (a, b)]
    assert sorted(map(body_hash, server.bodies)) == sorted(map(body_hash, expected))
    sent = {(body["model"], body["messages"][-1]["content"]): body for body in server.bodies}
    assert sent[("qwen2.5-7b", "question 1")]["tools"] == [WEATHER_TOOL]
    assert "stream" not in sent[("llama-3.1-8b", "question 2")]
    assert "user" not in sent[("llama-3.1-8b", "question 2")]
    tool_result = results[2].response
    assert tool_result is not None and tool_result.tool_calls[0].name == "get_weather"
    json_result = results[5].response
    assert json_result is not None and json_result.text == '{"echo": "question 2"}'
    assert json_result.model == "qwen2.5-7b"
    assert results[0].latency_ms is not None and results[0].latency_ms > 0


def test_second_run_is_served_from_cache(server: LoopbackServer, cache: ResponseCache) -> None:
    exchanges = [exchange(i) for i in range(20)]
    first = replay(exchanges, [cand(server)], cache=cache)
    assert server.total == 20
    second = replay(exchanges, [cand(server)], cache=cache)
    assert server.total == 20  # nothing sent again
    assert all(r.cached and r.attempts == 0 for r in second)
    assert [r.response for r in second] == [r.response for r in first]
    assert [r.latency_ms for r in second] == [r.latency_ms for r in first]


def test_changed_params_miss_the_cache(server: LoopbackServer, cache: ResponseCache) -> None:
    exchanges = [exchange(i) for i in range(3)]
    replay(exchanges, [cand(server)], cache=cache)
    replay(exchanges, [cand(server, params={"temperature": 0.0})], cache=cache)
    assert server.total == 6


def test_duplicate_requests_are_sent_once(server: LoopbackServer, cache: ResponseCache) -> None:
    exchanges = [exchange(0, "same"), exchange(1, "same"), exchange(2, "other")]
    results = replay(exchanges, [cand(server)], cache=cache)
    assert server.total == 2
    assert [r.exchange_id for r in results] == ["ex0", "ex1", "ex2"]
    assert results[0].response == results[1].response


def test_429_retry_after_is_honoured(vendor: FakeVendor, cache: ResponseCache) -> None:
    vendor.fail(429, retry_after=1.0, match="question 0")
    (result,), _ = replay_virtual([exchange(0)], [CandidateSpec(name="c", model="m")], cache=cache)
    assert result.ok and result.attempts == 2
    assert vendor.total == 2
    # The retry waited for Retry-After (plus at most 0.11 s of jitter), not the short default
    # backoff (0.25-0.5 s).
    assert 1.0 <= vendor.arrivals[1] - vendor.arrivals[0] <= 1.11


def test_429_retry_after_pauses_the_whole_candidate(
    vendor: FakeVendor, cache: ResponseCache
) -> None:
    vendor.delay = 0.05
    vendor.fail(429, retry_after=0.5, match="question 0")
    results, _ = replay_virtual(
        [exchange(i) for i in range(40)],
        [CandidateSpec(name="c", model="m", concurrency=4)],
        cache=cache,
        backoff_base=0.001,
    )
    assert all(r.ok for r in results)
    assert results[0].attempts == 2
    assert vendor.arrivals[:4] == pytest.approx([0.0] * 4, abs=1e-6)  # question 0 among them
    before = [t for t in vendor.arrivals if t < 0.051]
    assert len(before) == 4
    # The 429 came back at 0.05 s: no worker of the candidate sent anything for the 500 ms it
    # asked, then all of them went on.
    assert not [t for t in vendor.arrivals if 0.051 < t < 0.549]
    assert sum(1 for t in vendor.arrivals if t >= 0.549) == 41 - len(before)


def test_5xx_is_retried_then_succeeds(server: LoopbackServer, cache: ResponseCache) -> None:
    server.fail(500, times=1, match="question 1")
    server.fail(503, times=1, match="question 1")
    results = replay(
        [exchange(0), exchange(1)], [cand(server, max_retries=3)], cache=cache, backoff_base=0.01
    )
    assert all(r.ok for r in results)
    assert results[1].attempts == 3
    assert server.total == 4


def test_retries_exhausted_give_an_error_row_and_the_run_goes_on(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    server.fail(503, times=100, match="question 3")
    events: list[ProgressEvent] = []
    results = replay(
        [exchange(i) for i in range(6)],
        [cand(server, max_retries=2)],
        cache=cache,
        backoff_base=0.01,
        progress=events.append,
    )
    bad = results[3]
    assert not bad.ok and bad.response is None
    assert (bad.error_kind, bad.status, bad.attempts) == ("http_503", 503, 3)
    assert bad.error is not None and "503" in bad.error
    assert all(r.ok for i, r in enumerate(results) if i != 3)
    assert events[-1] == ProgressEvent("local", done=6, total=6, errors=1, cached=0)
    # Errors are never cached: the next run tries the failed request again, and only it.
    server.reset()
    again = replay([exchange(i) for i in range(6)], [cand(server)], cache=cache)
    assert server.total == 1 and all(r.ok for r in again)


def test_timeout_gives_an_error_row(server: LoopbackServer, cache: ResponseCache) -> None:
    # A timeout well above a loopback answer's time even on a busy machine, far below the
    # slow answer's: a request that waited for the answer would have succeeded.
    server.slow(60.0, times=5, match="question 1")
    results = replay(
        [exchange(0), exchange(1)],
        [cand(server, timeout=1.0, max_retries=1)],
        cache=cache,
        backoff_base=0.01,
    )
    assert results[0].ok
    assert (results[1].error_kind, results[1].attempts) == ("timeout", 2)


def test_400_is_not_retried(server: LoopbackServer, cache: ResponseCache) -> None:
    server.fail(400, times=5, body='{"error": {"message": "unsupported parameter: seed"}}')
    (result,) = replay([exchange(0)], [cand(server, max_retries=4)], cache=cache)
    assert (result.error_kind, result.status, result.attempts) == ("http_400", 400, 1)
    assert result.error == "HTTP 400: unsupported parameter: seed"
    assert server.total == 1


def test_malformed_body_gives_an_error_row(server: LoopbackServer, cache: ResponseCache) -> None:
    server.malformed('{"object": "chat.completion", "choices": []}', match="question 0")
    results = replay([exchange(0), exchange(1)], [cand(server)], cache=cache)
    assert (results[0].error_kind, results[0].attempts) == ("malformed", 1)  # JSON: not retried
    assert results[1].ok
    assert len(cache) == 1


def test_truncated_or_garbled_200_body_is_retried(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    server.malformed('{"id": "chatcmpl-1", "object": "chat.comp', match="question 0")
    server.malformed("<html>bad gateway</html>", match="question 1", times=10)
    results = replay(
        [exchange(0), exchange(1)], [cand(server, max_retries=2)], cache=cache, backoff_base=0.01
    )
    assert (results[0].ok, results[0].attempts) == (True, 2)
    assert (results[1].error_kind, results[1].attempts) == ("malformed", 3)
    assert "not JSON" in (results[1].error or "")


def test_unreachable_candidate_does_not_stop_the_others(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    dead = CandidateSpec(name="dead", model="m", base_url=dead_url(), max_retries=1)
    results = replay(
        [exchange(0), exchange(1)], [dead, cand(server)], cache=cache, backoff_base=0.01
    )
    assert [(r.candidate, r.ok, r.error_kind) for r in results] == [
        ("dead", False, "connection"),
        ("local", True, None),
    ] * 2


def test_offline_never_touches_the_network(server: LoopbackServer, cache: ResponseCache) -> None:
    exchanges = [exchange(i) for i in range(4)]
    replay(exchanges[:2], [cand(server)], cache=cache)
    server.reset()
    results = replay(exchanges, [cand(server)], cache=cache, offline=True)
    assert server.total == 0
    assert [r.cached for r in results] == [True, True, False, False]
    assert [r.error_kind for r in results] == [None, None, "offline_miss", "offline_miss"]


def test_offline_opens_no_session(cache: ResponseCache, monkeypatch: pytest.MonkeyPatch) -> None:
    import aiohttp

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("offline replay created an HTTP session")

    monkeypatch.setattr(aiohttp, "ClientSession", forbidden)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = CandidateSpec(name="oa", provider="openai", model="gpt-4o")  # no key: fine offline
    (result,) = replay([exchange(0)], [spec], cache=cache, offline=True)
    assert result.error_kind == "offline_miss"


def test_exchanges_without_a_request(server: LoopbackServer, cache: ResponseCache) -> None:
    empty = Exchange(id="e", source=Source(file="f", line=1, format="t"), request={})
    odd = exchange(2, seed=object())  # built in code, not read from a log
    results = replay([empty, exchange(1), odd], [cand(server)], cache=cache)
    assert [r.error_kind for r in results] == ["no_request", None, "no_request"]
    assert results[0].error == "the logged request has no messages to replay"
    assert results[2].error == "the logged request holds values that are not JSON"
    assert server.total == 1


def test_concurrency_is_bounded_per_candidate(cache: ResponseCache) -> None:
    with LoopbackServer(delay=0.05) as srv:
        results = replay([exchange(i) for i in range(24)], [cand(srv, concurrency=3)], cache=cache)
        assert 2 <= srv.max_in_flight <= 3
    assert all(r.ok for r in results)


def test_concurrency_override(cache: ResponseCache) -> None:
    with LoopbackServer(delay=0.05) as srv:
        replay(
            [exchange(i) for i in range(24)], [cand(srv, concurrency=3)], cache=cache, concurrency=6
        )
        assert 4 <= srv.max_in_flight <= 6  # more than the candidate's own 3


def test_progress_events(server: LoopbackServer, cache: ResponseCache) -> None:
    exchanges = [exchange(i) for i in range(5)]
    replay(exchanges[:2], [cand(server)], cache=cache)
    events: list[ProgressEvent] = []
    replay(exchanges, [cand(server)], cache=cache, progress=events.append)
    assert events[0] == ProgressEvent("local", done=2, total=5, errors=0, cached=2)
    done = [e.done for e in events]
    assert done == sorted(done) and done[-1] == 5  # the last event always goes out
    assert events[-1].cached == 2


def test_progress_events_go_out_at_a_bounded_rate(vendor: FakeVendor, cache: ResponseCache) -> None:
    vendor.delay = 0.001  # 400 answers one after the other: 0.4 s (virtual)
    events: list[ProgressEvent] = []
    results, took = replay_virtual(
        [exchange(i) for i in range(400)],
        [CandidateSpec(name="c", model="m", concurrency=1)],
        cache=cache,
        progress=events.append,
    )
    assert all(r.ok for r in results) and took == pytest.approx(0.4)
    # one event every PROGRESS_INTERVAL (0.1 s) and the last one, not one an answer
    assert 4 <= len(events) <= 0.4 / PROGRESS_INTERVAL + 2
    assert events[-1] == ProgressEvent("c", done=400, total=400, errors=0, cached=0)


def test_api_key_sent_but_never_stored(
    server: LoopbackServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-DoNotStoreMe-0123456789abcdef"
    monkeypatch.setenv("VENDOR_API_KEY", secret)
    db = tmp_path / "secret.db"
    spec = cand(server, api_key_env="VENDOR_API_KEY")
    with ResponseCache(db) as cache:
        results = replay([exchange(i) for i in range(10)], [spec], cache=cache)
        assert all(r.ok for r in results)
        files = [p for p in tmp_path.iterdir() if p.name.startswith("secret.db")]
        assert any(p.name.endswith("-wal") for p in files)
        for p in files:  # the database and its WAL while the cache is open
            assert secret.encode() not in p.read_bytes(), p.name
        cache.export_recordings(tmp_path / "rec.jsonl")
    assert server.auth_headers == [f"Bearer {secret}"] * 10
    for p in tmp_path.iterdir():
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p.name
    assert all(secret not in repr(r) for r in results)


def test_missing_api_key_is_a_config_error(server: LoopbackServer, cache: ResponseCache) -> None:
    spec = cand(server, api_key_env="MIGRATE_EVAL_TEST_NOT_SET")
    with pytest.raises(ConfigError, match="MIGRATE_EVAL_TEST_NOT_SET"):
        replay([exchange(i) for i in range(3)], [spec], cache=cache)
    assert server.total == 0


def test_missing_api_key_error_counts_what_the_cache_lacks(
    server: LoopbackServer, cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGRATE_EVAL_TEST_KEY", "k")
    spec = cand(server, api_key_env="MIGRATE_EVAL_TEST_KEY")
    replay([exchange(i) for i in range(3)], [spec], cache=cache)  # three answers cached
    monkeypatch.delenv("MIGRATE_EVAL_TEST_KEY")
    with pytest.raises(ConfigError) as info:
        replay([exchange(i) for i in range(5)], [spec], cache=cache)
    message = str(info.value)
    assert "MIGRATE_EVAL_TEST_KEY is not set" in message
    assert "local: 2 of 5" in message and "--offline" in message
    offline = replay([exchange(i) for i in range(5)], [spec], cache=cache, offline=True)
    assert [r.ok for r in offline] == [True, True, True, False, False]


def test_a_config_error_stops_every_candidate(server: LoopbackServer, cache: ResponseCache) -> None:
    server.delay = 0.05
    good = cand(server, "good", concurrency=1)
    keyless = cand(server, "keyless", api_key_env="MIGRATE_EVAL_TEST_NOT_SET")
    with pytest.raises(ConfigError):
        replay([exchange(i) for i in range(40)], [good, keyless], cache=cache)
    assert server.total <= 2  # the good candidate stopped too, not after its 40 requests


def test_answers_received_before_a_fatal_error_are_kept(
    server: LoopbackServer, cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate_eval.replay.providers import OpenAICompatibleProvider

    original = OpenAICompatibleProvider.complete
    calls = Counter[str]()

    async def flaky(self: OpenAICompatibleProvider, request: dict[str, Any]) -> Any:
        calls["n"] += 1
        if request["messages"][-1]["content"] == "question 3":
            raise RuntimeError("bug in a provider")
        return await original(self, request)

    monkeypatch.setattr(OpenAICompatibleProvider, "complete", flaky)
    with pytest.raises(RuntimeError, match="bug in a provider"):
        replay([exchange(i) for i in range(4)], [cand(server, concurrency=1)], cache=cache)
    assert len(cache) == 3  # the three answers before the bug were committed


# -- the SIGKILL test -----------------------------------------------------------------------

_CHILD = """
import sys
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.core.records import Exchange, ReplayResult, Source
from migrate_eval.replay.engine import replay
from migrate_eval.core.suite import CandidateSpec

base_url, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
exchanges = [
    Exchange(id=f"k{i}", source=Source(file="f", line=i + 1, format="t"),
             request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"kill {i}"}]})
    for i in range(n)
]
spec = CandidateSpec(name="victim", model="m", base_url=base_url, concurrency=8, max_retries=0)
with ResponseCache(db) as cache:
    results = replay(exchanges, [spec], cache=cache)
sys.exit(0 if all(r.ok for r in results) else 1)
"""


def _kill_child(base_url: str, db: Path, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, base_url, str(db), str(n)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_at_any_point_loses_nothing_committed_and_resends_only_the_rest(
    tmp_path: Path,
) -> None:
    n = 300
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    db = tmp_path / "kill.db"
    with LoopbackServer(delay=0.02) as srv:
        spec = CandidateSpec(name="victim", model="m", base_url=srv.base_url)
        identity = {"provider": "openai-compatible", "base_url": srv.base_url, "model": "m"}
        requests = [
            build_request(
                {"model": "gpt-4o", "messages": [{"role": "user", "content": f"kill {i}"}]}, spec
            )
            for i in range(n)
        ]
        key_of = [ResponseCache.key_for(identity, r) for r in requests]
        hash_of = [body_hash(r) for r in requests]
        committed: set[int] = set()
        kills = 0
        for round_no in range(7):
            remaining = n - len(committed)
            kill = round_no < 5  # at least five kills, each at a random point
            before = srv.counts
            started_total = srv.total
            child = _kill_child(srv.base_url, db, n)
            try:
                if kill:
                    # Each kill lands within the first quarter of what is left (>= 70 left
                    # after five kills), so the child is always killed mid-run.
                    target = started_total + rng.randint(5, max(6, remaining // 4))
                    deadline = time.monotonic() + 20
                    while srv.total < target and child.poll() is None:
                        assert time.monotonic() < deadline, "child made no progress"
                        time.sleep(0.001)
                    child.send_signal(signal.SIGKILL)
                _, stderr = child.communicate(timeout=25)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.communicate()
            msg = f"seed={seed} round={round_no} killed={kill}"
            sent = srv.counts - before
            # Nothing committed before this run was sent again, nothing was sent twice.
            assert not any(sent[hash_of[i]] for i in committed), msg
            assert all(c == 1 for c in sent.values()), msg
            with ResponseCache(db) as cache:
                keys = cache.keys()
                now_committed = {i for i, k in enumerate(key_of) if k in keys}
            assert committed <= now_committed, msg  # commits survive the kill
            if kill:
                assert child.returncode == -signal.SIGKILL, msg
                kills += 1
            else:
                assert child.returncode == 0, f"{msg}: {stderr.decode(errors='replace')}"
                # The completing run sent exactly what had not been committed.
                expected = {hash_of[i] for i in range(n) if i not in committed}
                assert set(sent) == expected, msg
                assert now_committed == set(range(n)), msg
                assert kills >= 5, msg
                break
            committed = now_committed
        else:  # pragma: no cover
            pytest.fail("the last round did not complete")
        assert srv.total >= n


# -- rate limits and adaptive concurrency ---------------------------------------------------


def test_requests_per_minute_limit_spaces_the_requests(
    vendor: FakeVendor, cache: ResponseCache
) -> None:
    # 3,000 a minute = 50/s with bursts of 50: after the burst, one request every 20 ms.
    results, _ = replay_virtual(
        [exchange(i) for i in range(80)], [CandidateSpec(name="c", model="m", rpm=3000)],
        cache=cache,
    )  # fmt: skip
    assert all(r.ok for r in results)
    arrivals = sorted(vendor.arrivals)
    assert arrivals == pytest.approx([0.0] * 50 + [0.02 * (i + 1) for i in range(30)], abs=1e-6)
    # No window of one second holds more than the burst plus one second's worth.
    assert all(sum(1 for a in arrivals if t <= a < t + 1.0) <= 100 for t in arrivals)


def test_tokens_per_minute_limit_throttles_on_estimates_then_usage(
    vendor: FakeVendor, cache: ResponseCache
) -> None:
    # Each request is estimated at ~1,016 tokens (max_tokens=1000 counts as output): at
    # 120,000 a minute (2,000/s, bursts of 4,096) four go at once and the next two are due
    # after ~0.5 s and ~1 s. The first four answer after 0.3 s reporting 8 tokens each:
    # the difference is given back and the two waiting requests leave at once.
    vendor.delay = 0.3
    events: list[ProgressEvent] = []
    results, took = replay_virtual(
        [exchange(i, max_tokens=1000) for i in range(6)],
        [CandidateSpec(name="c", model="m", tpm=120_000, concurrency=6)],
        cache=cache,
        progress=events.append,
    )
    assert all(r.ok for r in results) and vendor.total == 6
    # The fifth and sixth waited for the first answers, and not for their estimates.
    assert vendor.arrivals == pytest.approx([0.0] * 4 + [0.3] * 2, abs=1e-6)
    assert events[-1].throttled_s == pytest.approx(0.6)  # 0.3 s each
    assert took == pytest.approx(0.6)  # not the ~1.3 s the estimates alone would take


def test_429s_shrink_concurrency_then_it_recovers(vendor: FakeVendor, cache: ResponseCache) -> None:
    vendor.delay = 0.02
    vendor.fail(429, times=8)  # the first round of requests is rejected, without Retry-After
    events: list[ProgressEvent] = []
    results, _ = replay_virtual(
        [exchange(i) for i in range(160)],
        [CandidateSpec(name="c", model="m", concurrency=8)],
        cache=cache,
        backoff_base=0.01,
        progress=events.append,
    )
    assert all(r.ok for r in results)
    seen = vendor.in_flight_at_arrival
    assert max(seen[:8]) == 8  # full concurrency at first
    assert max(seen[8:12]) <= 4  # halved once (not once per 429) after the burst
    assert max(seen[-40:]) == 8  # recovered
    limits = [e.in_flight_limit for e in events if e.in_flight_limit is not None]
    assert limits[-1] == 8  # (the dip is too short-lived to show in progress events)


def test_retry_after_still_pauses_with_adaptive_concurrency(
    vendor: FakeVendor, cache: ResponseCache
) -> None:
    vendor.fail(429, times=1, retry_after=0.3)
    results, _ = replay_virtual([exchange(0)], [CandidateSpec(name="c", model="m")], cache=cache)
    assert results[0].ok and results[0].attempts == 2
    assert vendor.arrivals[1] - vendor.arrivals[0] >= 0.3


# -- streaming ------------------------------------------------------------------------------


def test_streaming_reassembles_text_and_records_time_to_first_token(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    server.delay = 0.05
    server.chunk_delay = 0.03
    streamed = replay([exchange(0)], [cand(server, name="s", stream=True)], cache=cache)[0]
    assert streamed.ok and streamed.response is not None and not streamed.cached
    assert streamed.response.text == "echo: question 0"
    assert streamed.response.finish_reason == "stop"
    usage = streamed.response.usage  # from the include_usage chunk
    assert usage is not None and usage.completion_tokens == 3 and usage.prompt_tokens == 5
    ttft, latency = streamed.response.ttft_ms, streamed.latency_ms
    assert ttft is not None and latency is not None
    assert ttft >= 50 and latency - ttft >= 3 * 30 * 0.8  # text in 3 chunks, then finish
    sent = server.bodies[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    # Streaming does not change the cache key: a plain candidate of the same endpoint and
    # model reuses the answer (and its timings).
    plain = replay([exchange(0)], [cand(server, name="plain")], cache=cache)[0]
    assert plain.cached and plain.response == streamed.response and server.total == 1


def test_streamed_tool_calls_and_the_cache_stores_a_plain_completion(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    ex = exchange(0, "Paris?", tools=[WEATHER_TOOL], tool_choice="required")
    first = replay([ex], [cand(server, stream=True)], cache=cache)[0]
    assert first.ok and first.response is not None and not first.cached
    (call,) = first.response.tool_calls
    assert call.name == "get_weather" and call.parsed_arguments == {"text": "Paris?"}
    assert first.response.finish_reason == "tool_calls"
    assert first.response.ttft_ms is not None
    (entry,) = cache.entries()
    assert entry.raw["object"] == "chat.completion"
    message = entry.raw["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["arguments"] == '{"text": "Paris?"}'
    again = replay([ex], [cand(server, stream=True)], cache=cache)[0]
    assert again.cached and again.response == first.response  # ttft kept with the answer
    assert server.total == 1


def test_streaming_errors_become_error_rows(server: LoopbackServer, cache: ResponseCache) -> None:
    server.fail(400, times=1)
    results = replay(
        [exchange(0), exchange(1)], [cand(server, stream=True, max_retries=0)], cache=cache
    )
    assert results[0].error_kind == "http_400"
    assert results[1].ok


def test_reassemble_stream_merges_tool_call_fragments_by_index() -> None:
    from migrate_eval.replay.providers.openai_compatible import reassemble_stream

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c1",
            "model": "m",
            "choices": [{"index": 0, "delta": d, "finish_reason": finish}],
        }

    body = reassemble_stream(
        [
            delta({"role": "assistant"}),
            delta(
                {
                    "tool_calls": [
                        {"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x"'}}
                    ]
                }
            ),
            delta(
                {
                    "tool_calls": [
                        {"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}
                    ]
                }
            ),
            delta({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
            delta({}, "tool_calls"),
            {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
        ]
    )
    message = body["choices"][0]["message"]
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == ['{"x": 1}', "{}"]
    assert [c["id"] for c in message["tool_calls"]] == ["a", "b"]
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["usage"]["completion_tokens"] == 4 and body["id"] == "c1"


# -- the baseline re-run --------------------------------------------------------------------


def test_baseline_repeats_are_fresh_calls_then_cached(
    server: LoopbackServer, cache: ResponseCache, tmp_path: Path
) -> None:
    from migrate_eval.replay.baseline import (
        baseline_spec,
        read_baseline,
        replay_baseline,
        write_baseline,
    )

    exchanges = [exchange(i) for i in range(3)]
    spec = baseline_spec(exchanges).model_copy(update={"base_url": server.base_url})
    assert (spec.name, spec.provider, spec.model) == ("baseline", "openai", "gpt-4o-2024-08-06")
    spec = spec.model_copy(update={"api_key_env": "MIGRATE_EVAL_TEST_KEY"})
    os.environ["MIGRATE_EVAL_TEST_KEY"] = "sk-test-baseline-0000"
    try:
        rows = replay_baseline(exchanges, spec, cache=cache, repeats=3)
        assert [(r.exchange_id, r.repeat) for r in rows] == [
            (f"ex{i}", k) for i in range(3) for k in range(3)
        ]
        assert all(r.ok and not r.cached for r in rows)
        assert server.total == 9  # identical requests, sent once per repeat
        again = replay_baseline(exchanges, spec, cache=cache, repeats=3)
        assert all(r.cached for r in again) and server.total == 9
    finally:
        del os.environ["MIGRATE_EVAL_TEST_KEY"]
    write_baseline(tmp_path / "baseline.jsonl", rows)
    assert read_baseline(tmp_path / "baseline.jsonl") == rows


# -- Ctrl-C ---------------------------------------------------------------------------------

_SIGINT_CHILD = """
import sys
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.core.records import Exchange, ReplayResult, Source
from migrate_eval.replay.engine import ReplayInterrupted, replay
from migrate_eval.core.suite import CandidateSpec

base_url, db, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
exchanges = [
    Exchange(id=f"k{i}", source=Source(file="f", line=i + 1, format="t"),
             request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"int {i}"}]})
    for i in range(n)
]
spec = CandidateSpec(name="victim", model="m", base_url=base_url, concurrency=4, max_retries=0)
with ResponseCache(db, batch_interval=60.0, batch_size=10_000) as cache:
    try:
        replay(exchanges, [spec], cache=cache)
    except ReplayInterrupted as e:
        kinds = {r.error_kind for r in e.results if not r.ok}
        print(f"INTERRUPTED {e.answered} {e.missing} {sorted(k or '' for k in kinds)}", flush=True)
        sys.exit(e.exit_code)
sys.exit(0)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])  # Ctrl-C; a cancelled CI job or pod
def test_ctrl_c_stops_sending_commits_the_cache_and_the_rerun_resumes(
    tmp_path: Path, stop: str
) -> None:
    n = 60
    db = tmp_path / "int.db"
    with LoopbackServer(delay=0.1) as srv:
        child = subprocess.Popen(
            [sys.executable, "-c", _SIGINT_CHILD, srv.base_url, str(db), str(n)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 20
            while srv.total < 10 and child.poll() is None:
                assert time.monotonic() < deadline, "child made no progress"
                time.sleep(0.005)
            child.send_signal(getattr(signal, stop))
            out, err = child.communicate(timeout=20)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        assert child.returncode == 130, err.decode(errors="replace")
        words = out.decode().split(maxsplit=3)
        assert words[0] == "INTERRUPTED", out
        answered, missing = int(words[1]), int(words[2])
        assert answered + missing == n and 0 < answered < n
        assert words[3].strip() == "['interrupted']"
        sent_first = srv.total
        time.sleep(0.3)
        assert srv.total == sent_first  # nothing more was sent after Ctrl-C
        # Every answer received was committed (despite a batch interval of a minute).
        with ResponseCache(db) as cache:
            assert len(cache) == answered
        srv.reset()
        spec = CandidateSpec(name="victim", model="m", base_url=srv.base_url, concurrency=8)
        again = [
            Exchange(
                id=f"k{i}",
                source=Source(file="f", line=i + 1, format="t"),
                request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"int {i}"}]},
            )
            for i in range(n)
        ]
        with ResponseCache(db) as cache:
            results = replay(again, [spec], cache=cache)
        assert all(r.ok for r in results)
        assert srv.total == missing  # the re-run sent only what had not been answered
        assert sum(r.cached for r in results) == answered


_CACHED_STOP_CHILD = """
import os, signal, sys, tempfile
from pathlib import Path
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.store import Spill
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay import engine
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import ReplayInterrupted, replay

base_url, db, n, on_disk = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "disk"
exchanges = [
    Exchange(id=f"k{i}", source=Source(file="f", line=i + 1, format="t"),
             request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"c {i}"}]})
    for i in range(n)
]
spec = CandidateSpec(name="victim", model="m", base_url=base_url, concurrency=4, max_retries=0)
with ResponseCache(db) as cache:  # every answer in the cache first
    assert all(r.ok for r in replay(exchanges, [spec], cache=cache))
engine._Planner.WINDOW = engine._Planner.HELD_WINDOW = 16
heard = 0

def hear(i, result):
    global heard
    heard += 1
    if heard == 5:  # a pod stopped while the cache answers
        os.kill(os.getpid(), signal.SIGTERM)

with tempfile.TemporaryDirectory() as folder, Spill(Path(folder)) as spill:
    with ResponseCache(db) as cache:
        try:
            replay(exchanges, [spec], cache=cache, on_result=hear,
                   spill=spill if on_disk else None)
        except ReplayInterrupted as e:
            stopped = [r.exchange_id for r in e.results if r.error_kind == "interrupted"]
            print("INTERRUPTED", e.answered, e.missing, heard, len(e.results), len(stopped),
                  stopped[0] if stopped else "-", flush=True)
            sys.exit(e.exit_code)
print("FINISHED", heard, flush=True)
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("where", ["disk", "memory"])
def test_sigterm_stops_a_replay_the_cache_answers(tmp_path: Path, where: str) -> None:
    """A run the cache answers sends nothing: its planning must still let the stop signal in
    (it used to plan every window in one call, deaf to SIGTERM, then go on scoring)."""
    n = 400
    with LoopbackServer() as srv:
        child = subprocess.run(
            [sys.executable, "-c", _CACHED_STOP_CHILD, srv.base_url, str(tmp_path / "c.db"),
             str(n), where],
            cwd=REPO, capture_output=True, timeout=120,
        )  # fmt: skip
        assert srv.total == n  # the first pass; the second sent nothing
    assert child.returncode == 130, (child.stdout + child.stderr).decode(errors="replace")
    word, answered, missing, heard, rows, stopped, first = child.stdout.decode().split()
    assert word == "INTERRUPTED"
    # stopped a few windows of 16 in, not after all 400 rows were served
    assert int(answered) == int(heard) < 100
    assert int(missing) == int(stopped) == n - int(answered)
    assert int(rows) == n and first == f"k{answered}"  # every row there, the rest interrupted


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_the_replay_puts_back_the_signal_handlers_it_found(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    # the command's SIGTERM handler (stop as on Ctrl-C) must hold after the replay too:
    # asyncio's own removal left Python's default, which kills the process outright
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    before = signal.signal(signal.SIGTERM, mine)
    sigint = signal.getsignal(signal.SIGINT)  # ignored where the test runs in the background
    try:
        rows = replay([exchange(i) for i in range(3)], [cand(server)], cache=cache)
        assert server.total == 3 and all(r.ok for r in rows)
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is sigint
    finally:
        signal.signal(signal.SIGTERM, before)


# -- progress display -----------------------------------------------------------------------


def test_progress_board_rate_eta_cached_errors_and_concurrency() -> None:
    from migrate_eval.replay.progress import ProgressBoard

    out: list[str] = []
    now = [0.0]
    board = ProgressBoard(out.append, redraw=False, log_interval=5.0, clock=lambda: now[0])
    board(ProgressEvent("llama", done=500, total=2000, errors=0, cached=500))  # cache hits
    assert "cached 500" in out[-1] and "ETA ?" in out[-1]  # no live answer yet
    for step in range(1, 11):  # then 10 fetched answers a second, 2 errors
        now[0] = float(step)
        board(
            ProgressEvent(
                "llama", done=500 + 10 * step, total=2000, errors=2, cached=500, in_flight_limit=4
            )
        )
    last = out[-1]
    assert "600/2000" in last and " 30%" in last
    assert "10/s" in last and "ETA 2:20" in last  # 1,400 left at 10/s
    assert "errors 2" in last and "concurrency 4" in last
    assert len(out) == 3  # at most one line every 5 s in a log
    board(ProgressEvent("llama", done=2000, total=2000, errors=2, cached=500))
    assert "done" in out[-1] and len(out) == 4  # the final state is always shown


def test_progress_board_redraws_in_place_on_a_terminal() -> None:
    from migrate_eval.replay.progress import ProgressBoard

    out: list[str] = []
    board = ProgressBoard(out.append, redraw=True, interval=0.0)
    board(ProgressEvent("a", done=1, total=2, errors=0))
    board(ProgressEvent("bb", done=1, total=2, errors=0))
    assert out[0].count("\n") == 1 and out[1].startswith("\x1b[1F")
    assert out[1].count("\n") == 2


# -- planning as the workers take requests -------------------------------------------------


def test_the_first_requests_leave_before_every_request_is_built(
    vendor: FakeVendor, cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run held in memory is planned a window at a time as its workers take requests: the
    first leave after a window of requests was built, not after all of them (which held a
    10,000-request run's first request back ~0.25 s)."""
    import migrate_eval.replay.engine as engine

    built = [0]
    at_first_arrival: list[int] = []
    real_json, real_complete = engine.canonical_json, vendor.complete

    def counting(value: Any) -> str:
        built[0] += 1
        return real_json(value)

    async def complete(request: dict[str, Any]) -> Any:
        if not at_first_arrival:
            at_first_arrival.append(built[0])
        return await real_complete(request)

    monkeypatch.setattr(engine, "canonical_json", counting)
    monkeypatch.setattr(vendor, "complete", complete)
    vendor.delay = 0.1
    n = 3 * engine._Planner.HELD_WINDOW
    results, _ = replay_virtual(
        [exchange(i) for i in range(n)],
        [CandidateSpec(name="c", model="m", concurrency=8)],
        cache=cache,
    )
    assert all(r.ok for r in results) and vendor.total == n
    assert at_first_arrival == [engine._Planner.HELD_WINDOW + 1]  # + the identity's


def test_repeated_requests_planned_in_later_windows_share_the_call(
    vendor: FakeVendor, cache: ResponseCache
) -> None:
    """A row whose request was planned in an earlier window joins its call (still waiting or
    in flight) or, when that call is over, gets its result: one call per distinct request,
    and the same result as when every row was planned at once."""
    from migrate_eval.replay.engine import _Planner

    window = _Planner.HELD_WINDOW
    n = 3 * window
    texts = [f"question {i}" for i in range(n)]
    repeats = {window + 40: 0, window + 44: window - 4, 2 * window + 7: 3, 2 * window + 9: 0}
    for row, first in repeats.items():
        texts[row] = texts[first]
    vendor.delay = 0.1
    results, _ = replay_virtual(
        [exchange(i, texts[i]) for i in range(n)],
        [CandidateSpec(name="c", model="m", concurrency=8)],
        cache=cache,
    )
    assert vendor.total == len(set(texts)) == n - len(repeats)
    assert [r.exchange_id for r in results] == [f"ex{i}" for i in range(n)]
    assert all(r.ok and not r.cached for r in results)
    for row, first in repeats.items():
        assert results[row].model_dump(exclude={"exchange_id"}) == results[first].model_dump(
            exclude={"exchange_id"}
        )


def test_a_failed_request_repeated_in_a_later_window_fails_the_same_way(
    vendor: FakeVendor, cache: ResponseCache
) -> None:
    from migrate_eval.replay.engine import _Planner

    n = 2 * _Planner.HELD_WINDOW
    texts = [f"question {i}" for i in range(n)]
    texts[n - 1] = "broken question"
    texts[0] = "broken question"
    vendor.fail(400, times=10, match="broken")
    results, _ = replay_virtual(
        [exchange(i, texts[i]) for i in range(n)],
        [CandidateSpec(name="c", model="m", concurrency=8)],
        cache=cache,
    )
    assert vendor.total == n - 1  # one call for the two rows (a 400 is not retried)
    assert results[0].error_kind == results[n - 1].error_kind == "http_400"
    assert results[n - 1].model_dump(exclude={"exchange_id"}) == results[0].model_dump(
        exclude={"exchange_id"}
    )
    assert sum(1 for r in results if not r.ok) == 2
