"""Replay on a Ray cluster (``--executor ray``): the same rows as :func:`replay`, sent by workers.

How the work is split, and what stays true of a local run:

* **Partitions.** Each candidate's exchanges are split into shards, one Ray task per (candidate,
  shard). Identical logged requests land in the same shard (the shard is a hash of the
  request), so a request asked twice is sent once, as in a local run. Each task runs the
  local engine (:func:`~migrate_eval.replay.engine.replay_rows`) over its shard: requests,
  retries, hedges, the circuit breaker and the error rows are the local ones.
* **Limits for the cluster as a whole.** One limiter actor per candidate holds the
  candidate's concurrency (AIMD on 429), rpm and tpm limits and Retry-After pauses
  (:class:`~migrate_eval.replay.ratelimit.AdaptiveConcurrency`,
  :class:`~migrate_eval.replay.ratelimit.RateLimiter`); every worker leases each request's
  slot and rate from it and reports what happened (429, the tokens used) back. Two workers
  therefore never send more than one process would.
* **The cache is the source of truth.** Workers open the run's response cache file (on a
  cluster: a path every node sees, see docs/scale.md) and claim each request in it before
  sending (:meth:`~migrate_eval.replay.cache.ResponseCache.claim`). A worker that dies is
  retried by Ray: its answers already committed are served from the cache, its claims are
  taken over, nothing answered is sent again. A driver started again resumes the same way.
* **One progress board.** Workers report their counts to a small actor; the driver polls it
  and calls ``progress`` with one :class:`~migrate_eval.replay.engine.ProgressEvent` per
  candidate for the whole cluster.
* **Data.** Workers receive the exchanges the driver hands over: already sampled and, with
  ``--redact``, already redacted (the run redacts before replay, on the driver).

Ray is imported only here, and only when a run asks for it
(:func:`~migrate_eval.core.executor.ensure_ray`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, MutableSequence, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import ConfigError, MigrateEvalError
from migrate_eval.core.executor import ensure_ray
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.request import request_key
from migrate_eval.core.signals import sigterm_interrupts
from migrate_eval.core.store import Spill, interleave, new_records, record_ids
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.engine import (
    HedgePolicy,
    ProgressEvent,
    ReplayInterrupted,
    Unanswered,
)
from migrate_eval.replay.ratelimit import AdaptiveConcurrency, RequestLimits

#: Seconds between two progress reports of one worker (and between two polls of the driver).
PROGRESS_EVERY = 0.25
#: Times Ray runs a shard's task again when its worker dies (the cache makes that cheap).
TASK_RETRIES = 3
#: How long workers wait for the cache writer: short, a killed worker loses few answers.
WORKER_BATCH_INTERVAL = 0.01


def shard_of(exchange: Exchange, shards: int) -> int:
    """The shard of an exchange: equal logged requests share one (they are sent once)."""
    return int.from_bytes(request_key(exchange)[:8], "big") % shards


def shard_rows(exchanges: Sequence[Exchange], shards: int) -> list[list[int]]:
    """Row indices per shard (each in exchange order); empty shards left out."""
    out: list[list[int]] = [[] for _ in range(max(1, shards))]
    for i, ex in enumerate(exchanges):
        out[shard_of(ex, len(out))].append(i)
    return [rows for rows in out if rows]


# -- actors (plain classes here; made Ray actors by _remotes) ------------------------------


class Limiter:
    """A candidate's limits for the whole cluster (one actor per candidate and run).

    Leases are held per shard; a shard's task started again (its worker died) gives back
    what the dead attempt held (:meth:`begin`), so a killed worker leaks no slot.
    """

    def __init__(self, concurrency: int, rpm: float | None, tpm: float | None) -> None:
        self.adaptive = AdaptiveConcurrency(maximum=concurrency)
        self.limits = RequestLimits(rpm, tpm)
        self.pause_until = 0.0
        self.epochs: dict[int, int] = {}
        self.leases: dict[int, tuple[int, int, int]] = {}  # lease -> shard, epoch, generation
        self.next_lease = 0
        self.sent = 0

    async def begin(self, shard: int) -> int:
        """A shard's task (or its retry) starts: the earlier attempt's slots are freed."""
        epoch = self.epochs.get(shard, 0) + 1
        self.epochs[shard] = epoch
        stale = [k for k, (s, _, _) in self.leases.items() if s == shard]
        for lease in stale:
            _, _, generation = self.leases.pop(lease)
            self.adaptive.release(generation, "other")
        return epoch

    async def _wait_for_pause(self) -> None:
        loop = asyncio.get_running_loop()
        while (wait := self.pause_until - loop.time()) > 0:
            await asyncio.sleep(wait)

    async def acquire(self, shard: int, epoch: int, tokens: int, hedge: bool) -> tuple[int, int]:
        """Wait for a slot (not for a hedge), the rate limits and any pause: (lease, the
        in-flight limit now). The lease is -1 for a hedge and for a dead attempt's call."""
        generation = -1 if hedge else await self.adaptive.acquire()
        lease = -1
        if not hedge:
            if self.epochs.get(shard) != epoch:  # the attempt that asked is gone
                self.adaptive.release(generation, "other")
                return -1, self.adaptive.current
            lease = self._lease(shard, epoch, generation)
        try:
            await self._wait_for_pause()
            await self.limits.admit(tokens)
            await self._wait_for_pause()
        except BaseException:
            self._release(lease, "other", -tokens, None)
            raise
        self.sent += 1
        return lease, self.adaptive.current

    async def acquire_many(
        self, shard: int, epoch: int, asks: list[tuple[int, bool]]
    ) -> tuple[list[int], int]:
        """Several requests of one worker, ``(tokens, hedge)`` each, in one call: the first
        waited for as :meth:`acquire` does, those after it let through while none has to wait
        (a slot free, the rates open, no pause). Their leases in order (fewer than asked: the
        worker asks again for the rest) and the in-flight limit. Each request is admitted as
        one call each would admit it: the limits hold the same."""
        tokens, hedge = asks[0]
        lease, limit = await self.acquire(shard, epoch, tokens, hedge)
        if lease < 0 and not hedge:  # the attempt that asked is gone
            return [-1] * len(asks), limit
        leases = [lease]
        now = asyncio.get_running_loop().time()
        adaptive = self.adaptive
        for tokens, hedge in asks[1:]:
            if self.pause_until > now or not (hedge or adaptive.free):
                break
            if not self.limits.admit_now(tokens):
                break
            generation = None if hedge else adaptive.try_acquire()  # free: checked above
            leases.append(-1 if generation is None else self._lease(shard, epoch, generation))
            self.sent += 1
        return leases, self.adaptive.current

    def _lease(self, shard: int, epoch: int, generation: int) -> int:
        """A new lease of a slot taken for ``shard``'s attempt ``epoch``."""
        lease = self.next_lease
        self.next_lease += 1
        self.leases[lease] = (shard, epoch, generation)
        return lease

    async def release(
        self, lease: int, outcome: str, token_delta: int, retry_after: float | None
    ) -> None:
        """The request ended: free its slot, correct its tokens, pause on Retry-After."""
        self._release(lease, outcome, token_delta, retry_after)

    async def release_many(self, ended: list[tuple[int, str, int, float | None]]) -> None:
        """:meth:`release` of several requests, in the order they ended."""
        for lease, outcome, token_delta, retry_after in ended:
            self._release(lease, outcome, token_delta, retry_after)

    def _release(
        self, lease: int, outcome: str, token_delta: int, retry_after: float | None
    ) -> None:
        if retry_after is not None and retry_after > 0:
            try:
                now = asyncio.get_running_loop().time()
            except RuntimeError:  # pragma: no cover - actor methods run in its loop
                now = time.monotonic()
            self.pause_until = max(self.pause_until, now + retry_after)
        if token_delta and self.limits.tpm is not None:
            self.limits.tpm.adjust(token_delta)  # the worker's estimate, corrected
        held = self.leases.pop(lease, None)
        if held is not None:
            self.adaptive.release(held[2], outcome)

    async def stats(self) -> dict[str, Any]:
        """What the limiter saw: requests let through, the limit now, its changes, waits."""
        return {
            "sent": self.sent,
            "in_flight_limit": self.adaptive.current,
            "in_flight": self.adaptive.in_flight,
            "decreases": self.adaptive.decreases,
            "throttled_s": self.limits.waited,
        }


class Board:
    """The progress of every worker, polled by the driver (one board per run)."""

    def __init__(self) -> None:
        self.events: dict[tuple[int, int], tuple[int, int, int, int | None, float]] = {}
        self.pids: dict[tuple[int, int], int] = {}

    def report(
        self, column: int, shard: int, event: tuple[int, int, int, int | None, float]
    ) -> None:
        self.events[(column, shard)] = event

    def started(self, column: int, shard: int, pid: int) -> None:
        self.pids[(column, shard)] = pid
        self.events.pop((column, shard), None)  # a retried shard counts again from zero

    def snapshot(
        self,
    ) -> tuple[
        dict[tuple[int, int], tuple[int, int, int, int | None, float]], dict[tuple[int, int], int]
    ]:
        return dict(self.events), dict(self.pids)


@dataclass(frozen=True)
class ShardJob:
    """What one worker task is asked to do (everything picklable)."""

    spec: CandidateSpec
    column: int
    shard: int
    cache_path: str
    offline: bool
    cache_salt: str | None
    backoff_base: float
    hedge: HedgePolicy | None
    breaker_threshold: int
    limiter: Any  # the candidate's Limiter actor handle
    board: Any  # the run's Board actor handle

    @staticmethod
    def settings(
        cache_path: str | Path,
        offline: bool,
        cache_salt: str | None,
        backoff_base: float,
        hedge: HedgePolicy | None,
        breaker_threshold: int,
    ) -> dict[str, Any]:
        """What every task of a run shares."""
        return {
            "cache_path": str(Path(cache_path).resolve()),
            "offline": offline,
            "cache_salt": cache_salt,
            "backoff_base": backoff_base,
            "hedge": hedge,
            "breaker_threshold": breaker_threshold,
        }


class _ActorLimits:
    """:class:`~migrate_eval.replay.engine.SharedLimits` backed by a :class:`Limiter` actor.

    One call to the actor at a time per worker: the requests that ask meanwhile wait in
    line and go in the next call together (:meth:`Limiter.acquire_many`), and the requests
    that end in one turn of the event loop are reported in one message
    (:meth:`Limiter.release_many`). A round trip to the actor for every request capped a
    worker at the actor's pace (a few thousand requests a second, less on a busy machine)."""

    #: Requests asked for in one call to the actor, at most.
    BATCH = 256

    def __init__(self, limiter: Any, shard: int, epoch: int) -> None:
        self._limiter = limiter
        self._shard = shard
        self._epoch = epoch
        self._limit: int | None = None
        self._asks: deque[tuple[int, bool, asyncio.Future[int]]] = deque()
        self._leasing: asyncio.Future[None] | None = None
        self._ended: list[tuple[int, str, int, float | None]] = []
        #: calls made to the actor (acquire_many, release_many): for tests and benchmarks
        self.calls = 0

    async def acquire(self, tokens: int, hedge: bool) -> int:
        asked: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._asks.append((tokens, hedge, asked))
        if self._leasing is None:
            self._leasing = asyncio.ensure_future(self._lease())
        return await asked

    async def _lease(self) -> None:
        """Ask the actor for the requests in line, a batch at a time, until none is left."""
        batch: list[tuple[int, bool, asyncio.Future[int]]] = []
        try:
            while self._asks:
                batch = []
                while self._asks and len(batch) < self.BATCH:
                    ask = self._asks.popleft()
                    if not ask[2].done():  # not given up meanwhile
                        batch.append(ask)
                if not batch:
                    continue
                self.calls += 1
                leases, limit = await self._limiter.acquire_many.remote(
                    self._shard, self._epoch, [(tokens, hedge) for tokens, hedge, _ in batch]
                )
                self._limit = int(limit)
                for (tokens, _, asked), lease in zip(batch, leases, strict=False):
                    if asked.done():  # its request gave up meanwhile: the lease goes back
                        self.release(int(lease), "other", -tokens, None)
                    else:
                        asked.set_result(int(lease))
                self._asks.extendleft(reversed(batch[len(leases) :]))  # asked again, first
                batch = []
        except BaseException as e:  # the actor is gone, or this worker stops
            for _, _, asked in (*batch, *self._asks):
                if not asked.done():
                    if isinstance(e, asyncio.CancelledError):
                        asked.cancel()
                    else:
                        asked.set_exception(e)
            self._asks.clear()
            raise
        finally:
            self._leasing = None

    def release(
        self, lease: int, outcome: str, token_delta: int, retry_after: float | None
    ) -> None:
        if lease < 0 and not token_delta and retry_after is None:
            return  # a hedge with nothing to report
        self._ended.append((lease, outcome, token_delta, retry_after))
        if len(self._ended) == 1:  # the first of this turn: sent once the turn is over
            asyncio.get_running_loop().call_soon(self.flush)

    @contextlib.contextmanager
    def reporting(self) -> Iterator[None]:
        """Within it, requests are leased; at its end what is not reported yet is (a slot not
        given back would be held from every later worker)."""
        try:
            yield
        finally:
            self.flush()

    def flush(self) -> None:
        """Report the requests that ended and are not reported yet."""
        ended, self._ended = self._ended, []
        if ended:
            self.calls += 1
            self._limiter.release_many.remote(ended)

    @property
    def in_flight_limit(self) -> int | None:
        return self._limit


def run_shard(job: ShardJob, exchanges: list[Exchange]) -> list[ReplayResult]:
    """A worker's task: replay one shard for one candidate through the shared cache."""
    return asyncio.run(_run_shard(job, exchanges))


async def _run_shard(job: ShardJob, exchanges: list[Exchange]) -> list[ReplayResult]:
    from migrate_eval.replay.cache import ResponseCache
    from migrate_eval.replay.engine import replay_rows

    board = job.board
    board.started.remote(job.column, job.shard, os.getpid())
    epoch = await job.limiter.begin.remote(job.shard)
    limits = _ActorLimits(job.limiter, job.shard, int(epoch))
    last = [0.0]

    def report(event: ProgressEvent, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - last[0] < PROGRESS_EVERY and event.done < event.total:
            return
        last[0] = now
        payload = (event.done, event.errors, event.cached, event.in_flight_limit, 0.0)
        board.report.remote(job.column, job.shard, payload)

    with (
        ResponseCache(job.cache_path, batch_interval=WORKER_BATCH_INTERVAL) as cache,
        limits.reporting(),
    ):
        rows = await replay_rows(
            exchanges,
            [job.spec],
            [0],
            cache=cache,
            offline=job.offline,
            concurrency=None,
            progress=report,
            backoff_base=job.backoff_base,
            interruptible=False,
            hedge=job.hedge,
            breaker_threshold=job.breaker_threshold,
            leases=True,
            cache_salt=job.cache_salt,
            shared_limits=[limits],
        )
    done = len(rows)
    errors = sum(1 for r in rows if not r.ok)
    cached = sum(1 for r in rows if r.cached)
    await board.report.remote(
        job.column, job.shard, (done, errors, cached, limits.in_flight_limit, 0.0)
    )
    return list(rows)


@dataclass
class _Remotes:
    limiter: Any
    board: Any
    shard: Any


def _remotes(ray: Any) -> _Remotes:
    return _Remotes(
        limiter=ray.remote(num_cpus=0, max_concurrency=100_000)(Limiter),
        board=ray.remote(num_cpus=0)(Board),
        shard=ray.remote(max_retries=TASK_RETRIES)(run_shard),
    )


def replay_on_ray(
    exchanges: Sequence[Exchange],
    candidates: Sequence[CandidateSpec],
    *,
    cache_path: str | Path,
    offline: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
    cache_salt: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    backoff_base: float = 0.5,
    hedge: HedgePolicy | None = None,
    breaker_threshold: int = 8,
    on_workers: Callable[[dict[tuple[int, int], int]], None] | None = None,
    spill: Spill | None = None,
) -> Sequence[ReplayResult]:
    """:func:`~migrate_eval.replay.engine.replay` on a Ray cluster (see the module).

    ``workers``: shards per candidate (default: the cluster's CPUs). ``cache_path`` must be
    the same file for every worker (a local cluster's workers share this machine's). Returns
    the rows in the local order (exchange, then candidate). ``on_workers`` hears the worker
    process ids by (candidate column, shard) whenever progress is polled. With ``spill`` (a
    run too large to hold) the exchanges go to the cluster :data:`WAVE` at a time, and each
    wave's answers are written to ``spill`` before the next is sent: the driver holds one
    wave. A request asked in two waves is sent once (the second finds it in the cache).
    """
    check_candidates(candidates)
    ray = ensure_ray(address)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_cand, total = len(candidates), len(exchanges)
    remote = _remotes(ray)
    board = remote.board.remote()
    limiters = [remote.limiter.remote(spec.concurrency, spec.rpm, spec.tpm) for spec in candidates]
    columns: list[MutableSequence[ReplayResult]] = [
        new_records(spill, f"ray-answers-{column}") for column in range(n_cand)
    ]
    step = WAVE if spill is not None else max(1, total)
    numbers = itertools.count()  # shards are numbered across waves (progress, leases)
    settings = ShardJob.settings(
        cache_path, offline, cache_salt, backoff_base, hedge, breaker_threshold
    )

    def poll() -> None:
        if progress is not None or on_workers is not None:
            _poll(ray, board, candidates, total, progress, on_workers)

    answered = 0
    with sigterm_interrupts():  # SIGTERM stops the driver as Ctrl-C does
        for start in range(0, total, step):
            wave = list(exchanges[start : start + step])
            try:
                rows = _replay_wave(
                    ray, remote, board, limiters, wave, candidates, workers, numbers, settings, poll
                )
            except _WaveInterrupted as stop:
                raise _interrupted(exchanges, candidates, columns, answered, stop) from None
            for column, answers in zip(columns, rows, strict=True):
                column.extend(answers)
                answered += sum(r.ok for r in answers)
            del rows
    if progress is not None:
        _poll(ray, board, candidates, total, progress, None)
    for actor in (board, *limiters):
        ray.kill(actor)
    return interleave(columns)


#: Exchanges a run on disk hands to the cluster at a time (:func:`replay_on_ray`).
WAVE = 20_000


class _WaveInterrupted(Exception):
    """Ctrl-C during a wave: what its tasks had answered (per candidate, None where not)."""

    def __init__(self, rows: list[list[ReplayResult | None]], answered: int) -> None:
        self.rows = rows
        self.answered = answered


def _replay_wave(
    ray: Any,
    remote: _Remotes,
    board: Any,
    limiters: list[Any],
    exchanges: list[Exchange],
    candidates: Sequence[CandidateSpec],
    workers: int,
    numbers: Iterator[int],
    settings: dict[str, Any],
    poll: Callable[[], None],
) -> list[list[ReplayResult]]:
    """One wave's answers, per candidate in exchange order (its shards sent at once)."""
    shards = shard_rows(exchanges, workers)
    # every task runs at once: replay waits on the network, not on a CPU
    cpus = ray.cluster_resources().get("CPU", 1.0)
    per_task = min(1.0, max(0.01, cpus / max(1, len(shards) * len(candidates))))
    payloads = [ray.put([exchanges[i] for i in rows]) for rows in shards]
    refs: list[Any] = []
    placed: list[tuple[int, list[int]]] = []
    for column, (spec, limiter) in enumerate(zip(candidates, limiters, strict=True)):
        for rows, payload in zip(shards, payloads, strict=True):
            job = ShardJob(
                spec=spec, column=column, shard=next(numbers), limiter=limiter, board=board,
                **settings,
            )  # fmt: skip
            refs.append(remote.shard.options(num_cpus=per_task).remote(job, payload))
            placed.append((column, rows))
    results: list[list[ReplayResult | None]] = [[None] * len(exchanges) for _ in candidates]
    pending = list(refs)
    try:
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=PROGRESS_EVERY)
            poll()
        for (column, rows), ref in zip(placed, refs, strict=True):
            for i, row in zip(rows, _get(ray, ref), strict=True):
                results[column][i] = row
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)
        answered = 0
        for (column, rows), ref in zip(placed, refs, strict=True):
            try:
                out = ray.get(ref, timeout=0)
            except Exception:
                continue
            for i, row in zip(rows, out, strict=True):
                results[column][i] = row
                answered += row.ok
        raise _WaveInterrupted(results, answered) from None
    return [[r for r in column if r is not None] for column in results]


def _interrupted(
    exchanges: Sequence[Exchange],
    candidates: Sequence[CandidateSpec],
    columns: list[MutableSequence[ReplayResult]],
    answered: int,
    stop: _WaveInterrupted,
) -> ReplayInterrupted:
    """:class:`ReplayInterrupted` with a row for every (exchange, candidate): the waves
    answered before (``answered`` answers), what the interrupted one had, an "interrupted"
    row for the rest (made when read: the earlier waves of a run on disk are not read back)."""
    start = len(columns[0]) if columns else 0

    def known(c: int) -> Callable[[int], ReplayResult | None]:
        done, wave = columns[c], stop.rows[c]
        return lambda i: (
            done[i] if i < start else wave[i - start] if i - start < len(wave) else None
        )

    ids = record_ids(exchanges)
    unanswered = sum(1 for wave in stop.rows for r in wave if r is None)
    missing = unanswered + len(candidates) * (len(exchanges) - start - len(stop.rows[0]))
    return ReplayInterrupted(
        interleave([Unanswered(known(c), ids, spec.name) for c, spec in enumerate(candidates)]),
        answered=answered + stop.answered,
        missing=missing,
    )


def check_candidates(candidates: Sequence[CandidateSpec]) -> None:
    """A candidate whose server the run starts (``vllm:``...) cannot be split across workers:
    each would start its own server. A usage error, before anything starts."""
    from migrate_eval.replay.providers import get_provider
    from migrate_eval.replay.providers.managed import ManagedServerProvider

    for spec in candidates:
        if isinstance(get_provider(spec), ManagedServerProvider):
            raise ConfigError(
                f"candidate {spec.name!r} ({spec.provider}:) is a model server the run starts on "
                "this machine; --executor ray would start one per worker: replay it with "
                "--executor local, or serve it on the cluster and name it as "
                "openai-compatible:MODEL@URL"
            )


def _get(ray: Any, ref: Any) -> list[ReplayResult]:
    """A task's rows; a migrate-eval error raised in a worker is raised here as it is."""
    try:
        out: list[ReplayResult] = ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, MigrateEvalError):
            raise cause from None
        raise
    return out


def _poll(
    ray: Any,
    board: Any,
    candidates: Sequence[CandidateSpec],
    total: int,
    progress: Callable[[ProgressEvent], None] | None,
    on_workers: Callable[[dict[tuple[int, int], int]], None] | None,
) -> None:
    events, pids = ray.get(board.snapshot.remote())
    if on_workers is not None:
        on_workers(pids)
    if progress is None:
        return
    for column, spec in enumerate(candidates):
        mine = [e for (c, _), e in events.items() if c == column]
        if not mine:
            continue
        limits = [e[3] for e in mine if e[3] is not None]
        progress(
            ProgressEvent(
                spec.name,
                done=sum(e[0] for e in mine),
                total=total,
                errors=sum(e[1] for e in mine),
                cached=sum(e[2] for e in mine),
                in_flight_limit=min(limits) if limits else None,
            )
        )
