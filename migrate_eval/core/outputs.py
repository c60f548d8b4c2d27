"""Output locations: checked before any request is sent, and run folders written atomically.

* :func:`check_writable` - can files be written at a path (a folder that may not exist yet)?
  A read-only or permission-denied location is a :class:`~migrate_eval.core.errors.UserError`
  (exit 2); a full disk (a probe write fails with ``ENOSPC``/``EDQUOT``, or less than
  :data:`MIN_FREE_BYTES` are free) is a :class:`~migrate_eval.core.errors.DiskFullError`
  (exit 3). Nothing is left behind: the probe is removed and no folder is created.
* :func:`atomic_folder` - write a folder's files into a temporary sibling and rename it into
  place at the end, so that the folder is complete or absent (a run folder is never half
  written, whatever fails or kills the process on the way).
* :func:`write_text_atomic` / :func:`write_bytes_atomic` - one file written next to its place
  and renamed into it: a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from migrate_eval.core.errors import DiskFullError, UserError

#: Below this much free space at an output location, a run stops before sending anything.
MIN_FREE_BYTES = 1024 * 1024
#: Bytes the probe writes (and removes): enough to hit a disk that is full.
PROBE_BYTES = 64 * 1024

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def existing_ancestor(path: Path) -> Path:
    """``path`` or the nearest of its parents that exists."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL


def check_writable(folder: Path, what: str) -> None:
    """Raise unless files can be written in ``folder`` (created later, parents included)."""
    base = existing_ancestor(folder)
    if not base.is_dir():
        raise UserError(f"{what} {folder}: {base} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".migrate-eval-probe-", dir=base)
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(base) from None
        raise UserError(
            f"{what} {folder}: cannot write in {base} ({e.strerror or e}); choose a writable "
            "location"
        ) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(base) from None
        raise UserError(f"{what} {folder}: cannot write in {base} ({e.strerror or e})") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
    free = shutil.disk_usage(base).free
    if free < MIN_FREE_BYTES:
        raise DiskFullError(base, f"{free // 1024} KiB free")


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; on success it becomes ``target``.

    An existing ``target`` is replaced (moved aside, then removed once the new one is in
    place); its files that the new folder does not have (e.g. a ``baseline.jsonl`` put there
    for the noise floor) are carried over, as when files were overwritten in place. On any failure the temporary folder is removed and ``target`` is untouched; a
    full disk raises :class:`DiskFullError` naming the folder.
    """
    target = target.absolute()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(target.parent) from None
        raise UserError(f"{target}: cannot create the folder ({e.strerror or e})") from None
    try:
        yield tmp
        old: Path | None = None
        if target.is_dir():
            for entry in target.iterdir():
                if not (tmp / entry.name).exists() and not entry.name.startswith("."):
                    if entry.is_dir():
                        shutil.copytree(entry, tmp / entry.name)
                    else:
                        shutil.copy2(entry, tmp / entry.name)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            raise DiskFullError(target.parent) from e
        raise


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
