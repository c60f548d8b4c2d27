"""The log formats migrate-eval can read, and how a file's format is recognised.

A :class:`LogFormat` has a ``name``, a ``sniff(record) -> bool`` that recognises one parsed
JSON record of that format, and a ``reader(record, ctx) -> Exchange`` that turns one record
into an :class:`~migrate_eval.core.records.Exchange` or raises
:class:`~migrate_eval.ingest._common.RecordError` naming the offending field (the line is then
skipped and reported; reading goes on). Reading files, decoding, JSON parsing, ids, counting
and error reporting are done once for all formats by
:func:`~migrate_eval.ingest.reader.read_logs`.

File-level formats. A format whose log is a whole document or a table rather than one record
a line (OTLP JSON, CSV, Parquet) also sets ``sniff_file(path, head) -> bool`` (``head``: the
first 64 KiB of the file, decompressed) and ``read_file(path, ctx) -> Iterator[Exchange |
LineIssue]``: one item per record (span, row...), its ``ctx.line`` the record's line or
ordinal; every item counts as one read record. ``sniff_file`` is asked before any record
sniffing. Formats that join a side file (OpenAI stored completions and their ``/messages``)
set ``sniff_index(record) -> bool`` and ``index_reader(record, ctx) -> (key, value)``: the
side files are read first and their values handed to ``reader`` in ``ctx.joined``.

Formats are tried in ``priority`` order (lower first; the built-ins use 10-30). Third-party
packages add formats through the ``migrate_eval.log_formats`` entry-point group; an entry
point names a :class:`LogFormat` object or a zero-argument callable returning one::

    [project.entry-points."migrate_eval.log_formats"]
    helicone = "my_package.helicone:FORMAT"

Entry points are loaded the first time :func:`available_formats` is called. A plugin that
fails to load, or that reuses a taken name, is left out with a logged warning.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import LineIssue, LogFormatError
from migrate_eval.core.plugins import import_target
from migrate_eval.core.records import Exchange
from migrate_eval.ingest._common import LineContext

ENTRY_POINT_GROUP = "migrate_eval.log_formats"

Sniffer = Callable[[dict[str, Any]], bool]
Reader = Callable[[dict[str, Any], LineContext], Exchange]
FileSniffer = Callable[[Path, bytes], bool]
FileReader = Callable[[Path, LineContext], Iterator[Exchange | LineIssue]]
IndexReader = Callable[[dict[str, Any], LineContext], tuple[str, Any]]


def never(record: dict[str, Any]) -> bool:
    """The record sniffer of a format that is recognised from the file, not from a line."""
    return False


def no_line_reader(record: dict[str, Any], ctx: LineContext) -> Exchange:
    """The line reader of a file-level format (never called: ``read_file`` reads its files)."""
    raise LogFormatError(f"{ctx.format} is read a file at a time, not a line at a time")


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogFormat:
    """A log format: how to recognise one of its records and how to read one."""

    name: str
    sniff: Sniffer
    reader: Reader
    description: str = ""
    priority: int = 100
    origin: str = field(default="builtin", compare=False)
    sniff_file: FileSniffer | None = None
    read_file: FileReader | None = None
    sniff_index: Sniffer | None = None
    index_reader: IndexReader | None = None
    #: A side file recognised from its first bytes (OTLP log records for spans): every item
    #: ``read_index_file`` yields is a ``(key, value)`` for ``ctx.joined`` (values of one key
    #: are gathered in a list) or a LineIssue.
    sniff_index_file: FileSniffer | None = None
    read_index_file: Callable[[Path, LineContext], Iterator[tuple[str, Any] | LineIssue]] | None = (
        None
    )


#: The built-in formats, imported on first use (each module's ``FORMAT`` or ``FORMATS``).
BUILTIN_FORMATS = tuple(
    f"migrate_eval.ingest.formats.{target}"
    for target in (
        "openai_batch:FORMAT",
        "chat_jsonl:FORMAT",
        "finetune_chat:FORMAT",
        "responses_jsonl:FORMAT",
        "stored_completions:FORMAT",
        "stored_responses:FORMAT",
        "preference:FORMAT",
        "otel:FORMAT",
        "tabular:FORMAT",
        "observability:FORMATS",
        "gateways:FORMATS",
    )
)

_REGISTRY: dict[str, LogFormat] = {}
_BUILTINS_LOADED = False
_ENTRY_POINTS_LOADED = False


def register_format(fmt: LogFormat, *, replace: bool = False) -> LogFormat:
    """Make ``fmt`` available to :func:`~migrate_eval.ingest.read_logs` (auto-detection and
    ``format=fmt.name``). Registering a taken name raises ``ValueError`` unless ``replace``."""
    if not isinstance(fmt, LogFormat):
        raise TypeError(f"register_format() needs a LogFormat, got {type(fmt).__name__}")
    if not fmt.name or fmt.name == "auto":
        raise ValueError(f"invalid log format name {fmt.name!r}")
    _load_builtins()
    if fmt.name in _REGISTRY and not replace:
        raise ValueError(f"log format {fmt.name!r} is already registered")
    _REGISTRY[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Remove a format (mainly for tests of plugins)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for target in BUILTIN_FORMATS:
        found = import_target(target, feature="built-in log format")
        for fmt in found if isinstance(found, tuple) else (found,):
            assert isinstance(fmt, LogFormat), target
            _REGISTRY.setdefault(fmt.name, fmt)


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj: Any = ep.load()
            if not isinstance(obj, LogFormat) and callable(obj):
                obj = obj()
            if not isinstance(obj, LogFormat):
                raise TypeError(f"expected a LogFormat, got {type(obj).__name__}")
        except Exception as e:
            logger.warning("log format plugin %r (%s) not loaded: %s", ep.name, ep.value, e)
            continue
        if obj.name in _REGISTRY:
            logger.warning(
                "log format plugin %r (%s) not loaded: the name %r is taken",
                ep.name,
                ep.value,
                obj.name,
            )
            continue
        _REGISTRY[obj.name] = LogFormat(
            name=obj.name,
            sniff=obj.sniff,
            reader=obj.reader,
            description=obj.description,
            priority=obj.priority,
            origin=ep.value,
            sniff_file=obj.sniff_file,
            read_file=obj.read_file,
            sniff_index=obj.sniff_index,
            index_reader=obj.index_reader,
            sniff_index_file=obj.sniff_index_file,
            read_index_file=obj.read_index_file,
        )


def available_formats() -> dict[str, LogFormat]:
    """Every readable format, built-in and plugin, in detection order (name -> format)."""
    _load_builtins()
    _load_entry_points()
    ordered = sorted(_REGISTRY.values(), key=lambda f: (f.priority, f.name))
    return {f.name: f for f in ordered}


def get_format(name: str) -> LogFormat:
    """The format called ``name``; :class:`LogFormatError` listing the known ones otherwise."""
    formats = available_formats()
    try:
        return formats[name]
    except KeyError:
        raise LogFormatError(
            f"unknown log format {name!r}; known formats: auto, {', '.join(formats)}"
        ) from None


def detect_file(path: Path, head: bytes, formats: Mapping[str, LogFormat]) -> LogFormat | None:
    """The first file-level format (in order) recognising the file from its first bytes."""
    for fmt in formats.values():
        if fmt.sniff_file is None or fmt.read_file is None:
            continue
        try:
            if fmt.sniff_file(path, head):
                return fmt
        except Exception as e:  # a plugin's sniff must not break detection
            logger.warning("log format %r: sniff_file failed: %s", fmt.name, e)
    return None


def detect_index_file(
    path: Path, head: bytes, formats: Mapping[str, LogFormat]
) -> LogFormat | None:
    """The format whose side file ``path`` is, recognised from its first bytes."""
    for fmt in formats.values():
        if fmt.sniff_index_file is None or fmt.read_index_file is None:
            continue
        try:
            if fmt.sniff_index_file(path, head):
                return fmt
        except Exception as e:
            logger.warning("log format %r: sniff_index_file failed: %s", fmt.name, e)
    return None


def detect_index(
    records: list[dict[str, Any]], formats: Mapping[str, LogFormat]
) -> LogFormat | None:
    """The format whose side (index) file holds these records, if any."""
    for record in records[:1]:
        for fmt in formats.values():
            if fmt.sniff_index is not None and fmt.index_reader is not None:
                try:
                    if fmt.sniff_index(record):
                        return fmt
                except Exception as e:
                    logger.warning("log format %r: sniff_index failed: %s", fmt.name, e)
    return None


def detect(records: list[dict[str, Any]], formats: Mapping[str, LogFormat]) -> LogFormat | None:
    """The first format (in order) recognising the first record that any format recognises."""
    for record in records:
        for fmt in formats.values():
            try:
                if fmt.sniff(record):
                    return fmt
            except Exception as e:  # a plugin's sniff must not break detection
                logger.warning("log format %r: sniff failed: %s", fmt.name, e)
    return None
