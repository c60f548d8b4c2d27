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
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import LogFormatError, MissingExtraError
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


def parse_line(raw: bytes, first: bool) -> Any:
    """Parse one line; raises RecordError. Used on the slow path and for sniffing."""
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
