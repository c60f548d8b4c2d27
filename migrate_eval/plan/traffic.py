"""The first stage of a run: the whole logged traffic, read once, in bounded memory.

:func:`read_traffic` streams the logs into Arrow datasets on disk
(:func:`~migrate_eval.ingest.dataset.write_arrow`, the compiled fast path where it applies)
and reads them back one exchange at a time, gathering on the way what the later stages need
of *every* logged exchange:

* the traffic profile (:class:`~migrate_eval.plan.profile.TrafficTally`) of all of them;
* task discovery (:class:`~migrate_eval.plan.tasks.TaskDiscovery`) over those with a logged answer
  (the *scorable* ones), and their ids in log order;
* per scorable exchange a 16-byte request fingerprint (deduplication), a 16-byte request key
  and its timestamp (the duplicate requests the noise floor scores), and its timestamp and
  logged cost (:class:`~migrate_eval.core.prices.LoggedTraffic`, for cost projections).

The exchanges themselves are not kept: :meth:`Traffic.load` reads the few that are needed
(the sample to replay, the duplicate pairs to score) back from the datasets by id. Memory
grows by a few hundred bytes per logged exchange, not by the exchange.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import os
import random
import shutil
import tempfile
from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import InfrastructureError, LineIssue
from migrate_eval.core.json import json_digest
from migrate_eval.core.prices import LoggedTraffic, instant, logged_cost
from migrate_eval.core.records import Exchange
from migrate_eval.core.request import BOOKKEEPING_FIELDS, request_digest, request_key
from migrate_eval.core.results import IngestSummary, Profile
from migrate_eval.core.suite import TaskSpec, Thresholds
from migrate_eval.ingest.parallel import LogGroup, WriteGroup
from migrate_eval.plan.profile import TrafficTally
from migrate_eval.plan.redact import PiiCounter
from migrate_eval.plan.tasks import TaskDiscovery, TaskPlan

__all__ = ["LogGroup", "Traffic", "duplicate_pairs", "read_traffic", "work_folder"]


@dataclass
class Traffic:
    """What a run knows of its whole logged traffic (see the module docstring)."""

    summary: IngestSummary
    skipped: list[LineIssue]
    profile: Profile
    #: the tasks of the scorable exchanges, with every one's task (before sampling)
    plan: TaskPlan
    #: the scorable exchanges' ids, in log order
    order: list[str]
    #: request fingerprints by id (only when deduplication was asked for)
    fingerprints: dict[str, bytes] | None
    #: timestamps and logged costs per task, for cost projections
    logged: LoggedTraffic
    #: per scorable exchange, as ``order``: its request key (16 bytes each, end to end), its
    #: timestamp, and where it is (Arrow file number, row): arrays, not an object each
    _keys: bytearray = field(repr=False)
    _stamps: array[int] = field(repr=False)  # microseconds (core.prices.instant)
    _kinds: bytearray = field(repr=False)  # and their kinds
    _file_of: array[int] = field(repr=False)
    _row_of: array[int] = field(repr=False)
    _files: list[Path] = field(repr=False)
    #: the PII counts still to make (``read_traffic(defer_pii=True)``): :meth:`full_profile`
    _pii: PiiCounter | None = field(default=None, repr=False)

    def full_profile(self) -> Profile:
        """:attr:`profile` with its PII counts, made now where they were deferred (the
        exchanges' texts examined: ~30 us an examined exchange; thread-safe against nothing
        else that uses this traffic's counter)."""
        if self._pii is None:
            return self.profile
        pii, self._pii = self._pii, None
        return self.profile.model_copy(update={"pii": pii.counts()})

    @property
    def exchanges(self) -> int:
        """Exchanges read (with or without a logged answer)."""
        return self.summary.exchanges

    def duplicate_pairs(self, tasks: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """:func:`duplicate_pairs` of the scorable exchanges of ``tasks``."""
        names = set(tasks)
        assignment = self.plan.assignment
        keys = self._keys
        return duplicate_pairs(
            (ex_id, bytes(keys[16 * i : 16 * i + 16]), us if kind else None, assignment[ex_id])
            for i, (ex_id, us, kind) in enumerate(
                zip(self.order, self._stamps, self._kinds, strict=True)
            )
            if assignment.get(ex_id) in names
        )

    def scorable(self) -> Iterator[Exchange]:
        """The exchanges with a logged answer again, in log order, read from the Arrow
        files one at a time."""
        from migrate_eval.ingest.dataset import iter_file_exchanges

        for path in self._files:
            for _, ex in iter_file_exchanges(path):
                if ex.response is not None and ex.error is None:
                    yield ex

    def release(self) -> None:
        """Let go of what is kept per exchange (ids, keys, places, the whole traffic's task
        assignment) once the sample is loaded: a large run keeps the summary, the skipped
        lines, the profile and the logged volume and costs only."""
        from migrate_eval.plan.tasks import TaskPlan

        self.order = []
        self.fingerprints = None
        self.plan = TaskPlan(tasks=self.plan.tasks, assignment={}, rules=self.plan.rules)
        self._keys = bytearray()
        self._stamps = array("q")
        self._kinds = bytearray()
        self._file_of = array("I")
        self._row_of = array("q")

    def iter_load(self, ids: Iterable[str]) -> Iterator[Exchange]:
        """The exchanges with these ids, read back from the Arrow files one at a time in log
        order (one pass over each file that holds any of them; only those rows are decoded):
        what a run too large to hold keeps on disk as it reads them."""
        from migrate_eval.ingest.dataset import iter_file_exchanges

        wanted = set(ids)
        rows: dict[int, list[int]] = {}
        for ex_id, number, row in zip(self.order, self._file_of, self._row_of, strict=True):
            if ex_id in wanted:
                rows.setdefault(number, []).append(row)
        for number in sorted(rows):
            for _, ex in iter_file_exchanges(self._files[number], sorted(rows[number])):
                yield ex

    def duplicate_rows(self, ids: Sequence[str]) -> dict[int, list[int]]:
        """Of ``ids`` (in log order), the exchanges whose logged request is the very same as
        an earlier one's: the number of the first of each such group -> the numbers of the
        others (the replay sends such a request once, for all of them)."""
        import numpy as np

        index = {ex_id: i for i, ex_id in enumerate(self.order)}
        at = np.fromiter((index[ex_id] for ex_id in ids), dtype=np.int64, count=len(ids))
        del index
        keys = np.frombuffer(bytes(self._keys), dtype=np.uint64).reshape(-1, 2)[at]
        order = np.lexsort((keys[:, 1], keys[:, 0]))  # stable: a group's first comes first
        ordered = keys[order]
        new_group = np.ones(len(order), dtype=bool)
        new_group[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
        starts = np.flatnonzero(new_group)
        sizes = np.diff(np.append(starts, len(order)))
        out: dict[int, list[int]] = {}
        for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
            members = order[start : start + size].tolist()
            out[members[0]] = members[1:]
        return out

    def load(self, ids: Iterable[str]) -> dict[str, Exchange]:
        """The exchanges with these ids, read back from the Arrow files (one pass over each
        file that holds any of them; only those rows are decoded), by id."""
        return {ex.id: ex for ex in self.iter_load(ids)}


@contextlib.contextmanager
def work_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder in ``parent`` for the Arrow copy of the logs, removed afterwards.

    Its name holds the process id (``<prefix><pid>-...``): the folders a killed run left
    behind (their process is gone) are removed the next time one is made, so a copy of the
    logs does not linger."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(parent, prefix)
        folder = tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=parent)
    except OSError as e:
        raise InfrastructureError(
            f"cannot make a work folder in {parent} for the Arrow copy of the logs: {e}"
        ) from e
    with folder as path:
        yield Path(path)


def _remove_orphans(parent: Path, prefix: str) -> None:
    for entry in parent.iterdir():
        name = entry.name
        if not name.startswith(prefix) or not entry.is_dir():
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or no way to tell: leave its folder alone
    return True


#: Characters of the exchanges' text ``read_traffic(defer_pii=True)`` keeps for the PII count
#: to examine later (the first 1,000 exchanges and one in 100 after: ~8 MB of ASCII covers
#: half a million exchanges of ~1.3 KB).
DEFERRED_PII_CHARS = 8_000_000
#: ``read_traffic(on_read=...)`` / ``profile(on_read=...)`` hear every this many exchanges.
READ_PROGRESS_EVERY = 1000


def read_traffic(
    groups: Sequence[LogGroup],
    workdir: Path,
    *,
    strict: bool = False,
    specs: Sequence[TaskSpec] = (),
    thresholds: Thresholds | None = None,
    auto: bool = True,
    dedupe: bool = False,
    on_read: Callable[[int], None] | None = None,
    write_group: WriteGroup | None = None,
    defer_pii: bool = False,
) -> Traffic:
    """Read every group of logs (files of one format and column mapping, read together so
    that e.g. Batch input and output files join) into a dataset file in ``workdir`` and gather
    the :class:`Traffic`. Raises what :func:`~migrate_eval.ingest.read_logs` raises.
    ``write_group`` reads a group into Arrow files (default: here, one file per group;
    :func:`~migrate_eval.ingest.parallel.ray_group_writer`: the files in parallel on Ray).
    ``defer_pii``: the profile's PII counts are left to :meth:`Traffic.full_profile` (a run
    makes them while its replay waits; the texts they examine are kept until then, up to
    :data:`DEFERRED_PII_CHARS` characters, past which they are examined as they are read)."""
    from migrate_eval.ingest.parallel import write_group as write_here
    from migrate_eval.ingest.reader import summarize

    write = write_group or write_here

    tally = TrafficTally(defer_pii_chars=DEFERRED_PII_CHARS if defer_pii else 0)
    discovery = TaskDiscovery(specs, thresholds=thresholds, auto=auto)
    order: list[str] = []
    fingerprints: dict[str, bytes] | None = {} if dedupe else None
    keys = bytearray()
    stamps = array("q")  # each timestamp as two numbers (core.prices.instant), not an object
    kinds = bytearray()
    costs = array("d")  # NaN: no known cost
    file_of = array("I")
    row_of = array("q")
    arrow_files: list[Path] = []
    seen: set[str] = set()
    files: list[str] = []
    formats: dict[str, int] = {}
    skipped: list[LineIssue] = []
    lines_read = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived acyclic objects: nothing for the collector to free
    try:
        for number, group in enumerate(groups):
            for part in write(number, group, workdir, strict, seen):
                arrow_files.append(part.arrow)
                files += part.files
                skipped += part.skipped
                lines_read += part.lines_read
                for name, count in part.formats.items():
                    formats[name] = formats.get(name, 0) + count
                _tally_file(
                    part.arrow, len(arrow_files) - 1, tally, discovery, order, file_of,
                    row_of, fingerprints, keys, stamps, kinds, costs, on_read,
                )  # fmt: skip
    finally:
        if gc_was_enabled:
            gc.enable()
    summary = summarize(files, formats, lines_read, tally.total, skipped)
    plan = discovery.plan()
    logged = LoggedTraffic()
    for ex_id, microseconds, kind, cost in zip(order, stamps, kinds, costs, strict=True):
        task = plan.assignment.get(ex_id)
        if task is not None:
            logged.add_instant(task, kind, microseconds, cost)
    return Traffic(
        summary=summary,
        skipped=skipped,
        profile=tally.profile(plan, summary, pii=not defer_pii),
        plan=plan,
        order=order,
        fingerprints=fingerprints,
        logged=logged,
        _keys=keys,
        _stamps=stamps,
        _kinds=kinds,
        _file_of=file_of,
        _row_of=row_of,
        _files=arrow_files,
        _pii=tally.pii if defer_pii else None,
    )


def _tally_file(
    arrow: Path,
    number: int,
    tally: TrafficTally,
    discovery: TaskDiscovery,
    order: list[str],
    file_of: array[int],
    row_of: array[int],
    fingerprints: dict[str, bytes] | None,
    keys: bytearray,
    stamps: array[int],
    kinds: bytearray,
    costs: array[float],
    on_read: Callable[[int], None] | None,
) -> None:
    """What :func:`read_traffic` gathers of every exchange of one Arrow file (each row decoded
    once, as a :class:`~migrate_eval.core.records.LoggedExchange`, no pydantic model built)."""
    from migrate_eval.ingest.dataset import iter_file_records

    for row, ex in iter_file_records(arrow):
        # the request without its bookkeeping fields (duplicates in the profile, deduplication)
        # is most often the whole request: then its digest is the request key too
        whole = BOOKKEEPING_FIELDS.isdisjoint(ex.request)
        digest = json_digest(ex.request) if whole else request_digest(ex)
        tally.add(ex, digest)
        if on_read is not None and not tally.total % READ_PROGRESS_EVERY:
            on_read(tally.total)
        if ex.response is None or ex.error is not None:
            continue
        discovery.add(ex)
        order.append(ex.id)
        file_of.append(number)
        row_of.append(row)
        if fingerprints is not None:
            fingerprints[ex.id] = digest
        keys += digest if whole else request_key(ex)
        kind, microseconds = instant(ex.timestamp)
        kinds.append(kind)
        stamps.append(microseconds)
        cost = logged_cost(ex)
        costs.append(math.nan if cost is None else cost)


#: Duplicate pairs scored per task for the noise floor, at most (a seeded sample beyond).
MAX_NOISE_PAIRS = 1000


def duplicate_pairs(
    entries: Iterable[tuple[str, Hashable, datetime | int | None, str]],
) -> dict[str, list[tuple[str, str]]]:
    """The pairs of logged answers :func:`noise_floor_from_duplicates` scores, from
    ``(exchange id, request key, timestamp, task)`` (a timestamp or its microseconds since the
    epoch: one or the other for all) of each exchange with a logged answer (in
    log order; equal keys are identical requests): per task, ``(earlier id, later id)`` pairs,
    at most :data:`MAX_NOISE_PAIRS` (a seeded random sample beyond). Only the keys are held,
    so the pairs of a log of any size can be found while it is read."""
    groups: dict[Hashable, list[tuple[str, Any]]] = {}
    task_of: dict[str, str] = {}
    for ex_id, key, timestamp, task in entries:
        groups.setdefault(key, []).append((ex_id, timestamp))
        task_of[ex_id] = task
    pairs: dict[str, list[tuple[str, str]]] = {}
    for group in groups.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda e: (e[1] is None, e[1] or 0, e[0]))
        for (prev, _), (nxt, _) in itertools.pairwise(group):
            pairs.setdefault(task_of[prev], []).append((prev, nxt))
    for task, chosen in pairs.items():
        if len(chosen) > MAX_NOISE_PAIRS:
            rng = random.Random(f"noise-floor:{task}")
            keep = sorted(rng.sample(range(len(chosen)), MAX_NOISE_PAIRS))
            pairs[task] = [chosen[i] for i in keep]
    return pairs
