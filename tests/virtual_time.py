"""Timing tests that do not depend on how fast (or busy) the machine is.

:class:`VirtualTimeLoop` is an asyncio event loop whose clock only moves when every task is
waiting for a timer: it then jumps straight to the next timer. ``asyncio.sleep``,
``asyncio.wait_for``, ``loop.time()`` and everything built on them (the rate limiters'
default clock, the replay engine's pauses and backoffs) run on it unchanged, instantly and
always in the same order, so a test can assert exact times ("the retry left 1.0 s after the
429") instead of wall-clock bounds that a loaded machine breaks.

Only in-loop work belongs on it: a socket answered by another thread (a loopback server)
takes real time that the virtual clock would skip. :class:`FakeVendor` is the in-loop stand
in for an endpoint, built by the replay engine in place of the real provider
(:func:`use_fake_vendor`).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from migrate_eval.core.errors import VendorError
from migrate_eval.core.records import Response, Usage
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers.base import Provider, ProviderResponse

T = TypeVar("T")
_TICK = 1e-9  # seconds: how far time moves when a timer is already due


class _JumpingSelector(selectors.DefaultSelector):
    """Returns ready file descriptors at once; instead of blocking until a timer, jumps to it."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self.loop = loop
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:  # no timer pending: only real I/O (e.g. a thread's wake-up) is left
            return super().select(None)
        scheduled = self.loop._scheduled  # the loop's timer heap: the next timer comes first
        if timeout > 0:
            # land exactly on the timer (now + timeout may round below it)
            self.now = max(self.now + timeout, scheduled[0].when() if scheduled else 0.0)
        elif scheduled and scheduled[0].when() < self.now + _TICK:
            # a timer is due (the loop runs those within its clock resolution): as on a real
            # clock, time moves on a little, else code that waits "the remaining 1e-16 s" in a
            # loop would spin forever
            self.now = max(self.now, scheduled[0].when()) + _TICK
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (starts at 0.0), see the module docstring."""

    _scheduled: list[asyncio.TimerHandle]

    def __init__(self) -> None:
        self._jumping = _JumpingSelector(self)
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now


def run_virtual(coro: Coroutine[Any, Any, T]) -> tuple[T, float]:
    """Run ``coro`` on a fresh :class:`VirtualTimeLoop`; returns its result and the virtual
    seconds it took."""
    loop = VirtualTimeLoop()
    try:
        result = loop.run_until_complete(coro)
        return result, loop.time()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@dataclass
class Fault:
    status: int
    times: int
    match: str | None
    retry_after: float | None


@dataclass
class FakeVendor:
    """An endpoint inside the event loop: answers after ``delay`` seconds (virtual time).

    Records, like :class:`tests.servers.LoopbackServer`, when each request arrived
    (``arrivals``, loop time), how many were in flight then, itself included
    (``in_flight_at_arrival``), and the request bodies. Each answer reports 5 prompt and 3
    completion tokens.
    """

    delay: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    in_flight_at_arrival: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    faults: list[Fault] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.bodies)

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        match: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next ``times`` requests whose body contains ``match`` get HTTP ``status``."""
        self.faults.append(Fault(status, times, match, retry_after))

    def _fault_for(self, body: dict[str, Any]) -> Fault | None:
        text = repr(body)
        for fault in self.faults:
            if fault.times > 0 and (fault.match is None or fault.match in text):
                fault.times -= 1
                return fault
        return None

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.in_flight += 1
        self.arrivals.append(start)
        self.in_flight_at_arrival.append(self.in_flight)
        self.bodies.append(request)
        fault = self._fault_for(request)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if fault is not None:
            raise VendorError(
                f"HTTP {fault.status}",
                status=fault.status,
                retryable=fault.status == 429 or fault.status >= 500,
                retry_after=fault.retry_after,
            )
        question = request["messages"][-1]["content"]
        usage = Usage(prompt_tokens=5, completion_tokens=3, total_tokens=8)
        response = Response(text=f"echo: {question}", finish_reason="stop", usage=usage)
        raw = {"choices": [{"message": {"content": response.text}}]}
        return ProviderResponse(response=response, raw=raw, latency_ms=(loop.time() - start) * 1e3)


class _FakeProvider(Provider):
    name = "fake"

    def __init__(self, spec: CandidateSpec, vendor: FakeVendor) -> None:
        self.spec = spec
        self.vendor = vendor

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        return await self.vendor.complete(request)

    def identity(self) -> dict[str, Any]:
        return {"provider": "fake", "model": self.spec.model, "name": self.spec.name}


def use_fake_vendor(monkeypatch: pytest.MonkeyPatch, vendor: FakeVendor) -> None:
    """Make the replay engine send every candidate's requests to ``vendor``."""
    import migrate_eval.replay.engine

    monkeypatch.setattr(
        migrate_eval.replay.engine, "get_provider", lambda spec: _FakeProvider(spec, vendor)
    )
