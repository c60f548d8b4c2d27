"""Every exception migrate-eval raises on purpose, and the exit codes they map to.

Three families, kept apart so that a CI pipeline can tell them apart:

* :class:`UserError` - the input is wrong (bad suite file, bad log line under ``--strict``,
  a missing optional extra, an unknown provider). Exit code 2.
* :class:`VendorError` - a candidate's endpoint failed (HTTP error, timeout, malformed body).
  These never escape the replay engine: each becomes an error row. Only when too many
  requests failed to judge a candidate does the run end with :class:`InfrastructureError`
  (exit code 3).
* Anything else is a bug in migrate-eval and is reported with a traceback (exit code 70).

Exit codes of ``migrate-eval run`` and ``migrate-eval gate``:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     every candidate is ready (the gate passes)
1     at least one candidate is not ready (the gate fails)
2     usage or configuration error (bad option, suite, log file, missing extra)
3     infrastructure failure (e.g. too many vendor errors to judge a candidate)
4     a verdict needs evidence the run did not have (free-text similarity with neither a
      noise floor nor a judge); the output names the setting that gets it
70    internal error (a bug: please report it with the traceback)
130   interrupted (Ctrl-C or SIGTERM); the answers received are cached, the same command resumes
====  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes of the CLI."""

    READY = 0
    NOT_READY = 1
    USAGE = 2
    INFRASTRUCTURE = 3
    NEEDS_EVIDENCE = 4  # the metrics cannot decide on their own: see the verdict's reasons
    INTERNAL = 70
    INTERRUPTED = 130  # Ctrl-C during replay: answers so far are cached, re-run resumes


class MigrateEvalError(Exception):
    """Base class of every error migrate-eval raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UserError(MigrateEvalError):
    """The user's input is wrong; the message says what and where."""

    exit_code = ExitCode.USAGE


class ConfigError(UserError):
    """A suite file or a command-line option is invalid."""


class LogFormatError(UserError):
    """A log file cannot be read at all (unknown format, unreadable file)."""


@dataclass(frozen=True)
class LineIssue:
    """Where a log line went wrong: file, 1-based line number, field path and reason."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return (
            f"{where}: field '{self.field}': {self.reason}"
            if self.field
            else f"{where}: {self.reason}"
        )


class BadLineError(UserError):
    """Raised under ``--strict`` when a log line cannot be turned into an exchange."""

    def __init__(self, issue: LineIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


class MissingExtraError(UserError):
    """An optional dependency is needed for the requested feature."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package: pip install 'migrate-eval[{extra}]'"
        )
        self.package = package
        self.extra = extra


class VendorError(MigrateEvalError):
    """A candidate endpoint failed. Recorded as an error row, never raised out of a run."""

    exit_code = ExitCode.INFRASTRUCTURE

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class CircuitOpenError(VendorError):
    """A candidate's endpoint failed the same way too often in a row, with no success.

    Its remaining requests are not sent; each gets this error (``error_kind`` is the kind of
    the failure that opened the circuit, e.g. ``connection`` or ``http_401``).
    """

    def __init__(self, message: str, *, status: int | None, error_kind: str) -> None:
        super().__init__(message, status=status, retryable=False)
        self.error_kind = error_kind


class InfrastructureError(MigrateEvalError):
    """The run could not judge a candidate because its endpoint failed too often."""

    exit_code = ExitCode.INFRASTRUCTURE


class HistoryError(UserError):
    """A file of the run history (``reports/history/``) is corrupt or not a history record."""


class DiskFullError(InfrastructureError):
    """A write failed because the disk (or the quota) is full at ``path``."""

    def __init__(self, path: object, detail: str = "") -> None:
        super().__init__(
            f"disk full at {path}" + (f" ({detail})" if detail else "")
            + ": free some space (or point the option at another disk) and run the same "
            "command again; the answers already in the response cache are kept"
        )  # fmt: skip
        self.path = path


class CacheCorruptError(UserError):
    """The response cache file has damaged pages (or is not a SQLite file at all)."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(
            f"{path}: the response cache is damaged ({detail}). To recover: "
            f"`migrate-eval cache export --cache {path} saved.jsonl` writes out what is still "
            f"readable; then move {path} aside and `migrate-eval cache import saved.jsonl` "
            "into a new file (or run with --cache NEW_FILE and start a new cache)"
        )
        self.path = path


class OfflineCacheMiss(VendorError):
    """``--offline`` was given and the cache holds no answer for a request."""

    def __init__(self) -> None:
        super().__init__("offline: no cached response for this request", retryable=False)


class ServerUnavailableError(UserError):
    """A managed model server (``vllm:``, ``sglang:``, ``llama-server:``) cannot be started on
    this machine: its package or binary is missing, or it needs a GPU and there is none. The
    message names what is missing."""


class ServerError(InfrastructureError):
    """A managed model server never became healthy, or died while the run was using it.

    The answers received before are cached; the message names the server's log file.
    """

    def __init__(self, message: str, *, log: object = None) -> None:
        super().__init__(message + (f" (server log: {log})" if log is not None else ""))
        self.log = log
