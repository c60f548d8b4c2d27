"""Writing output files safely."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text next to ``path`` and rename it into place (parents are created).

    A reader (or a CI step) never sees half a file, and an interrupted render leaves the
    previous file intact.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: Path, parts: Iterable[bytes]) -> None:
    """:func:`write_text_atomic` for text already encoded, in parts (none is joined)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.writelines(parts)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
