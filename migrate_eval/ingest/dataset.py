"""Logs too large for memory: stream them into an Arrow-backed Hugging Face dataset.

:func:`ingest_to_dataset` reads logs with :func:`~migrate_eval.ingest.stream_logs` (same
formats, rules and counts as :func:`~migrate_eval.ingest.read_logs`) and writes the exchanges
to an Arrow file in ``cache_dir`` a batch at a time, so memory stays bounded whatever the
size of the logs (only the ids seen, for de-duplication, grow with the number of exchanges).
The file is memory-mapped by :class:`datasets.Dataset`; :func:`iter_exchanges` gives the
exchanges back. A run's own Arrow files (``plan/traffic.py``) are read back a record batch at
a time: :func:`iter_file_records` for the traffic pass (each row decoded once into a light
record, no pydantic model), :func:`iter_file_exchanges` for the exchanges a run loads.

Speed. Rows come from :meth:`LogStream.rows <migrate_eval.ingest.reader.LogStream.rows>`:
a common ``chat-jsonl`` line is read by a builder (:mod:`migrate_eval.ingest._builder`),
compiled where a C compiler was there at install time, which validates the line and appends
its row to Arrow buffers without making Python objects; any other line is read by the full
reader, which names the field that is wrong, so the rows, counts and issues are those of
:func:`~migrate_eval.ingest.read_logs`. The Arrow file is written by a thread of its own while
the next lines are read. ``processes=2`` also lets a second process read half of a large
uncompressed ``chat-jsonl`` file. ``benchmarks/bench_ingest.py`` measures it against a bare
loop that only reads and parses the same file.

Columns (one row an exchange):

=============  ==========  ==========================================================
column         type        content
=============  ==========  ==========================================================
id             string      the exchange id
file, line     string/int  where it was read
format         string      the log format
timestamp      timestamp   when it was logged (UTC), or null
model          string      the requested model
request        string      the request (Chat Completions shape) as JSON
response       string      the normalised logged response as JSON, or null
error          string      the logged error, or null
metadata       string      the metadata as JSON
gold           string      the gold label/answer, or null
task           string      null: filled in later by task discovery
=============  ==========  ==========================================================

The JSON columns hold JSON values, not a canonical text: where the compiled builder read a
line, the request and metadata are the log's own text of those objects (its spacing and
escapes), elsewhere ``orjson``'s. Parse them to compare them.
"""

from __future__ import annotations

import gc
import hashlib
import os
import queue
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from migrate_eval.core.records import Exchange, Source, trusted
from migrate_eval.core.request import ChatRequest
from migrate_eval.core.results import IngestSummary
from migrate_eval.ingest import _rows
from migrate_eval.ingest._rows import Row
from migrate_eval.ingest.reader import LogStream, stream_logs

#: Exchanges written per Arrow record batch.
BATCH_ROWS = 2048
#: Record batches waiting to be written, at most (see ``_BackgroundWriter``).
WRITE_AHEAD = 4
#: The dataset's columns, in order (every row column, then ``task``).
COLUMNS = (*_rows.ROW_COLUMNS, "task")


def schema() -> Any:
    """The Arrow schema of an ingested dataset."""
    return _rows.schema()


def _cache_name(paths: Sequence[str | Path], options: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(orjson.dumps([str(p) for p in paths], option=orjson.OPT_SORT_KEYS))
    h.update(orjson.dumps(options, option=orjson.OPT_SORT_KEYS))
    return f"exchanges-{h.hexdigest()[:16]}.arrow"


def ingest_to_dataset(
    paths: Sequence[str | Path],
    cache_dir: str | Path,
    *,
    format: str = "auto",
    strict: bool = False,
    default_model: str | None = None,
    columns: dict[str, str] | None = None,
    batch_rows: int = BATCH_ROWS,
    processes: int = 1,
) -> tuple[Any, IngestSummary]:
    """Read logs into an Arrow-backed :class:`datasets.Dataset` with bounded memory.

    The Arrow file is written to ``cache_dir`` (created if needed; a file name derived from
    the paths and options, rewritten on every call) and memory-mapped. Returns the dataset and
    the :class:`~migrate_eval.core.results.IngestSummary` of what was read (the counting rule of
    :func:`~migrate_eval.ingest.read_logs` holds: ``lines_read == exchanges + skipped``).
    Raises what :func:`~migrate_eval.ingest.read_logs` raises (unknown format, strict mode).

    ``processes=2`` lets a worker process read the second half of a large uncompressed
    ``chat-jsonl`` file (see :meth:`~migrate_eval.ingest.reader.LogStream.rows`): faster when
    a second CPU core is idle, slower when it is busy (the worker's start and the merge cost
    about a quarter more CPU time in all), hence not the default.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    stream = stream_logs(
        paths, format=format, strict=strict, default_model=default_model, columns=columns
    )
    name = _cache_name(
        paths, {"format": format, "default_model": default_model, "columns": columns}
    )
    import datasets

    target = Path(cache_dir) / name
    write_arrow(stream, target, batch_rows=batch_rows, processes=processes)
    return datasets.Dataset.from_file(str(target)), stream.summary()


def write_arrow(
    stream: LogStream, target: str | Path, *, batch_rows: int = BATCH_ROWS, processes: int = 1
) -> None:
    """The exchanges of ``stream`` (not iterated yet) written as an Arrow stream file to
    ``target`` (its folder created if needed; written under a temporary name, then renamed),
    a record batch of up to ``batch_rows`` rows at a time. The stream's counts and skipped
    lines are complete when it returns."""
    pa = _rows.pa_module()
    target = Path(target)
    cache = target.parent
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    sch = schema()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with (
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_stream(sink, sch) as writer,
            _BackgroundWriter(writer) as background,
        ):
            write = background.write
            rows: list[Row] = []
            append = rows.append
            record_batch = _rows.record_batch
            for item in stream.rows(
                workdir=cache if processes > 1 else None, batch_rows=batch_rows
            ):
                if type(item) is tuple:  # one row
                    append(item)
                    if len(rows) >= batch_rows:
                        write(record_batch(sch, rows))
                        rows = []
                        append = rows.append
                    continue
                if rows:  # a record batch (chat-jsonl): keep the order
                    write(record_batch(sch, rows))
                    rows = []
                    append = rows.append
                write(item)
            if rows:
                write(record_batch(sch, rows))
        os.replace(tmp, target)
    finally:
        if gc_was_enabled:
            gc.enable()
        if tmp.exists():
            tmp.unlink()


class _BackgroundWriter:
    """Record batches written to an Arrow stream by a thread of their own, while the next
    ones are read: pyarrow writes without holding the GIL, so writing the file overlaps with
    reading the logs. At most :data:`WRITE_AHEAD` batches wait (bounded memory). A failed
    write is raised by the next :meth:`write` or when the block ends; leaving the block on an
    error stops the thread without writing what was still waiting."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=WRITE_AHEAD)
        self._error: BaseException | None = None
        self._abort = False
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            if self._error is None and not self._abort:
                try:
                    self._writer.write_batch(batch)
                except BaseException as e:  # raised in the reading thread
                    self._error = e

    def write(self, batch: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def __enter__(self) -> _BackgroundWriter:
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._abort = exc_type is not None
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc_type is None:
            raise self._error


def exchange_from_row(row: dict[str, Any], *, validated: bool = False) -> Exchange:
    """One dataset row back as an :class:`~migrate_eval.core.records.Exchange`.

    ``validated``: the row was written from a validated exchange (a file :func:`write_arrow`
    wrote in this run): it is not validated again, and the strings that repeat across
    exchanges (file, format, model, roles, system prompts, metadata values) are interned, so
    that an exchange held in memory costs its own text and little more (see
    docs/performance.md, "Memory")."""
    if validated:
        return _compact_exchange(row)
    response = row.get("response")
    metadata = row.get("metadata")
    return Exchange(
        id=row["id"],
        source=Source(file=row["file"], line=row["line"], format=row["format"]),
        timestamp=row.get("timestamp"),
        request=_rows.loads(row["request"]),
        response=_rows.loads_response(response) if response else None,
        error=row.get("error"),
        metadata=_rows.loads(metadata) if metadata else {},
        gold=row.get("gold"),
    )


def _compact_exchange(row: dict[str, Any]) -> Exchange:
    request = _rows.loads(row["request"])
    model = request.get("model")
    if type(model) is str:
        request["model"] = sys.intern(model)
    messages = request.get("messages")
    if type(messages) is list:
        for m in messages:
            if type(m) is dict:
                role = m.get("role")
                if type(role) is str:
                    m["role"] = role = sys.intern(role)
                    if role == "system" or role == "developer":
                        content = m.get("content")
                        if type(content) is str:
                            m["content"] = sys.intern(content)
    response = row.get("response")
    metadata = _rows.loads(row["metadata"]) if row.get("metadata") else {}
    for key, value in metadata.items():
        if type(value) is str:
            metadata[key] = sys.intern(value)
    return trusted(
        Exchange,
        id=row["id"],
        source=trusted(
            Source,
            file=sys.intern(row["file"]),
            line=row["line"],
            format=sys.intern(row["format"]),
        ),
        timestamp=row.get("timestamp"),
        request=ChatRequest(request),
        response=_rows.loads_response(response, validated=True) if response else None,
        error=row.get("error"),
        metadata=metadata,
        gold=row.get("gold"),
    )


def iter_file_exchanges(
    path: str | Path, rows: Sequence[int] | None = None
) -> Iterator[tuple[int, Exchange]]:
    """``(row, exchange)`` for the rows of an Arrow file :func:`write_arrow` wrote, in order
    (only ``rows``, sorted, when given), read a record batch at a time with plain reads
    rather than a memory map, so that a pass over a large file keeps one batch in memory (a
    memory map would keep every page it touched)."""
    pa = _rows.pa_module()
    wanted = None if rows is None else list(rows)
    at = 0  # the next wanted row, as an index into `wanted`
    start = 0  # the file row of the batch's first row
    with pa.OSFile(str(path), "rb") as source:
        for batch in pa.ipc.open_stream(source):
            end = start + batch.num_rows
            if wanted is None:
                picked = list(range(start, end))
            else:
                first = at
                while at < len(wanted) and wanted[at] < end:
                    at += 1
                picked = wanted[first:at]
                if not picked:
                    start = end
                    continue
                if picked != list(range(start, end)):  # every row: the batch as it is
                    batch = batch.take(_rows.int64_array([r - start for r in picked]))
            columns = _rows.batch_columns(batch)
            keys = list(columns)
            values = zip(*(columns[k] for k in keys), strict=True)
            for row, vals in zip(picked, values, strict=True):
                yield row, exchange_from_row(dict(zip(keys, vals, strict=True)), validated=True)
            start = end
            if wanted is not None and at >= len(wanted):
                return


def iter_file_records(path: str | Path) -> Iterator[tuple[int, _rows.RowExchange]]:
    """``(row, record)`` for every row of an Arrow file :func:`write_arrow` wrote in this run,
    in order, a record batch at a time: what the traffic pass reads of each exchange
    (:class:`~migrate_eval.core.records.LoggedExchange`), decoded once from the batch's
    columns with no pydantic model built (:func:`iter_file_exchanges` gives the exchanges)."""
    pa = _rows.pa_module()
    start = 0
    with pa.OSFile(str(path), "rb") as source:
        for batch in pa.ipc.open_stream(source):
            yield from _rows.batch_records(batch, start)
            start += batch.num_rows


def iter_exchanges(dataset: Any, *, batch_rows: int = BATCH_ROWS) -> Iterator[Exchange]:
    """The exchanges of a dataset made by :func:`ingest_to_dataset`, in order, a batch of
    rows at a time (bounded memory)."""
    for start in range(0, len(dataset), batch_rows):
        batch = dataset[start : start + batch_rows]
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys), strict=True):
            yield exchange_from_row(dict(zip(keys, values, strict=True)))
