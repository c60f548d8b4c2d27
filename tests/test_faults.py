"""Vendors that misbehave: hung requests, 429 bursts, Retry-After, dead endpoints.

Loopback servers and event counts (requests the server saw, their order, attempts): no
assertion on wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import CircuitOpenError, VendorError
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import CircuitBreaker, HedgePolicy, replay
from migrate_eval.replay.providers import VendorConnectionError
from migrate_eval.replay.ratelimit import AdaptiveConcurrency
from tests.servers import LoopbackServer


def exchange(i: int) -> Exchange:
    req = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"<q{i}> question"}]}
    return Exchange(
        id=f"ex{i}", source=Source(file="log.jsonl", line=i + 1, format="t"), request=req
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


def cand(base_url: str, **kw: Any) -> CandidateSpec:
    kw.setdefault("model", "m")
    return CandidateSpec(name="c", base_url=base_url, **kw)


def dead_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def users(server: LoopbackServer) -> list[str]:
    return [b["messages"][-1]["content"] for b in server.bodies]


# -- AIMD -----------------------------------------------------------------------------------


def test_a_burst_of_429s_halves_once_and_the_limit_climbs_back_in_a_round() -> None:
    async def go() -> AdaptiveConcurrency:
        limit = AdaptiveConcurrency(maximum=32)
        gens = [await limit.acquire() for _ in range(32)]
        for g in gens[:10]:  # 10 of the 32 requests sent together come back 429
            limit.release(g, "overload")
        for g in gens[10:]:
            limit.release(g, "ok")
        assert limit.decreases == 1  # one burst, one decrease (not ten)
        assert limit.current == 32  # and the 22 successes of the round brought it back
        limit.release(await limit.acquire(), "overload")  # a new round's 429: halves again
        assert limit.current == 16
        successes = 0
        while limit.current < 32:
            limit.release(await limit.acquire(), "ok")
            successes += 1
        assert successes == 16  # +1 per success up to where it was: one round
        return limit

    history = asyncio.run(go()).history
    assert history[0] == 16 and history[-1] == 32 and min(history) == 16


def test_above_the_last_ceiling_the_limit_grows_additively() -> None:
    async def go() -> int:
        limit = AdaptiveConcurrency(maximum=16)
        limit.limit = limit.ceiling = 4.0
        successes = 0
        while limit.current < 8:
            limit.release(await limit.acquire(), "ok")
            successes += 1
        return successes

    assert asyncio.run(go()) >= 4 + 5 + 6 + 7 - 4  # about +1 per round, not per success


# -- Retry-After pauses the candidate --------------------------------------------------------


def test_a_429_with_retry_after_pauses_every_worker_of_the_candidate(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    server.delay = 0.02
    server.fail(429, times=1, retry_after="1", match="<q0>")
    results = replay(
        [exchange(i) for i in range(40)],
        [cand(server.base_url, concurrency=4)],
        cache=cache,
    )
    assert all(r.ok for r in results)
    seen = users(server)
    first, retry = (i for i, u in enumerate(seen) if u.startswith("<q0>"))
    # Between the 429 and its retry, only the requests already in flight when it came back
    # (3) and at most one per other worker (the engine runs 2 x concurrency) when the pause
    # ended reach the vendor; before the fix the other workers went on sending for the
    # whole second (all 39 other requests).
    assert retry - first - 1 <= 3 + 7


# -- hung requests ----------------------------------------------------------------------------

FAST_HEDGE = HedgePolicy(min_delay=0.5, min_samples=3, factor=3.0, initial_share=0.0)


def test_a_hung_request_is_hedged_and_the_hung_attempt_frees_its_slot(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    server.slow(30.0, match="<q2>")  # the first attempt of q2 hangs (timeout is 60 s)
    results = replay(
        [exchange(i) for i in range(12)],
        [cand(server.base_url, concurrency=1, timeout=60.0)],
        cache=cache,
        hedge=FAST_HEDGE,
    )
    assert all(r.ok for r in results)
    assert results[2].attempts == 2  # the hedge answered
    assert [r.attempts for r in results if r.exchange_id != "ex2"] == [1] * 11
    assert server.total == 13
    # concurrency 1: the hung attempt was cancelled when its hedge answered, else the
    # other ten requests could not have been sent before it timed out
    assert users(server)[-1].startswith("<q11>")


def test_hedges_are_capped_so_a_slow_vendor_is_not_asked_everything_twice(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    server.delay = 0.2  # every answer is slow compared with the hedge delay
    policy = HedgePolicy(min_delay=0.01, min_samples=1000, initial_share=0.0, budget=0.1)
    results = replay(
        [exchange(i) for i in range(20)],
        [cand(server.base_url, concurrency=4)],
        cache=cache,
        hedge=policy,
    )
    assert all(r.ok for r in results)
    assert server.total <= 20 + max(policy.min_budget, 2 + 2)


def test_hedge_delay_follows_the_latencies_seen() -> None:
    policy = HedgePolicy(factor=4.0, min_delay=1.0, min_samples=10)
    assert policy.delay([0.1] * 5, timeout=60.0) == 15.0  # no history yet: a share of timeout
    assert policy.delay([0.5] * 50, timeout=60.0) == 2.0
    assert policy.delay([0.1] * 50, timeout=60.0) == 1.0  # never below min_delay
    assert policy.delay([20.0] * 50, timeout=60.0) is None  # not before the timeout anyway
    assert HedgePolicy(enabled=False).delay([0.1] * 50, timeout=60.0) is None


# -- dead endpoints: the circuit breaker --------------------------------------------------------


def test_a_dead_endpoint_fails_fast_with_its_own_error_text(cache: ResponseCache) -> None:
    results = replay(
        [exchange(i) for i in range(60)],
        [cand(dead_url(), concurrency=4, max_retries=4)],
        cache=cache,
        backoff_base=0.01,
        breaker_threshold=6,
    )
    assert {r.error_kind for r in results} == {"connection"}
    attempts = sum(r.attempts for r in results)
    assert attempts <= 6 + 4  # the threshold, plus what was in flight; not 60 x 5
    assert all("connect" in (r.error or "").lower() for r in results)
    assert sum("were not sent" in (r.error or "") for r in results) >= 50


def test_repeated_401s_open_the_circuit_and_name_the_vendors_message(
    server: LoopbackServer, cache: ResponseCache
) -> None:
    server.fail(
        401, times=1000, body='{"error": {"message": "Incorrect API key provided: sk-abc...xyz"}}'
    )
    results = replay(
        [exchange(i) for i in range(50)],
        [cand(server.base_url, concurrency=2)],
        cache=cache,
        breaker_threshold=5,
    )
    assert {r.error_kind for r in results} == {"http_401"}
    assert server.total <= 5 + 2
    assert all("Incorrect API key provided" in (r.error or "") for r in results)


def test_the_breaker_stays_closed_once_the_endpoint_answered() -> None:
    breaker = CircuitBreaker(threshold=2)
    refused = VendorConnectionError("connection failed: refused")
    breaker.failure(refused)
    breaker.success()
    for _ in range(10):
        breaker.failure(refused)
    assert breaker.tripped is None


def test_different_failures_do_not_open_the_breaker() -> None:
    breaker = CircuitBreaker(threshold=3)
    for i in range(10):
        breaker.failure(VendorError(f"HTTP 401: key {i % 2}", status=401))
        breaker.failure(VendorError("HTTP 500: boom", status=500, retryable=True))
    assert breaker.tripped is None
    for _ in range(3):
        breaker.failure(VendorError("HTTP 401: bad key", status=401))
    assert isinstance(breaker.tripped, CircuitOpenError)
    assert breaker.tripped.error_kind == "http_401"


# -- soak (small): a vendor that misbehaves in every way at once ------------------------------


def test_a_flaky_vendor_run_accounts_for_every_exchange(cache: ResponseCache) -> None:
    from tests.servers import Flaky

    flaky = Flaky(p429=0.1, p5xx=0.1, p_garbage=0.05, p_hang=0.03, hang=30.0, seed=7)
    with LoopbackServer(delay=0.01, flaky=flaky, max_requests=1000) as srv:
        results = replay(
            [exchange(i) for i in range(80)],
            [cand(srv.base_url, concurrency=8, max_retries=6)],
            cache=cache,
            backoff_base=0.01,
            hedge=FAST_HEDGE,
        )
        sent = srv.total
    assert sorted(r.exchange_id for r in results) == sorted(f"ex{i}" for i in range(80))
    assert sum(r.ok for r in results) >= 78  # 6 retries: a failure is (0.28)^7 unlikely
    assert len(cache) == sum(r.ok for r in results)
    assert sent <= 80 * 2  # retries and hedges, not everything twice
