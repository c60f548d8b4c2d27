"""Record batches of the ingest dataset built a line at a time: the ``chat-jsonl`` fast path.

A builder takes lists of raw lines with :meth:`~RowBuilder.add_lines`, which appends the row
of each line it takes and stops at the first non-blank line it does not take (the caller
reads that one with the full reader and appends its row with :meth:`~RowBuilder.add_row`,
so the order of rows is the order of lines), or when the batch is full;
:meth:`~RowBuilder.take` returns the batch as an Arrow record batch of
:func:`migrate_eval.ingest._rows.schema`.

Two builders give the same rows:

* :class:`CRowBuilder`, the compiled extension ``migrate_eval.ingest._fastrows`` (built from
  ``_fastrows.c`` when the package is installed, where a C compiler is available): it walks
  the line ``orjson`` parsed and appends to Arrow buffers directly, with no Python object a
  row. It takes the most common line only (a text answer, integer epoch-seconds timestamp,
  a string id, the line's own metadata) and leaves the rest to the caller;
* :class:`RowBuilder`, in Python: :func:`migrate_eval.ingest.formats.chat_jsonl.fast_row` for each
  line, the rows converted by :func:`migrate_eval.ingest._rows.record_batch`.

:func:`new_builder` picks the compiled one when it is there, unless the environment variable
``MIGRATE_EVAL_PURE_PYTHON`` is set (to ``1``).
"""

from __future__ import annotations

import importlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from migrate_eval.ingest import _rows
from migrate_eval.ingest._common import CHAT_ROLES, LineContext
from migrate_eval.ingest._jsonl import loads
from migrate_eval.ingest._rows import Row
from migrate_eval.ingest.formats import chat_jsonl

#: Rows in a record batch, at most (a batch may hold one more row than this).
MAX_ROWS = 2048
#: Text bytes in a record batch before it is handed on (bounds memory with long messages).
MAX_BYTES = 64 << 20

_fastrows: Any
try:
    _fastrows = importlib.import_module("migrate_eval.ingest._fastrows")
except ImportError:  # no C compiler where it was installed: the Python builder
    _fastrows = None

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def compiled() -> bool:
    """Whether :func:`new_builder` gives the compiled builder."""
    return _fastrows is not None and not os.environ.get("MIGRATE_EVAL_PURE_PYTHON")


def timestamp_us(value: Any) -> int | None:
    """A row's timestamp (``None``, microseconds since the epoch, or a ``datetime``, naive
    meaning UTC, as Arrow takes it) as microseconds."""
    if value is None or type(value) is int:
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _US  # type: ignore[no-any-return]


class RowBuilder:
    """The builder in Python (see the module docstring)."""

    def __init__(
        self,
        ctx: LineContext,
        seen: set[str] | None,
        *,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._ctx = ctx
        self._seen = seen
        self._rows: list[Row] = []
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._nbytes = 0
        #: non-blank lines :meth:`add_lines` took, in all
        self.lines = 0

    @property
    def rows(self) -> int:
        """Rows in the current batch."""
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        """Bytes of the lines in the current batch (about its text)."""
        return self._nbytes

    def full(self) -> bool:
        return len(self._rows) >= self._max_rows or self._nbytes >= self._max_bytes

    def add_lines(self, lines: list[bytes], start: int, first_line: int) -> int:
        """Append the rows of ``lines[start:]`` (``lines[0]`` is line ``first_line``) up to the
        first non-blank line not taken, or until the batch is full; returns the index of the
        next line to read."""
        ctx = self._ctx
        seen = self._seen
        rows = self._rows
        fast_row = chat_jsonl.fast_row
        for i in range(start, len(lines)):
            raw = lines[i]
            if raw.isspace():
                continue
            ctx.line = first_line + i
            try:
                record = loads(raw)
                row = fast_row(record, ctx) if type(record) is dict else None
            except (ValueError, TypeError, OverflowError):
                row = None
            if row is None or (seen is not None and row[0] in seen):
                return i
            if seen is not None:
                seen.add(row[0])
            rows.append(row)
            self.lines += 1
            self._nbytes += len(raw)
            if self.full():
                return i + 1
        return len(lines)

    def add_row(self, row: Row) -> None:
        """Append a row made by the caller (see :mod:`migrate_eval.ingest._rows`)."""
        self._rows.append(row)
        self._nbytes += sum(len(v) for v in row[6:8] if v is not None)

    def take(self) -> Any:
        """The rows since the last take as an Arrow record batch; starts a new batch."""
        batch = _rows.record_batch(_rows.schema(), self._rows)
        self._rows = []
        self._nbytes = 0
        return batch


if _fastrows is not None:

    class CRowBuilder(_fastrows.Builder):  # type: ignore[misc]
        """The compiled builder (see the module docstring)."""

        def __init__(
            self,
            ctx: LineContext,
            seen: set[str] | None,
            *,
            max_rows: int = MAX_ROWS,
            max_bytes: int = MAX_BYTES,
        ) -> None:
            super().__init__(ctx.file, ctx.format, seen, CHAT_ROLES, max_rows, max_bytes)
            self._max_rows = max_rows
            self._max_bytes = max_bytes

        def full(self) -> bool:
            return bool(self.rows >= self._max_rows or self.nbytes >= self._max_bytes)

        def add_row(self, row: Row) -> None:
            ts = row[4]
            if ts is not None and type(ts) is not int:
                row = (*row[:4], timestamp_us(ts), *row[5:])
            super().add_row(row)

        def take(self) -> Any:
            n, buffers = super().take()
            return batch_from_buffers(n, buffers)


def batch_from_buffers(n: int, buffers: list[tuple[bytes | None, ...]]) -> Any:
    """An Arrow record batch of ``n`` rows from the compiled builder's buffers (no copy)."""
    pa = _rows.pa_module()
    sch = _rows.schema()
    arrays = []
    for i, bufs in enumerate(buffers):
        arrays.append(
            pa.Array.from_buffers(
                sch.field(i).type, n, [None if b is None else pa.py_buffer(b) for b in bufs]
            )
        )
    arrays.append(pa.nulls(n, pa.string()))  # task
    return pa.RecordBatch.from_arrays(arrays, schema=sch)


def new_builder(ctx: LineContext, seen: set[str] | None, *, max_rows: int = MAX_ROWS) -> Any:
    """A builder for the lines of one file (``ctx``); ``seen`` is the set of ids seen so far
    (a line whose id is in it is left to the caller, which renames it; the ids taken are
    added) or None to keep ids as they are; ``max_rows`` rows make a full batch."""
    if compiled():
        return CRowBuilder(ctx, seen, max_rows=max_rows)
    return RowBuilder(ctx, seen, max_rows=max_rows)
