"""Records a run holds one per exchange (or per exchange and candidate), kept on disk when
the run is too large to hold them in memory.

A run of a few thousand exchanges holds its exchanges and the candidates' answers as objects,
as it always did. Past :data:`SPILL_ABOVE` sampled exchanges (``MIGRATE_EVAL_SPILL_ABOVE``;
read once, where the run is planned) it keeps them in :class:`SpilledRecords` instead: a
sequence whose records are written, a batch at a time, to a file in the run's work folder
(next to the response cache; removed with it) and read back a batch at a time, so that a
pass over a million exchanges holds one batch of them. Every stage reads the sequence as it
read the list; the run's results are the same either way (``tests/test_spill.py``).

The file holds pickles of the run's own records, written and read by this process only: it
is a private scratch file in a folder only this run uses, never an input.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableSequence, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

T = TypeVar("T")

#: Sampled exchanges above which a run keeps its exchanges and answers on disk (a batch at a
#: time in memory) rather than as objects: about 0.7 GB of objects at 50,000 exchanges and two
#: candidates (docs/performance.md).
SPILL_ABOVE = 50_000

#: Records per batch of a :class:`SpilledRecords` file.
BATCH = 1024

#: Decoded batches a :class:`SpilledRecords` keeps for indexing (reading in order, or nearly:
#: the answers of a replay arrive a little out of order).
_CACHED_BATCHES = 4


def spill_above() -> int:
    """:data:`SPILL_ABOVE`, or ``MIGRATE_EVAL_SPILL_ABOVE`` when set (0: always keep the records
    on disk). Read once, where a run is planned."""
    from migrate_eval.core.errors import ConfigError

    raw = os.environ.get("MIGRATE_EVAL_SPILL_ABOVE", "").strip()
    if not raw:
        return SPILL_ABOVE
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"MIGRATE_EVAL_SPILL_ABOVE={raw!r}: expected a whole number of exchanges"
        ) from None
    if value < 0:
        raise ConfigError(f"MIGRATE_EVAL_SPILL_ABOVE={raw!r}: expected 0 or more")
    return value


class Spill:
    """Where a run keeps records on disk: makes a :class:`SpilledRecords` per sequence, each
    its own file in ``folder``, and closes them all (:meth:`close`, or as a context)."""

    def __init__(self, folder: Path, *, batch: int | None = None) -> None:
        self.folder = folder
        self.batch = BATCH if batch is None else batch
        self._made: list[SpilledRecords[Any]] = []

    def new(self, name: str, *, ids: bool | list[str] = False) -> SpilledRecords[Any]:
        """An empty sequence, written to ``folder/<name>-<n>.pickles`` (``ids``: it keeps the
        records' ``id`` in memory too, :attr:`SpilledRecords.ids`; or the ids its records
        will have, in order: that list, shared, is its ``ids``)."""
        records: SpilledRecords[Any] = SpilledRecords(
            self.folder / f"{name}-{len(self._made)}.pickles", batch=self.batch, ids=ids
        )
        self._made.append(records)
        return records

    def close(self) -> None:
        for records in self._made:
            records.close()
        self._made.clear()

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def new_records(
    spill: Spill | None, name: str, *, ids: bool | list[str] = False
) -> MutableSequence[Any]:
    """A list, or a :class:`SpilledRecords` of ``spill`` when the run keeps records on disk."""
    return [] if spill is None else spill.new(name, ids=ids)


def pick(records: Sequence[T], numbers: Iterable[int]) -> dict[int, T]:
    """The records at ``numbers``, read in order (a spilled sequence decodes each batch it
    touches once, :meth:`SpilledRecords.pick`)."""
    if isinstance(records, SpilledRecords):
        return records.pick(numbers)
    if isinstance(records, _Interleaved):
        return records.pick(numbers)
    return {i: records[i] for i in sorted(set(numbers))}


def record_ids(records: Sequence[Any]) -> list[str]:
    """The ``id`` of each record (exchanges), without reading back a spilled sequence that
    keeps them."""
    if isinstance(records, SpilledRecords) and records.ids is not None:
        return records.ids
    return [r.id for r in records]


class ById(Mapping[str, T]):
    """``records`` by their id, read from the sequence when asked for (a spilled run's
    exchanges, for the report: it looks up the exchanges it shows, in order).

    The positions of the ids asked for are found in one pass over the ids (:meth:`resolve`,
    :meth:`get_many`): the report of a million exchanges shows 50,000 of them, and a map of
    every id to its position was 56 MB. A single id not found that way (a caller looking up
    many, one at a time) builds the map of every id, once."""

    def __init__(self, records: Sequence[T], ids: Sequence[str]) -> None:
        self.records = records
        self.ids = ids
        self._position: dict[str, int] = {}
        self._whole = False  # every id is in _position

    def resolve(self, keys: Iterable[str]) -> None:
        """Find the positions of ``keys`` (those it has) in one pass over the ids."""
        if self._whole:
            return
        known = self._position
        wanted = {key for key in keys if key not in known}
        if wanted:
            for i, ex_id in enumerate(self.ids):
                if ex_id in wanted:
                    known[ex_id] = i  # the last of equal ids, as a map of every id has

    def position_of(self, key: str, *, resolved: bool = False) -> int | None:
        """The position of ``key`` in the sequence (None: not there; with ``resolved``, None
        also where :meth:`resolve` did not find it, without building the whole map)."""
        at = self._position.get(key)
        if at is None and not resolved and not self._whole:
            self._position = {ex_id: i for i, ex_id in enumerate(self.ids)}
            self._whole = True
            at = self._position.get(key)
        return at

    def __getitem__(self, key: str) -> T:
        at = self.position_of(key)
        if at is None:
            raise KeyError(key)
        return self.records[at]

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.position_of(key) is not None

    def values(self) -> Any:  # one pass over the records, in order
        return iter(self.records)

    def get_many(self, keys: Iterable[str]) -> dict[str, T]:
        """The records of ``keys`` (those it has), read in their order in the sequence: a
        spilled sequence decodes each batch it touches once, not once a key (the report's
        examples, read by id in the order it shows them)."""
        asked = list(dict.fromkeys(keys))
        self.resolve(asked)
        at = {key: i for key in asked if (i := self._position.get(key)) is not None}
        records = pick(self.records, at.values())
        return {key: records[i] for key, i in at.items()}


class ByPair(Mapping[tuple[str, str], T]):
    """A replay's answers (exchange order, the candidates of an exchange together) by
    ``(exchange id, candidate)``, read from the sequence when asked for (the positions of
    the exchanges found by ``exchanges``, shared)."""

    def __init__(self, records: Sequence[T], exchanges: ById[Any], candidates: Sequence[str]):
        self.records = records
        self.exchanges = exchanges
        self.ids = exchanges.ids
        self.candidates = list(candidates)
        self.column = {name: i for i, name in enumerate(self.candidates)}

    def _at(self, key: tuple[str, str], *, resolved: bool = False) -> int | None:
        ex_id, candidate = key
        column = self.column.get(candidate)
        if column is None:
            return None
        row = self.exchanges.position_of(ex_id, resolved=resolved)
        return None if row is None else row * len(self.candidates) + column

    def __getitem__(self, key: tuple[str, str]) -> T:
        at = self._at(key)
        if at is None:
            raise KeyError(key)
        return self.records[at]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((ex_id, c) for ex_id in self.ids for c in self.candidates)

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], T]:
        """The answers of ``keys`` (those it has), read in their order in the sequence (see
        :meth:`ById.get_many`)."""
        asked = list(dict.fromkeys(keys))
        self.exchanges.resolve(key[0] for key in asked)
        at = {key: i for key in asked if (i := self._at(key, resolved=True)) is not None}
        records = pick(self.records, at.values())
        return {key: records[i] for key, i in at.items()}

    def __len__(self) -> int:
        return len(self.ids) * len(self.candidates)

    def __contains__(self, key: object) -> bool:
        return (
            isinstance(key, tuple)
            and len(key) == 2
            and isinstance(key[0], str)
            and isinstance(key[1], str)
            and self._at((key[0], key[1])) is not None
        )


class Indexed(Sequence[T]):
    """A sequence read by index (:meth:`_at`, with the index checked): slices are lists."""

    def _at(self, index: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("record index out of range")
        return self._at(index)


class SpilledRecords(Indexed[T], MutableSequence[T]):
    """A sequence of records appended in order and kept in a file, :data:`BATCH` at a time;
    indexing and iterating read a batch back. Appending is the only change it allows (records
    are read back as they were written: a record changed after it was appended is not).
    Reading is safe from several threads (a stage may read it while another does)."""

    def __init__(
        self, path: Path, *, batch: int | None = None, ids: bool | list[str] = False
    ) -> None:
        self.path = path
        self.batch = max(1, BATCH if batch is None else batch)
        #: the records' ``id``, in order (when asked for): what a pass would read them for.
        #: Given (the ids the records will have, in order), the list is shared, not copied:
        #: a million ids are held once, however many sequences of them a run keeps
        self.ids: list[str] | None = ids if isinstance(ids, list) else [] if ids else None
        self._given_ids = isinstance(ids, list)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._spans: list[tuple[int, int]] = []  # (offset, length) of each written batch
        self._end = 0
        self._buffer: list[T] = []
        self._cache: dict[int, list[T]] = {}  # batch number -> its records, oldest first
        self._lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------

    def append(self, value: T) -> None:
        if self._given_ids:
            assert self.ids is not None
            n = len(self)
            if n >= len(self.ids) or self.ids[n] != value.id:  # type: ignore[attr-defined]
                raise ValueError(f"{self.path.name}: record {n} is not the one its ids name")
        elif self.ids is not None:
            self.ids.append(value.id)  # type: ignore[attr-defined]
        self._buffer.append(value)
        if len(self._buffer) >= self.batch:
            self._flush()

    def extend(self, values: Iterable[T]) -> None:
        for value in values:
            self.append(value)

    def _flush(self) -> None:
        if not self._buffer:
            return
        blob = pickle.dumps(self._buffer, protocol=pickle.HIGHEST_PROTOCOL)
        fd = self._open_fd()
        written = 0
        while written < len(blob):
            written += os.pwrite(fd, memoryview(blob)[written:], self._end + written)
        self._spans.append((self._end, len(blob)))
        self._end += len(blob)
        self._buffer = []

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._spans) * self.batch + len(self._buffer)

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path.name}: read after the run's records were closed")
        return self._fd

    def _read(self, number: int) -> list[T]:
        offset, length = self._spans[number]
        fd = self._open_fd()
        parts: list[bytes] = []
        got = 0
        while got < length:
            part = os.pread(fd, length - got, offset + got)
            if not part:
                raise OSError(f"{self.path}: the run's scratch file is shorter than written")
            parts.append(part)
            got += len(part)
        records: list[T] = pickle.loads(b"".join(parts) if len(parts) > 1 else parts[0])
        return records

    def _batch(self, number: int) -> list[T]:
        with self._lock:
            records = self._cache.pop(number, None)
            if records is not None:
                self._cache[number] = records  # the most recent last
                return records
        records = self._read(number)
        with self._lock:
            self._cache[number] = records
            while len(self._cache) > _CACHED_BATCHES:
                del self._cache[next(iter(self._cache))]
        return records

    def _at(self, index: int) -> T:
        number, at = divmod(index, self.batch)
        if number == len(self._spans):
            return self._buffer[at]
        return self._batch(number)[at]

    def pick(self, numbers: Iterable[int]) -> dict[int, T]:
        """The records at ``numbers`` (negative ones from the end), each batch they fall in
        decoded once, in order."""
        n = len(self)
        wanted: dict[int, list[int]] = {}
        for i in sorted(set(numbers)):
            at = i + n if i < 0 else i
            if not 0 <= at < n:
                raise IndexError("record index out of range")
            wanted.setdefault(at // self.batch, []).append(i)
        out: dict[int, T] = {}
        for number, asked in wanted.items():
            records = self._buffer if number == len(self._spans) else self._batch(number)
            for i in asked:
                out[i] = records[(i + n if i < 0 else i) - number * self.batch]
        return dict(sorted(out.items()))  # in the order of the numbers, as :func:`pick`

    def __iter__(self) -> Iterator[T]:
        # a pass decodes each batch once, for itself (other readers' batches stay cached)
        for number in range(len(self._spans)):
            with self._lock:
                cached = self._cache.get(number)
            yield from cached if cached is not None else self._read(number)
        yield from list(self._buffer)

    def __setitem__(self, index: Any, value: Any) -> None:
        raise TypeError("a run's spilled records are appended, never replaced")

    def __delitem__(self, index: Any) -> None:
        raise TypeError("a run's spilled records are appended, never removed")

    def insert(self, index: int, value: T) -> None:
        if index != len(self):
            raise TypeError("a run's spilled records are appended, never inserted")
        self.append(value)

    def close(self) -> None:
        """Remove the file (the records cannot be read afterwards)."""
        fd, self._fd = self._fd, None
        self._cache.clear()
        self._buffer = []
        if fd is not None:
            os.close(fd)
            self.path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"<SpilledRecords {self.path.name}: {len(self)} records>"


def interleave(columns: Sequence[Sequence[T]]) -> Sequence[T]:
    """``columns`` (one sequence per candidate, each in exchange order) as one sequence in
    exchange order, the candidates of an exchange together (the order a replay returns):
    a list when every column is one, else a view that reads them."""
    if all(isinstance(c, list) for c in columns):
        return [r for row in zip(*columns, strict=True) for r in row]
    return _Interleaved(columns)


def by_candidate(replays: Sequence[Any]) -> dict[str, Sequence[Any]]:
    """A replay's answers per candidate (in exchange order): a spilled run's sequences on
    disk as they are (read when iterated), else lists."""
    if isinstance(replays, _Interleaved):
        return {column[0].candidate: column for column in replays.columns if len(column)}
    out: dict[str, list[Any]] = {}
    for row in replays:
        out.setdefault(row.candidate, []).append(row)
    return dict(out)


class _Interleaved(Indexed[T]):
    def __init__(self, columns: Sequence[Sequence[T]]) -> None:
        self.columns = list(columns)
        lengths = {len(c) for c in self.columns}
        if len(lengths) > 1:
            raise ValueError(f"candidates' answers differ in number: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.columns) * len(self.columns[0]) if self.columns else 0

    def _at(self, index: int) -> T:
        row, column = divmod(index, len(self.columns))
        return self.columns[column][row]

    def pick(self, numbers: Iterable[int]) -> dict[int, T]:
        """:func:`pick` of each column (a spilled one decodes each batch it touches once)."""
        width, n = len(self.columns), len(self)
        rows: dict[int, dict[int, int]] = {}  # column -> row -> index asked
        for i in set(numbers):
            at = i + n if i < 0 else i
            if not 0 <= at < n:
                raise IndexError("record index out of range")
            row, column = divmod(at, width)
            rows.setdefault(column, {})[row] = i
        out: dict[int, T] = {}
        for column, asked in sorted(rows.items()):
            got = pick(self.columns[column], asked)
            out.update({asked[row]: record for row, record in got.items()})
        return dict(sorted(out.items()))

    def __iter__(self) -> Iterator[T]:
        for row in zip(*self.columns, strict=True):
            yield from row
