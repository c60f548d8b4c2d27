"""Scoring work done while the replay waits on the vendors.

A replay mostly waits: at 100 ms a request and 64 in flight, one core is nearly idle for the
whole replay, and the scoring stage that follows used to start from nothing. :class:`EarlyChrf`
hears each answer as the replay stores it (``replay(on_result=...)``) and computes the chrF of
the answered (logged answer, candidate answer) pairs in ``python -m migrate_eval.core._chrf``
worker processes (:class:`~migrate_eval.core._chrf.ChrfWorker`, started once, one a
core), a chunk at a time, while the replay goes on. The scoring stage then finds
those values (:func:`~migrate_eval.score.text.known_chrf`) and computes only the rest.

The workers run nicer than the run (:data:`NICENESS`): they compute with the CPU the replay
leaves idle. When the replay ends, what they have left goes to workers at the run's priority
(:data:`WAIT_FOR_AT_MOST`).

chrF of a pair is a pure function of the two texts, so the scores are the same whichever pairs
were done early: results.json does not depend on timing. (Embeddings are not computed early:
a vector changes in its last bits with the other texts of its batch, see
:func:`migrate_eval.core.embeddings.plan`.)
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from migrate_eval.core._chrf import ChrfWorker
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.results import TaskInfo
from migrate_eval.score.text import answer_text

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Pair = tuple[str, str]

#: Pairs sent to a worker at once, at most.
CHUNK = 500
#: ... and at least, when a worker is idle: pairs go out as soon as one is free, so the chunk
#: still running when the replay ends (computed after it) holds what arrived meanwhile.
IDLE_CHUNK = 50
#: Fewer expected pairs than this are not worth a worker: scoring does them in a blink.
MINIMUM = 2_000
#: How much nicer than the run the workers are (``nice``): they compute with the CPU the replay
#: leaves idle, and the event loop (and, on the same machine, a self-hosted vendor) waking up
#: for an answer takes a core from them at once instead of sharing it.
NICENESS = 10
#: When the replay ends, the chunks still to compute go to new workers at the run's own
#: priority (on a machine busy with other work, a niced worker may take long to finish), and a
#: niced worker still computing a chunk of more pairs than this is ended: the chunk is computed
#: again by a new worker. A smaller chunk (workers that keep up get :data:`IDLE_CHUNK`-sized
#: ones) is waited for.
WAIT_FOR_AT_MOST = 2 * IDLE_CHUNK
#: Chunks a worker may have queued or running; past that, answers are left to scoring.
QUEUED = 4


_Values = tuple["npt.NDArray[np.int64]", "npt.NDArray[np.float64]"]


class KnownValues(Mapping[int, float]):
    """Values by an integer key, held as two sorted arrays (16 bytes an entry, against about
    100 in a dict): what :class:`EarlyChrf` computed, by hash of each pair."""

    def __init__(self, parts: Sequence[_Values] = ()) -> None:
        import numpy as np

        keys = np.concatenate([k for k, _ in parts]) if parts else np.zeros(0, dtype=np.int64)
        values = np.concatenate([v for _, v in parts]) if parts else np.zeros(0)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._values = values[order]

    def __getitem__(self, key: int) -> float:
        import numpy as np

        at = int(np.searchsorted(self._keys, key))
        if at < len(self._keys) and int(self._keys[at]) == key:
            return float(self._values[at])
        raise KeyError(key)

    def __iter__(self) -> Iterator[int]:
        return iter(self._keys.tolist())

    def __len__(self) -> int:
        return len(self._keys)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _lower_priority(pid: int) -> None:
    """Make process ``pid`` :data:`NICENESS` nicer than this one (where the system allows)."""
    try:
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, pid, min(19, mine + NICENESS))
    except (AttributeError, OSError):  # not on this system, or the worker is gone already
        pass


class EarlyChrf:
    """chrF of answered pairs in worker processes during the replay (module docstring).

    ``exchanges`` are the run's, ``tasks`` the planned tasks (their resolved ``metrics``),
    ``assignment`` exchange id -> task name. Idle (and free) when no task scores chrF or the
    run has fewer than :data:`MINIMUM` such exchanges a candidate.
    """

    def __init__(
        self,
        exchanges: Sequence[Exchange],
        tasks: Iterable[TaskInfo],
        assignment: Mapping[str, str],
        *,
        chunk: int | None = None,
        minimum: int | None = None,
        workers: int | None = None,
    ) -> None:
        # nothing held per exchange: each answer's exchange is read when it arrives (a large
        # run keeps its exchanges on disk, read back in order as the answers arrive)
        self.exchanges = exchanges
        self.assignment = assignment
        self.chrf_tasks = {t.name for t in tasks if "chrf" in t.metrics}
        n = (
            sum(1 for task in assignment.values() if task in self.chrf_tasks)
            if self.chrf_tasks
            else 0
        )
        #: whether it computes anything (a chrF task, and enough of its exchanges)
        self.active = n > 0 and n >= (MINIMUM if minimum is None else minimum)
        self.chunk = CHUNK if chunk is None else chunk
        # a core each: a replay that waits leaves them idle, and the last chunks, computed
        # after the replay, go in parallel
        self.workers = workers or _cores()
        self._pending: list[Pair] = []
        self._seen: set[int] = set()  # hash(pair) of the pending pairs (each scored once)
        # each chunk's values by hash of its pairs, as two arrays (16 bytes a pair: a run's
        # millions of pairs are not held as texts or Python objects)
        self._futures: list[Future[_Values]] = []
        self._running: list[Future[_Values]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._idle_workers: list[ChrfWorker] = []
        self._all_workers: list[ChrfWorker] = []
        self._busy: dict[ChrfWorker, int] = {}  # worker -> pairs of the chunk it computes
        self._niced: set[ChrfWorker] = set()  # the workers started during the replay
        self._ended: set[ChrfWorker] = set()  # niced workers finish() ended mid-chunk
        self._ending = False  # finish() began: new workers at the run's priority

    def add(self, row: int, result: ReplayResult) -> None:
        """Hear the stored result of exchange number ``row`` (called in the replay's event
        loop: never blocks)."""
        if not self.active or result.response is None or result.error is not None:
            return
        if self.assignment.get(result.exchange_id) not in self.chrf_tasks:
            return
        if not 0 <= row < len(self.exchanges):
            return
        if not self._pending and self._backlogged():
            return  # the workers are behind (answers from the cache, a busy machine): this
            # pair is the scoring stage's, rather than its texts held until a worker is free
        ex = self.exchanges[row]
        if ex.id != result.exchange_id or ex.response is None:
            return
        pair = (answer_text(ex.response), answer_text(result.response))
        key = hash(pair)
        if key in self._seen:
            return
        self._seen.add(key)
        self._pending.append(pair)
        if len(self._pending) >= self.chunk or (
            len(self._pending) >= min(IDLE_CHUNK, self.chunk) and self._idle()
        ):
            self._submit()

    def _in_progress(self) -> int:
        """Chunks submitted and not done (queued or running)."""
        self._running = [f for f in self._running if not f.done()]
        return len(self._running)

    def _backlogged(self) -> bool:
        """Whether :data:`QUEUED` chunks a worker already wait or run: what is queued holds
        its pairs' texts, so the queue is bounded (a replay answered from the cache goes
        faster than chrF; a million answers' texts would be held)."""
        return self._in_progress() >= QUEUED * self.workers

    def _idle(self) -> bool:
        """Whether a worker has nothing to do."""
        return self._in_progress() < self.workers

    def _submit(self) -> None:
        part, self._pending, self._seen = self._pending, [], set()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="migrate-eval chrF")
        future = self._pool.submit(self._score, part)
        self._futures.append(future)
        self._running.append(future)

    def _score(self, part: list[Pair]) -> _Values:
        """``part`` scored by an idle worker process (one is started when none is idle: at
        most one a thread of the pool): the values (0-1) by hash of each pair."""
        import numpy as np

        from migrate_eval.score.text import chrf_unit

        scores = self._score_in_worker(part)
        if len(scores) != len(part):  # pragma: no cover - a worker out of step
            raise RuntimeError("chrF worker answered for another number of pairs")
        hashes = np.fromiter((hash(pair) for pair in part), dtype=np.int64, count=len(part))
        values = np.fromiter(
            (chrf_unit(p[0], p[1], v) for p, v in zip(part, scores, strict=True)),
            dtype=np.float64,
            count=len(part),
        )
        return hashes, values

    def _score_in_worker(self, part: list[Pair]) -> list[float]:
        from migrate_eval.core._chrf import ChrfWorker

        while True:
            worker = self._take_worker(len(part), ChrfWorker)
            try:
                scores = worker.score(part)
            except BaseException:
                with self._lock:
                    self._busy.pop(worker, None)
                    ended = worker in self._ended
                worker.close()  # gone, ended by finish() or out of step: not used again
                if ended:
                    continue  # again, by a worker at the run's priority
                raise
            with self._lock:
                self._busy.pop(worker, None)
                self._idle_workers.append(worker)
            return scores

    def _take_worker(self, size: int, make: Callable[[], ChrfWorker]) -> ChrfWorker:
        """An idle worker for a chunk of ``size`` pairs, or a new one: niced during the
        replay, at the run's priority once :meth:`finish` began (idle niced ones are ended)."""
        retired: list[ChrfWorker] = []
        try:
            with self._lock:
                worker: ChrfWorker | None = None
                while self._idle_workers and worker is None:
                    worker = self._idle_workers.pop()
                    if self._ending and worker in self._niced:
                        retired.append(worker)
                        self._all_workers.remove(worker)
                        worker = None
                if worker is None:
                    worker = make()
                    if not self._ending:
                        _lower_priority(worker.proc.pid)
                        self._niced.add(worker)
                    self._all_workers.append(worker)
                self._busy[worker] = size
                return worker
        finally:
            for idle in retired:
                idle.close()

    def finish(self) -> Mapping[int, float]:
        """The chrF values (0-1) computed so far by ``hash((reference, prediction))``, once the
        workers are done; the pairs still waiting for a full chunk are left to the scoring
        stage. A worker that failed leaves its pairs to the scoring stage too. The chunks
        still to compute go to workers at the run's priority (:data:`WAIT_FOR_AT_MOST`)."""
        parts: list[_Values] = []
        with self._lock:
            self._ending = True
            for worker, size in self._busy.items():
                if size > WAIT_FOR_AT_MOST and worker in self._niced:
                    self._ended.add(worker)
                    with contextlib.suppress(OSError):  # ended already
                        worker.proc.kill()
        try:
            for future in self._futures:
                try:
                    parts.append(future.result())
                except Exception:  # a worker that failed: scoring computes its pairs
                    continue
        finally:
            self.close()
        return KnownValues(parts)

    def close(self) -> None:
        """Stop: nothing more is started (workers running finish their chunk)."""
        self._futures = []
        self._running = []
        self._pending = []
        self._seen = set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for worker in self._all_workers:
            worker.close()
        self._all_workers, self._idle_workers = [], []
