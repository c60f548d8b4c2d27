"""Reading JSON Lines: opening (gzip detected by its magic bytes), parsing one line, and
explaining why a line does not parse.

Lines are read as bytes and parsed once, with ``orjson`` when it is installed (several times
faster) and the standard library otherwise. Decoding is per line, so one line of bad bytes is
one skipped line.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrate_eval.errors import LogFormatError
from migrate_eval.ingest._common import INVALID_JSON, NOT_UTF8, RecordError


def _json_loads(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"))


#: Parse one line of bytes (raises ValueError).
loads: Callable[[bytes], Any] = _json_loads
JSON_BACKEND = "json"
try:
    import orjson  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    loads = orjson.loads
    JSON_BACKEND = "orjson"

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"


def open_lines(path: Path) -> io.BufferedIOBase:
    """Open a log file for reading bytes line by line; gzip is recognised by its magic bytes."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except IsADirectoryError as e:
        raise LogFormatError(f"{path}: is a directory, not a log file") from e
    except OSError as e:
        raise LogFormatError(f"{path}: cannot read the file: {e.strerror or e}") from e
    try:
        magic = fh.peek(2)[:2]
    except OSError as e:
        fh.close()
        raise LogFormatError(f"{path}: cannot read the file: {e.strerror or e}") from e
    if magic == GZIP_MAGIC:
        fh.close()
        return gzip.open(path, "rb")
    return fh


def parse_error(raw: bytes, exc: Exception) -> RecordError:
    """Why ``raw`` (a whole line) is not JSON: bad bytes, or where the JSON breaks."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as u:
        return RecordError(
            "", NOT_UTF8, f"byte 0x{raw[u.start]:02x} at column {u.start + 1} is not UTF-8 text"
        )
    if isinstance(exc, json.JSONDecodeError):
        detail = f"{exc.msg} at column {exc.colno}"
    else:
        detail = str(exc)
    if not raw.endswith(b"\n"):
        detail += " (the last line looks truncated: the file does not end with a newline)"
    return RecordError("", INVALID_JSON, detail)


def parse_line(raw: bytes, first: bool) -> Any:
    """Parse one line; raises RecordError. Used on the slow path and for sniffing."""
    try:
        return loads(raw)
    except ValueError as e:
        if first and raw.startswith(BOM):
            return parse_line(raw[len(BOM) :], False)
        raise parse_error(raw, e) from None
