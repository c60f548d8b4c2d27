"""Per-candidate politeness: request/token rate limits and adaptive concurrency.

* :class:`RateLimiter` - a GCRA (generic cell rate algorithm, the virtual-scheduling form of
  a token bucket) for requests per minute or tokens per minute. Each :meth:`acquire`
  *reserves* its share at once and then waits until it is due, so concurrent callers are
  served in arrival order and a large request never starves. Charges can be corrected
  after the fact (:meth:`RateLimiter.adjust`), which is how token estimates are replaced by
  the usage an endpoint reports.
* :class:`AdaptiveConcurrency` - AIMD: a request rejected for overload (HTTP 429) halves the
  number of requests the candidate may have in flight (once per "generation", so a burst of
  429s from requests sent together counts once), never below 1. Recovery is fast up to where
  the limit was before the last decrease (each success adds 1, so the limit doubles per round
  of requests, like TCP's slow start), then additive (each success adds ``1/limit``, about
  one per round), up to the configured ``concurrency``. Without the fast phase, a vendor that
  answers a steady few percent of requests with 429 held the run at 1-2 requests in flight:
  each round had a 429, and climbing back from 1 to 32 took about 500 successes.

Both take a :class:`Clock` so that tests can run them on a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    """What the limiters need of time: a monotonic reading and an async sleep."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...


class LoopClock:
    """The running event loop's clock (the default)."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(seconds)


class RateLimiter:
    """At most ``per_minute`` units a minute, with bursts of at most ``burst`` units.

    ``burst`` defaults to one second's worth (at least 1 unit): a fresh limiter does not
    send a minute's budget at once, which is what providers' sliding windows punish.
    """

    def __init__(
        self, per_minute: float, *, burst: float | None = None, clock: Clock | None = None
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.per_minute = float(per_minute)
        self.interval = 60.0 / self.per_minute  # seconds per unit
        self.burst = max(1.0, burst if burst is not None else self.per_minute / 60.0)
        self.clock: Clock = clock or LoopClock()
        self._tat: float | None = None  # theoretical arrival time of the next unit
        self._credit = 0.0  # seconds given back by adjust() so far
        self._refund: asyncio.Event | None = None  # wakes waiters when some are given back
        self.waited = 0.0  # total seconds callers waited (for reports and tests)

    def _schedule(self, amount: float) -> tuple[float, float]:
        """``amount`` units reserved now: (the new theoretical arrival time, seconds to wait)."""
        now = self.clock.now()
        tat = now if self._tat is None else max(self._tat, now)
        new_tat = tat + max(amount, 0.0) * self.interval
        return new_tat, max(0.0, new_tat - self.burst * self.interval - now)

    def reserve(self, amount: float = 1.0) -> float:
        """Reserve ``amount`` units now; returns how many seconds to wait before using them."""
        self._tat, wait = self._schedule(amount)
        return wait

    def open_now(self, amount: float = 1.0) -> bool:
        """Whether ``amount`` units could be used now without waiting (nothing reserved)."""
        return self._schedule(amount)[1] <= 0

    async def acquire(self, amount: float = 1.0) -> float:
        """Wait until ``amount`` units may be used; returns the seconds waited.

        Units given back while waiting (:meth:`adjust`, e.g. a request that used fewer
        tokens than estimated) shorten the wait: they were reserved before this call's.
        """
        wait = self.reserve(amount)
        if wait <= 0:
            return 0.0
        start = self.clock.now()
        due, credit = start + wait, self._credit
        while True:
            remaining = due - (self._credit - credit) - self.clock.now()
            if remaining <= 0:
                break
            if isinstance(self.clock, LoopClock):  # wake early if units are given back
                if self._refund is None:
                    self._refund = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._refund.wait(), remaining)
            else:
                await self.clock.sleep(remaining)
        waited = self.clock.now() - start
        self.waited += waited
        return waited

    def adjust(self, delta: float) -> None:
        """Correct an earlier charge by ``delta`` units (negative: give some back).

        Time already elapsed cannot be given back: the schedule never moves before now.
        """
        if self._tat is None or delta == 0:
            return
        now = self.clock.now()
        new_tat = max(self._tat + delta * self.interval, now)
        shift = self._tat - new_tat
        self._tat = new_tat
        if shift > 0:
            self._credit += shift
            if self._refund is not None:
                self._refund.set()
                self._refund = None


class RequestLimits:
    """A caller's requests a minute and tokens a minute (either may be absent): a replay
    candidate, the cluster's limiter of one, the LLM judge. A request is admitted with its
    estimated tokens, then settled: a rejected request (429) used none, an answer's reported
    usage corrects the estimate. A tokens-per-minute budget may burst one second's worth, and
    at least one request (4,096 tokens)."""

    def __init__(self, rpm: float | None, tpm: float | None, *, clock: Clock | None = None):
        self.rpm = RateLimiter(rpm, clock=clock) if rpm else None
        self.tpm = RateLimiter(tpm, burst=max(tpm / 60.0, 4096.0), clock=clock) if tpm else None

    @property
    def counts_tokens(self) -> bool:
        return self.tpm is not None

    @property
    def waited(self) -> float:
        """Seconds callers waited for either limit."""
        return (self.rpm.waited if self.rpm else 0.0) + (self.tpm.waited if self.tpm else 0.0)

    async def admit(self, tokens: int) -> None:
        """Wait for one request of ``rpm`` and ``tokens`` of ``tpm``."""
        if self.rpm is not None:
            await self.rpm.acquire(1.0)
        if self.tpm is not None and tokens:
            await self.tpm.acquire(tokens)

    def admit_now(self, tokens: int) -> bool:
        """Admit one request of ``tokens`` if neither limit would make it wait (else admit
        nothing and say so)."""
        rpm = self.rpm
        tpm = self.tpm if tokens else None  # a request of no tokens is not counted in tpm
        if (rpm is not None and not rpm.open_now(1.0)) or (
            tpm is not None and not tpm.open_now(tokens)
        ):
            return False
        if rpm is not None:
            rpm.reserve(1.0)
        if tpm is not None:
            tpm.reserve(tokens)
        return True

    def settle(self, charged: int, used: int | None) -> None:
        """Correct the ``charged`` tokens: ``used`` None for a rejected request (it used none),
        else what the answer reports (0: nothing reported, the estimate stands)."""
        if self.tpm is None:
            return
        if used is None:
            self.tpm.adjust(-charged)
        elif used:
            self.tpm.adjust(used - charged)


@dataclass
class AdaptiveConcurrency:
    """AIMD limit on requests in flight: halve on overload, then recover (see the module).

    Waiters are served first come, first served. Cheap when no one waits (the common case):
    no lock, no wake-up.
    """

    maximum: int
    minimum: int = 1
    decrease: float = 0.5
    limit: float = field(init=False)
    in_flight: int = field(default=0, init=False)
    generation: int = field(default=0, init=False)
    #: The limit before the last decrease: successes climb back to it fast (+1 each).
    ceiling: float = field(default=0.0, init=False)
    #: Decreases applied so far (one per burst of 429s).
    decreases: int = field(default=0, init=False)
    #: The in-flight limit after each change (capped at 10,000 entries), for reports and tests.
    history: list[int] = field(default_factory=list, init=False)
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        self.maximum = max(1, self.maximum)
        self.minimum = max(1, min(self.minimum, self.maximum))
        self.limit = float(self.maximum)
        self.ceiling = self.limit

    @property
    def current(self) -> int:
        """Requests allowed in flight now."""
        return max(self.minimum, math.floor(self.limit))

    async def acquire(self) -> int:
        """Wait for a slot; returns the generation to pass to :meth:`release`."""
        generation = self.try_acquire()
        if generation is not None:
            return generation
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # resolved by _wake, which has counted us in flight
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # woken, then cancelled: give it back
                self.in_flight -= 1
                self._wake()
            raise
        return self.generation

    @property
    def free(self) -> bool:
        """Whether :meth:`acquire` would give a slot without waiting."""
        return self.in_flight < self.current and not self._waiters

    def try_acquire(self) -> int | None:
        """A slot now, if one is :attr:`free` (its generation), else None (nothing taken)."""
        if not self.free:
            return None
        self.in_flight += 1
        return self.generation

    def release(self, generation: int, outcome: str) -> None:
        """Free a slot. ``outcome``: ``ok``, ``overload`` (429) or ``other`` (no change)."""
        self.in_flight -= 1
        before = self.current
        if outcome == "overload":
            # One decrease per round of requests: the 429s of requests that were in flight
            # when the first one came back belong to the same burst.
            if generation == self.generation:
                self.ceiling = self.limit
                self.limit = max(float(self.minimum), self.limit * self.decrease)
                self.generation += 1
                self.decreases += 1
        elif outcome == "ok" and self.limit < self.maximum:
            if self.limit < self.ceiling:  # climbing back to where it was: +1 a success
                self.limit = min(self.ceiling, self.limit + 1.0)
            else:  # probing beyond: about +1 a round
                self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))
        if self.current != before and len(self.history) < 10_000:
            self.history.append(self.current)
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.current:
            waiter = self._waiters.popleft()
            if waiter.done():  # cancelled while waiting
                continue
            self.in_flight += 1
            waiter.set_result(None)


class FakeClock:
    """A manual clock for tests: :meth:`sleep` advances time instantly (and yields)."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return self._sleep(seconds)
