"""Writing a group of logs to Arrow files: here (one file per group), or one Ray task per log
file (``--executor ray``), with the same exchanges, ids and line issues either way.

A *group* is the log files read together (one format and column mapping; see
:func:`~migrate_eval.plan.traffic.read_traffic`). :func:`write_group` reads it into one
Arrow file through one :class:`~migrate_eval.ingest.reader.LogStream`. :func:`ray_group_writer`
reads each file of a group in a Ray task of its own (the existing readers, each file through
its own stream) when that cannot change the result: every file is read on its own (no Batch
output file, no side file the others are joined with), and no exchange id occurs in two
files (a repeated id is renamed ``id-2``, ``id-3``... in reading order, which only one
stream over all the files can do). Otherwise the group is read here, as locally. The Arrow
files are written next to the response cache: on a cluster that folder, like the logs, must
be one every node sees (docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate_eval.core.errors import LineIssue, MigrateEvalError

#: One group of logs read together: (format, columns, files).
LogGroup = tuple[str, dict[str, str] | None, Sequence[str | Path]]


@dataclass
class GroupPart:
    """One Arrow file of a group, and what reading it counted."""

    arrow: Path
    files: list[str]
    skipped: list[LineIssue]
    lines_read: int
    formats: dict[str, int] = field(default_factory=dict)


#: ``(group number, group, workdir, strict, ids seen so far) -> the group's parts in order``;
#: adds the group's ids to the set.
WriteGroup = Callable[[int, LogGroup, Path, bool, set[str]], list[GroupPart]]


def write_group(
    number: int, group: LogGroup, workdir: Path, strict: bool, seen: set[str]
) -> list[GroupPart]:
    """The group read here, into ``workdir/logs-<number>.arrow``."""
    return [_write(group, workdir / f"logs-{number}.arrow", strict, seen)]


def _write(group: LogGroup, target: Path, strict: bool, seen: set[str]) -> GroupPart:
    from migrate_eval.core.errors import InfrastructureError
    from migrate_eval.ingest.dataset import write_arrow
    from migrate_eval.ingest.reader import stream_logs

    fmt, columns, paths = group
    stream = stream_logs(list(paths), format=fmt, strict=strict, columns=columns)
    stream.seen_ids = seen  # ids unique across the groups too (``-2``, ``-3``...)
    try:
        write_arrow(stream, target)
    except OSError as e:  # the disk is full, the folder is not writable...
        raise InfrastructureError(
            f"cannot write {target}, the Arrow copy of the logs: {e} (it takes about "
            "as much space as the logs; it goes next to the response cache: --cache "
            "elsewhere moves it)"
        ) from e
    return GroupPart(target, stream.files, stream.skipped, stream.lines_read, stream.formats)


def read_file_part(
    fmt: str, columns: dict[str, str] | None, path: str, strict: bool, target: str
) -> tuple[GroupPart, list[str]]:
    """A Ray task's work: one log file into its own Arrow file; the part and its ids."""
    part = _write((fmt, columns, [path]), Path(target), strict, set())
    return part, _ids(part.arrow)


def _ids(arrow: Path) -> list[str]:
    import pyarrow as pa

    with pa.memory_map(str(arrow)) as source:
        table = pa.ipc.open_stream(source).read_all()
        return [str(x) for x in table.column("id").to_pylist()]


def _independent_files(group: LogGroup) -> list[str] | None:
    """The group's files when each can be read on its own; None when they are joined."""
    from migrate_eval.ingest.reader import stream_logs

    fmt, columns, paths = group
    stream = stream_logs(list(paths), format=fmt, columns=columns)
    plan: list[tuple[Path, Any, bool]] = stream._plan
    kinds: dict[Path, str] = stream._kinds
    if len(plan) < 2:
        return None
    for path, _, is_output in plan:
        if is_output or kinds.get(path, "lines") not in ("lines", "file", "document"):
            return None
    return [str(p) for p, _, _ in plan]


def ray_group_writer(address: str | None = None) -> WriteGroup:
    """A :data:`WriteGroup` that reads the files of a group in parallel Ray tasks."""

    def write(
        number: int, group: LogGroup, workdir: Path, strict: bool, seen: set[str]
    ) -> list[GroupPart]:
        files = _independent_files(group)
        if files is None:
            return write_group(number, group, workdir, strict, seen)
        from migrate_eval.core.executor import ensure_ray

        ray = ensure_ray(address)
        task = ray.remote(num_cpus=1, max_retries=3)(read_file_part)
        fmt, columns, _ = group
        refs = [
            task.remote(fmt, columns, f, strict, str(workdir / f"logs-{number}-{i}.arrow"))
            for i, f in enumerate(files)
        ]
        parts: list[GroupPart] = []
        ids: set[str] = set(seen)
        clash = False
        for ref in refs:
            try:
                part, part_ids = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, MigrateEvalError):
                    raise cause from None
                raise
            parts.append(part)
            before = len(ids)
            ids.update(part_ids)
            clash = clash or len(ids) - before != len(part_ids)
        if clash:  # an id in two files: only one stream over all of them names them alike
            for part in parts:
                part.arrow.unlink(missing_ok=True)
            return write_group(number, group, workdir, strict, seen)
        seen |= ids
        return parts

    return write
