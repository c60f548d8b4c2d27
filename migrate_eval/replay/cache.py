"""The persistent response cache that makes every replay resumable.

One SQLite file in WAL mode. An entry is keyed by the sha256 of the canonical JSON of
``{"identity": <provider identity>, "request": <candidate request body>}`` and holds the
identity, the request, the raw response body, the normalised :class:`Response`, the latency
and when it was stored. Only successful answers are stored: errors are never cached.

Durability: writes are batched (a commit every ``batch_size`` rows or ``batch_interval``
seconds, and on :meth:`flush` / :meth:`close`) and committed by a background writer thread,
so that an event loop calling :meth:`put` never waits for the disk. Each commit is one
transaction, so a process killed at any point (even ``SIGKILL``) leaves a valid cache holding
every committed answer; only the answers of the last uncommitted batch are lost, and a later
run sends those again. WAL with ``synchronous=NORMAL`` survives process death (not power
loss, which at worst loses the last commits, never the file). Reads see uncommitted answers.

API keys never reach this file: a provider identity carries no secret and the request body
is the Chat Completions body, without headers.

Recordings (JSONL, one ``{"identity", "request", "response", "latency_ms"}`` object a line,
``response`` being the raw body) move cached answers between machines: the demo suite ships
its candidates' answers this way. Timings travel with each answer: ``latency_ms`` and, for
streamed answers, ``ttft_ms`` (also inside ``normalized``, the normalised response).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from migrate_eval.core.errors import (
    CacheCorruptError,
    DiskFullError,
    InfrastructureError,
    MigrateEvalError,
    UserError,
)
from migrate_eval.core.json import canonical_json
from migrate_eval.core.records import Response
from migrate_eval.core.version import __version__

SCHEMA_VERSION = 1

IdentityFilter = Mapping[str, Any] | Callable[[dict[str, Any]], bool]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key        TEXT PRIMARY KEY,
    identity   TEXT NOT NULL,
    request    TEXT NOT NULL,
    raw        TEXT NOT NULL,
    response   TEXT NOT NULL,
    latency_ms REAL,
    created    REAL NOT NULL
)
"""
#: Requests a run is sending now (see :meth:`ResponseCache.claim`): another run sharing the
#: file waits for their answers instead of sending them too. Older versions ignore the table.
_LEASES = """
CREATE TABLE IF NOT EXISTS leases (
    key     TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    pid     INTEGER NOT NULL,
    host    TEXT NOT NULL,
    expires REAL NOT NULL
)
"""
#: Recordings files imported (:meth:`ResponseCache.import_recordings`): the digest of a file's
#: bytes (and of the migrate-eval that turned them into rows), the keys it stored and their
#: ``created`` time. A file imported again whose rows are all still those is not read again.
#: Older versions ignore the table.
_IMPORTS = """
CREATE TABLE IF NOT EXISTS imports (
    digest  TEXT PRIMARY KEY,
    keys    TEXT NOT NULL,
    rows    INTEGER NOT NULL,
    created REAL NOT NULL
)
"""
#: Seconds a lease holds unless renewed by the answer (a killed run's leases then lapse).
LEASE_TTL = 300.0
_COLUMNS = "key, identity, request, raw, response, latency_ms, created"
_INSERT = f"INSERT OR REPLACE INTO responses ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_SELECT_CHUNK = 500

_Row = tuple[str, str, str, str, str, float | None, float]


def _recordings_digest(data: bytes) -> str:
    """What a recordings file's rows depend on: its bytes, and this version's cache keys and
    normalised responses (another version imports the file again)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"recordings\0{__version__}\0{SCHEMA_VERSION}\0".encode())
    h.update(data)
    return h.hexdigest()


def key_from_json(identity_json: str, request_json: str) -> str:
    """The cache key from the canonical JSON of the identity and of the request.

    Equal to ``sha256(canonical_json({"identity": identity, "request": request}))``: canonical
    JSON sorts keys and has no whitespace, so the object's text is the two parts joined.
    """
    text = '{"identity":' + identity_json + ',"request":' + request_json + "}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds for one identity (see :meth:`ResponseCache.stats`)."""

    identity: dict[str, Any]
    answers: int
    mean_latency_ms: float | None
    oldest: float
    newest: float


class CachedEntry:
    """One stored answer. JSON columns are decoded on first access."""

    __slots__ = (
        "__dict__",
        "_identity_json",
        "_raw_json",
        "_request_json",
        "_response_json",
        "created",
        "key",
        "latency_ms",
    )

    def __init__(
        self,
        key: str,
        identity_json: str,
        request_json: str,
        raw_json: str,
        response_json: str,
        latency_ms: float | None,
        created: float,
    ) -> None:
        self.key = key
        self._identity_json = identity_json
        self._request_json = request_json
        self._raw_json = raw_json
        self._response_json = response_json
        self.latency_ms = latency_ms
        self.created = created

    @cached_property
    def identity(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._identity_json)
        return value

    @cached_property
    def request(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._request_json)
        return value

    @cached_property
    def raw(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._raw_json)
        return value

    @cached_property
    def response(self) -> Response:
        return Response.model_validate_json(self._response_json)

    def __repr__(self) -> str:
        return f"CachedEntry(key={self.key[:12]}..., latency_ms={self.latency_ms})"


def _write(
    conn: sqlite3.Connection,
    rows: list[_Row],
    imported: tuple[str, str, int, float] | None = None,
) -> None:
    """Store rows in one transaction: all of them or, if the process dies, none (with
    ``imported``, the ``imports`` row of the recordings file they come from)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT, rows)
        if rows:  # the answers are in: their leases are done
            conn.executemany("DELETE FROM leases WHERE key = ?", [(r[0],) for r in rows])
        if imported is not None:
            conn.execute("INSERT OR REPLACE INTO imports VALUES (?, ?, ?, ?)", imported)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back by itself (a full disk does): a second ROLLBACK
        # would fail with "cannot rollback - no transaction is active" and hide the cause.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


_CORRUPT_MARKERS = ("malformed", "not a database", "corrupt", "encrypted")


def cache_error(path: Path, exc: BaseException) -> MigrateEvalError | None:
    """The user-facing error for a SQLite failure on the cache file, if it is a known kind:
    damaged pages (:class:`CacheCorruptError`, exit 2) or a full disk
    (:class:`DiskFullError`, exit 3)."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.DatabaseError) and any(m in text for m in _CORRUPT_MARKERS):
        return CacheCorruptError(path, str(exc))
    if (
        "disk is full" in text
        or "database or disk is full" in text
        or (
            isinstance(exc, OSError) and exc.errno in (28, 122)  # ENOSPC, EDQUOT
        )
    ):
        return DiskFullError(path, str(exc))
    return None


@contextlib.contextmanager
def _sqlite_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OSError) as e:
        mapped = cache_error(path, e)
        if mapped is None:
            raise
        raise mapped from None


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _matches(identity: dict[str, Any], flt: IdentityFilter | None) -> bool:
    if flt is None:
        return True
    if callable(flt):
        return bool(flt(identity))
    return all(identity.get(k) == v for k, v in flt.items())


#: Times a cache that another run is opening at the same moment is opened again.
_OPEN_RETRIES = 20


class ResponseCache:
    """SQLite response cache (see the module docstring). Usable as a context manager.

    ``batch_size`` and ``batch_interval`` bound how many answers a crash may lose; they are
    re-sent on the next run. Reads see uncommitted answers too. Safe to use from several
    threads; several processes may share one file (SQLite locking, WAL).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 64,
        batch_interval: float = 0.05,
        read_only: bool | None = None,
    ) -> None:
        self.path = Path(path)
        #: Opened read-only: the file or its folder cannot be written (``None``: decide so).
        self.read_only = self._cannot_write() if read_only is None else read_only
        self.batch_size = max(1, batch_size)
        self.batch_interval = max(0.0, batch_interval)
        # In-memory state, guarded by _cond (never held during disk I/O).
        self._cond = threading.Condition(threading.Lock())
        self._unsaved: dict[str, tuple[_Row, CachedEntry]] = {}  # not committed yet
        self._batch: list[_Row] = []  # not handed to the writer yet
        self._first_pending = 0.0
        self._queued = 0  # batches handed to the writer and not committed yet
        self._writer_error: BaseException | None = None
        self._queue: queue.SimpleQueue[list[_Row] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False
        # The caller-side connection (reads, imports), guarded by _conn_lock.
        self._conn_lock = threading.RLock()
        if str(path) == ":memory:":
            raise ValueError("the response cache needs a file (its writer thread opens it too)")
        if self.read_only:
            if not self.path.exists():
                raise UserError(f"{self.path}: no response cache here, and its folder is read-only")
            self._conn = self._connect_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{self.path}: cannot create the cache folder ({e})") from None
        # Two runs opening one cache at once: SQLite answers "database is locked" at once,
        # without waiting, to the one that loses the race to switch the file to WAL or to
        # create the tables (its busy handler would deadlock there). Open again, a few times.
        for attempt in range(_OPEN_RETRIES + 1):
            self._conn = self._connect()
            try:
                self._setup(self._conn)
                break
            except sqlite3.OperationalError as e:
                self._conn.close()
                if "locked" in str(e) and attempt < _OPEN_RETRIES:
                    time.sleep(0.02 * (attempt + 1))
                    continue
                mapped = cache_error(self.path, e)
                if mapped is not None:
                    raise mapped from None
                raise UserError(f"{self.path}: not a usable response cache: {e}") from None
            except sqlite3.DatabaseError as e:
                self._conn.close()
                mapped = cache_error(self.path, e)
                if mapped is not None:
                    raise mapped from None
                raise UserError(f"{self.path}: not a usable response cache: {e}") from None

    def _cannot_write(self) -> bool:
        """The file exists and it, or its folder (SQLite's journal lives there), is read-only."""
        if not self.path.exists():
            return False
        return not (
            os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK | os.X_OK)
        )

    def _connect_read_only(self) -> sqlite3.Connection:
        """Open the file read-only; where SQLite cannot make its shared-memory file next to
        it (a read-only folder), as an immutable file (nothing else may write it meanwhile)."""
        from urllib.parse import quote

        base = "file:" + quote(str(self.path.absolute()))
        last: sqlite3.Error | None = None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(
                    base + query, uri=True, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as e:
                last = e
                continue
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                conn.execute("SELECT COUNT(*) FROM responses WHERE 0").fetchall()
            except sqlite3.Error as e:
                conn.close()
                last = e
                continue
            if version > SCHEMA_VERSION:
                conn.close()
                raise UserError(
                    f"{self.path}: not a usable response cache: made by a newer migrate-eval "
                    f"(cache schema {version}, this one reads {SCHEMA_VERSION})"
                )
            return conn
        assert last is not None
        mapped = cache_error(self.path, last)
        if mapped is not None:
            raise mapped from None
        raise UserError(f"{self.path}: cannot open the response cache read-only: {last}")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA busy_timeout = 30000")
        except sqlite3.Error as e:
            raise UserError(f"{self.path}: cannot open the response cache: {e}") from None
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"made by a newer migrate-eval (cache schema {version}, this one reads "
                f"{SCHEMA_VERSION})"
            )
        has_leases = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leases'"
        ).fetchone()
        if not has_leases:
            conn.execute(_LEASES)
        has_imports = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'imports'"
        ).fetchone()
        if not has_imports:
            conn.execute(_IMPORTS)
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the response cache is closed")

    # -- keys ---------------------------------------------------------------------------

    @staticmethod
    def key_for(identity: Mapping[str, Any], request: Mapping[str, Any]) -> str:
        """sha256 of ``canonical_json({"identity": identity, "request": request})``."""
        return hashlib.sha256(
            canonical_json({"identity": identity, "request": request}).encode("utf-8")
        ).hexdigest()

    # -- reads --------------------------------------------------------------------------

    def get(self, key: str) -> CachedEntry | None:
        # Uncommitted rows first: the writer drops a row from _unsaved only once committed.
        with self._cond:
            self._check_open()
            unsaved = self._unsaved.get(key)
        if unsaved is not None:
            return unsaved[1]
        with self._conn_lock, _sqlite_errors(self.path):
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return CachedEntry(*row) if row is not None else None

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedEntry]:
        """The stored entries among ``keys`` (missing keys are absent from the result)."""
        found: dict[str, CachedEntry] = {}
        wanted: list[str] = []
        with self._cond:
            self._check_open()
            for key in dict.fromkeys(keys):
                unsaved = self._unsaved.get(key)
                if unsaved is not None:
                    found[key] = unsaved[1]
                else:
                    wanted.append(key)
        with self._conn_lock, _sqlite_errors(self.path):
            for i in range(0, len(wanted), _SELECT_CHUNK):
                chunk = wanted[i : i + _SELECT_CHUNK]
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(
                    f"SELECT {_COLUMNS} FROM responses WHERE key IN ({marks})", chunk
                ):
                    found[row[0]] = CachedEntry(*row)
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        self.flush()
        with self._conn_lock, _sqlite_errors(self.path):
            count: int = self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        return count

    def keys(self) -> set[str]:
        """Every stored key (uncommitted ones included)."""
        with self._cond:
            self._check_open()
            keys = set(self._unsaved)
        with self._conn_lock, _sqlite_errors(self.path):
            keys.update(row[0] for row in self._conn.execute("SELECT key FROM responses"))
        return keys

    def entries(self, identity_filter: IdentityFilter | None = None) -> Iterator[CachedEntry]:
        """Every stored entry whose identity matches the filter, oldest first."""
        self.flush()
        with self._conn_lock, _sqlite_errors(self.path):
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM responses ORDER BY created, key"
            ).fetchall()
        for row in rows:
            entry = CachedEntry(*row)
            if _matches(entry.identity, identity_filter):
                yield entry

    def readable_entries(
        self, identity_filter: IdentityFilter | None = None
    ) -> Iterator[CachedEntry]:
        """:meth:`entries`, or from a damaged file every row that can still be read (rows are
        looked up by rowid, in small ranges, then one by one where a range fails)."""
        try:
            yield from self.entries(identity_filter)
            return
        except CacheCorruptError:
            pass
        conn = self._conn

        def rows(lo: int, hi: int) -> list[Any]:
            return conn.execute(
                f"SELECT {_COLUMNS} FROM responses WHERE rowid BETWEEN ? AND ?", (lo, hi)
            ).fetchall()

        with self._conn_lock:
            try:
                top = conn.execute("SELECT max(rowid) FROM responses").fetchone()[0] or 0
            except sqlite3.DatabaseError:
                top = 100 * conn.execute("PRAGMA page_count").fetchone()[0]
            found: list[Any] = []
            for lo in range(1, top + 1, 64):
                hi = min(lo + 63, top)
                try:
                    found.extend(rows(lo, hi))
                except sqlite3.DatabaseError:
                    for rowid in range(lo, hi + 1):
                        with contextlib.suppress(sqlite3.DatabaseError):
                            found.extend(rows(rowid, rowid))
        for row in found:
            try:
                entry = CachedEntry(*row)
                if _matches(entry.identity, identity_filter):
                    yield entry
            except (ValueError, TypeError):
                continue  # a row whose text was damaged

    def stats(self) -> list[CacheStats]:
        """Stored answers per identity (endpoint, model...), most answers first."""
        self.flush()
        with self._conn_lock, _sqlite_errors(self.path):
            rows = self._conn.execute(
                "SELECT identity, COUNT(*), AVG(latency_ms), MIN(created), MAX(created) "
                "FROM responses GROUP BY identity ORDER BY COUNT(*) DESC, identity"
            ).fetchall()
        return [CacheStats(json.loads(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    # -- writes -------------------------------------------------------------------------

    def put(
        self,
        key: str,
        identity: Mapping[str, Any],
        request: Mapping[str, Any],
        raw: Mapping[str, Any],
        response: Response,
        latency_ms: float | None,
        *,
        identity_json: str | None = None,
        request_json: str | None = None,
        raw_json: str | None = None,
    ) -> None:
        """Store a successful answer; it is committed with its batch, in the background.

        ``identity_json`` / ``request_json`` may pass the canonical JSON the caller already
        computed for the key, and ``raw_json`` the raw body's JSON text as received, to avoid
        serialising twice. Never blocks on the disk.
        """
        ij = identity_json if identity_json is not None else canonical_json(identity)
        rj = request_json if request_json is not None else canonical_json(request)
        if raw_json is None or "\n" in raw_json or "\r" in raw_json:  # recordings are JSONL
            raw_json = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
        row: _Row = (key, ij, rj, raw_json, response.model_dump_json(), latency_ms, time.time())
        entry = CachedEntry(*row)
        # The caller's objects are already decoded: keep them for reads of unsaved rows.
        entry.__dict__["response"] = response
        if self.read_only:
            raise UserError(
                f"{self.path}: the response cache is read-only here; only --offline runs "
                "can use it (or pass --cache with a writable file)"
            )
        with self._cond:
            self._check_open()
            self._raise_writer_error()
            now = time.monotonic()
            if not self._batch:
                self._first_pending = now
            self._unsaved[key] = (row, entry)
            self._batch.append(row)
            if (
                len(self._batch) >= self.batch_size
                or now - self._first_pending >= self.batch_interval
            ):
                self._submit()
            elif self._writer is None:
                self._start_writer()

    def maybe_flush(self) -> bool:
        """Hand the batch to the writer if its oldest answer waited ``batch_interval`` s.

        The writer thread does this by itself too; this never blocks.
        """
        with self._cond:
            if self._batch and time.monotonic() - self._first_pending >= self.batch_interval:
                self._submit()
                return True
        return False

    def flush(self) -> None:
        """Commit every answer stored so far, and wait until it is on disk."""
        with self._cond:
            self._check_open()
            if self._batch:
                self._submit()
            while self._queued:
                self._cond.wait()
            self._raise_writer_error()

    def _raise_writer_error(self) -> None:
        err = self._writer_error
        if err is not None:
            mapped = cache_error(self.path, err)
            if mapped is not None:
                raise mapped
            raise InfrastructureError(f"{self.path}: cannot write the response cache: {err}")

    def _submit(self) -> None:
        """Hand the current batch to the writer (``_cond`` held)."""
        rows, self._batch = self._batch, []
        if self._writer is None:
            self._start_writer()
        self._queued += 1
        self._queue.put(rows)

    def _start_writer(self) -> None:
        self._writer = threading.Thread(
            target=self._writer_loop,
            args=(self._connect(),),
            name=f"migrate-eval cache writer {self.path.name}",
            daemon=True,  # a process that exits without close() loses only the last batch
        )
        self._writer.start()

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA synchronous = NORMAL")
        wait = max(self.batch_interval, 0.005)
        try:
            while True:
                try:
                    rows = self._queue.get(timeout=wait)
                except queue.Empty:
                    self.maybe_flush()  # an old batch nobody handed over: take it
                    continue
                if rows is None:
                    return
                error: BaseException | None = None
                try:
                    _write(conn, rows)
                except Exception as e:
                    error = e
                with self._cond:
                    if error is None:
                        for row in rows:
                            unsaved = self._unsaved.get(row[0])
                            if unsaved is not None and unsaved[0] is row:
                                del self._unsaved[row[0]]
                    elif self._writer_error is None:
                        self._writer_error = error
                    self._queued -= 1
                    self._cond.notify_all()
        finally:
            conn.close()

    # -- leases: runs sharing one file do not send the same request twice ---------------

    @cached_property
    def owner(self) -> str:
        """This cache object's lease owner id (host, pid and a random part)."""
        return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"

    def claim(self, key: str, ttl: float = LEASE_TTL) -> str:
        """Claim ``key`` before sending its request: ``"claimed"`` (send it), ``"answered"``
        (the answer is in the cache: use it) or ``"held"`` (another live run is sending it:
        wait, and ask again).

        A lease that expired, or whose run is gone (its process on this host is not alive),
        is taken over. Leases end when the answer is committed (:meth:`put`) or
        :meth:`release` is called (the request failed). One key of :meth:`claim_many`.
        """
        return self.claim_many([key], ttl)[key]

    def claim_many(self, keys: Iterable[str], ttl: float = LEASE_TTL) -> dict[str, str]:
        """:meth:`claim` for many keys in one transaction: each key's state (``"claimed"``,
        ``"answered"`` or ``"held"``, as :meth:`claim`). Claiming our own lease again renews
        it for ``ttl`` seconds.
        """
        wanted = list(dict.fromkeys(keys))
        if self.read_only:
            return dict.fromkeys(wanted, "claimed")
        states: dict[str, str] = {}
        with self._cond:
            self._check_open()
            for key in wanted:
                if key in self._unsaved:
                    states[key] = "answered"
        todo = [k for k in wanted if k not in states]
        if not todo:
            return states
        now = time.time()
        host = socket.gethostname()
        pid = os.getpid()
        alive: dict[int, bool] = {}
        with self._conn_lock, _sqlite_errors(self.path):
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                answered: set[str] = set()
                held: dict[str, tuple[str, int, str, float]] = {}
                for i in range(0, len(todo), _SELECT_CHUNK):
                    chunk = todo[i : i + _SELECT_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    answered.update(
                        row[0]
                        for row in conn.execute(
                            f"SELECT key FROM responses WHERE key IN ({marks})", chunk
                        )
                    )
                    for row in conn.execute(
                        f"SELECT key, owner, pid, host, expires FROM leases WHERE key IN ({marks})",
                        chunk,
                    ):
                        held[row[0]] = (row[1], row[2], row[3], row[4])
                taken: list[tuple[str, str, int, str, float]] = []
                for key in todo:
                    if key in answered:
                        states[key] = "answered"
                        continue
                    lease = held.get(key)
                    if lease is not None and lease[0] != self.owner and lease[3] >= now:
                        owner_pid, owner_host = lease[1], lease[2]
                        if owner_host != host:
                            states[key] = "held"
                            continue
                        if owner_pid not in alive:
                            alive[owner_pid] = _alive(owner_pid)
                        if alive[owner_pid]:
                            states[key] = "held"
                            continue
                    states[key] = "claimed"
                    taken.append((key, self.owner, pid, host, now + ttl))
                if taken:
                    conn.executemany(
                        "INSERT OR REPLACE INTO leases (key, owner, pid, host, expires) "
                        "VALUES (?, ?, ?, ?, ?)",
                        taken,
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        return states

    def release(self, keys: Iterable[str]) -> None:
        """End this cache's leases on ``keys`` (their requests failed: others may try)."""
        if self.read_only:
            return
        batch = [(k, self.owner) for k in keys]
        if not batch:
            return
        with self._conn_lock, _sqlite_errors(self.path):
            self._conn.executemany("DELETE FROM leases WHERE key = ? AND owner = ?", batch)

    # -- recordings ---------------------------------------------------------------------

    def export_recordings(
        self, path: str | Path, identity_filter: IdentityFilter | None = None
    ) -> int:
        """Write matching entries as JSONL recordings; returns how many were written.

        ``identity_filter`` is a mapping (every item must equal the identity's) or a
        predicate on the identity. The file is replaced atomically.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                for entry in self.readable_entries(identity_filter):
                    try:
                        line = (
                            '{"identity":' + entry._identity_json
                            + ',"request":' + entry._request_json
                            + ',"response":' + entry._raw_json
                            + ',"latency_ms":' + json.dumps(entry.latency_ms)
                            + ',"ttft_ms":' + json.dumps(entry.response.ttft_ms)
                            + ',"normalized":' + entry._response_json
                            + "}\n"
                        )  # fmt: skip
                    except (ValueError, TypeError):
                        continue  # a damaged row (only a damaged file has them)
                    out.write(line)
                    count += 1
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return count

    def import_recordings(self, path: str | Path) -> int:
        """Store every recording of a JSONL file (keys recomputed); returns how many.

        All or nothing: a bad line raises :class:`UserError` naming it and stores nothing.
        Each line needs ``identity``, ``request`` and ``response`` (the raw chat completion
        body); ``latency_ms`` and ``normalized`` (a normalised response) are optional.

        A file this cache already imported, byte for byte, whose rows are all still as that
        import stored them (none replaced by another answer since), is not read again: a
        suite's recordings are imported at every run (the demo's 620: ~0.13 s of a run).
        """
        src = Path(path)
        try:
            data = src.read_bytes()
        except OSError as e:
            raise UserError(f"{src}: cannot read recordings: {e.strerror or e}") from None
        digest = _recordings_digest(data)
        self.flush()
        done = self._imported(digest)
        if done is not None:
            return done
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{src}: not UTF-8 text ({e.reason})") from None
        del data
        rows: list[_Row] = []
        now = time.time()
        # lines as a text file gives them (universal newlines: not U+2028, valid in JSON)
        for lineno, line in enumerate(io.StringIO(text, newline=None), start=1):
            if line.strip():
                rows.append(self._recording_row(src, lineno, line, now))
        del text
        if rows and self.read_only:
            missing = [r for r in rows if r[0] not in self.get_many(r[0] for r in rows)]
            if missing:
                raise UserError(
                    f"{self.path}: cannot import {src} into a read-only response cache "
                    f"({len(missing)} recordings are not in it)"
                )
            return len(rows)
        if rows:
            keys = json.dumps(list(dict.fromkeys(r[0] for r in rows)))
            with self._conn_lock, _sqlite_errors(self.path):
                _write(self._conn, rows, (digest, keys, len(rows), now))
        return len(rows)

    def _imported(self, digest: str) -> int | None:
        """How many recordings the file of ``digest`` holds, if this cache imported it and
        every row it stored is still that import's (same ``created``); else None."""
        with self._conn_lock, _sqlite_errors(self.path):
            try:
                found = self._conn.execute(
                    "SELECT keys, rows, created FROM imports WHERE digest = ?", (digest,)
                ).fetchone()
            except sqlite3.OperationalError:  # a cache made before the table (read-only)
                return None
            if found is None:
                return None
            keys: list[str] = json.loads(found[0])
            still = 0
            for i in range(0, len(keys), _SELECT_CHUNK):
                chunk = keys[i : i + _SELECT_CHUNK]
                marks = ",".join("?" * len(chunk))
                still += self._conn.execute(
                    f"SELECT COUNT(*) FROM responses WHERE created = ? AND key IN ({marks})",
                    (found[2], *chunk),
                ).fetchone()[0]
        rows: int = found[1]
        return rows if still == len(keys) else None

    @staticmethod
    def _recording_row(src: Path, lineno: int, line: str, now: float) -> _Row:
        where = f"{src}:{lineno}"
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise UserError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(rec, dict):
            raise UserError(f"{where}: a recording must be a JSON object")
        for field in ("identity", "request", "response"):
            if not isinstance(rec.get(field), dict):
                raise UserError(f"{where}: field '{field}' must be an object")
        latency = rec.get("latency_ms")
        if latency is not None and (
            isinstance(latency, bool) or not isinstance(latency, int | float)
        ):
            raise UserError(f"{where}: field 'latency_ms' must be a number")
        try:
            if isinstance(rec.get("normalized"), dict):
                response = Response.model_validate(rec["normalized"])
            else:
                response = Response.from_chat_completion(rec["response"], latency_ms=latency)
            ttft = rec.get("ttft_ms")
            if response.ttft_ms is None and isinstance(ttft, int | float) and ttft >= 0:
                response.ttft_ms = float(ttft)
        except (ValueError, TypeError, AttributeError, ValidationError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(
                f"{where}: field 'response': not a chat completion ({reason})"
            ) from None
        ij = canonical_json(rec["identity"])
        rj = canonical_json(rec["request"])
        raw_json = json.dumps(rec["response"], ensure_ascii=False, separators=(",", ":"))
        latency_f = float(latency) if latency is not None else None
        return (key_from_json(ij, rj), ij, rj, raw_json, response.model_dump_json(), latency_f, now)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Commit pending answers and close the file. Safe to call more than once."""
        with self._cond:
            if self._closed:
                return
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                writer, self._writer = self._writer, None
            if writer is not None:
                self._queue.put(None)
                writer.join()
            with self._conn_lock:
                self._conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
