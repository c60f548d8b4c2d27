"""Read log files into exchanges: :func:`read_logs` and its :class:`IngestResult`.

``read_logs`` takes files, directories (every ``*.jsonl``, ``*.json``, ``*.csv``, ``*.tsv``,
``*.parquet``, plain or ``.gz``/``.zst``-compressed, inside, recursively, sorted) and glob
patterns. Gzip and zstd are recognised by their magic bytes (zstd needs the ``zstandard``
package: ``pip install 'migrate-eval[zstd]'``). Files are streamed line by line (a line is never held longer than it takes to read it)
and each line is parsed once.

Formats. With ``format="auto"`` each file's format is detected from its first bytes
(file-level formats: OTLP JSON, CSV, Parquet), else from its first parseable non-blank lines,
else, for a file that is one JSON document (an array of records, an object with a ``data`` or
``observations`` array, or one record), from its first records (see :mod:`migrate_eval.ingest.registry`); a file no format recognises, an
unreadable file or a path that matches nothing raises :class:`~migrate_eval.core.errors.LogFormatError`
naming it, before any line is read.

Bad lines. A line that is not UTF-8, not JSON, not an object, or that lacks a required field
or has one of the wrong type is *skipped*: it becomes a :class:`~migrate_eval.core.errors.LineIssue`
(file, 1-based line, field path such as ``response.choices[0].message``, reason) and reading
goes on. With ``strict=True`` the first bad line raises :class:`~migrate_eval.core.errors.BadLineError`.
A gzip file cut short counts as one more, skipped, line.

Counting rule (an invariant: ``lines_read == len(exchanges) + len(skipped)``).
``lines_read`` counts non-blank lines. For the OpenAI Batch API, the lines of the *input* files
are counted; an output line joined to an input line (on ``custom_id``) is part of that input
line's exchange and is not counted again; an output line that cannot be joined (no input line
has its ``custom_id``, its ``custom_id`` repeats an earlier output line, it is not JSON...)
counts as one skipped line of the output file. An input line whose joined output line is
malformed is skipped, and the issue names the output file and line. An output file read
without its input file therefore gives only skipped lines ("no matching batch input line").

Ids. An exchange's id comes from the log when it has one (Batch ``custom_id``, a line's ``id``,
a logged response id), else from the file name and line number; ids are stable across runs
and made unique within a run by appending ``-2``, ``-3``... to repeats.

File-level formats and JSON documents count *records* (spans, rows, array elements) rather
than lines, and the same invariant holds; an exchange's ``source.line`` is then the record's
line (OTLP JSON lines) or its 1-based ordinal in the document.

Memory. ``read_logs`` returns every exchange in a list. For logs too large for that,
:func:`stream_logs` gives the same exchanges one at a time (same rules, same counts).
"""

from __future__ import annotations

import gc
import glob
import io
import os
import re
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from migrate_eval.core.errors import BadLineError, LineIssue, LogFormatError
from migrate_eval.core.records import Exchange
from migrate_eval.core.results import IngestSummary
from migrate_eval.ingest import _builder, _rows
from migrate_eval.ingest._common import (
    DUPLICATE_CUSTOM_ID,
    INVALID_VALUE,
    NO_BATCH_INPUT,
    NOT_OBJECT,
    TRUNCATED_FILE,
    WRONG_FORMAT,
    LineContext,
    RecordError,
    SideRecord,
    drop_filled_params,
    reason_category,
    type_name,
)
from migrate_eval.ingest._jsonl import (
    BOM,
    GZIP_MAGIC,
    ZSTD_MAGIC,
    head_bytes,
    loads,
    max_line_bytes,
    open_lines,
    parse_line,
    too_long,
)
from migrate_eval.ingest._rows import Row, exchange_row
from migrate_eval.ingest.formats import chat_jsonl, openai_batch
from migrate_eval.ingest.registry import (
    LogFormat,
    available_formats,
    detect,
    detect_file,
    detect_index,
    detect_index_file,
    get_format,
    no_line_reader,
)

_BASE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet")
LOG_SUFFIXES = tuple(b + c for b in _BASE_SUFFIXES for c in ("", ".gz", ".zst"))
SNIFF_LINES = 20
_GLOB_CHARS = frozenset("*?[")


@dataclass
class IngestResult:
    """What :func:`read_logs` read: exchanges, skipped lines and counts."""

    exchanges: list[Exchange] = field(default_factory=list)
    skipped: list[LineIssue] = field(default_factory=list)
    lines_read: int = 0
    formats: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    #: how each file was sniffed (format and role: side file, output file...)
    sniffed: dict[str, str] = field(default_factory=dict)

    @property
    def logged_errors(self) -> int:
        """Exchanges whose logged call failed (e.g. Batch error lines): kept, not skipped."""
        return sum(1 for ex in self.exchanges if ex.error is not None)

    def summary(self) -> IngestSummary:
        """The counts as an :class:`~migrate_eval.core.results.IngestSummary`: skipped lines grouped
        by reason category, and the first five as examples."""
        return summarize(
            self.files, self.formats, self.lines_read, len(self.exchanges), self.skipped
        )


def summarize(
    files: list[str],
    formats: dict[str, int],
    lines_read: int,
    exchanges: int,
    skipped: list[LineIssue],
) -> IngestSummary:
    """The counts of one or more reads as an :class:`~migrate_eval.core.results.IngestSummary`:
    skipped lines grouped by reason category, and the first five as examples."""
    by_reason = Counter(reason_category(issue.reason) for issue in skipped)
    return IngestSummary(
        files=list(files),
        formats=dict(formats),
        lines_read=lines_read,
        exchanges=exchanges,
        skipped=len(skipped),
        skipped_by_reason=dict(by_reason.most_common()),
        examples=[str(issue) for issue in skipped[:5]],
    )


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files named by ``paths`` (files, directories, globs), in order, each once."""
    out: list[Path] = []
    seen: set[Path] = set()
    for given in paths:
        text = os.path.expanduser(str(given))
        path = Path(text)
        if path.is_dir():
            found = _dir_files(path, str(given))
        elif path.exists():
            found = [path]
        elif _GLOB_CHARS & set(text):
            found = []
            for match in sorted(glob.glob(text, recursive=True)):
                m = Path(match)
                found.extend(_dir_files(m, match) if m.is_dir() else [m])
            if not found:
                raise LogFormatError(f"{given}: no file matches this pattern")
        else:
            raise LogFormatError(f"{given}: no such file or directory")
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _dir_files(path: Path, given: str) -> list[Path]:
    found = sorted(
        (p for p in path.rglob("*") if p.name.endswith(LOG_SUFFIXES) and p.is_file()),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    if not found:
        raise LogFormatError(
            f"{given}: no log files ({', '.join('*' + s for s in LOG_SUFFIXES)}) in this directory"
        )
    return found


@dataclass
class _Sample:
    records: list[dict[str, Any]]
    nonblank: int
    first_line: bytes


def _sample(path: Path) -> _Sample:
    """The first parseable JSON objects among the first non-blank lines of a file."""
    records: list[dict[str, Any]] = []
    nonblank = 0
    first_line = b""
    fh = open_lines(path)
    try:
        for raw in fh:
            if raw.isspace():
                continue
            nonblank += 1
            if nonblank == 1:
                first_line = raw[:200]
            try:
                record = parse_line(raw, nonblank == 1)
            except RecordError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            if nonblank >= SNIFF_LINES:
                break
    except EOFError:  # a truncated gzip stream: detect from what could be read
        pass
    except (OSError, zlib.error) as e:
        raise LogFormatError(f"{path}: cannot read the file: {e}") from e
    finally:
        fh.close()
    return _Sample(records, nonblank, first_line)


def _unknown_format(path: Path, sample: _Sample, formats: dict[str, LogFormat]) -> LogFormatError:
    known = ", ".join(formats)
    bad_json = _DOCUMENT_ERRORS.pop(path, None)
    if bad_json is not None and len(sample.records) <= 1:
        return LogFormatError(
            f"{path}: unknown log format: the file is neither JSON Lines nor one valid JSON "
            f"document ({bad_json}); fix the JSON (the records themselves were not looked at)"
        )
    if not sample.records:
        head = sample.first_line.lstrip(BOM).strip()
        if head.startswith(b"["):
            why = "it is a JSON array whose records no known format recognises"
        elif head.startswith(b"{"):
            why = (
                "it looks like one JSON document spread over several lines whose records no "
                "known format recognises"
            )
        else:
            why = f"none of its first {sample.nonblank} non-blank lines is a JSON object"
        return LogFormatError(f"{path}: unknown log format: {why}")
    keys = sorted(sample.records[0])[:12]
    return LogFormatError(
        f"{path}: unknown log format: no known format recognises records with keys "
        f"{', '.join(keys)}; known formats: {known} (pass a format name to force one)"
    )


def _value_error_issue(e: ValueError, file: str, line: int) -> LineIssue:
    """A reader's plain ValueError (not a RecordError) as a line issue."""
    if isinstance(e, ValidationError) and e.errors():
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return LineIssue(file, line, field, f"{INVALID_VALUE}: {first['msg']}")
    return LineIssue(file, line, "", f"{INVALID_VALUE}: {e}")


class LogStream:
    """Exchanges read one at a time, for logs too large to hold in memory.

    Made by :func:`stream_logs`: files are resolved and formats detected when it is made (so
    a bad path or an unknown format raises at once); iterating reads the lines. The counts
    (``lines_read``, ``skipped``, ``formats``, ``exchanges_read``) are complete once the
    iteration has finished; the counting rule of :func:`read_logs` holds:
    ``lines_read == exchanges_read + len(skipped)``. A stream can be iterated once.
    """

    def __init__(
        self,
        plan: list[tuple[Path, LogFormat | None, bool]],
        *,
        strict: bool = False,
        default_model: str | None = None,
        kinds: dict[Path, str] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self._plan = plan
        #: how each file is read: "lines" (default), "file", "document" or "index"
        self._kinds = kinds or {}
        self.options = options or {}
        self.joined: dict[str, dict[str, Any]] = {}
        self.strict = strict
        self.default_model = default_model
        self.files: list[str] = [str(p) for p, _, _ in plan]
        #: how each file was sniffed (format and role), for messages
        self.sniffed: dict[str, str] = {}
        self.skipped: list[LineIssue] = []
        self.lines_read = 0
        self.formats: dict[str, int] = {}
        self.exchanges_read = 0
        self.seen_ids: set[str] = set()
        self.shared_texts: dict[str, str] = {}
        self.outputs: dict[str, openai_batch.BatchOutput] = {}
        #: the Batch output/error files read (an input line none of them answers failed)
        self.output_files: list[str] = []
        self._started = False
        self._workdir: Path | None = None
        self._batch_rows = _builder.MAX_ROWS
        #: longer lines are skipped unread (``line too long``): what bounds memory per line
        self.max_line_bytes = max_line_bytes()

    def __iter__(self) -> Iterator[Exchange]:
        return self._iterate(as_rows=False)  # type: ignore[return-value]

    def rows(
        self, *, workdir: Path | None = None, batch_rows: int = _builder.MAX_ROWS
    ) -> Iterator[Row | Any]:
        """The exchanges as dataset rows (:mod:`migrate_eval.ingest._rows`), in the same order
        and with the same counts and line issues as iterating the stream: each item is one row
        (a tuple) or an Arrow record batch of rows. ``chat-jsonl`` files come as record batches
        of up to about ``batch_rows`` rows, made by a builder
        (:mod:`migrate_eval.ingest._builder`): the common line takes a fast path that builds
        no pydantic objects; a line it does not cover is read by the format's reader as usual
        (so its issue names the field). Like iterating, this can be done once; in strict
        mode, the rows read just before the bad line may not have been handed on.

        With ``workdir`` (a folder for temporary files), the second half of a large
        uncompressed ``chat-jsonl`` file is read by a worker process while this one reads the
        first half (not in strict mode, and only with two CPUs or more); its record batches
        come in their place in the order, with their ids already made unique."""
        self._workdir = workdir
        self._batch_rows = batch_rows
        return self._iterate(as_rows=True)

    def _iterate(self, as_rows: bool) -> Iterator[Exchange | Row | Any]:
        if self._started:
            raise RuntimeError("a LogStream can be iterated only once")
        self._started = True
        try:
            for path, fmt, is_output in self._plan:
                if is_output:
                    self._index_outputs(path)
                elif fmt is not None and self._kinds.get(path) in ("index", "index-document"):
                    self._index_side_file(path, fmt)
                elif fmt is not None and self._kinds.get(path) == "index-file":
                    self._index_whole_file(path, fmt)
            for path, fmt, is_output in self._plan:
                if fmt is None or is_output:
                    continue
                kind = self._kinds.get(path, "lines")
                exchanges: Iterator[Exchange]
                if kind == "lines" and as_rows and fmt.reader is chat_jsonl.read:
                    split = self._split_point(path)
                    if split is None:
                        yield from self._read_chat_rows(path, fmt)
                    else:
                        yield from self._read_chat_split(path, fmt, split)
                    continue
                if kind == "file":
                    exchanges = self._read_whole_file(path, fmt)
                elif kind == "document":
                    exchanges = self._read_document(path, fmt)
                elif kind == "lines":
                    exchanges = self._read_file(path, fmt)
                else:
                    continue
                if as_rows:
                    yield from map(exchange_row, exchanges)
                else:
                    yield from exchanges
            self._unmatched_outputs()
            self._unmatched_side_records()
        finally:
            order = {name: i for i, name in enumerate(self.files)}
            self.skipped.sort(key=lambda issue: (order.get(issue.file, len(order)), issue.line))

    def summary(self) -> IngestSummary:
        """The counts as an :class:`~migrate_eval.core.results.IngestSummary`."""
        return summarize(
            self.files, self.formats, self.lines_read, self.exchanges_read, self.skipped
        )

    def skip(self, issue: LineIssue) -> None:
        if self.strict:
            raise BadLineError(issue)
        self.skipped.append(issue)

    def _rename(self, exchange: Exchange) -> None:
        """Make a repeated id unique: ``id-2``, ``id-3``..."""
        exchange.id = self._unique_id(exchange.id)

    def _unique_id(self, ex_id: str) -> str:
        n = 2
        while f"{ex_id}-{n}" in self.seen_ids:
            n += 1
        return f"{ex_id}-{n}"

    def _lines(self, path: Path, name: str) -> Iterator[tuple[int, bytes | None]]:
        """Yield (line number, raw line) for the non-blank lines; a truncated gzip stream ends
        with (line number, None)."""
        fh = open_lines(path)
        lineno = 0
        try:
            for lineno, raw in enumerate(fh, 1):
                if not raw.isspace():
                    yield lineno, raw
        except EOFError:
            yield lineno + 1, None
        except (OSError, zlib.error) as e:  # unreadable, or corrupt compressed data
            raise LogFormatError(f"{name}: cannot read the file after line {lineno}: {e}") from e
        finally:
            fh.close()

    def _parse(self, name: str, lineno: int, raw: bytes | None) -> dict[str, Any] | None:
        """Parse a line that failed the fast path (or a truncated stream's end): the record, or
        None after reporting the line."""
        if raw is None:
            self.skip(
                LineIssue(name, lineno, "", f"{TRUNCATED_FILE}: the compressed stream ends early")
            )
            return None
        try:
            record = parse_line(raw, lineno == 1, self.max_line_bytes)
        except RecordError as e:
            self.skip(e.issue(name, lineno))
            return None
        if not isinstance(record, dict):
            self.skip(LineIssue(name, lineno, "", f"{NOT_OBJECT}: got {type_name(record)}"))
            return None
        return record

    def _read_record(
        self, reader: Any, record: dict[str, Any], ctx: LineContext, line: int
    ) -> Exchange | None:
        """The exchange a format's reader makes of one record (line ``line`` of
        ``ctx.file``), or None after reporting why it is not one."""
        ctx.line = line
        try:
            exchange: Exchange = reader(record, ctx)
        except RecordError as e:
            self.skip(e.issue(ctx.file, line))
            return None
        except ValueError as e:  # e.g. a plugin's Exchange failing validation
            self.skip(_value_error_issue(e, ctx.file, line))
            return None
        # a non-finite number (a bare Infinity/NaN in the log) cannot have been sent
        drop_filled_params(exchange.request, exchange.metadata, {}, "not a finite number")
        return exchange

    def _context(self, name: str, fmt: LogFormat) -> LineContext:
        ctx = LineContext(name, fmt.name, self.default_model, self.shared_texts)
        ctx.options = self.options
        ctx.joined = self.joined.setdefault(fmt.name, {})
        return ctx

    def _accept(self, exchange: Exchange) -> Exchange:
        if exchange.id in self.seen_ids:
            self._rename(exchange)
        self.seen_ids.add(exchange.id)
        return exchange

    def _read_whole_file(self, path: Path, fmt: LogFormat) -> Iterator[Exchange]:
        """A file-level format: each item its ``read_file`` yields is one record."""
        assert fmt.read_file is not None
        name = str(path)
        ctx = self._context(name, fmt)
        count = 0
        try:
            for item in fmt.read_file(path, ctx):
                self.lines_read += 1
                if isinstance(item, LineIssue):
                    self.skip(item)
                    continue
                count += 1
                yield self._accept(item)
        except (OSError, zlib.error) as e:
            raise LogFormatError(f"{name}: cannot read the file: {e}") from e
        finally:
            self.exchanges_read += count
            if count:
                self.formats[fmt.name] = self.formats.get(fmt.name, 0) + count

    def _read_document(self, path: Path, fmt: LogFormat) -> Iterator[Exchange]:
        """One JSON document holding records: each record is read as a line would be, its
        ``line`` its 1-based ordinal."""
        name = str(path)
        records = _document_records(_load_document(path))
        ctx = self._context(name, fmt)
        count = 0
        try:
            for n, record in enumerate(records, 1):
                self.lines_read += 1
                if not isinstance(record, dict):
                    self.skip(LineIssue(name, n, "", f"{NOT_OBJECT}: got {type_name(record)}"))
                    continue
                exchange = self._read_record(fmt.reader, record, ctx, n)
                if exchange is None:
                    continue
                count += 1
                yield self._accept(exchange)
        finally:
            self.exchanges_read += count
            if count:
                self.formats[fmt.name] = self.formats.get(fmt.name, 0) + count

    def _index_side_file(self, path: Path, fmt: LogFormat) -> None:
        """A format's side file (e.g. stored completions' messages): values kept by key."""
        assert fmt.index_reader is not None
        name = str(path)
        ctx = self._context(name, fmt)
        items: Iterator[tuple[int, Any]]
        if self._kinds.get(path) == "index-document":
            items = enumerate(_index_records(_load_document(path), fmt), 1)
        else:
            items = ((n, raw) for n, raw in self._lines(path, name))
        for lineno, raw in items:
            if isinstance(raw, bytes) or raw is None:
                record = self._parse(name, lineno, raw)
            elif isinstance(raw, dict):
                record = raw
            else:
                self.skip(LineIssue(name, lineno, "", f"{NOT_OBJECT}: got {type_name(raw)}"))
                record = None
            if record is None:
                self.lines_read += 1
                continue
            ctx.line = lineno
            try:
                key, value = fmt.index_reader(record, ctx)
            except RecordError as e:
                self.lines_read += 1
                self.skip(e.issue(name, lineno))
                continue
            prior = ctx.joined.get(key)
            if (
                isinstance(prior, SideRecord)
                and isinstance(prior.value, list)
                and isinstance(value, list)
            ):  # another page of the same list
                prior.value.extend(value)
                continue
            if key in ctx.joined:
                self.lines_read += 1
                self.skip(
                    LineIssue(name, lineno, "", f"{INVALID_VALUE}: {key!r} repeats an earlier line")
                )
                continue
            ctx.joined[key] = SideRecord(name, lineno, value)

    def _index_whole_file(self, path: Path, fmt: LogFormat) -> None:
        """A side file a format reads itself (OTLP log records): values gathered by key."""
        assert fmt.read_index_file is not None
        name = str(path)
        ctx = self._context(name, fmt)
        try:
            for item in fmt.read_index_file(path, ctx):
                if isinstance(item, LineIssue):
                    self.lines_read += 1
                    self.skip(item)
                    continue
                key, value = item
                prior = ctx.joined.get(key)
                if isinstance(prior, SideRecord) and isinstance(prior.value, list):
                    prior.value.append(value)
                else:
                    ctx.joined[key] = SideRecord(name, ctx.line, [value])
        except (OSError, zlib.error) as e:
            raise LogFormatError(f"{name}: cannot read the file: {e}") from e

    def _unmatched_side_records(self) -> None:
        for fmt_name, joined in self.joined.items():
            for key, side in joined.items():
                if not isinstance(side, SideRecord):
                    continue
                self.lines_read += 1
                self.skip(
                    LineIssue(
                        side.file,
                        side.line,
                        "",
                        f"{NO_SIDE_RECORD}: no {fmt_name} record has the key {key!r} (read "
                        "both files together)",
                    )
                )
            joined.clear()

    def _read_file(self, path: Path, fmt: LogFormat) -> Iterator[Exchange]:
        name = str(path)
        ctx = self._context(name, fmt)
        reader = fmt.reader
        batch = fmt.name == openai_batch.NAME
        outputs = self.outputs
        seen = self.seen_ids
        count = 0
        read = 0
        lineno = 0
        limit = self.max_line_bytes
        fh = open_lines(path)
        try:
            for lineno, raw in enumerate(fh, 1):
                if raw.isspace():
                    continue
                read += 1
                if len(raw) > limit:
                    self.skip(too_long(len(raw), limit).issue(name, lineno))
                    continue
                try:
                    record = loads(raw)
                    if type(record) is not dict:
                        raise ValueError
                except ValueError:
                    parsed = self._parse(name, lineno, raw)
                    if parsed is None:
                        continue
                    record = parsed
                exchange = self._read_record(reader, record, ctx, lineno)
                if exchange is None:
                    continue
                if batch and self.output_files:
                    out = outputs.pop(exchange.id, None)
                    if out is not None:
                        if out.problem is not None:
                            self.skip(out.problem.issue(out.file, out.line))
                            continue
                        openai_batch.apply_output(exchange, out)
                    else:
                        openai_batch.no_output(exchange, self.output_files)
                if exchange.id in seen:
                    self._rename(exchange)
                seen.add(exchange.id)
                count += 1
                yield exchange
        except EOFError:
            read += 1
            self._parse(name, lineno + 1, None)
        except (OSError, zlib.error) as e:  # unreadable, or corrupt compressed data
            raise LogFormatError(f"{name}: cannot read the file after line {lineno}: {e}") from e
        finally:
            fh.close()
            self.lines_read += read
            self.exchanges_read += count
            if count:
                self.formats[fmt.name] = self.formats.get(fmt.name, 0) + count

    def _split_point(self, path: Path) -> int | None:
        """Where a worker process starts reading ``path`` (the start of the line at or after
        the middle), or None to read it all here."""
        if self._workdir is None or self.strict or (os.cpu_count() or 1) < 2:
            return None
        try:
            size = path.stat().st_size
            if size < PARALLEL_MIN_BYTES:
                return None
            with open(path, "rb") as fh:
                if fh.read(4)[:2] in (GZIP_MAGIC, ZSTD_MAGIC[:2]):
                    return None
                fh.seek(size // 2 - 1)
                fh.readline()  # to the end of the line the middle falls in
                split = fh.tell()
        except OSError:
            return None  # reading it here reports the problem
        return split if split < size else None

    def _read_chat_split(self, path: Path, fmt: LogFormat, split: int) -> Iterator[Row | Any]:
        """A large ``chat-jsonl`` file read by two processes: the lines before ``split`` here,
        the rest by a worker process (into an Arrow file in the work folder), merged in order.
        Should the worker fail, the rest is read here."""
        assert self._workdir is not None
        name = str(path)
        part = self._workdir / f"part-{os.getpid()}-{id(self)}.arrow"
        args = {
            "path": [p for p in sys.path if p],
            "file": name,
            "format": fmt.name,
            "start": split,
            "part": str(part),
            "default_model": self.default_model,
            "options": self.options,
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert proc.stdin is not None
            proc.stdin.write(orjson.dumps(args, default=str) + b"\n")
            proc.stdin.close()
            yield from self._read_chat_rows(path, fmt, end=split)
            assert proc.stdout is not None
            out = proc.stdout.read()
            proc.wait()
            result = orjson.loads(out) if proc.returncode == 0 and out.strip() else None
            if result is None:  # the worker failed: read the rest here
                part.unlink(missing_ok=True)
                first_line = _count_lines(path, split) + 1
                yield from self._read_chat_rows(path, fmt, start=split, first_line=first_line)
                return
            for file, line, field_, reason in result["skipped"]:
                self.skip(LineIssue(file, line, field_, reason))
            self.lines_read += result["lines_read"]
            self.exchanges_read += result["exchanges"]
            if result["exchanges"]:
                self.formats[fmt.name] = self.formats.get(fmt.name, 0) + result["exchanges"]
            pa = _rows.pa_module()
            with pa.OSFile(str(part), "rb") as source:  # not mapped: pages freed as read
                for batch in pa.ipc.open_stream(source):
                    yield self._unique_batch_ids(batch)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
            part.unlink(missing_ok=True)

    def _unique_batch_ids(self, batch: Any) -> Any:
        """A worker's record batch with its ids made unique against those seen so far."""
        seen = self.seen_ids
        ids = batch.column(0).to_pylist()
        renamed = False
        for i, ex_id in enumerate(ids):
            if ex_id in seen:
                ex_id = ids[i] = self._unique_id(ex_id)
                renamed = True
            seen.add(ex_id)
        if renamed:
            pa = _rows.pa_module()
            batch = batch.set_column(0, batch.schema.field(0), pa.array(ids, pa.string()))
        return batch

    def _read_chat_rows(
        self,
        path: Path,
        fmt: LogFormat,
        *,
        start: int = 0,
        end: int | None = None,
        first_line: int = 1,
        unique: bool = True,
    ) -> Iterator[Any]:
        """``_read_file`` for a ``chat-jsonl`` file, as Arrow record batches made by a
        builder (:mod:`migrate_eval.ingest._builder`): the common line takes its fast path,
        any other is read by the format's reader (same rows, same issues) and appended in its
        place. Reads the lines from byte ``start`` (a line start; ``first_line`` its number)
        up to byte ``end``; ``unique=False`` leaves the ids as read."""
        name = str(path)
        ctx = self._context(name, fmt)
        reader = fmt.reader
        fast_row = chat_jsonl.fast_row
        seen = self.seen_ids
        builder = _builder.new_builder(ctx, seen if unique else None, max_rows=self._batch_rows)
        add_lines = builder.add_lines
        full = builder.full
        count = 0  # rows and non-blank lines read here, not by the builder
        read = 0
        lineno = first_line - 1
        limit = self.max_line_bytes
        fh = open_lines(path)
        try:
            if start:
                fh.seek(start)
            chunks = _line_chunks(fh, first_line, -1 if end is None else end - start)
            for first, lines in _apart_long_lines(chunks, limit):
                if len(lines) == 1 and len(lines[0]) > limit:
                    # neither the builder (compiled or not) nor the parser sees it
                    lineno = first
                    if lines[0].isspace():
                        continue
                    read += 1
                    self.skip(too_long(len(lines[0]), limit).issue(name, lineno))
                    continue
                i = 0
                n = len(lines)
                while i < n:
                    i = add_lines(lines, i, first)
                    if full():
                        yield builder.take()
                        continue
                    if i == n:
                        break
                    # a line the builder did not take: the slow, precise path
                    raw = lines[i]
                    lineno = first + i
                    i += 1
                    read += 1
                    ctx.line = lineno
                    row: Row | None = None
                    try:
                        record = loads(raw)
                        if type(record) is dict:
                            row = fast_row(record, ctx)
                    except (ValueError, TypeError, OverflowError):
                        row = None
                    if row is None:
                        parsed = self._parse(name, lineno, raw)
                        if parsed is None:
                            continue
                        exchange = self._read_record(reader, parsed, ctx, lineno)
                        if exchange is None:
                            continue
                        row = exchange_row(exchange)
                    if unique:
                        ex_id = row[0]
                        if ex_id in seen:
                            ex_id = self._unique_id(ex_id)
                            row = (ex_id, *row[1:])
                        seen.add(ex_id)
                    count += 1
                    builder.add_row(row)
                lineno = first + n - 1
        except EOFError:
            read += 1
            self._parse(name, lineno + 1, None)
        except (OSError, zlib.error) as e:  # unreadable, or corrupt compressed data
            raise LogFormatError(f"{name}: cannot read the file after line {lineno}: {e}") from e
        finally:
            fh.close()
            count += builder.lines
            self.lines_read += read + builder.lines
            self.exchanges_read += count
            if count:
                self.formats[fmt.name] = self.formats.get(fmt.name, 0) + count
        if builder.rows:
            yield builder.take()

    def _index_outputs(self, path: Path) -> None:
        """Read a Batch output (or error) file, keeping its lines for the join."""
        name = str(path)
        self.output_files.append(name)
        ctx = LineContext(name, openai_batch.NAME, self.default_model)
        for lineno, raw in self._lines(path, name):
            record = self._parse(name, lineno, raw)
            if record is None:
                self.lines_read += 1
                continue
            ctx.line = lineno
            try:
                if openai_batch.is_input(record):
                    raise RecordError(
                        "body",
                        WRONG_FORMAT,
                        "a batch input line in a file of batch output lines",
                    )
                out = openai_batch.read_output(record, ctx)
            except RecordError as e:
                self.lines_read += 1
                self.skip(e.issue(name, lineno))
                continue
            first = self.outputs.get(out.custom_id)
            if first is not None:
                self.lines_read += 1
                self.skip(
                    LineIssue(
                        name,
                        lineno,
                        "custom_id",
                        f"{DUPLICATE_CUSTOM_ID}: {out.custom_id!r} already answered at "
                        f"{first.file}:{first.line}",
                    )
                )
                continue
            self.outputs[out.custom_id] = out

    def _unmatched_outputs(self) -> None:
        for out in self.outputs.values():
            self.lines_read += 1
            if out.problem is not None:
                self.skip(out.problem.issue(out.file, out.line))
            else:
                self.skip(
                    LineIssue(
                        out.file,
                        out.line,
                        "custom_id",
                        f"{NO_BATCH_INPUT}: no batch input line has custom_id {out.custom_id!r} "
                        "(read the batch input file together with its output file)",
                    )
                )
        self.outputs.clear()


#: Bytes of lines read at a time by the ``chat-jsonl`` fast path.
CHUNK_BYTES = 1 << 20
#: A plain ``chat-jsonl`` file at least this large is read by two processes (see
#: :meth:`LogStream.rows`).
PARALLEL_MIN_BYTES = 64 << 20


_WORKER_CODE = (
    "import sys, orjson\n"
    "args = orjson.loads(sys.stdin.buffer.readline())\n"
    "sys.path[:0] = args['path']\n"
    "from migrate_eval.ingest.reader import _read_range_worker\n"
    "sys.stdout.buffer.write(orjson.dumps(_read_range_worker(args)))\n"
)


def _count_lines(path: Path, end: int) -> int:
    """The number of lines that end before byte ``end`` of a plain file."""
    n = 0
    with open(path, "rb") as fh:
        left = end
        while left:
            chunk = fh.read(min(left, 1 << 24))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def _line_chunks(fh: Any, first_line: int, limit: int) -> Iterator[tuple[int, list[bytes]]]:
    """The lines of an open log file (each with its newline) in lists of about
    :data:`CHUNK_BYTES`, with the number of each list's first line; at most ``limit`` bytes
    (-1: to the end; a limit falls at a line end; plain files only). A compressed stream that
    ends early raises ``EOFError`` after the lines read before it."""
    plain = type(getattr(fh, "raw", None)) is io.FileIO
    while plain and limit != 0:
        lines = fh.readlines(CHUNK_BYTES)
        if not lines:
            return
        if limit >= 0:
            size = sum(map(len, lines))
            if size >= limit:
                kept = 0
                for i, raw in enumerate(lines):
                    kept += len(raw)
                    if kept >= limit:
                        del lines[i + 1 :]
                        break
                yield first_line, lines
                return
            limit -= size
        yield first_line, lines
        first_line += len(lines)
    # a compressed stream (never split, so never limited): a line at a time, so that the
    # lines before an early end are kept
    if plain:
        return
    lines = []
    size = 0
    try:
        for raw in fh:
            lines.append(raw)
            size += len(raw)
            if size >= CHUNK_BYTES:
                yield first_line, lines
                first_line += len(lines)
                lines = []
                size = 0
    except EOFError:
        if lines:
            yield first_line, lines
        raise
    if lines:
        yield first_line, lines


def _apart_long_lines(
    chunks: Iterator[tuple[int, list[bytes]]], limit: int
) -> Iterator[tuple[int, list[bytes]]]:
    """The chunks of :func:`_line_chunks` with each line over ``limit`` bytes in a chunk of
    its own (so that the caller can skip it before the builder sees it)."""
    for first, lines in chunks:
        if max(map(len, lines), default=0) <= limit:
            yield first, lines
            continue
        start = 0
        for i, raw in enumerate(lines):
            if len(raw) > limit:
                if i > start:
                    yield first + start, lines[start:i]
                yield first + i, [raw]
                start = i + 1
        if start < len(lines):
            yield first + start, lines[start:]


def _read_range_worker(args: dict[str, Any]) -> dict[str, Any]:
    """In a worker process: read ``args["file"]`` from byte ``args["start"]`` (a line start)
    to its end as ``chat-jsonl`` into the Arrow stream file ``args["part"]``; ids are left as
    read. Returns the counts and the line issues."""
    path = Path(args["file"])
    start = args["start"]
    stream = LogStream([], default_model=args["default_model"], options=args["options"])
    fmt = get_format(args["format"])
    pa = _rows.pa_module()
    gc.disable()
    with pa.OSFile(args["part"], "wb") as sink, pa.ipc.new_stream(sink, _rows.schema()) as w:
        for batch in stream._read_chat_rows(
            path, fmt, start=start, first_line=_count_lines(path, start) + 1, unique=False
        ):
            w.write_batch(batch)
    return {
        "lines_read": stream.lines_read,
        "exchanges": stream.exchanges_read,
        "skipped": [[i.file, i.line, i.field, i.reason] for i in stream.skipped],
    }


NO_SIDE_RECORD = "no matching record"
#: A file larger than this (on disk) is never loaded whole as one JSON document.
DOCUMENT_MAX_BYTES = 1 << 30
_DOCUMENT_KEYS = ("data", "observations", "runs", "items", "records")


def _load_document(path: Path) -> Any:
    fh = open_lines(path)
    try:
        raw = fh.read()
    except EOFError as e:
        raise LogFormatError(f"{path}: the compressed file ends early") from e
    except (OSError, zlib.error) as e:
        raise LogFormatError(f"{path}: cannot read the file: {e}") from e
    finally:
        fh.close()
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        return loads(raw)
    except ValueError as e:
        # Helicone's export tool (examples/export/typescript) ends a JSON export with a comma
        # before the closing bracket: read it as the array it means.
        fixed = _TRAILING_COMMA.sub(rb"\1", raw)
        if fixed != raw:
            try:
                return loads(fixed)
            except ValueError:
                pass
        raise LogFormatError(f"{path}: not a JSON document: {e}") from e


_TRAILING_COMMA = re.compile(rb",\s*(\]\s*)$")


def _document_records(doc: Any) -> list[Any]:
    """The records of a JSON document: an array, an object's ``data``/``observations``/...
    array, or the object itself."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        for key in _DOCUMENT_KEYS:
            value = doc.get(key)
            if isinstance(value, list) and value:
                if key == "observations":  # a Langfuse trace: its observations, with the trace
                    trace = {k: v for k, v in doc.items() if k != "observations"}
                    return [{**o, "_trace": trace} if isinstance(o, dict) else o for o in value]
                return value
        return [doc]
    return [doc]


def _index_records(doc: Any, fmt: LogFormat) -> list[Any]:
    """The side-file records (pages) of a side file saved as one JSON document: one page, an
    array of pages, or an array of the items of one page (wrapped as that page)."""
    sniff = fmt.sniff_index
    assert sniff is not None
    if isinstance(doc, dict):
        return [doc] if sniff(doc) else _document_records(doc)
    if isinstance(doc, list):
        first = next((r for r in doc if isinstance(r, dict)), None)
        if first is not None and not sniff(first) and sniff({"object": "list", "data": doc}):
            return [{"object": "list", "data": doc}]
        return doc
    return [doc]


#: Bytes one of which a side file's first 64 KiB holds (messages, input items, Langfuse
#: traces and scores).
_SIDE_MARKS = (b'"role"', b'"response_id"', b'"bookmarked"', b'"dataType"', b'"data_type"')


def _index_document(path: Path, head: bytes, formats: dict[str, LogFormat]) -> LogFormat | None:
    """The format whose side file ``path`` is, when it is one JSON document of side records."""
    text = head.lstrip(BOM).lstrip()
    if not text.startswith((b"[", b"{")) or path.stat().st_size > DOCUMENT_MAX_BYTES:
        return None
    if not any(mark in head for mark in _SIDE_MARKS):  # no side records: a cheap no
        return None
    try:
        doc = _load_document(path)
    except LogFormatError:
        return None
    for fmt in formats.values():
        if fmt.sniff_index is None or fmt.index_reader is None:
            continue
        records = [r for r in _index_records(doc, fmt)[:1] if isinstance(r, dict)]
        if records and detect_index(records, {fmt.name: fmt}) is fmt:
            return fmt
    return None


def _document_sample(path: Path, head: bytes) -> list[dict[str, Any]] | None:
    """The first records of a file that is one JSON document (not JSON Lines), else None."""
    text = head.lstrip(BOM).lstrip()
    if not text.startswith((b"[", b"{")) or path.stat().st_size > DOCUMENT_MAX_BYTES:
        return None
    try:
        doc = _load_document(path)
    except LogFormatError as e:
        _DOCUMENT_ERRORS[path] = str(e).removeprefix(f"{path}: ")
        return None
    return [r for r in _document_records(doc)[:SNIFF_LINES] if isinstance(r, dict)]


#: Why a file that looked like one JSON document could not be parsed (for the error message).
_DOCUMENT_ERRORS: dict[Path, str] = {}


def _sniffs_file(fmt: LogFormat, path: Path, head: bytes) -> bool:
    try:
        return fmt.sniff_file is not None and bool(fmt.sniff_file(path, head))
    except Exception:
        return False


def stream_logs(
    paths: Sequence[str | Path],
    *,
    format: str = "auto",
    strict: bool = False,
    default_model: str | None = None,
    columns: dict[str, str] | None = None,
) -> LogStream:
    """Like :func:`read_logs`, but the exchanges are read one at a time by iterating the
    returned :class:`LogStream` (bounded memory, except for the ids seen and the Batch output
    lines waiting for their input line)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    files = expand_paths(paths)
    formats = available_formats()
    forced = None if format == "auto" else get_format(format)

    plan: list[tuple[Path, LogFormat | None, bool]] = []  # (file, format, is batch output)
    kinds: dict[Path, str] = {}
    for path in files:
        head = head_bytes(path)
        if (
            forced is not None
            and forced.read_file is not None
            and (forced.reader is no_line_reader or _sniffs_file(forced, path, head))
        ):
            plan.append((path, forced, False))
            kinds[path] = "file"
            continue
        index_file_fmt = detect_index_file(path, head, formats)
        if index_file_fmt is not None and (forced is None or forced is index_file_fmt):
            plan.append((path, index_file_fmt, False))
            kinds[path] = "index-file"
            continue
        file_fmt = detect_file(path, head, formats) if forced is None else None
        if file_fmt is not None:
            plan.append((path, file_fmt, False))
            kinds[path] = "file"
            continue
        sample = _sample(path)
        index_fmt = detect_index(sample.records, formats)
        if index_fmt is not None and (forced is None or forced is index_fmt):
            plan.append((path, index_fmt, False))
            kinds[path] = "index"
            continue
        fmt = forced or detect(sample.records, formats)
        if fmt is None and sample.nonblank and len(sample.records) <= 1:
            index_doc = _index_document(path, head, formats)
            if index_doc is not None:
                plan.append((path, index_doc, False))
                kinds[path] = "index-document"
                continue
            records = _document_sample(path, head)
            if records:
                fmt = detect(records, formats)
                if fmt is not None:
                    plan.append((path, fmt, False))
                    kinds[path] = "document"
                    continue
        if fmt is None:
            if sample.nonblank:
                raise _unknown_format(path, sample, formats)
            plan.append((path, None, False))  # an empty file: nothing to read
            continue
        first_batch = next((r for r in sample.records if openai_batch.sniff(r)), None)
        is_output = (
            fmt.name == openai_batch.NAME
            and first_batch is not None
            and openai_batch.is_output(first_batch)
        )
        plan.append((path, fmt, is_output))
    options: dict[str, Any] = {}
    if columns:
        options["columns"] = dict(columns)
    stream = LogStream(
        plan, strict=strict, default_model=default_model, kinds=kinds, options=options
    )
    stream.sniffed = {str(p): _role(f, kinds.get(p), out) for p, f, out in plan}
    return stream


_ROLES = {
    "index": "side file",
    "index-document": "side file, one JSON document",
    "index-file": "side file",
    "document": "one JSON document",
    "file": "whole file",
}


def _role(fmt: LogFormat | None, kind: str | None, is_output: bool) -> str:
    """How a file was sniffed, for messages: ``openai-batch (output file)``..."""
    if fmt is None:
        return "empty"
    if is_output:
        return f"{fmt.name} (output/error file)"
    role = _ROLES.get(kind or "")
    return f"{fmt.name} ({role})" if role else fmt.name


def read_logs(
    paths: Sequence[str | Path],
    *,
    format: str = "auto",
    strict: bool = False,
    default_model: str | None = None,
    columns: dict[str, str] | None = None,
) -> IngestResult:
    """Read log files into exchanges (see the module docstring for the rules).

    ``format`` is a format name (see :func:`~migrate_eval.ingest.available_formats`) or
    ``"auto"``; ``default_model`` is the model of requests whose log does not name one;
    ``columns`` names the columns of CSV/Parquet logs (keys ``prompt``, ``response``,
    ``system``, ``id``, ``label``, ``model``; see :mod:`migrate_eval.ingest.formats.tabular`).
    """
    stream = stream_logs(
        paths, format=format, strict=strict, default_model=default_model, columns=columns
    )
    # Reading allocates millions of long-lived, acyclic objects: the cyclic garbage collector
    # would rescan them again and again (a 3x slowdown on large logs) for nothing to free.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        exchanges = list(stream)
    finally:
        if gc_was_enabled:
            gc.enable()
    return IngestResult(
        exchanges=exchanges,
        skipped=stream.skipped,
        lines_read=stream.lines_read,
        formats=stream.formats,
        files=stream.files,
        sniffed=stream.sniffed,
    )
