"""The command line: a thin Click layer over :mod:`migrate_eval.pipeline`.

Every option can also be set through an environment variable named ``MIGRATE_EVAL_<OPTION>``.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from migrate_eval import __version__
from migrate_eval.errors import ExitCode, MigrateEvalError

EXIT_CODES_HELP = """\b
Exit codes:
  0  every candidate is ready (the gate passes)
  1  a candidate is not ready (the gate fails)
  2  usage or configuration error (bad option, suite, log file, missing extra)
  3  infrastructure failure (too many vendor errors to judge a candidate)
  70 internal error (a bug in migrate-eval)
"""


def _fail(err: BaseException) -> NoReturn:
    if isinstance(err, MigrateEvalError):
        click.echo(f"error: {err}", err=True)
        sys.exit(int(err.exit_code))
    traceback.print_exception(err)
    click.echo(
        "internal error: this is a bug in migrate-eval; please report it with the traceback above",
        err=True,
    )
    sys.exit(int(ExitCode.INTERNAL))


class _Progress:
    """Per-candidate progress on stderr: done/total, errors, rate, ETA (throttled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.last = 0.0
        self.state: dict[str, tuple[int, int, int]] = {}

    def __call__(self, event: Any) -> None:
        if not self.enabled:
            return
        self.state[event.candidate] = (event.done, event.total, event.errors)
        now = time.monotonic()
        finished = all(d >= t for d, t, _ in self.state.values())
        if now - self.last < 0.5 and not finished:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        parts = []
        for name, (done, total, errors) in self.state.items():
            rate = done / elapsed
            eta = (total - done) / rate if rate > 0 else float("inf")
            eta_s = f"{eta:.0f}s" if eta != float("inf") else "?"
            parts.append(f"{name} {done}/{total} err {errors} {rate:.0f}/s eta {eta_s}")
        click.echo("\r" + " | ".join(parts) + ("\n" if finished else ""), err=True, nl=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="migrate-eval")
def main() -> None:
    """Can you move your OpenAI-powered features to another model? Evidence from your own traffic.

    Start with `migrate-eval run`: it runs the shipped demo suite offline and writes a report.
    """


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("suite", required=False, type=click.Path(path_type=Path))
@click.option(
    "--logs",
    "logs",
    multiple=True,
    type=click.Path(path_type=Path),
    envvar="MIGRATE_EVAL_LOGS",
    help="Log file, folder or glob (repeatable). Without SUITE: runs with automatic tasks and metrics.",
)
@click.option(
    "--candidate",
    "candidates",
    multiple=True,
    metavar="SPEC",
    envvar="MIGRATE_EVAL_CANDIDATE",
    help="[NAME=]PROVIDER:MODEL[@BASE_URL], e.g. llama=openai-compatible:meta-llama/Llama-3.1-8B-Instruct@http://127.0.0.1:8000/v1 (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    envvar="MIGRATE_EVAL_OUT",
    help="Run folder (default: reports/<suite>/<timestamp>/).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 4096),
    envvar="MIGRATE_EVAL_CONCURRENCY",
    help="Requests in flight per candidate (overrides the suite).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    envvar="MIGRATE_EVAL_LIMIT",
    help="At most this many exchanges per task (seeded sample).",
)
@click.option(
    "--offline",
    is_flag=True,
    envvar="MIGRATE_EVAL_OFFLINE",
    help="Serve candidates from the cache only; never call the network.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    envvar="MIGRATE_EVAL_CACHE",
    help="Response cache (SQLite; default reports/.cache/replay.sqlite).",
)
@click.option(
    "--strict",
    is_flag=True,
    envvar="MIGRATE_EVAL_STRICT",
    help="A bad log line is an error (exit 2) instead of being skipped and counted.",
)
@click.option(
    "--quiet", "-q", is_flag=True, envvar="MIGRATE_EVAL_QUIET", help="No progress display."
)
def run(
    suite: Path | None,
    logs: tuple[Path, ...],
    candidates: tuple[str, ...],
    out: Path | None,
    concurrency: int | None,
    limit: int | None,
    offline: bool,
    cache: Path | None,
    strict: bool,
    quiet: bool,
) -> None:
    """Replay logged traffic against candidates, score parity, decide, report.

    With no SUITE and no --logs it runs the shipped demo suite, fully offline.
    """
    from migrate_eval.pipeline import run as run_pipeline

    outcome = _guard(
        lambda: run_pipeline(
            suite,
            logs=logs,
            candidates=candidates,
            out=out,
            offline=offline,
            concurrency=concurrency,
            limit=limit,
            cache=cache,
            strict=strict,
            progress=_Progress(not quiet and sys.stderr.isatty()),
            command=_command_line(),
        )
    )
    summary = (outcome.run_dir / "summary.md").read_text(encoding="utf-8")
    click.echo(summary)
    click.echo(f"Report: {outcome.run_dir / 'report.html'}")
    sys.exit(int(outcome.exit_code))


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
def report(run_dir: Path) -> None:
    """Re-render a run folder's report.html, results.json and summary.md (no network)."""
    from migrate_eval.pipeline import rerender

    results = _guard(lambda: rerender(run_dir))
    click.echo(f"Report: {run_dir / 'report.html'}")
    sys.exit(results.exit_code)


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BaseException as err:
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        _fail(err)


def _command_line() -> str:
    import shlex

    return "migrate-eval " + " ".join(shlex.quote(a) for a in sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
