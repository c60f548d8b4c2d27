"""The cluster's limiter (one actor per candidate, `--executor ray`) and a worker's view of it,
without Ray: the actor is a plain object here, its handle a stand-in whose calls are counted.

A worker asks for the requests waiting in line in one call and reports the requests that ended
in one message: the limits still hold request by request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from migrate_eval.replay.cluster import Limiter, _ActorLimits


class _Method:
    """``actor.method.remote(...)``: the call runs in this loop, counted."""

    def __init__(self, fn: Callable[..., Awaitable[Any]]) -> None:
        self.fn = fn
        self.calls: list[tuple[Any, ...]] = []

    def remote(self, *args: Any) -> asyncio.Future[Any]:
        self.calls.append(args)
        return asyncio.ensure_future(self.fn(*args))


class _Handle:
    def __init__(self, limiter: Limiter) -> None:
        self.acquire_many = _Method(limiter.acquire_many)
        self.release_many = _Method(limiter.release_many)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_batch_takes_the_free_slots_and_no_more() -> None:
    async def main() -> None:
        limiter = Limiter(3, None, None)
        epoch = await limiter.begin(0)
        leases, limit = await limiter.acquire_many(0, epoch, [(0, False)] * 5)
        assert len(leases) == 3 and len(set(leases)) == 3 and limit == 3
        assert limiter.adaptive.in_flight == 3 and limiter.sent == 3
        # hedges take no slot: let through while the rate allows
        assert await limiter.acquire_many(0, epoch, [(0, True), (0, True)]) == ([-1, -1], 3)
        await limiter.release_many([(leases[0], "ok", 0, None)])
        more, _ = await limiter.acquire_many(0, epoch, [(0, False)] * 4)
        assert len(more) == 1 and limiter.adaptive.in_flight == 3

    asyncio.run(main())


def test_a_batch_stops_at_the_first_request_the_rates_would_hold_back() -> None:
    async def main() -> None:
        # 60,000 tokens a minute: bursts of 4,096 tokens
        limiter = Limiter(10, None, 60_000)
        epoch = await limiter.begin(0)
        leases, _ = await limiter.acquire_many(0, epoch, [(3000, False), (3000, False)])
        assert len(leases) == 1
        # the one held back reserved nothing: a smaller one still fits the burst now
        leases, _ = await limiter.acquire_many(0, epoch, [(1000, False)])
        assert len(leases) == 1 and limiter.sent == 2

        rpm = Limiter(10, 60, None)  # one request a second, bursts of one
        epoch = await rpm.begin(0)
        leases, _ = await rpm.acquire_many(0, epoch, [(0, False)] * 3)
        assert len(leases) == 1 and rpm.adaptive.in_flight == 1

    asyncio.run(main())


def test_a_dead_attempt_gets_no_slot() -> None:
    async def main() -> None:
        limiter = Limiter(4, None, None)
        old = await limiter.begin(0)
        await limiter.begin(0)  # the shard's task started again: the old attempt is gone
        leases, _ = await limiter.acquire_many(0, old, [(0, False)] * 3)
        assert leases == [-1, -1, -1] and limiter.adaptive.in_flight == 0

    asyncio.run(main())


def test_a_worker_asks_in_batches_and_every_slot_comes_back() -> None:
    async def main() -> None:
        limiter = Limiter(4, None, None)
        handle = _Handle(limiter)
        limits = _ActorLimits(handle, 0, await limiter.begin(0))
        most = 0

        async def request(i: int) -> None:
            nonlocal most
            lease = await limits.acquire(0, False)
            most = max(most, limiter.adaptive.in_flight)
            await asyncio.sleep(0)  # the call to the vendor
            limits.release(lease, "ok", 0, None)

        with limits.reporting():
            await asyncio.gather(*(request(i) for i in range(40)))
        await _settle()
        assert limiter.sent == 40 and most <= 4
        assert limiter.adaptive.in_flight == 0 and not limiter.leases  # every slot back
        # one call per turn of the line, not one a request (40 without batching)
        assert len(handle.acquire_many.calls) <= 15, len(handle.acquire_many.calls)
        assert sum(len(call[0]) for call in handle.release_many.calls) == 40
        assert len(handle.release_many.calls) < 40
        assert limits.calls == len(handle.acquire_many.calls) + len(handle.release_many.calls)

    asyncio.run(main())


def test_a_request_that_gives_up_while_asked_for_gives_its_slot_back() -> None:
    async def main() -> None:
        limiter = Limiter(1, None, None)
        handle = _Handle(limiter)
        limits = _ActorLimits(handle, 0, await limiter.begin(0))
        with limits.reporting():
            first = await limits.acquire(0, False)
            second = asyncio.ensure_future(limits.acquire(0, False))
            await _settle()  # its batch waits at the actor for the slot
            assert not second.done() and len(handle.acquire_many.calls) == 2
            second.cancel()  # a hedge won, the run stops...
            limits.release(first, "ok", 0, None)
            await _settle()  # the actor gives it the slot: given back at once
        await _settle()
        assert second.cancelled()
        assert limiter.sent == 2 and limiter.adaptive.in_flight == 0 and not limiter.leases

    asyncio.run(main())
