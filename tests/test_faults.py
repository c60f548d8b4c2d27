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
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import CircuitBreaker, HedgePolicy, replay, replay_async
from migrate_eval.replay.providers import ProviderResponse, VendorConnectionError
from migrate_eval.replay.ratelimit import AdaptiveConcurrency
from tests.servers import LoopbackServer
from tests.virtual_time import FakeVendor, run_virtual, use_fake_vendor


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


class _ScriptedVendor(FakeVendor):
    """A fake vendor (virtual time): the attempts at a request whose question starts with a
    key of ``script`` take the listed seconds, one after the other (those listed in
    ``failing`` then answer HTTP 500); others take ``delay``."""

    def __init__(
        self,
        script: dict[str, list[float]],
        delay: float,
        failing: dict[str, set[int]] | None = None,
    ) -> None:
        super().__init__(delay=delay)
        self.script = {k: list(v) for k, v in script.items()}
        self.failing = failing or {}  # attempts (0-based) answered with HTTP 500
        self.seen: dict[str, int] = {}
        self.answered: list[str] = []

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        question = request["messages"][-1]["content"]
        tag = question.split()[0]
        attempt = self.seen[tag] = self.seen.get(tag, -1) + 1
        planned = self.script.get(tag)
        seconds = planned.pop(0) if planned else self.delay
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.in_flight += 1
        self.arrivals.append(start)
        self.bodies.append(request)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.in_flight -= 1
        if attempt in self.failing.get(tag, ()):
            raise VendorError("HTTP 500", status=500, retryable=True)
        self.answered.append(f"{question} after {seconds:g} s")
        response = Response(text=f"echo: {question}", finish_reason="stop")
        raw = {"choices": [{"message": {"content": response.text}}]}
        return ProviderResponse(response=response, raw=raw, latency_ms=(loop.time() - start) * 1e3)


def _replay_on_virtual_time(
    monkeypatch: pytest.MonkeyPatch, vendor: FakeVendor, cache: ResponseCache, n: int
) -> tuple[list[ReplayResult], float]:
    use_fake_vendor(monkeypatch, vendor)
    return run_virtual(
        replay_async(
            [exchange(i) for i in range(n)],
            [CandidateSpec(name="c", model="m", concurrency=1, timeout=60.0)],
            cache=cache,
            hedge=FAST_HEDGE,
            leases=False,
            interruptible=False,
        )
    )


def _arrivals(vendor: FakeVendor, tag: str) -> list[float]:
    return [t for t, b in zip(vendor.arrivals, vendor.bodies, strict=True) if tag in repr(b)]


def test_the_hedge_leaves_when_its_delay_is_over_and_the_hung_attempt_is_cancelled(
    monkeypatch: pytest.MonkeyPatch, cache: ResponseCache
) -> None:
    vendor = _ScriptedVendor({"<q4>": [30.0]}, delay=0.01)
    results, took = _replay_on_virtual_time(monkeypatch, vendor, cache, 8)
    assert all(r.ok for r in results)
    assert [r.attempts for r in results] == [1, 1, 1, 1, 2, 1, 1, 1]
    hung, hedge = _arrivals(vendor, "<q4>")
    assert hedge - hung == pytest.approx(FAST_HEDGE.min_delay)  # 3 x p95 (0.03 s) is less
    assert "<q4> question after 0.01 s" in vendor.answered  # the hedge's answer
    # the hung attempt was cancelled (concurrency 1: the rest could go), not waited for
    assert took == pytest.approx(7 * 0.01 + 0.5 + 0.01)
    assert vendor.in_flight == 0


def test_a_first_attempt_answering_before_its_hedge_wins_and_the_hedge_is_cancelled(
    monkeypatch: pytest.MonkeyPatch, cache: ResponseCache
) -> None:
    vendor = _ScriptedVendor({"<q4>": [0.6, 5.0]}, delay=0.01)
    results, took = _replay_on_virtual_time(monkeypatch, vendor, cache, 8)
    assert all(r.ok for r in results)
    assert results[4].attempts == 2 and vendor.total == 9
    assert "<q4> question after 0.6 s" in vendor.answered
    assert not any("after 5 s" in a for a in vendor.answered)  # cancelled, never answered
    assert took == pytest.approx(7 * 0.01 + 0.6)
    assert vendor.in_flight == 0


def test_a_failed_hedge_is_followed_by_another_and_the_first_answer_wins(
    monkeypatch: pytest.MonkeyPatch, cache: ResponseCache
) -> None:
    # q4: the first attempt answers after 0.8 s; the hedge (0.5 s) fails after 0.1 s; a
    # second hedge leaves at once (0.6 s; the first still hangs) and would take 1 s
    vendor = _ScriptedVendor({"<q4>": [0.8, 0.1, 1.0]}, delay=0.01, failing={"<q4>": {1}})
    results, took = _replay_on_virtual_time(monkeypatch, vendor, cache, 8)
    assert all(r.ok for r in results)
    assert results[4].attempts == 3
    first, hedge, again = _arrivals(vendor, "<q4>")
    assert (hedge - first, again - first) == pytest.approx((0.5, 0.6))
    assert "<q4> question after 0.8 s" in vendor.answered
    assert took == pytest.approx(7 * 0.01 + 0.8)
    assert vendor.in_flight == 0


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
