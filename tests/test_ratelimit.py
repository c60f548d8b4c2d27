"""Rate limits (GCRA) and AIMD concurrency, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from migrate_eval.replay.ratelimit import AdaptiveConcurrency, FakeClock, RateLimiter
from tests.virtual_time import run_virtual


def test_requests_per_minute_are_spaced_after_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(120, clock=clock)  # 2 a second, bursts of 2

    async def go() -> list[float]:
        times = []
        for _ in range(6):
            await limiter.acquire()
            times.append(clock.now())
        return times

    times = asyncio.run(go())
    assert times == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0])
    # Over a long run the rate converges on the limit.
    assert limiter.waited == pytest.approx(2.0)


def test_reservations_are_first_come_first_served() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)  # 1 a second
    waits = [limiter.reserve(1) for _ in range(4)]
    assert waits == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_tokens_per_minute_with_large_requests_and_corrections() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, burst=1000, clock=clock)  # 100 tokens/s
    assert limiter.reserve(1000) == 0.0  # the burst
    assert limiter.reserve(500) == pytest.approx(5.0)  # a large request waits, never starves
    limiter.adjust(-500)  # the second used nothing (e.g. rejected): the budget comes back
    assert limiter.reserve(100) == pytest.approx(1.0)
    clock.t = 100.0  # long idle: no credit beyond the burst is banked
    assert limiter.reserve(1000) == 0.0
    assert limiter.reserve(100) == pytest.approx(1.0)


def test_invalid_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_aimd_halves_once_per_round_never_below_one_and_recovers() -> None:
    async def go() -> AdaptiveConcurrency:
        limit = AdaptiveConcurrency(maximum=8)
        gens = [await limit.acquire() for _ in range(8)]
        assert limit.in_flight == 8
        for g in gens:  # eight 429s of one round: one decrease
            limit.release(g, "overload")
        assert limit.current == 4
        for _ in range(5):  # repeated overload: 2, 1, 1, 1...
            limit.release(await limit.acquire(), "overload")
        assert limit.current == 1 and limit.limit == 1.0
        successes = 0
        while limit.current < 8:
            limit.release(await limit.acquire(), "ok")
            successes += 1
        assert 20 <= successes <= 40  # additive: about +1 per round of `limit` successes
        limit.release(await limit.acquire(), "ok")
        assert limit.current == 8  # never above the configured concurrency
        return limit

    limit = asyncio.run(go())
    assert limit.history[:3] == [4, 2, 1] and limit.history[-1] == 8


def test_aimd_blocks_beyond_the_limit() -> None:
    async def go() -> None:
        limit = AdaptiveConcurrency(maximum=2)
        g1 = await limit.acquire()
        await limit.acquire()
        third = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0.01)
        assert not third.done()
        limit.release(g1, "other")
        assert await asyncio.wait_for(third, 1) == 0

    asyncio.run(go())


def test_aimd_waiters_are_fifo_and_a_cancelled_waiter_loses_its_turn() -> None:
    async def go() -> list[str]:
        limit = AdaptiveConcurrency(maximum=1)
        order: list[str] = []
        g = await limit.acquire()

        async def take(name: str) -> None:
            gen = await limit.acquire()
            order.append(name)
            await asyncio.sleep(0)
            limit.release(gen, "ok")

        tasks = {n: asyncio.ensure_future(take(n)) for n in "abc"}
        await asyncio.sleep(0)
        tasks["b"].cancel()
        limit.release(g, "ok")
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        assert limit.in_flight == 0
        return order

    assert asyncio.run(go()) == ["a", "c"]


def test_units_given_back_shorten_the_wait_of_queued_callers() -> None:
    # The default clock (the event loop's), on virtual time: the early wake-up on a refund is
    # what is tested, and the times are exact whatever the machine's load.
    async def go() -> float:
        limiter = RateLimiter(600, burst=1)  # 10 units a second
        await limiter.acquire(1)
        waiter = asyncio.ensure_future(limiter.acquire(10))  # due in 1 s
        await asyncio.sleep(0.05)
        limiter.adjust(-9)  # an earlier request used 9 units fewer than charged
        return await asyncio.wait_for(waiter, 2)

    waited, took = run_virtual(go())
    # 1 s due, 0.9 s given back after 0.05 s: 0.05 s more, not the remaining 0.95 s
    assert waited == pytest.approx(0.1, abs=1e-6) and took == pytest.approx(0.1, abs=1e-6)


def test_fake_clock_waits_are_exact() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)

    async def go() -> list[float]:
        return [await limiter.acquire(1) for _ in range(3)]

    assert asyncio.run(go()) == pytest.approx([0.0, 1.0, 1.0])
    assert clock.sleeps == pytest.approx([1.0, 1.0])
