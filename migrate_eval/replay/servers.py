"""Model servers started and stopped by a run: vLLM, SGLang, llama.cpp's ``llama-server``.

A :class:`ManagedServer` is one server process for the length of a replay:

* **start** - a free loopback port (``127.0.0.1``, the kernel's choice), the command with
  ``{host}``, ``{port}`` and ``{model}`` filled in, run in its own process group (its own
  session: a terminal's Ctrl-C reaches migrate-eval, which stops the server itself); stdout and
  stderr go to a log file (:func:`server_log_dir`; the run folder gets a copy as
  ``servers/<candidate>.log``);
* **health wait** - ``GET /health`` until it answers 200, then ``GET /v1/models`` until it lists
  every model name the candidates will ask for, within ``startup_timeout`` seconds; a process
  that exits meanwhile, or a wait that runs out, is a :class:`~migrate_eval.core.errors.ServerError`
  (exit 3) quoting the end of the log;
* **stop** - SIGTERM to the whole process group (vLLM's engine and worker processes included),
  ``stop_timeout`` seconds of grace, then SIGKILL to the group; the stop returns once no process of
  the group is left. It runs when the replay ends (normally, on an error, on Ctrl-C: the
  providers are closed in the engine's ``finally``), and at interpreter exit for any server still
  running (:func:`stop_all`).

Candidates that name the same server (same kind, base model and launch options: a base model and
its LoRA adapters) share one process: :func:`acquire` counts the providers using it and the last
:func:`release` stops it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from migrate_eval.core.errors import ServerError

HOST = "127.0.0.1"
#: Seconds between two health checks while a server starts.
POLL_INTERVAL = 0.25
#: Lines of the server's log quoted in an error.
LOG_TAIL_LINES = 15

_log_dir: ContextVar[Path | None] = ContextVar("migrate_eval_server_log_dir", default=None)
_log_sink: ContextVar[list[tuple[str, Path]] | None] = ContextVar(
    "migrate_eval_server_logs", default=None
)


def server_log_dir() -> Path:
    """Where server logs are written: the folder :func:`collect_logs` set, else a
    ``migrate-eval-servers`` folder in the system's temporary folder."""
    folder = _log_dir.get()
    if folder is None:
        import tempfile

        folder = Path(tempfile.gettempdir()) / "migrate-eval-servers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def collect_logs(folder: Path) -> Iterator[list[tuple[str, Path]]]:
    """Servers started inside write their logs to ``folder``; yields the ``(label, path)`` of
    each log written (the run copies them into its folder)."""
    logs: list[tuple[str, Path]] = []
    folder_token = _log_dir.set(folder)
    sink_token = _log_sink.set(logs)
    try:
        yield logs
    finally:
        _log_dir.reset(folder_token)
        _log_sink.reset(sink_token)


def free_port(host: str = HOST) -> int:
    """A TCP port free on ``host`` now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "server"


def fill(argv: Sequence[str], *, host: str, port: int, model: str) -> list[str]:
    """The command with ``{host}``, ``{port}`` and ``{model}`` replaced (other braces kept)."""
    return [
        str(a).replace("{host}", host).replace("{port}", str(port)).replace("{model}", model)
        for a in argv
    ]


@dataclass
class LaunchSpec:
    """How to start one server and what it must serve."""

    kind: str
    argv: list[str]
    model: str
    served: list[str]
    label: str
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 900.0
    stop_timeout: float = 15.0

    def key(self) -> str:
        """Servers with equal keys are one server."""
        return json.dumps([self.kind, self.argv, self.model, sorted(self.env.items())])


class ManagedServer:
    """One server process: :meth:`start` (with the health wait), :meth:`stop`."""

    def __init__(self, launch: LaunchSpec) -> None:
        self.launch = launch
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        #: stops the server if this process dies without stopping it (SIGKILL): _reaper.py
        self.reaper: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None
        self.log_path: Path | None = None
        self.argv: list[str] = []
        #: Set to give up a start in progress (the run is stopping).
        self.abandon = threading.Event()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process and wait until it is healthy; :class:`ServerError` otherwise
        (the process is stopped before the error is raised)."""
        launch = self.launch
        self.port = free_port()
        self.argv = fill(launch.argv, host=HOST, port=self.port, model=launch.model)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        self.log_path = server_log_dir() / f"{_slug(launch.label)}-{stamp}-{os.getpid()}.log"
        sink = _log_sink.get()
        if sink is not None:
            sink.append((launch.label, self.log_path))
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                with self._lock:
                    self.proc = subprocess.Popen(
                        self.argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, **launch.env},
                        start_new_session=True,  # its own process group: stopped as a whole
                    )
                    self.pgid = self.proc.pid
                    _LIVE.add(self)
                    self.reaper = _start_reaper(self.pgid, launch.stop_timeout)
                log.write(f"[migrate-eval] server pid {self.proc.pid}\n".encode())
                log.flush()
            except OSError as e:
                raise ServerError(
                    f"{launch.kind} server for {launch.label}: cannot run {self.argv[0]!r}: {e}",
                    log=self.log_path,
                ) from None
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _get(self, url: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as e:
            return int(e.code), b""
        except (urllib.error.URLError, OSError, ValueError):
            return 0, b""

    def _wait_healthy(self) -> None:
        launch = self.launch
        deadline = time.monotonic() + launch.startup_timeout
        healthy = False
        listed: list[str] = []
        while True:
            if self.abandon.is_set():
                raise ServerError(f"{launch.kind} server for {launch.label}: start abandoned")
            code = self.exit_code()
            if code is not None:
                raise ServerError(
                    f"{launch.kind} server for {launch.label} exited with code {code} before it "
                    f"was healthy{self.log_tail()}",
                    log=self.log_path,
                )
            if not healthy:
                status, _ = self._get(self.root_url + "/health")
                healthy = status == 200
            if healthy:
                status, body = self._get(self.base_url + "/models")
                if status == 200:
                    listed = _model_ids(body)
                    if all(name in listed for name in launch.served):
                        return
            if time.monotonic() >= deadline:
                said = (
                    f"; /v1/models lists {', '.join(listed) or 'nothing'}, not "
                    f"{', '.join(n for n in launch.served if n not in listed)}"
                    if healthy
                    else ": GET /health never answered 200"
                )
                raise ServerError(
                    f"{launch.kind} server for {launch.label} was not healthy within "
                    f"{launch.startup_timeout:g} s (options.startup_timeout){said}"
                    f"{self.log_tail()}",
                    log=self.log_path,
                )
            self.abandon.wait(POLL_INTERVAL)

    # -- state ----------------------------------------------------------------------------

    def exit_code(self) -> int | None:
        """The process's exit code once it has exited (None while it runs or before start)."""
        return self.proc.poll() if self.proc is not None else None

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code if the process exits within ``timeout`` seconds, else None."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self) -> str:
        """The end of the log, as a block to append to an error message ('' when empty)."""
        if self.log_path is None:
            return ""
        try:
            lines = self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return ""
        ours = ("$ ", "[migrate-eval] ")
        tail = [line for line in lines if line.strip() and not line.startswith(ours)]
        tail = tail[-LOG_TAIL_LINES:]
        return ("\n  | " + "\n  | ".join(tail)) if tail else ""

    def died_error(self, code: int) -> ServerError:
        return ServerError(
            f"{self.launch.kind} server for {self.launch.label} exited with code {code} during "
            f"the replay; the answers received before are cached, the same command resumes"
            f"{self.log_tail()}",
            log=self.log_path,
        )

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM to the process group, ``stop_timeout`` seconds, then SIGKILL; returns once no
        process of the group is left. Safe to call more than once."""
        with self._lock:
            proc, pgid = self.proc, self.pgid
            if proc is None or pgid is None:
                return
            grace = self.launch.stop_timeout
            _signal_group(pgid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                proc.wait()
            # the leader is gone (and reaped); its children may still be exiting
            deadline = time.monotonic() + grace
            while _group_alive(pgid):
                if time.monotonic() >= deadline:
                    _signal_group(pgid, signal.SIGKILL)
                    deadline = time.monotonic() + grace
                time.sleep(0.05)
            _LIVE.discard(self)
            if self.reaper is not None:  # it exits once the group is gone
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.reaper.wait(5)


def _start_reaper(pgid: int, grace: float) -> subprocess.Popen[bytes] | None:
    """The watcher that stops the group ``pgid`` should this process die without doing it."""
    if os.name != "posix":
        return None
    argv = [sys.executable, "-m", "migrate_eval.replay._reaper", str(os.getpid()), str(pgid)]
    try:
        return subprocess.Popen(
            [*argv, str(grace)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outside the server's group and this terminal's Ctrl-C
            env={**os.environ, "PYTHONPATH": _package_root()},
        )
    except OSError:
        return None


def _package_root() -> str:
    """The folder holding this ``migrate_eval``, first on the reaper's import path."""
    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{rest}" if rest else root


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[int] | None:
    """Live processes of a process group, from ``/proc`` (zombies excluded: a container's
    PID 1 may never reap them); None where there is no ``/proc``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    members: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is left."""
    members = group_members(pgid)
    if members is not None:
        return bool(members)
    try:  # pragma: no cover - no /proc (macOS): a zombie counts until it is reaped
        os.killpg(pgid, 0)
    except ProcessLookupError:  # pragma: no cover
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True  # pragma: no cover


def _model_ids(body: bytes) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return [str(m["id"]) for m in items if isinstance(m, dict) and "id" in m]


#: Servers started and not yet stopped (stopped at interpreter exit).
_LIVE: set[ManagedServer] = set()


@atexit.register
def stop_all() -> None:
    """Stop every server still running (interpreter exit, a second Ctrl-C)."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.stop()


# -- sharing one server between candidates --------------------------------------------------


@dataclass
class _Shared:
    server: ManagedServer
    users: int = 0
    started: asyncio.Future[None] | None = None


_POOL: dict[str, _Shared] = {}


async def acquire(launch: LaunchSpec) -> ManagedServer:
    """The running server for ``launch``, started by the first caller (the others wait for it).

    Every successful or failed call must be matched by one :func:`release`.
    """
    key = launch.key()
    shared = _POOL.get(key)
    if shared is None:
        shared = _POOL[key] = _Shared(ManagedServer(launch))
    shared.users += 1
    if shared.started is None:
        shared.started = asyncio.ensure_future(asyncio.to_thread(shared.server.start))
    await asyncio.shield(shared.started)
    return shared.server


async def release(launch: LaunchSpec) -> None:
    """One user less; the last one stops the server (a start in progress is abandoned)."""
    key = launch.key()
    shared = _POOL.get(key)
    if shared is None:
        return
    shared.users -= 1
    if shared.users > 0:
        return
    _POOL.pop(key, None)
    shared.server.abandon.set()
    if shared.started is not None:
        with contextlib.suppress(BaseException):
            await asyncio.shield(shared.started)
    await asyncio.to_thread(shared.server.stop)


def run_probe(argv: Sequence[str], timeout: float = 10.0) -> str | None:
    """The stdout of a short command, or None when it cannot run or fails."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def gpu_present(probe: Callable[[Sequence[str]], str | None] = run_probe) -> bool:
    """Whether this machine has a GPU a server can use: ``nvidia-smi -L`` lists one, or ROCm's
    ``/dev/kfd`` exists."""
    listed = probe(["nvidia-smi", "-L"])
    if listed and re.search(r"^GPU \d+", listed, re.M):
        return True
    return Path("/dev/kfd").exists()
