"""CSV exports whose rows are the records of a JSON format (Langfuse, Helicone, LiteLLM...).

Observability tools export the same rows as CSV that their API gives as JSON: objects
(``input``, ``request_body``, ``metadata``...) are cells holding JSON text, numbers are text
and an empty cell is a missing value. :func:`csv_sniffer` recognises such a file from its
header line, and :func:`csv_reader` turns each row into a record dict (JSON cells parsed) for
the format's own record reader, so a CSV row and a JSON record of the same call give the same
exchange and the same per-field errors.

Helicone's export tool (Helicone/helicone, examples/export/typescript/index.ts,
``convertToCSVRow``) doubles the quotes of a JSON cell *before* quoting the cell, so the cell
reads ``{""model"":""gpt-4o""}`` once unquoted: such cells are undoubled before parsing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import LineIssue
from migrate_eval.core.records import Exchange
from migrate_eval.ingest._common import INVALID_VALUE, NOT_UTF8, LineContext, RecordError
from migrate_eval.ingest._jsonl import BOM, loads, open_lines

CSV_FIELD_LIMIT = 1 << 30
_SUFFIXES = (".csv", ".tsv")


def _base_name(path: Path) -> str:
    name = path.name.lower()
    for comp in (".gz", ".zst"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    return name


def header_of(path: Path, head: bytes) -> list[str] | None:
    """The header cells of a CSV/TSV file from its first bytes, else None."""
    if not _base_name(path).endswith(_SUFFIXES):
        return None
    text = head[len(BOM) :] if head.startswith(BOM) else head
    first = text.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        line = first.decode("utf-8")
    except UnicodeDecodeError:
        return None
    delimiter = "\t" if _base_name(path).endswith(".tsv") else ","
    try:
        return [h.strip() for h in next(csv.reader([line], delimiter=delimiter))]
    except (csv.Error, StopIteration):
        return None


def csv_sniffer(match: Callable[[set[str]], bool]) -> Callable[[Path, bytes], bool]:
    """A ``sniff_file`` recognising CSV/TSV files whose header ``match`` accepts."""

    def sniff_file(path: Path, head: bytes) -> bool:
        header = header_of(path, head)
        return header is not None and match(set(header))

    return sniff_file


def cell_value(text: str) -> Any:
    """A CSV cell as a JSON value: empty is None, JSON objects/arrays are parsed (quotes
    doubled by the exporter undoubled), anything else stays text."""
    if text == "":
        return None
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return loads(stripped.encode())
        except ValueError:
            if '""' in stripped:
                try:
                    return loads(stripped.replace('""', '"').encode())
                except ValueError:
                    pass
    return text


def csv_reader(
    reader: Callable[[dict[str, Any], LineContext], Exchange],
) -> Callable[[Path, LineContext], Iterator[Exchange | LineIssue]]:
    """A ``read_file`` giving each row of a CSV/TSV export to a record ``reader``."""

    def read_file(path: Path, ctx: LineContext) -> Iterator[Exchange | LineIssue]:
        yield from _records(path, ctx, reader)

    return read_file


def _records(
    path: Path, ctx: LineContext, reader: Callable[[dict[str, Any], LineContext], Exchange]
) -> Iterator[Exchange | LineIssue]:
    for row in csv_rows(path, ctx, strip_header=True):
        if isinstance(row, LineIssue):
            yield row
            continue
        record = {key: cell_value(cell) for key, cell in row.items()}
        try:
            yield reader(record, ctx)
        except RecordError as e:
            yield e.issue(ctx.file, ctx.line)
        except ValueError as e:
            yield LineIssue(ctx.file, ctx.line, "", f"{INVALID_VALUE}: {e}")


def csv_rows(
    path: Path,
    ctx: LineContext,
    *,
    strip_header: bool = False,
    on_header: Callable[[list[str]], None] | None = None,
) -> Iterator[dict[str, str] | LineIssue]:
    """The rows of a CSV/TSV file (``.gz``/``.zst`` too) as header -> cell text, streaming.

    ``ctx.line`` is set to each row's first line (the header is line 1). Blank rows are
    skipped; a row with the wrong number of cells, a cell that is not UTF-8 or a malformed
    row is a :class:`LineIssue` and the rows after it are still read. ``on_header`` sees the
    header first (and may raise, e.g. when a needed column is missing).
    """
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    delimiter = "\t" if _base_name(path).endswith(".tsv") else ","
    fh = open_lines(path)
    text = io.TextIOWrapper(
        fh,  # type: ignore[type-var]
        encoding="utf-8",
        errors="surrogateescape",
        newline="",
    )
    line = 1
    try:
        rows = csv.reader(text, delimiter=delimiter)
        try:
            header = next(rows)
        except StopIteration:
            return
        if strip_header:
            header = [h.strip() for h in header]
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        if on_header is not None:
            on_header(header)
        line = rows.line_num + 1
        while True:
            try:
                cells = next(rows)
            except StopIteration:
                return
            except csv.Error as e:
                ctx.line = line
                yield LineIssue(ctx.file, line, "", f"{INVALID_VALUE}: {e}")
                line = rows.line_num + 1
                continue
            ctx.line, line = line, rows.line_num + 1
            if not cells or all(not c for c in cells):
                continue
            if len(cells) != len(header):
                yield LineIssue(
                    ctx.file,
                    ctx.line,
                    "",
                    f"{INVALID_VALUE}: {len(cells)} cells, the header has {len(header)}",
                )
                continue
            row = dict(zip(header, cells, strict=True))
            bad = next((key for key, cell in row.items() if not _is_utf8(cell)), None)
            if bad is not None:
                yield LineIssue(ctx.file, ctx.line, bad, f"{NOT_UTF8}: the cell is not UTF-8 text")
                continue
            yield row
    except EOFError:
        yield LineIssue(ctx.file, line, "", "truncated file: the compressed stream ends early")
    finally:
        text.close()


def _is_utf8(cell: str) -> bool:
    """False for a cell read with ``surrogateescape`` from bytes that are not UTF-8."""
    try:
        cell.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------- Parquet exports

PARQUET_MAGIC = b"PAR1"


def parquet_columns(path: Path, head: bytes) -> list[str] | None:
    """The column names of a Parquet file (from its footer), else None."""
    if not head.startswith(PARQUET_MAGIC):
        return None
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        return None
    try:
        return list(pq.read_schema(path).names)
    except Exception:
        return None


def export_sniffer(match: Callable[[set[str]], bool]) -> Callable[[Path, bytes], bool]:
    """A ``sniff_file`` recognising CSV/TSV or Parquet exports whose columns ``match``
    accepts."""

    def sniff_file(path: Path, head: bytes) -> bool:
        header = header_of(path, head) or parquet_columns(path, head)
        return header is not None and match(set(header))

    return sniff_file


def _plain(value: Any) -> Any:
    """A Parquet cell as a JSON value: times as ISO 8601 text, JSON text parsed."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str):
        return cell_value(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def export_reader(
    reader: Callable[[dict[str, Any], LineContext], Exchange],
) -> Callable[[Path, LineContext], Iterator[Exchange | LineIssue]]:
    """A ``read_file`` giving each row of a CSV/TSV or Parquet export to a record ``reader``
    (a Parquet row's ``line`` is its 1-based row number)."""

    def read_file(path: Path, ctx: LineContext) -> Iterator[Exchange | LineIssue]:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != PARQUET_MAGIC:
            yield from _records(path, ctx, reader)
            return
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                n += 1
                ctx.line = n
                record = {k: _plain(v) for k, v in row.items()}
                try:
                    yield reader(record, ctx)
                except RecordError as e:
                    yield e.issue(ctx.file, n)
                except ValueError as e:
                    yield LineIssue(ctx.file, n, "", f"{INVALID_VALUE}: {e}")

    return read_file
