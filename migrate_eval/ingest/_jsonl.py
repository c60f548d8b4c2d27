"""Reading JSON Lines: opening (gzip detected by its magic bytes), parsing one line, and
explaining why a line does not parse.

Lines are read as bytes and parsed once, with ``orjson`` when it is installed (several times
faster) and the standard library otherwise. Decoding is per line, so one line of bad bytes is
one skipped line.

A line longer than :func:`max_line_bytes` (16 MiB unless ``--max-line-bytes`` or the
``MIGRATE_EVAL_MAX_LINE_BYTES`` variable says otherwise) is not parsed: it is skipped as a
``line too long`` line issue naming the file and line, like any other bad line. Parsing a line
takes many times its size in memory (every string and number becomes a Python object, then an
exchange, then a row), so the limit is what bounds memory per line; a line is read once (its
own size) before it is measured and dropped.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import ConfigError, LogFormatError, MissingExtraError
from migrate_eval.ingest._common import INVALID_JSON, LINE_TOO_LONG, NOT_UTF8, RecordError

#: The longest log line parsed, by default (bytes).
MAX_LINE_BYTES = 16 << 20
#: The environment variable that sets it (``--max-line-bytes`` sets it too).
MAX_LINE_BYTES_ENV = "MIGRATE_EVAL_MAX_LINE_BYTES"


def max_line_bytes() -> int:
    """The longest log line parsed: ``MIGRATE_EVAL_MAX_LINE_BYTES`` (bytes; a ``K``, ``M`` or
    ``G`` suffix multiplies by 1024s) or :data:`MAX_LINE_BYTES`."""
    raw = os.environ.get(MAX_LINE_BYTES_ENV, "").strip()
    if not raw:
        return MAX_LINE_BYTES
    return parse_size(raw, MAX_LINE_BYTES_ENV)


def parse_size(raw: str, what: str) -> int:
    """A byte count such as ``16777216``, ``64K``, ``16M``, ``16MiB`` or ``1G``."""
    text = raw.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        value = int(number) * scale
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{what}: {raw!r} is not a positive byte count (e.g. 16777216 or 16M)")
    return value


def too_long(size: int, limit: int) -> RecordError:
    """The issue of a line of ``size`` bytes over the ``limit``."""
    return RecordError(
        "",
        LINE_TOO_LONG,
        f"{size:,} bytes, over the {_mib(limit)} limit on one line (not read; raise it with "
        f"--max-line-bytes or {MAX_LINE_BYTES_ENV} if such lines are real traffic)",
    )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n:,} bytes"


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
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _ZstdRaw(io.RawIOBase):
    """A zstd file (one or more frames) as a raw binary stream: corrupt data is an
    ``OSError`` and a file that ends inside a frame an ``EOFError``, as for gzip."""

    def __init__(self, path: Path) -> None:
        try:
            import zstandard
        except ImportError:
            raise MissingExtraError("zstandard", "zstd", f"reading {path} (zstd)") from None
        self._zstd: Any = zstandard
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._obj: Any = zstandard.ZstdDecompressor().decompressobj()
        self._started = False  # the current frame has received data
        self._out = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Decompress more; False at the end of the file."""
        while True:
            chunk = self._fh.read(1 << 18)
            if not chunk:
                if self._started and not self._obj.eof:
                    raise EOFError("the zstd stream ends early")
                return False
            try:
                while chunk:
                    if self._obj.eof:
                        self._obj = self._zstd.ZstdDecompressor().decompressobj()
                    self._started = True
                    out = self._obj.decompress(chunk)
                    chunk = self._obj.unused_data if self._obj.eof else b""
                    if out:
                        self._out = self._out[self._pos :] + out
                        self._pos = 0
            except self._zstd.ZstdError as e:
                raise OSError(f"corrupt zstd data: {e}") from e
            if self._pos < len(self._out):
                return True

    def readinto(self, buffer: Any) -> int:
        if self._pos >= len(self._out) and not self._fill():
            return 0
        n = min(len(buffer), len(self._out) - self._pos)
        buffer[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


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
    if magic == ZSTD_MAGIC[:2] and fh.peek(4)[:4] == ZSTD_MAGIC:
        fh.close()
        return io.BufferedReader(_ZstdRaw(path), 1 << 16)
    return fh


def head_bytes(path: Path, size: int = 65536) -> bytes:
    """The first ``size`` bytes of a log file, decompressed (for format detection)."""
    fh = open_lines(path)
    try:
        return fh.read(size)
    except (EOFError, OSError, zlib.error):
        return b""
    finally:
        fh.close()


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


def parse_line(raw: bytes, first: bool, limit: int | None = None) -> Any:
    """Parse one line; raises RecordError (also for a line over ``limit`` bytes, by default
    :func:`max_line_bytes`). Used on the slow path and for sniffing."""
    if len(raw) > (max_line_bytes() if limit is None else limit):
        raise too_long(len(raw), max_line_bytes() if limit is None else limit)
    try:
        return loads(raw)
    except ValueError as e:
        if first and raw.startswith(BOM):
            return parse_line(raw[len(BOM) :], False)
        if b"Infinity" in raw or b"NaN" in raw:
            # Python's json.dumps writes float("inf") as a bare Infinity (the Langfuse SDK's
            # max_tokens default, dumped by an export script): read it, the readers drop it
            try:
                return json.loads(raw.decode("utf-8"))
            except ValueError:
                pass
        raise parse_error(raw, e) from None
