"""``table``: CSV (or TSV) and Parquet logs with prompt/response columns.

The simplest logs: one row a call. Columns (auto-detected, case-insensitive, else named with
``read_logs(..., columns={...})`` or a suite's ``logs[].columns``):

==========  ===============================================================================
key         column names recognised
==========  ===============================================================================
prompt      prompt, input, question, instruction, query, user, user_message, messages
response    response, output, completion, answer, assistant, reference, expected_output
system      system, system_prompt, instructions
id          id, request_id, custom_id, uuid
label       label, gold, gold_label, expected, target
model       model, model_name
==========  ===============================================================================

A prompt cell holding a JSON array of chat messages is the messages; otherwise it is one user
message (after the system prompt, if any). A response cell holding a JSON chat completion (or
any response shape ``chat-jsonl`` accepts) is normalised as such; otherwise it is the text.
Every other column is kept in the exchange's metadata. Rows are read streaming (CSV row by
row, Parquet a record batch at a time). A row's ``source.line`` is its line in the CSV file
(the header is line 1; a quoted field spanning lines counts its first line) or its 1-based
row number in the Parquet file. A row with an empty prompt, a cell that is not UTF-8 or a
row with the wrong number of cells is a skipped record naming the column.

Parquet needs ``pyarrow`` (installed with ``datasets``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import ConfigError, LineIssue, LogFormatError, MissingExtraError
from migrate_eval.core.records import Exchange, Response
from migrate_eval.ingest._common import (
    INVALID_VALUE,
    MISSING_FIELD,
    LineContext,
    RecordError,
    check_messages,
    gold_text,
)
from migrate_eval.ingest._csv_records import csv_rows
from migrate_eval.ingest._jsonl import loads
from migrate_eval.ingest._responses import logged_response
from migrate_eval.ingest.registry import LogFormat, never, no_line_reader

NAME = "table"
PARQUET_MAGIC = b"PAR1"
COLUMN_KEYS = ("prompt", "response", "system", "id", "label", "model")
_ALIASES: dict[str, tuple[str, ...]] = {
    "prompt": (
        "prompt",
        "input",
        "question",
        "instruction",
        "query",
        "user",
        "user_message",
        "messages",
    ),
    "response": (
        "response",
        "output",
        "completion",
        "answer",
        "assistant",
        "reference",
        "expected_output",
    ),
    "system": ("system", "system_prompt", "instructions"),
    "id": ("id", "request_id", "custom_id", "uuid"),
    "label": ("label", "gold", "gold_label", "expected", "target"),
    "model": ("model", "model_name"),
}
_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


def _base_name(path: Path) -> str:
    name = path.name.lower()
    for comp in (".gz", ".zst"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    return name


def sniff_file(path: Path, head: bytes) -> bool:
    return head.startswith(PARQUET_MAGIC) or _base_name(path).endswith(_TABLE_SUFFIXES)


def resolve_columns(header: list[str], given: dict[str, str] | None, file: str) -> dict[str, str]:
    """Map each key (prompt, response...) to a column of ``header``."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(COLUMN_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown column key(s) {', '.join(unknown)}; expected: {', '.join(COLUMN_KEYS)}"
        )
    lower = {h.lower().strip(): h for h in header}
    out: dict[str, str] = {}
    for key in COLUMN_KEYS:
        if key in given:
            if given[key] not in header:
                raise LogFormatError(
                    f"{file}: no column {given[key]!r} (for {key}); columns: {', '.join(header)}"
                )
            out[key] = given[key]
            continue
        for alias in _ALIASES[key]:
            if alias in lower and lower[alias] not in out.values():
                out[key] = lower[alias]
                break
    if "prompt" not in out:
        raise LogFormatError(
            f"{file}: no prompt column among {', '.join(header)}; name it with "
            "columns={'prompt': ..., 'response': ...}"
        )
    return out


def row_exchange(row: dict[str, Any], cols: dict[str, str], ctx: LineContext) -> Exchange:
    prompt_col = cols["prompt"]
    prompt = row.get(prompt_col)
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise RecordError(prompt_col, MISSING_FIELD, "the prompt cell is empty")
    messages: list[Any]
    if isinstance(prompt, str) and prompt.lstrip().startswith("["):
        try:
            parsed = loads(prompt.encode())
        except ValueError:
            parsed = None
        messages = parsed if isinstance(parsed, list) else [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        messages = list(prompt)
    else:
        messages = [{"role": "user", "content": str(prompt)}]
    system = row.get(cols["system"]) if "system" in cols else None
    if isinstance(system, str) and system.strip():
        messages.insert(0, {"role": "system", "content": ctx.share(system)})
    model = row.get(cols["model"]) if "model" in cols else None
    request: dict[str, Any] = {
        "model": model if isinstance(model, str) and model else ctx.model_fallback,
        "messages": messages,
    }
    check_messages(messages, prompt_col, ctx)
    response: Response | None = None
    error = None
    if "response" in cols:
        value = row.get(cols["response"])
        if isinstance(value, str) and value.lstrip().startswith("{"):
            logged = logged_response(value, cols["response"])
            response, error = logged.response, logged.error
        elif value is not None and value != "":
            response = Response(text=str(value))
    label = row.get(cols["label"]) if "label" in cols else None
    ex_id = row.get(cols["id"]) if "id" in cols else None
    used = set(cols.values())
    metadata = {k: v for k, v in row.items() if k not in used and v not in (None, "")}
    return Exchange(
        id=str(ex_id) if ex_id not in (None, "") else ctx.default_id(),
        source=ctx.source(),
        request=request,
        response=response,
        error=error,
        metadata=metadata,
        gold=None if label in (None, "") else gold_text(label),
    )


def _issue(ctx: LineContext, e: Exception) -> LineIssue:
    if isinstance(e, RecordError):
        return e.issue(ctx.file, ctx.line)
    return LineIssue(ctx.file, ctx.line, "", f"{INVALID_VALUE}: {e}")


def _read_csv(path: Path, ctx: LineContext) -> Iterator[Exchange | LineIssue]:
    cols: dict[str, str] = {}

    def columns(header: list[str]) -> None:
        cols.update(resolve_columns(header, ctx.options.get("columns"), ctx.file))

    for row in csv_rows(path, ctx, on_header=columns):
        if isinstance(row, LineIssue):
            yield row
            continue
        try:
            yield row_exchange(row, cols, ctx)
        except (RecordError, ValueError) as e:
            yield _issue(ctx, e)


def _read_parquet(path: Path, ctx: LineContext) -> Iterator[Exchange | LineIssue]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise MissingExtraError("pyarrow", "test", f"reading {path} (Parquet)") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:
        raise LogFormatError(f"{path}: not a readable Parquet file: {e}") from e
    header = list(pf.schema_arrow.names)
    cols = resolve_columns(header, ctx.options.get("columns"), ctx.file)
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            ctx.line = n
            try:
                yield row_exchange(row, cols, ctx)
            except (RecordError, ValueError) as e:
                yield _issue(ctx, e)


def read_file(path: Path, ctx: LineContext) -> Iterator[Exchange | LineIssue]:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == PARQUET_MAGIC:
        yield from _read_parquet(path, ctx)
    else:
        yield from _read_csv(path, ctx)


FORMAT = LogFormat(
    name=NAME,
    sniff=never,
    reader=no_line_reader,
    description="CSV/TSV/Parquet with prompt/response columns (names configurable)",
    priority=50,
    sniff_file=sniff_file,
    read_file=read_file,
)
