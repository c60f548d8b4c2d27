"""Exchanges as rows of the Arrow dataset that :func:`~migrate_eval.ingest.ingest_to_dataset`
writes (see :mod:`migrate_eval.ingest.dataset` for the columns).

A row is a tuple in the order of :data:`ROW_COLUMNS`: every column but ``task``. The JSON
columns are written with ``orjson``, as text or as its UTF-8 bytes (Arrow takes either); a
pydantic model (``Response``, ``ToolCall``, ``Usage``) is written as its fields, in
declaration order. A timestamp is a ``datetime`` or, as Arrow takes it too, an ``int`` of
microseconds since the epoch (UTC).
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from migrate_eval.core.errors import MissingExtraError
from migrate_eval.core.records import Exchange, Response, ToolCall, Usage, intern, trusted
from migrate_eval.core.request import ChatRequest

#: The columns a row holds, in order (``task`` is always null at ingest).
ROW_COLUMNS = (
    "id",
    "file",
    "line",
    "format",
    "timestamp",
    "model",
    "request",
    "response",
    "error",
    "metadata",
    "gold",
)

Row = tuple[Any, ...]
_JSON_COLUMNS = frozenset({"request", "response", "metadata"})


def _default(obj: Any) -> Any:
    """orjson fallback: pydantic models (Response, Usage) as their fields; a ToolCall as its
    ``id``, ``name`` and ``arguments`` only (the parsed arguments are derived again when the
    row is read: :func:`loads_response`; they may hold what JSON cannot, such as NaN)."""
    if isinstance(obj, ToolCall):
        return {"id": obj.id, "name": obj.name, "arguments": obj.arguments}
    d = getattr(obj, "__dict__", None)
    if d is not None:
        return d
    raise TypeError(f"cannot serialise {type(obj).__name__}")


_DUMPS_OPTS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """``value`` as JSON text, as the dataset's JSON columns hold it. What orjson refuses (an
    integer beyond 64 bits: values parsed from JSON with orjson never hold one) is written by
    the standard library, so a row never fails; such an integer reads back as a float."""
    try:
        return orjson.dumps(value, default=_default, option=_DUMPS_OPTS).decode()
    except TypeError:
        return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """A JSON column's value (see :func:`dumps`; the standard library reads what it wrote
    and orjson does not, such as NaN)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def loads_response(text: str | bytes, *, validated: bool = False) -> Response:
    """The response column as a :class:`~migrate_eval.core.records.Response`: its tool calls'
    parsed arguments derived from their arguments text, as when the log was read
    (:meth:`~migrate_eval.core.records.ToolCall.from_raw`). ``validated``: the column was
    written from a validated response (see :func:`migrate_eval.ingest.dataset.exchange_from_row`):
    it is not validated again, and its model name and finish reason are interned."""
    data = loads(text)
    calls = data.get("tool_calls")
    if calls:
        data["tool_calls"] = [
            ToolCall.from_raw(c["name"], c["arguments"], c.get("id")) for c in calls
        ]
    if not validated:
        return Response.model_validate(data)
    usage = data.get("usage")
    return trusted(
        Response,
        text=data.get("text"),
        tool_calls=data["tool_calls"] if calls else [],
        refusal=data.get("refusal"),
        finish_reason=intern(data.get("finish_reason")),
        usage=None if usage is None else trusted(Usage, **usage),
        model=intern(data.get("model")),
        latency_ms=_float(data.get("latency_ms")),
        ttft_ms=_float(data.get("ttft_ms")),
    )


def _float(value: Any) -> Any:
    """A float field's value as validation gives it (an integer written as ``307`` is 307.0)."""
    return float(value) if type(value) is int else value


class RowToolCall:
    """A logged tool call as the traffic pass reads it: its name and arguments text."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self, call: dict[str, Any]) -> None:
        self.id: str | None = call.get("id")
        self.name: str = call["name"]
        self.arguments: str = call["arguments"]


class RowUsage:
    """Logged token usage as the traffic pass reads it (the fields of ``Usage``)."""

    __slots__ = (
        "cached_tokens",
        "completion_tokens",
        "prompt_tokens",
        "reasoning_tokens",
        "total_tokens",
    )

    def __init__(self, usage: dict[str, Any]) -> None:
        get = usage.get
        self.prompt_tokens: int | None = get("prompt_tokens")
        self.completion_tokens: int | None = get("completion_tokens")
        self.total_tokens: int | None = get("total_tokens")
        self.cached_tokens: int | None = get("cached_tokens")
        self.reasoning_tokens: int | None = get("reasoning_tokens")


class RowResponse:
    """A logged answer as the traffic pass reads it: the response column's fields as they
    were written from a validated ``Response``, with no model built (the tool calls' arguments
    are not parsed: the pass reads their text)."""

    __slots__ = ("finish_reason", "model", "refusal", "text", "tool_calls", "usage")

    def __init__(self, data: dict[str, Any]) -> None:
        get = data.get
        self.text: str | None = get("text")
        calls = get("tool_calls")
        self.tool_calls: list[RowToolCall] = [RowToolCall(c) for c in calls] if calls else []
        self.refusal: str | None = get("refusal")
        self.finish_reason: str | None = get("finish_reason")
        usage = get("usage")
        self.usage: RowUsage | None = None if usage is None else RowUsage(usage)
        self.model: str | None = get("model")


class RowExchange:
    """One row of the run's Arrow copy of the logs as the traffic pass reads it
    (:class:`~migrate_eval.core.records.LoggedExchange`): what an ``Exchange`` read back from
    the row holds, less its source, with no pydantic model built."""

    __slots__ = ("error", "gold", "id", "metadata", "request", "response", "timestamp")

    def __init__(
        self,
        id: str,
        timestamp: datetime | None,
        request: ChatRequest,
        response: RowResponse | None,
        error: str | None,
        metadata: dict[str, Any],
        gold: str | None,
    ) -> None:
        self.id = id
        self.timestamp = timestamp
        self.request = request
        self.response = response
        self.error = error
        self.metadata = metadata
        self.gold = gold

    @property
    def model(self) -> str | None:
        return self.request.model

    @property
    def system_prompt(self) -> str:
        return self.request.system_prompt


#: Where the run's timestamps count from (its Arrow files hold microseconds since then, UTC).
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamps(column: Any) -> list[datetime | None]:
    """A timestamp column's values (a record batch's column, an Arrow ``Array``): the
    instants ``column.to_pylist()`` gives, made from the column's integers a batch at a time,
    in ``datetime.UTC`` as the log readers give them. (pyarrow builds each time-zone-aware ``datetime`` one by one, at several microseconds
    each, in a zone object for which it imports pandas, ~0.3 s.)"""
    pa = pa_module()
    kind = column.type
    if kind.unit != "us" or kind.tz not in (None, "UTC"):  # not what the run writes
        return list(column.to_pylist())
    epoch = _NAIVE_EPOCH if kind.tz is None else _EPOCH
    # the same 64-bit integers seen as int64: a view, where a cast imports pyarrow.compute
    micros = column.view(pa.int64())
    return [None if us is None else epoch + timedelta(microseconds=us) for us in micros.to_pylist()]


def batch_columns(batch: Any) -> dict[str, list[Any]]:
    """A record batch's columns as lists, as ``batch.to_pydict()`` gives them, the timestamps
    made by :func:`timestamps`."""
    return {
        name: timestamps(column) if name == "timestamp" else column.to_pylist()
        for name, column in zip(batch.schema.names, batch.columns, strict=True)
    }


def batch_records(batch: Any, start: int = 0) -> Iterator[tuple[int, RowExchange]]:
    """``(row, record)`` for each row of a record batch of a file the run wrote (rows are
    numbered from ``start``): the JSON columns parsed once, nothing validated again."""
    column = batch.column
    binary = pa_module().binary()
    load = loads
    for row, (ex_id, ts, request, response, error, metadata, gold) in enumerate(
        zip(
            column("id").to_pylist(),
            timestamps(column("timestamp")),
            # the JSON columns as UTF-8 bytes, parsed as they are (no str made first)
            column("request").view(binary).to_pylist(),
            column("response").view(binary).to_pylist(),
            column("error").to_pylist(),
            column("metadata").view(binary).to_pylist(),
            column("gold").to_pylist(),
            strict=True,
        ),
        start,
    ):
        yield (
            row,
            RowExchange(
                ex_id,
                ts,
                ChatRequest(load(request)),
                RowResponse(load(response)) if response else None,
                error,
                load(metadata) if metadata else {},
                gold,
            ),
        )


def exchange_row(ex: Exchange) -> Row:
    """An exchange as a dataset row."""
    src = ex.source
    model = ex.request.model
    return (
        ex.id,
        src.file,
        src.line,
        src.format,
        ex.timestamp,
        model if type(model) is str else None,
        dumps(ex.request),
        None if ex.response is None else dumps(ex.response),
        ex.error,
        dumps(ex.metadata) if ex.metadata else "{}",
        ex.gold,
    )


def pa_module() -> Any:
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise MissingExtraError("pyarrow", "test", "ingest_to_dataset") from None
    return pa


def int64_array(values: Sequence[int]) -> Any:
    """``values`` as an Arrow int64 array, built from its buffer: ``pa.array`` asks pyarrow's
    pandas shim whether a list is array-like, which imports pandas (~0.3 s) into a run that
    has not needed it yet."""
    pa = pa_module()
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(array("q", values))])


def schema() -> Any:
    """The Arrow schema of an ingested dataset."""
    pa = pa_module()
    return pa.schema(
        [
            ("id", pa.string()),
            ("file", pa.string()),
            ("line", pa.int64()),
            ("format", pa.string()),
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("request", pa.string()),
            ("response", pa.string()),
            ("error", pa.string()),
            ("metadata", pa.string()),
            ("gold", pa.string()),
            ("task", pa.string()),
        ]
    )


def record_batch(sch: Any, rows: list[Row]) -> Any:
    """Rows as one Arrow record batch of schema ``sch`` (``task`` null)."""
    pa = pa_module()
    arrays = []
    binary = pa.binary()
    string = pa.string()
    for name, values in zip(ROW_COLUMNS, zip(*rows, strict=True), strict=True):
        if name in _JSON_COLUMNS:
            # JSON from orjson (bytes) or str: valid UTF-8 either way, so it is taken as bytes
            # and viewed as text without validating it again
            arrays.append(pa.array(values, type=binary).view(string))
        else:
            arrays.append(pa.array(values, type=sch.field(name).type))
    arrays.append(pa.nulls(len(rows), string))  # task
    return pa.RecordBatch.from_arrays(arrays, schema=sch)
