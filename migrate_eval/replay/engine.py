"""The replay engine: send each logged request to each candidate, resumably and politely.

For every (exchange, candidate) pair, :func:`replay_async` builds the candidate's request
(:func:`build_request`), looks it up in the :class:`~migrate_eval.replay.cache.ResponseCache` and
sends only what is not there. Each candidate has its own pool of ``concurrency`` workers,
retries retryable failures (429, 5xx, timeouts, broken connections) with exponential backoff
and jitter, honours ``Retry-After`` (a 429 with ``Retry-After`` pauses the whole candidate:
no request to it starts until the pause is over, whichever worker would send it) and turns
every failure into an error row: one vendor failing never stops the run.

Faults that must not stall a run:

* a hung request: an attempt that takes much longer than the candidate's answers so far is
  *hedged* (:class:`HedgePolicy`): a second attempt is sent, the first answer wins and the
  other attempt is cancelled, which frees its concurrency slot. Hedges are capped at a small
  share of the requests, so a vendor that is slow for everyone is not sent everything twice;
* 429 bursts halve the concurrency once per burst and it climbs back
  (:class:`~migrate_eval.replay.ratelimit.AdaptiveConcurrency`);
* a dead endpoint (every attempt fails the same way: connection refused, 401, 403, 404) opens
  a circuit breaker (:class:`CircuitBreaker`): after ``threshold`` identical failures in a row
  and no success, the rest of the candidate's requests fail at once with that error, instead
  of each being retried with backoff.
 Answers are committed to the cache as they arrive, so a run killed at any
point and started again sends only what had not been answered.

Results come back in a deterministic order: exchange order, then candidate order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import sqlite3
from collections import deque
from collections.abc import Callable, Container, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from migrate_eval.core.errors import (
    CircuitOpenError,
    ConfigError,
    ExitCode,
    MigrateEvalError,
    OfflineCacheMiss,
    VendorError,
)
from migrate_eval.core.json import canonical_json
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.store import Indexed, Spill, interleave, new_records, record_ids
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay._runtime import replay_runtime, settle
from migrate_eval.replay.cache import LEASE_TTL, CachedEntry, ResponseCache, key_from_json
from migrate_eval.replay.providers import (
    MAX_RETRY_AFTER,
    MalformedResponseError,
    Provider,
    ProviderResponse,
    UnsupportedRequestError,
    VendorConnectionError,
    VendorTimeout,
    get_provider,
)
from migrate_eval.replay.ratelimit import AdaptiveConcurrency, RequestLimits
from migrate_eval.replay.tokens import encoder_name, estimate_request_tokens

#: Request fields that are tied to the logging OpenAI account or that the engine controls.
DROPPED_FIELDS = (
    "stream",
    "stream_options",
    "store",
    "metadata",
    "user",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
)

#: Backoff never waits longer than this (seconds), whatever the attempt or Retry-After.
MAX_BACKOFF = MAX_RETRY_AFTER

#: A candidate's progress events go out at most this often (seconds), besides the first and
#: the last: a progress board redraws a few times a second, not on every answer.
PROGRESS_INTERVAL = 0.1


def _copy_json(value: Any) -> Any:
    """Deep copy of JSON-like data (dicts, lists, scalars); faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    if isinstance(value, tuple):
        return [_copy_json(v) for v in value]
    return value


def build_request(logged_request: Mapping[str, Any], spec: CandidateSpec) -> dict[str, Any]:
    """The Chat Completions body to send to a candidate for a logged request.

    A deep copy of the logged request with the candidate's ``model``, without the fields in
    :data:`DROPPED_FIELDS`, and with ``spec.params`` applied (a ``None`` value removes the
    key). Messages, tools, ``tool_choice``, ``response_format`` and sampling parameters are
    kept exactly as logged.
    """
    return _build_request(logged_request, spec, deep=True)


def _build_request(
    logged_request: Mapping[str, Any], spec: CandidateSpec, *, deep: bool
) -> dict[str, Any]:
    # The engine builds shallow copies: it never modifies a request (nor may providers), and
    # the nested objects stay shared with the exchange. Parameter values are always copied.
    request: dict[str, Any] = _copy_json(dict(logged_request)) if deep else dict(logged_request)
    for name in DROPPED_FIELDS:
        request.pop(name, None)
    for name, value in spec.params.items():
        if value is None:
            request.pop(name, None)
        else:
            request[name] = _copy_json(value)
    request["model"] = spec.model
    return request


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Progress of one candidate: ``done`` of ``total`` exchanges have a result."""

    candidate: str
    done: int
    total: int
    errors: int
    cached: int = 0
    #: Requests the candidate may have in flight now (adaptive: lower after 429s).
    in_flight_limit: int | None = field(default=None, compare=False)
    #: Seconds requests waited for the candidate's rpm/tpm limits so far.
    throttled_s: float = field(default=0.0, compare=False)


def _tokens_used(answer: ProviderResponse) -> int:
    """Prompt + completion tokens an answer reports (0 when it reports none)."""
    usage = answer.response.usage
    if usage is None:
        return 0
    return (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)


#: Signals that stop a replay cleanly: Ctrl-C, and SIGTERM (a CI job cancelled, a pod stopped).
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name)
)


def _restore_signals(loop: asyncio.AbstractEventLoop, before: dict[int, Any]) -> None:
    """Put back the handlers the replay replaced (asyncio's own removal would leave Python's
    defaults: SIGTERM would then kill the process outright, past a command's own handler)."""
    for sig, handler in before.items():
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    before.clear()


class ReplayInterrupted(MigrateEvalError):
    """The replay was stopped (Ctrl-C / SIGINT, or SIGTERM) before every request was answered.

    Raised once the answers received so far are committed to the cache: running the same
    command again sends only the rest. :attr:`results` holds one row per (exchange,
    candidate) pair; the rows that were not answered have ``error_kind="interrupted"``
    (a view, made as it is read: a run on disk is not read back to raise this, and is read
    while its :class:`~migrate_eval.core.store.Spill` is open).
    """

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, results: Sequence[ReplayResult], answered: int, missing: int) -> None:
        super().__init__(
            f"interrupted: {answered} answers are saved in the response cache, {missing} "
            "requests were not answered; run the same command again to resume"
        )
        self.results = results
        self.answered = answered
        self.missing = missing


class Unanswered(Indexed[ReplayResult]):
    """One candidate's rows of an interrupted replay, in exchange order: ``known(i)`` where it
    has a result, else an "interrupted" row, made when read (nothing is filled in or copied:
    the answers of a run on disk stay on disk)."""

    def __init__(
        self,
        known: Callable[[int], ReplayResult | None],
        ids: Sequence[str],
        candidate: str,
    ) -> None:
        self.known = known
        self.ids = ids
        self.candidate = candidate

    def __len__(self) -> int:
        return len(self.ids)

    def _at(self, index: int) -> ReplayResult:
        row = self.known(index)
        if row is not None:
            return row
        return ReplayResult(
            exchange_id=self.ids[index],
            candidate=self.candidate,
            error="interrupted before an answer arrived",
            error_kind="interrupted",
        )


def vendor_error_kind(exc: VendorError) -> str:
    """The ``error_kind`` of an error row for a vendor failure."""
    declared = getattr(exc, "error_kind", None)  # e.g. Azure's content_filter
    if isinstance(declared, str):
        return declared
    if isinstance(exc, OfflineCacheMiss):
        return "offline_miss"
    if isinstance(exc, VendorTimeout):
        return "timeout"
    if isinstance(exc, VendorConnectionError):
        return "connection"
    if isinstance(exc, MalformedResponseError):
        return "malformed"
    if isinstance(exc, UnsupportedRequestError):
        return "unsupported"
    if exc.status is not None:
        return f"http_{exc.status}"
    return "vendor"


def backoff_delay(attempt: int, exc: VendorError, base: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based) after ``exc``.

    ``Retry-After`` is honoured (never waited less, a little jitter added); otherwise
    exponential backoff with jitter in ``[d/2, d]``, ``d = base * 2**(attempt-1)``. Capped at
    :data:`MAX_BACKOFF`.
    """
    if exc.retry_after is not None:
        wait = min(max(exc.retry_after, 0.0), MAX_BACKOFF)
        return min(wait + random.uniform(0.0, min(0.25, 0.1 * wait + 0.01)), MAX_BACKOFF)
    ceiling = min(base * (2.0 ** (attempt - 1)), MAX_BACKOFF)
    return ceiling / 2.0 + random.uniform(0.0, ceiling / 2.0)


@dataclass(frozen=True)
class HedgePolicy:
    """When to send a second attempt for a request that takes too long (a hung request).

    Once ``min_samples`` answers arrived, an attempt still unanswered after ``factor`` times
    the 95th percentile of the candidate's latencies so far (at least ``min_delay`` seconds) is
    hedged; before that, after ``initial_share`` of the candidate's timeout. At most
    ``budget`` of the requests sent (and at least ``min_budget``) are hedged. ``enabled=False``
    turns hedging off.
    """

    factor: float = 4.0
    min_delay: float = 1.0
    min_samples: int = 10
    initial_share: float = 0.25
    budget: float = 0.05
    min_budget: int = 2
    enabled: bool = True

    def delay(self, latencies: Sequence[float], timeout: float) -> float | None:
        """Seconds to wait before hedging an attempt; None: do not hedge."""
        if not self.enabled:
            return None
        if len(latencies) < self.min_samples:
            wait = max(self.min_delay, timeout * self.initial_share)
        else:
            ordered = sorted(latencies)
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            wait = max(self.min_delay, self.factor * p95)
        return wait if wait < timeout else None

    def allows(self, hedged: int, sent: int) -> bool:
        return hedged < max(self.min_budget, int(self.budget * sent))


#: Connection failures and these statuses trip the circuit breaker (a dead or refused endpoint).
BREAKER_STATUSES = frozenset({401, 403, 404})


@dataclass
class CircuitBreaker:
    """Fail fast when a candidate's endpoint is dead: every attempt fails the same way.

    ``threshold`` consecutive attempts that failed with the same connection error or the same
    401/403/404 answer, before any success, open it; from then on the candidate's other
    requests fail at once with that error (:attr:`tripped`). One success keeps it closed for
    the rest of the run (the endpoint works; its failures are the requests' own).
    """

    threshold: int = 8
    successes: int = 0
    streak: int = 0
    signature: str | None = None
    tripped: VendorError | None = None

    def success(self) -> None:
        self.successes += 1
        self.streak = 0
        self.signature = None

    def failure(self, exc: VendorError) -> None:
        if self.successes or self.tripped is not None:
            return
        if not isinstance(exc, VendorConnectionError) and exc.status not in BREAKER_STATUSES:
            self.streak, self.signature = 0, None
            return
        signature = f"{vendor_error_kind(exc)}|{exc}"
        if signature == self.signature:
            self.streak += 1
        else:
            self.signature, self.streak = signature, 1
        if self.streak >= self.threshold:
            self.tripped = CircuitOpenError(
                f"{exc} (the endpoint failed the same way {self.streak} times in a row and "
                "never answered: the candidate's remaining requests were not sent)",
                status=exc.status,
                error_kind=vendor_error_kind(exc),
            )


class SharedLimits(Protocol):
    """A candidate's limits held outside this process (a cluster's limiter actor, see
    :mod:`migrate_eval.replay.cluster`): concurrency, rpm, tpm and Retry-After pauses for every
    worker of the run together. Replaces the candidate's own limiters when given."""

    async def acquire(self, tokens: int, hedge: bool) -> int:
        """Wait for a slot (none for a ``hedge``), the rate limits and any pause; returns the
        lease to pass to :meth:`release`."""
        ...

    def release(
        self, lease: int, outcome: str, token_delta: int, retry_after: float | None
    ) -> None:
        """Give the slot back (``outcome`` as :meth:`AdaptiveConcurrency.release`), correct the
        token charge by ``token_delta`` and pause everyone ``retry_after`` seconds (a 429)."""
        ...

    @property
    def in_flight_limit(self) -> int | None:
        """The cluster's in-flight limit as last heard (None: not known yet)."""
        ...


@dataclass(slots=True)
class _Work:
    key: str
    #: the request and its canonical JSON (None until needed, when a run too large to hold
    #: plans its requests a window at a time: :class:`_Planner`)
    request: dict[str, Any] | None
    request_json: str | None
    rows: list[int]  # exchange indices (duplicate requests share one call)
    tokens: int = -1  # estimated tokens (tpm limit), computed when first needed
    claimed_at: float = 0.0  # loop time its lease was taken (0: no lease of ours)
    #: the fields its rows' results were stored with, once they were (a row of the same
    #: request planned later gets the same: :meth:`_CandidateRun.plan`'s ``known``)
    outcome: dict[str, Any] | None = None

    @property
    def body(self) -> dict[str, Any]:
        """The request (built: :meth:`_CandidateRun.ready`)."""
        if self.request is None:  # pragma: no cover - built before it is sent
            raise RuntimeError(f"request {self.key} sent before it was built")
        return self.request

    @property
    def body_json(self) -> str:
        if self.request_json is None:  # pragma: no cover - built before it is sent
            raise RuntimeError(f"request {self.key} sent before it was built")
        return self.request_json


#: A lease claimed ahead of sending is claimed again (renewed) when it is older than this share
#: of :data:`~migrate_eval.replay.cache.LEASE_TTL` by the time its request is taken up (30 s):
#: a request leaves with at least 90% of a fresh lease, as when each was claimed just before
#: it was sent. A lease that lapsed meanwhile is never sent on: the renewal finds it answered
#: or held by another run (then deferred), or claims it again.
_RENEW_SHARE = 0.1


def _claim_chunk(
    cache: ResponseCache, keys: list[str]
) -> tuple[dict[str, str], dict[str, CachedEntry]]:
    """One claim transaction for ``keys``, and the entries of those already answered (run on
    a worker thread: SQLite may wait for another run's transaction)."""
    states = cache.claim_many(keys)
    answered = [k for k, state in states.items() if state == "answered"]
    return states, (cache.get_many(answered) if answered else {})


class _Feed:
    """The requests a candidate's workers take up, in order, each claimed in the cache before
    it is handed out (with leases): claimed a chunk at a time (four times the candidate's
    concurrency, 16 to 512), in one transaction on a worker thread, the next chunk while the
    workers still have a whole one ready (else they would wait for it, the thread and the
    cache writer's transactions being slow to get to on a busy machine). A request
    another run answered meanwhile is served from the cache; one it is sending is deferred
    (the run waits for it at the end, as before)."""

    def __init__(
        self, run: _CandidateRun, items: list[_Work] | _Planner, cache: ResponseCache
    ) -> None:
        self.run = run
        self.items = items
        self.cache = cache
        self.next = 0
        self.chunk = max(16, min(512, 4 * run.spec.concurrency))
        self.ready: deque[_Work] = deque()
        self.refill: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        self.stopped = False  # Ctrl-C / SIGTERM: nothing more is planned or claimed

    def _more(self) -> bool:
        if self.stopped:
            return False
        items = self.items
        return self.next < len(items) if isinstance(items, list) else not items.exhausted

    async def _chunk(self, n: int) -> list[_Work]:
        """The next ``n`` requests to send (fewer at the end): the planner's windows that the
        cache answered whole are planned one at a time, the event loop let in between."""
        chunk = self._next_chunk(n)
        while not chunk and self._more():
            await asyncio.sleep(0)
            chunk = self._next_chunk(n)
        return chunk

    def _next_chunk(self, n: int) -> list[_Work]:
        items = self.items
        if isinstance(items, list):
            chunk = items[self.next : self.next + n]
            self.next += len(chunk)
            return chunk
        return items.take(n)

    def _start_refill(self) -> None:
        if self.refill is None and self.error is None and self._more():
            self.refill = asyncio.ensure_future(self._claim())

    async def _claim(self) -> None:
        run = self.run
        try:
            chunk = await self._chunk(self.chunk)
        except BaseException as e:
            self.error = e
            self.refill = None
            raise
        if not chunk or self.stopped:
            self.refill = None
            return
        try:
            states, entries = await asyncio.to_thread(
                _claim_chunk, self.cache, [item.key for item in chunk]
            )
        except BaseException as e:
            self.error = e
            raise
        finally:
            self.refill = None
        now = asyncio.get_running_loop().time()
        served = False
        for item in chunk:
            taken = run.take_claim(item, states.get(item.key), entries.get(item.key), now)
            if taken == "send":
                self.ready.append(item)
            elif taken == "served":
                served = True
            else:  # held: another run is sending it
                run.deferred.append(item)
        if served:
            run.emit()

    async def take(self) -> _Work | None:
        """The next request to send (claimed), or None when there is none left."""
        if not self.run.leases:
            if not self.ready:
                self.ready.extend(await self._chunk(self.chunk))
            return self.ready.popleft() if self.ready else None
        while True:
            if len(self.ready) <= self.chunk:
                self._start_refill()
            if self.ready:
                return self.ready.popleft()
            if self.error is not None:
                raise self.error
            refill = self.refill
            if refill is None:
                return None
            await asyncio.wait([refill])  # not cancelled with a worker that waits for it

    async def aclose(self) -> None:
        """Wait for a claim transaction under way (its leases are then known, to release)."""
        refill = self.refill
        if refill is not None:
            await asyncio.wait([refill])
            if not refill.cancelled():
                refill.exception()  # retrieved: raised to the workers already


class _Planner:
    """A candidate's requests planned a window of exchanges at a time, as its workers take
    them up: each window's cached answers are served, its other requests handed out.

    A run too large to hold every request at once (``hold=False``) keeps only their keys
    (built again when sent); the rows of one logged request are planned together
    (``duplicates``), as when every request is planned at once. A run held in memory
    (``known``, :meth:`held`) keeps each request, and a row whose request was planned in an
    earlier window shares its call: the first requests leave at once, not after every
    request of the run was built (~25 us each), and the rest are built while they wait.
    """

    WINDOW = 2048
    #: Rows a window of a run held in memory (each window is planned in the event loop: a
    #: short one keeps the answers that arrive meanwhile from waiting).
    HELD_WINDOW = 256

    def __init__(
        self,
        run: _CandidateRun,
        exchanges: Sequence[Exchange],
        cache: ResponseCache,
        duplicates: Mapping[int, Sequence[int]] | None,
        *,
        window: int | None = None,
        known: dict[str, _Work] | None = None,
    ) -> None:
        self.run = run
        self.exchanges = exchanges
        self.cache = cache
        self.duplicates = duplicates
        self.later = {j for rows in (duplicates or {}).values() for j in rows}
        self.window = window or self.WINDOW
        self.known = known
        self.at = 0
        self.misses: deque[_Work] = deque()

    @classmethod
    def held(
        cls, run: _CandidateRun, exchanges: Sequence[Exchange], cache: ResponseCache
    ) -> _Planner:
        """The planner of a run held in memory (requests kept, shared across windows)."""
        return cls(run, exchanges, cache, None, window=cls.HELD_WINDOW, known={})

    @property
    def exhausted(self) -> bool:
        return not self.misses and self.at >= len(self.exchanges)

    def take(self, n: int) -> list[_Work]:
        """Up to ``n`` requests to send, planning windows while fewer are planned (their
        cached answers are stored on the way), ``n`` rows or a window at most. Empty while
        not :attr:`exhausted` when those were answered from the cache: the caller takes
        again, after letting the event loop run (a run the cache answers whole is not planned
        in one call, deaf to Ctrl-C and SIGTERM all along)."""
        run = self.run
        stop = self.at + max(n, self.window)
        while len(self.misses) < n and self.at < min(stop, len(self.exchanges)):
            end = min(len(self.exchanges), self.at + self.window)
            work = run.plan(
                self.exchanges,
                range(self.at, end),
                self.duplicates,
                self.later,
                hold=self.known is not None,
                known=self.known,
            )
            self.at = end
            self.misses.extend(run.serve_cached(work, self.cache))
            if run.done:
                run.emit()
        return [self.misses.popleft() for _ in range(min(n, len(self.misses)))]


class _Hedging:
    """One request's watch for a hang: when its first attempt left, and the hedge (the
    second attempt) once sent."""

    __slots__ = (
        "created",
        "done",
        "first_error",
        "item",
        "sent_at",
        "task",
        "won",
        "worker",
    )

    def __init__(self, item: _Work, worker: asyncio.Task[Any]) -> None:
        self.item = item
        self.worker = worker
        self.sent_at = 0.0
        self.task: asyncio.Future[ProviderResponse] | None = None
        self.won = False  # the hedge finished first: the worker was cancelled for it
        self.done = False  # the first attempt is over: no more hedging
        self.first_error: VendorError | None = None
        self.created = 1  # attempts made


class _Answers:
    """One candidate's results in exchange order: appended to ``out`` (a list, or a run's
    :class:`~migrate_eval.core.store.SpilledRecords`) as soon as every earlier one is in; those
    that arrive early wait here (a few, as requests are sent in order)."""

    __slots__ = ("answered", "early", "out")

    def __init__(self, out: MutableSequence[ReplayResult]) -> None:
        self.out = out
        self.early: dict[int, ReplayResult] = {}
        self.answered = 0  # results that are answers (not error rows)

    def set(self, row: int, result: ReplayResult) -> None:
        out, early = self.out, self.early
        self.answered += result.ok
        if row != len(out):
            early[row] = result
            return
        out.append(result)
        while early and (nxt := early.pop(len(out), None)) is not None:
            out.append(nxt)

    def missing(self, total: int) -> int:
        """How many of ``total`` rows have no result."""
        return total - len(self.out) - len(self.early)

    def known(self, row: int) -> ReplayResult | None:
        out = self.out
        return out[row] if row < len(out) else self.early.get(row)


@dataclass
class _Abort:
    """Shared by every candidate of a run: the first error that is not a vendor failure."""

    error: BaseException | None = None


@dataclass
class _CandidateRun:
    spec: CandidateSpec
    provider: Provider
    total: int
    answers: _Answers
    exchange_ids: list[str]
    progress: Callable[[ProgressEvent], None] | None
    backoff_base: float
    abort: _Abort
    repeat: int = 0
    #: a watch's salt: its own cache entries, so the live answer is asked again (see watch)
    salt: str | None = None
    hedge: HedgePolicy = field(default_factory=HedgePolicy)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    #: Claim each request in the cache before sending it (runs sharing the file send once).
    leases: bool = True
    #: The cluster's limits (a Ray run), instead of this process's own.
    shared: SharedLimits | None = None
    #: Hears each result as it is stored (scoring work started during the replay).
    on_result: Callable[[int, ReplayResult], None] | None = None
    #: A run too large to hold: the exchanges, to build each request again when it is sent
    #: (planned a window at a time, :class:`_Planner`).
    exchanges: Sequence[Exchange] | None = None
    lease_poll: float = 0.25
    #: Requests another run was sending when reached: taken up again at the end.
    deferred: deque[_Work] = field(default_factory=deque)
    #: Keys claimed and not yet answered or released (released when the run stops early).
    claimed: set[str] = field(default_factory=set)
    identity: dict[str, Any] = field(init=False)
    identity_json: str = field(init=False)
    done: int = 0
    errors: int = 0
    cached: int = 0
    pause_until: float = 0.0
    #: row -> soft fields the provider has no equivalent for, removed before sending (counted)
    dropped: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: Attempts sent to the vendor, of which hedges (second attempts of a hung request).
    sent: int = 0
    hedged: int = 0
    #: Seconds the recent answers took (the hedge delay is computed from them).
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=200))
    _emitted_at: float = float("-inf")  # loop time of the last progress event
    #: Answers so far, and the hedge delay computed when there were ``_delay_n`` of them.
    _answers: int = 0
    _delay_n: int = -1
    _delay_at: float = float("-inf")
    _delay: float | None = None
    #: Requests whose first attempt is out (hedged if it hangs), and the timer that looks.
    _watched: dict[_Hedging, None] = field(default_factory=dict)
    _sweeper: asyncio.TimerHandle | None = None
    #: Whether each of the recent attempts failed (the retry backoff scales with the share).
    failures: deque[bool] = field(default_factory=lambda: deque(maxlen=100))
    adaptive: AdaptiveConcurrency = field(init=False)
    limits: RequestLimits = field(init=False)

    def __post_init__(self) -> None:
        self.identity = self.provider.identity()
        if self.repeat:  # a baseline repeat: its own cache entries (see replay_baseline)
            self.identity = {**self.identity, "repeat": self.repeat}
        if self.salt:
            self.identity = {**self.identity, "watch": self.salt}
        self.identity_json = canonical_json(self.identity)
        self.adaptive = AdaptiveConcurrency(maximum=self.spec.concurrency)
        if self.spec.tpm:
            encoder_name()  # load the tokenizer now, not inside the event loop's first call
        self.limits = RequestLimits(self.spec.rpm, self.spec.tpm)

    # -- bookkeeping --------------------------------------------------------------------

    def _store(self, rows: list[int], item: _Work | None = None, **fields: Any) -> None:
        """Store the results of ``rows`` (``item``'s: its :attr:`_Work.outcome` is set)."""
        if item is not None:
            item.outcome = fields
        name, ids, answers = self.spec.name, self.exchange_ids, self.answers
        for i in rows:
            dropped = self.dropped.get(i)
            result = ReplayResult(
                exchange_id=ids[i],
                candidate=name,
                **fields,
                **({"dropped": list(dropped)} if dropped else {}),
            )
            answers.set(i, result)
            if self.on_result is not None:
                self.on_result(i, result)

    def emit(self) -> None:
        """Report progress: at most every :data:`PROGRESS_INTERVAL` seconds, and always the
        first and the last event (every row done)."""
        if self.progress is not None:
            now = asyncio.get_running_loop().time()
            if self.done < self.total and now - self._emitted_at < PROGRESS_INTERVAL:
                return
            self._emitted_at = now
            throttled = self.limits.waited
            self.progress(
                ProgressEvent(
                    self.spec.name,
                    self.done,
                    self.total,
                    self.errors,
                    self.cached,
                    in_flight_limit=(
                        self.adaptive.current
                        if self.shared is None
                        else self.shared.in_flight_limit
                    ),
                    throttled_s=throttled,
                )
            )

    def _error_rows(
        self,
        rows: list[int],
        exc: VendorError,
        kind: str,
        attempts: int,
        emit: bool = True,
        item: _Work | None = None,
    ) -> None:
        self._store(
            rows,
            item,
            error=str(exc),
            error_kind=kind,
            status=exc.status,
            attempts=attempts,
        )
        self.done += len(rows)
        self.errors += len(rows)
        if emit:
            self.emit()

    # -- planning -----------------------------------------------------------------------

    def plan(
        self,
        exchanges: Sequence[Exchange],
        rows: range | None = None,
        duplicates: Mapping[int, Sequence[int]] | None = None,
        later: Container[int] = (),
        hold: bool = True,
        known: dict[str, _Work] | None = None,
    ) -> dict[str, _Work]:
        """Build the requests of ``rows`` (every row by default); rows without a replayable
        request become error rows. ``duplicates`` (a first row -> the later rows with the very
        same logged request) plans each of those with its first row, and ``later`` (those
        later rows) are skipped; ``hold=False`` keeps only each request's key (built again
        when sent). ``known``: the requests of the rows planned before (by key, updated): a
        row whose request is one of them shares its call, its result stored at once if that
        call is over (as when every row is planned at once). Returns the new requests."""
        work: dict[str, _Work] = {}
        no_request: list[int] = []
        not_json: list[int] = []
        for i in range(len(exchanges)) if rows is None else rows:
            if i in later:
                continue  # planned with its first row
            built = self.build(exchanges[i], i)
            if isinstance(built, str):
                (no_request if built == "no_request" else not_json).append(i)
                continue
            request, request_json, key = built
            item = work.get(key)
            if item is None and known is not None and (item := known.get(key)) is not None:
                if item.outcome is not None:  # its call is over: the same result
                    self._store_late([i, *((duplicates or {}).get(i, ()))], item.outcome)
                    continue
                item.rows.append(i)
            elif item is None:
                item = work[key] = (
                    _Work(key, request, request_json, [i]) if hold else _Work(key, None, None, [i])
                )
                if known is not None:
                    known[key] = item
            else:
                item.rows.append(i)
            if duplicates and (same := duplicates.get(i)):
                dropped = self.dropped.get(i)
                for j in same:  # the same logged request: the same request, the same drops
                    if dropped:
                        self.dropped[j] = dropped
                    item.rows.append(j)
        for bad, reason in (
            (no_request, "the logged request has no messages to replay"),
            (not_json, "the logged request holds values that are not JSON"),
        ):
            if bad:
                rows_of = [j for i in bad for j in (i, *((duplicates or {}).get(i, ())))]
                self._error_rows(rows_of, VendorError(reason), "no_request", 0, emit=False)
        return work

    def _store_late(self, rows: list[int], outcome: dict[str, Any]) -> None:
        """Rows planned after the call of their request was over: its result."""
        self._store(rows, **outcome)
        self.done += len(rows)
        if "error" in outcome:
            self.errors += len(rows)
        if outcome.get("cached"):
            self.cached += len(rows)

    def build(self, ex: Exchange, row: int) -> tuple[dict[str, Any], str, str] | str:
        """Row ``row``'s request, its canonical JSON and its cache key; or why there is none
        (``"no_request"``, ``"not_json"``). Records the soft fields dropped from it."""
        logged = ex.request
        messages = logged.get("messages")
        if not isinstance(messages, list) or not messages:
            return "no_request"
        request = _build_request(logged, self.spec, deep=False)
        # soft gaps (sampling parameters, seed... the vendor has no equivalent for) are
        # dropped and counted, unless the candidate is strict: then the provider refuses
        dropped = () if self.spec.strict_params else self.provider.soft_drops(request)
        if dropped:  # per row: equal requests may come from logs that set different ones
            request = {k: v for k, v in request.items() if k not in dropped}
            self.dropped[row] = dropped
        try:
            request_json = canonical_json(request)
        except (TypeError, ValueError):
            return "not_json"
        return request, request_json, key_from_json(self.identity_json, request_json)

    def ready(self, item: _Work) -> None:
        """Build ``item``'s request again when it was planned without it (a large run)."""
        if item.request is None and self.exchanges is not None:
            built = self.build(self.exchanges[item.rows[0]], item.rows[0])
            if isinstance(built, str):  # pragma: no cover - it was built when planned
                raise RuntimeError(f"request of row {item.rows[0]} cannot be built again")
            item.request, item.request_json, key = built
            if key != item.key:  # pragma: no cover - building is deterministic
                raise RuntimeError(f"request of row {item.rows[0]} changed since planned")

    def serve_cached(self, work: dict[str, _Work], cache: ResponseCache) -> list[_Work]:
        """Fill rows the cache answers; return the work still to send."""
        hits = cache.get_many(work)
        misses: list[_Work] = []
        for key, item in work.items():
            entry = hits.get(key)
            if entry is None:
                misses.append(item)
                continue
            self._store(
                item.rows,
                item,
                response=entry.response,
                cached=True,
                latency_ms=entry.latency_ms,
            )  # ttft_ms travels inside the stored response
            self.done += len(item.rows)
            self.cached += len(item.rows)
        return misses

    def served(self, item: _Work, entry: CachedEntry) -> None:
        """Fill the rows of a request another run answered meanwhile."""
        self._store(
            item.rows, item, response=entry.response, cached=True, latency_ms=entry.latency_ms
        )
        self.done += len(item.rows)
        self.cached += len(item.rows)

    def offline_misses(self, misses: list[_Work]) -> None:
        for item in misses:
            self._error_rows(
                item.rows, OfflineCacheMiss(), "offline_miss", 0, emit=False, item=item
            )

    # -- sending ------------------------------------------------------------------------

    async def worker(self, feed: _Feed, cache: ResponseCache) -> None:
        try:
            renew_after = LEASE_TTL * _RENEW_SHARE
            loop = asyncio.get_running_loop()
            while (item := await feed.take()) is not None:
                if self.abort.error is not None:
                    return
                if item.claimed_at and loop.time() - item.claimed_at > renew_after:
                    # claimed long ago (a slow, rate-limited candidate): renew the lease
                    self.claimed.discard(item.key)
                    if not await self._claim(item, cache, wait=False):
                        continue
                await self._send(item, cache, claim=False)
            while self.deferred:  # another run was sending these: wait for its answers
                if self.abort.error is not None:
                    return
                await self._send(self.deferred.popleft(), cache, wait=True)
        except Exception as e:  # not a vendor failure: a configuration error or a bug
            if self.abort.error is None:
                self.abort.error = e

    def backoff_scale(self) -> float:
        """The first retry's backoff: ``backoff_base`` when most recent attempts failed (an
        overloaded or broken endpoint), down to a tenth of it when few did (a request's bad
        luck at a vendor that mostly answers: waiting long only stretches the run's tail)."""
        if len(self.failures) < 10:
            return self.backoff_base
        share = sum(self.failures) / len(self.failures)
        return self.backoff_base * max(0.1, min(1.0, 2.0 * share))

    async def _wait_for_pause(self) -> None:
        """Sleep while the candidate is paused (a 429 with Retry-After)."""
        loop = asyncio.get_running_loop()
        while (wait := self.pause_until - loop.time()) > 0:
            await asyncio.sleep(wait)

    async def _call(self, item: _Work, hedging: _Hedging | None) -> ProviderResponse:
        """The call itself, once its slot and limits are taken, and what it tells about the
        candidate's health: the circuit breaker, the failure share, the latencies and a pause
        asked for by a 429's Retry-After. Vendor errors are raised."""
        if self.breaker.tripped is not None:  # opened while this waited: do not send
            raise self.breaker.tripped
        self.sent += 1
        loop = asyncio.get_running_loop()
        if hedging is not None:  # the first attempt leaves: watch whether it hangs
            self._watch(hedging, loop.time())
        try:
            answer = await self.provider.complete_prepared(item.body, item.body_json)
        except VendorError as e:
            if e.status == 429 and e.retry_after is not None:  # the endpoint asked all to wait
                until = loop.time() + min(e.retry_after, MAX_BACKOFF)
                self.pause_until = max(self.pause_until, until)
            self.breaker.failure(e)
            self.failures.append(True)
            raise
        self.breaker.success()
        self.failures.append(False)
        self.latencies.append(answer.latency_ms / 1000.0)
        self._answers += 1
        return answer

    async def _attempt(
        self, item: _Work, *, hedge: bool = False, hedging: _Hedging | None = None
    ) -> ProviderResponse:
        """One call within the candidate's concurrency and rate limits.

        A ``hedge`` (the second attempt of a hung request) takes no concurrency slot of its
        own: the hung attempt holds one, and whichever loses is cancelled.
        """
        if self.shared is not None:
            return await self._attempt_shared(item, self.shared, hedge=hedge, hedging=hedging)
        generation = -1 if hedge else await self.adaptive.acquire()
        outcome = "other"
        charged = 0
        try:
            if self.pause_until:  # a pause may begin while this waited for a slot
                await self._wait_for_pause()
            if self.limits.counts_tokens:
                if item.tokens < 0:
                    item.tokens = estimate_request_tokens(item.body)
                charged = item.tokens
            await self.limits.admit(charged)
            if self.pause_until:
                await self._wait_for_pause()
            try:
                answer = await self._call(item, hedging)
            except VendorError as e:
                if e.status == 429:
                    outcome = "overload"
                    self.limits.settle(charged, None)  # a rejected request used no tokens
                raise
            outcome = "ok"
            self.limits.settle(charged, _tokens_used(answer))  # the estimate, corrected
            return answer
        finally:
            if not hedge:
                self.adaptive.release(generation, outcome)

    async def _attempt_shared(
        self,
        item: _Work,
        shared: SharedLimits,
        *,
        hedge: bool,
        hedging: _Hedging | None,
    ) -> ProviderResponse:
        """:meth:`_attempt` under the cluster's limits: the slot, the rate limits and the
        pauses are leased from ``shared``; what happened is reported back to it."""
        charged = 0
        if self.spec.tpm:
            if item.tokens < 0:
                item.tokens = estimate_request_tokens(item.body)
            charged = item.tokens
        lease = await shared.acquire(charged, hedge)
        outcome, delta, retry_after = "other", 0, None
        try:
            if self.pause_until:  # this process's own view of a pause
                await self._wait_for_pause()
            try:
                answer = await self._call(item, hedging)
            except VendorError as e:
                if e.status == 429:
                    outcome, delta = "overload", -charged
                    if e.retry_after is not None:
                        retry_after = min(e.retry_after, MAX_BACKOFF)
                raise
            outcome = "ok"
            used = _tokens_used(answer)
            if charged and used:
                delta = used - charged
            return answer
        finally:
            shared.release(lease, outcome, delta, retry_after)

    def _hedge_delay(self, now: float) -> float | None:
        """:meth:`HedgePolicy.delay` for the latencies so far. Once there are enough of them,
        their 95th percentile is computed again at most every 0.1 s, not on every answer."""
        n = self._answers
        if n != self._delay_n and (n <= self.hedge.min_samples or now - self._delay_at >= 0.1):
            self._delay = self.hedge.delay(self.latencies, self.spec.timeout)
            self._delay_n, self._delay_at = n, now
        return self._delay

    def _watch(self, hedging: _Hedging, now: float) -> None:
        """The first attempt of a request leaves: watch it, to hedge it if it hangs. Costs a
        dict entry; one timer per candidate looks at every watched request (:meth:`_sweep`)."""
        if not self.hedge.allows(self.hedged, self.sent):
            return  # the hedge budget is spent: not this request
        hedging.sent_at = now
        self._watched[hedging] = None
        delay = self._hedge_delay(now)
        look = now + (0.5 if delay is None else min(delay, 0.5))
        sweep = self._sweeper
        if sweep is None or sweep.when() > look:
            if sweep is not None:
                sweep.cancel()
            self._sweeper = asyncio.get_running_loop().call_at(look, self._sweep)

    def _sweep(self) -> None:
        """Hedge every watched request whose first attempt left longer than the hedge delay
        ago (budget allowing); look again when the next one is due, or in half a second at
        most: the delay follows the latencies seen meanwhile. A timer callback: no task waits.
        """
        self._sweeper = None
        if not self._watched:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        delay = self._hedge_delay(now)
        look = now + 0.5
        if delay is not None:
            for hedging in list(self._watched):
                if hedging.task is not None:
                    continue  # its hedge is in flight
                due = hedging.sent_at + delay
                if due > now:
                    look = min(look, due)
                elif not self.hedge.allows(self.hedged, self.sent):
                    del self._watched[hedging]  # the budget is spent: not this request
                else:
                    self.hedged += 1
                    hedging.created += 1
                    task = asyncio.ensure_future(self._attempt(hedging.item, hedge=True))
                    hedging.task = task
                    task.add_done_callback(functools.partial(self._hedge_done, hedging))
        self._sweeper = loop.call_at(look, self._sweep)

    def _hedge_done(self, hedging: _Hedging, task: asyncio.Future[ProviderResponse]) -> None:
        """The hedge finished while the first attempt still runs: an answer (or an error that
        is not the vendor's) ends the request, so the first attempt is cancelled (its slot
        freed); a vendor error leaves the first attempt alone again."""
        if task.cancelled():
            return
        exc = task.exception()  # retrieved, whoever uses it
        if hedging.done:
            return
        if isinstance(exc, VendorError):
            if hedging.first_error is None:
                hedging.first_error = exc
            hedging.task = None
            if self._sweeper is not None:  # still hanging: hedged again now, budget allowing
                self._sweeper.cancel()
            self._sweep()
            return
        hedging.won = True
        hedging.worker.cancel()

    async def _hedged(self, item: _Work) -> tuple[ProviderResponse | VendorError, int]:
        """One attempt, hedged with a second if it hangs: the first answer, and attempts made.

        The first attempt runs in the worker's own task, watched by the candidate's timer
        (:meth:`_watch`, :meth:`_sweep`): a request answered in time costs no task, no wait
        and no timer of its own. The
        attempt still running when the other answered is cancelled (its slot freed). When
        every attempt failed, the first failure is returned.
        """
        if not self.hedge.enabled:
            try:
                return await self._attempt(item), 1
            except VendorError as e:
                return e, 1
        worker = asyncio.current_task()
        assert worker is not None
        hedging = _Hedging(item, worker)
        outcome: ProviderResponse | VendorError | None = None
        try:
            try:
                outcome = await self._attempt(item, hedging=hedging)
            except VendorError as e:
                outcome = e
                if hedging.first_error is None:
                    hedging.first_error = e
            except asyncio.CancelledError:
                # cancelled by _hedge_done (the hedge finished), unless by someone else too
                if not hedging.won or worker.uncancel() > 0:
                    raise
            finally:
                hedging.done = True
                self._watched.pop(hedging, None)
            hedge = hedging.task
            if isinstance(outcome, ProviderResponse) or hedge is None:
                if isinstance(outcome, VendorError):
                    outcome = hedging.first_error or outcome
                assert outcome is not None
                return outcome, hedging.created
            # the first attempt failed, or lost: the hedge's outcome decides
            if not hedge.done():
                await asyncio.wait([hedge])
            exc = hedge.exception()
            if exc is None:
                return hedge.result(), hedging.created
            if not isinstance(exc, VendorError):
                raise exc
            return hedging.first_error or exc, hedging.created
        finally:
            hedge = hedging.task
            if hedge is not None and not hedge.done():
                hedge.cancel()
                await asyncio.gather(hedge, return_exceptions=True)

    async def _claim(self, item: _Work, cache: ResponseCache, *, wait: bool) -> bool:
        """Claim the request in the cache: True to send it; False when another run answered
        it (rows filled from the cache) or is sending it (deferred, unless ``wait``)."""
        while True:
            state = await asyncio.to_thread(cache.claim, item.key)
            entry = cache.get(item.key) if state == "answered" else None
            taken = self.take_claim(item, state, entry, asyncio.get_running_loop().time())
            if taken == "send":
                return True
            if taken == "served":
                self.emit()
                return False
            if not wait:
                self.deferred.append(item)
                return False
            await asyncio.sleep(self.lease_poll)

    def take_claim(
        self, item: _Work, state: str | None, entry: CachedEntry | None, now: float
    ) -> str:
        """What a claim of ``item`` in the cache means: ``"send"`` (claimed: ours to send),
        ``"served"`` (another run answered it: its rows filled from ``entry``) or ``"held"``
        (another live run is sending it)."""
        if state == "claimed":
            item.claimed_at = now
            self.claimed.add(item.key)
            return "send"
        if state == "answered":
            if entry is None:  # pragma: no cover - answered means stored
                return "send"
            self.served(item, entry)
            return "served"
        return "held"

    async def _send(
        self, item: _Work, cache: ResponseCache, *, wait: bool = False, claim: bool = True
    ) -> None:
        """Send one request until it is answered or fails for good. ``claim``: claim it in
        the cache first (the :class:`_Feed` claimed the others already)."""
        if claim and self.leases and not await self._claim(item, cache, wait=wait):
            return
        self.ready(item)
        loop = asyncio.get_running_loop()
        spec = self.spec
        attempts = 0
        while True:
            if attempts and self.abort.error is not None:
                return  # the run is ending: no more retries
            if self.breaker.tripped is not None:  # a dead endpoint: do not send
                self._error_rows(
                    item.rows, self.breaker.tripped, vendor_error_kind(self.breaker.tripped),
                    attempts, item=item,
                )  # fmt: skip
                if self.leases:
                    self.claimed.discard(item.key)
                    await asyncio.to_thread(cache.release, [item.key])
                return
            paused = self.pause_until - loop.time()
            if paused > 0:
                await asyncio.sleep(paused)
            outcome, made = await self._hedged(item)
            attempts += made
            if isinstance(outcome, VendorError):
                e = outcome
                if e.retryable and attempts <= spec.max_retries and self.breaker.tripped is None:
                    if e.retry_after is not None:  # the candidate's pause: resume with it
                        await self._wait_for_pause()
                    else:
                        await asyncio.sleep(backoff_delay(attempts, e, self.backoff_scale()))
                    continue
                self._error_rows(item.rows, e, vendor_error_kind(e), attempts, item=item)
                if self.leases:  # no answer: another run may try it
                    self.claimed.discard(item.key)
                    await asyncio.to_thread(cache.release, [item.key])
                return
            answer = outcome
            cache.put(
                item.key,
                self.identity,
                item.body,
                answer.raw,
                answer.response,
                answer.latency_ms,
                identity_json=self.identity_json,
                request_json=item.body_json,
                raw_json=answer.raw_json,
            )
            self.claimed.discard(item.key)  # the lease ends when the answer is committed
            fingerprint = (
                answer.raw.get("system_fingerprint") if isinstance(answer.raw, dict) else None
            )
            self._store(
                item.rows,
                item,
                response=answer.response,
                attempts=attempts,
                latency_ms=answer.latency_ms,
                system_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
                version_headers=answer.version_headers or None,
            )
            self.done += len(item.rows)
            self.emit()
            return


async def replay_async(
    exchanges: Sequence[Exchange],
    candidates: Sequence[CandidateSpec],
    *,
    cache: ResponseCache,
    offline: bool = False,
    concurrency: int | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    backoff_base: float = 0.5,
    interruptible: bool = True,
    hedge: HedgePolicy | None = None,
    breaker_threshold: int = 8,
    leases: bool = True,
    cache_salt: str | None = None,
    on_result: Callable[[int, ReplayResult], None] | None = None,
    spill: Spill | None = None,
    duplicates: Mapping[int, Sequence[int]] | None = None,
) -> Sequence[ReplayResult]:
    """Replay every exchange against every candidate; one :class:`ReplayResult` per pair.

    ``offline=True`` serves answers from the cache only (misses become ``offline_miss``
    error rows) and opens no connection. ``concurrency`` overrides every candidate's own.
    ``backoff_base`` is the first retry's backoff in seconds (without ``Retry-After``).
    ``hedge`` says when a hung attempt gets a second one (:class:`HedgePolicy`);
    ``breaker_threshold`` is how many identical failures in a row, with no success, make a
    candidate fail the rest of its requests at once (:class:`CircuitBreaker`). With
    ``leases``, each request is claimed in the cache before it is sent
    (:meth:`ResponseCache.claim`): a run sharing the cache file with this one waits for
    this one's answer instead of sending the request too (and takes over the claims of a
    run that was killed).

    Each candidate sends within its ``rpm`` / ``tpm`` limits (tokens estimated with
    :mod:`migrate_eval.replay.tokens`, then corrected with the reported usage) and its concurrency
    adapts to 429s (:class:`~migrate_eval.replay.ratelimit.AdaptiveConcurrency`).

    Vendor failures become error rows. A configuration problem found while sending (an
    API key variable that is not set) is raised once the answers received so far are
    committed to the cache. With ``interruptible`` (and in the main thread), SIGINT
    (Ctrl-C) or SIGTERM stops sending, cancels the requests in flight, commits the cache and raises
    :class:`ReplayInterrupted`; a second Ctrl-C interrupts at once. ``cache_salt`` (a watch)
    adds ``"watch": salt`` to every cache identity: no earlier answer is reused, and the live
    answers are stored apart from a run's. ``on_result`` hears each result, with its
    exchange's number, as it is stored (in the event loop: it must not block).

    ``spill`` (a run too large to hold, :mod:`migrate_eval.core.store`): the results are kept
    in its files, and each candidate's requests are planned a window of exchanges at a time
    (only their keys held until sent); ``duplicates`` (first row -> later rows with the very
    same logged request) then lets the rows of one request share one call across windows.
    """
    return await replay_rows(
        exchanges,
        candidates,
        [0] * len(candidates),
        cache=cache,
        offline=offline,
        concurrency=concurrency,
        progress=progress,
        backoff_base=backoff_base,
        interruptible=interruptible,
        hedge=hedge,
        breaker_threshold=breaker_threshold,
        leases=leases,
        cache_salt=cache_salt,
        on_result=on_result,
        spill=spill,
        duplicates=duplicates,
    )


async def replay_rows(
    exchanges: Sequence[Exchange],
    candidates: Sequence[CandidateSpec],
    repeats: Sequence[int],
    *,
    cache: ResponseCache,
    offline: bool,
    concurrency: int | None,
    progress: Callable[[ProgressEvent], None] | None,
    backoff_base: float,
    interruptible: bool,
    hedge: HedgePolicy | None = None,
    breaker_threshold: int = 8,
    leases: bool = True,
    cache_salt: str | None = None,
    shared_limits: Sequence[SharedLimits | None] | None = None,
    on_result: Callable[[int, ReplayResult], None] | None = None,
    spill: Spill | None = None,
    duplicates: Mapping[int, Sequence[int]] | None = None,
) -> Sequence[ReplayResult]:
    specs = [
        c.model_copy(update={"concurrency": concurrency}) if concurrency else c for c in candidates
    ]
    n_cand = len(specs)
    columns = [_Answers(new_records(spill, f"answers-{i}")) for i in range(n_cand)]
    exchange_ids = record_ids(exchanges)
    providers: list[Provider] = []
    abort = _Abort()
    interrupted = False
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Future[None]] = []
    before: dict[int, Any] = {}  # the handlers the replay's replace (put back after it)

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        for feed in feeds:
            feed.stopped = True
        for task in tasks:
            task.cancel()
        # A second Ctrl-C (or SIGTERM) interrupts at once (the handler from before)
        _restore_signals(loop, before)

    runs: list[_CandidateRun] = []
    feeds: list[_Feed] = []
    quiet = contextlib.ExitStack()  # the interpreter's settings while requests are in flight
    try:
        quiet.enter_context(replay_runtime())
        for spec in specs:
            providers.append(get_provider(spec))
        pending: list[tuple[_CandidateRun, list[_Work] | _Planner]] = []
        for column, (spec, provider) in enumerate(zip(specs, providers, strict=True)):
            run = _CandidateRun(
                spec=spec,
                provider=provider,
                total=len(exchanges),
                answers=columns[column],
                exchange_ids=exchange_ids,
                progress=progress,
                backoff_base=backoff_base,
                abort=abort,
                repeat=repeats[column],
                salt=cache_salt,
                hedge=hedge or HedgePolicy(),
                breaker=CircuitBreaker(threshold=max(1, breaker_threshold)),
                leases=leases,
                shared=shared_limits[column] if shared_limits else None,
                on_result=on_result,
                exchanges=exchanges if spill is not None else None,
            )
            runs.append(run)
            if spill is not None:  # too large to hold: planned a window at a time
                planner = _Planner(run, exchanges, cache, duplicates)
                if offline:
                    while not planner.exhausted:
                        run.offline_misses(planner.take(planner.window))
                else:
                    pending.append((run, planner))
            elif offline:
                run.offline_misses(run.serve_cached(run.plan(exchanges), cache))
            elif exchanges:  # planned as the workers take requests: the first leave at once
                pending.append((run, _Planner.held(run, exchanges, cache)))
            if run.done:
                run.emit()
        if pending:
            settle()  # the plan is held to the end: not walked by the collector either
            if interruptible:
                try:
                    for sig in _STOP_SIGNALS:
                        previous = signal.getsignal(sig)
                        loop.add_signal_handler(sig, on_sigint)
                        before[sig] = previous
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread, or no signals here (Windows)
            for run, todo in pending:
                feed = _Feed(run, todo, cache)
                feeds.append(feed)
                # Twice as many workers as requests allowed in flight (the adaptive limit
                # caps those): a worker waiting out a retry's backoff leaves no slot idle.
                n_workers = min(2 * run.spec.concurrency, max(1, len(exchanges)))
                tasks.extend(
                    asyncio.ensure_future(run.worker(feed, cache)) for _ in range(n_workers)
                )
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException) and not isinstance(
                    outcome, asyncio.CancelledError
                ):
                    raise outcome
    finally:
        _restore_signals(loop, before)
        try:  # connections first: a cache that cannot be written must not leak them
            for provider in providers:
                with contextlib.suppress(Exception):
                    await provider.aclose()
            for feed in feeds:  # a claim transaction under way: its leases are released too
                await feed.aclose()
            for run in runs:  # stopped early (Ctrl-C, an error): others may send these now
                if run.claimed:
                    with contextlib.suppress(MigrateEvalError, sqlite3.Error):
                        cache.release(run.claimed)
        finally:
            try:
                cache.flush()
            finally:
                quiet.close()
    if abort.error is not None:
        if isinstance(abort.error, ConfigError) and pending:
            # e.g. an API key that is not set: say what needed the network, and the way out
            lacking = ", ".join(
                f"{run.spec.name}: {len(m) if isinstance(m, list) else run.total - run.done} "
                f"of {run.total}"
                for run, m in pending
                if m
            )
            raise ConfigError(
                f"{abort.error} (requests not in the response cache: {lacking}; "
                "--offline scores only the cached answers)"
            ) from abort.error
        raise abort.error
    n_missing = sum(column.missing(len(exchanges)) for column in columns)
    if interrupted:  # stopped, even if the last answers came in meanwhile: the caller stops
        raise ReplayInterrupted(
            interleave(
                [
                    Unanswered(answers.known, exchange_ids, spec.name)
                    for spec, answers in zip(specs, columns, strict=True)
                ]
            ),
            answered=sum(c.answered for c in columns),
            missing=n_missing,
        )
    if n_missing:  # pragma: no cover - every row is filled by construction
        raise RuntimeError(f"replay left {n_missing} rows without a result")
    return interleave([c.out for c in columns])


def replay(
    exchanges: Sequence[Exchange],
    candidates: Sequence[CandidateSpec],
    *,
    cache: ResponseCache,
    offline: bool = False,
    concurrency: int | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    backoff_base: float = 0.5,
    interruptible: bool = True,
    hedge: HedgePolicy | None = None,
    breaker_threshold: int = 8,
    leases: bool = True,
    cache_salt: str | None = None,
    on_result: Callable[[int, ReplayResult], None] | None = None,
    spill: Spill | None = None,
    duplicates: Mapping[int, Sequence[int]] | None = None,
) -> Sequence[ReplayResult]:
    """Synchronous :func:`replay_async` (runs its own event loop)."""
    return asyncio.run(
        replay_async(
            exchanges,
            candidates,
            cache=cache,
            offline=offline,
            concurrency=concurrency,
            progress=progress,
            backoff_base=backoff_base,
            interruptible=interruptible,
            hedge=hedge,
            breaker_threshold=breaker_threshold,
            leases=leases,
            cache_salt=cache_salt,
            on_result=on_result,
            spill=spill,
            duplicates=duplicates,
        )
    )


# -- the baseline re-run --------------------------------------------------------------------


# -- progress display -----------------------------------------------------------------------
