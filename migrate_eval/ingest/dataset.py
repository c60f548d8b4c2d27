"""Logs too large for memory: stream them into an Arrow-backed Hugging Face dataset.

:func:`ingest_to_dataset` reads logs with :func:`~migrate_eval.ingest.stream_logs` (same
formats, rules and counts as :func:`~migrate_eval.ingest.read_logs`) and writes the exchanges
to an Arrow file in ``cache_dir`` a batch at a time, so memory stays bounded whatever the
size of the logs (only the ids seen, for de-duplication, grow with the number of exchanges).
The file is memory-mapped by :class:`datasets.Dataset`; :func:`iter_exchanges` gives the
exchanges back.

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
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from migrate_eval.errors import MissingExtraError
from migrate_eval.ingest.reader import stream_logs
from migrate_eval.records import Exchange, Response, Source
from migrate_eval.results import IngestSummary

#: Exchanges written per Arrow record batch.
BATCH_ROWS = 2048
COLUMNS = (
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
    "task",
)


def _pa() -> Any:
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise MissingExtraError("pyarrow", "test", "ingest_to_dataset") from None
    return pa


def schema() -> Any:
    """The Arrow schema of an ingested dataset."""
    pa = _pa()
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


def _default(obj: Any) -> Any:
    """orjson fallback: pydantic models (Response, ToolCall, Usage) as their fields."""
    d = getattr(obj, "__dict__", None)
    if d is not None:
        return d
    raise TypeError(f"cannot serialise {type(obj).__name__}")


_DUMPS_OPTS = orjson.OPT_NON_STR_KEYS


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=_default, option=_DUMPS_OPTS).decode()


def _response_json(response: Response | None) -> str | None:
    if response is None:
        return None
    return _dumps(response)


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
) -> tuple[Any, IngestSummary]:
    """Read logs into an Arrow-backed :class:`datasets.Dataset` with bounded memory.

    The Arrow file is written to ``cache_dir`` (created if needed; a file name derived from
    the paths and options, rewritten on every call) and memory-mapped. Returns the dataset and
    the :class:`~migrate_eval.results.IngestSummary` of what was read (the counting rule of
    :func:`~migrate_eval.ingest.read_logs` holds: ``lines_read == exchanges + skipped``).
    Raises what :func:`~migrate_eval.ingest.read_logs` raises (unknown format, strict mode).
    """
    import datasets

    pa = _pa()
    if isinstance(paths, str | Path):
        paths = [paths]
    stream = stream_logs(
        paths, format=format, strict=strict, default_model=default_model, columns=columns
    )
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / _cache_name(
        paths, {"format": format, "default_model": default_model, "columns": columns}
    )
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    sch = schema()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, sch) as writer:
            cols: list[list[Any]] = [[] for _ in COLUMNS]
            (c_id, c_file, c_line, c_fmt, c_ts, c_model, c_req, c_resp, c_err, c_meta, c_gold) = (
                cols[:11]
            )
            n = 0
            dumps = _dumps
            for ex in stream:
                src = ex.source
                c_id.append(ex.id)
                c_file.append(src.file)
                c_line.append(src.line)
                c_fmt.append(src.format)
                c_ts.append(ex.timestamp)
                model = ex.request.get("model")
                c_model.append(model if type(model) is str else None)
                c_req.append(dumps(ex.request))
                c_resp.append(None if ex.response is None else dumps(ex.response))
                c_err.append(ex.error)
                c_meta.append(dumps(ex.metadata) if ex.metadata else "{}")
                c_gold.append(ex.gold)
                n += 1
                if n == batch_rows:
                    _write(writer, sch, cols, n)
                    for c in cols:
                        c.clear()
                    n = 0
            if n:
                _write(writer, sch, cols, n)
        os.replace(tmp, target)
    finally:
        if gc_was_enabled:
            gc.enable()
        if tmp.exists():
            tmp.unlink()
    dataset = datasets.Dataset.from_file(str(target))
    return dataset, stream.summary()


def _write(writer: Any, sch: Any, cols: list[list[Any]], n: int) -> None:
    pa = _pa()
    arrays = []
    for name, values in zip(COLUMNS, cols, strict=True):
        if name == "task":
            arrays.append(pa.nulls(n, pa.string()))
        else:
            arrays.append(pa.array(values, type=sch.field(name).type))
    writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=sch))


def exchange_from_row(row: dict[str, Any]) -> Exchange:
    """One dataset row back as an :class:`~migrate_eval.records.Exchange`."""
    response = row.get("response")
    metadata = row.get("metadata")
    return Exchange(
        id=row["id"],
        source=Source(file=row["file"], line=row["line"], format=row["format"]),
        timestamp=row.get("timestamp"),
        request=orjson.loads(row["request"]),
        response=Response.model_validate(orjson.loads(response)) if response else None,
        error=row.get("error"),
        metadata=orjson.loads(metadata) if metadata else {},
        gold=row.get("gold"),
    )


def iter_exchanges(dataset: Any, *, batch_rows: int = BATCH_ROWS) -> Iterator[Exchange]:
    """The exchanges of a dataset made by :func:`ingest_to_dataset`, in order, a batch of
    rows at a time (bounded memory)."""
    for start in range(0, len(dataset), batch_rows):
        batch = dataset[start : start + batch_rows]
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys), strict=True):
            yield exchange_from_row(dict(zip(keys, values, strict=True)))
