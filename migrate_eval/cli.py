"""The command line: a thin Click layer over :mod:`migrate_eval.api`.

Every option can also be set through an environment variable named ``MIGRATE_EVAL_<OPTION>``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from migrate_eval.core.errors import ExitCode, MigrateEvalError
from migrate_eval.core.version import __version__

#: Every exit code a command may return, with its meaning; each command lists only its own.
EXIT_CODE_MEANINGS: dict[int, str] = {
    0: "every candidate is ready (the gate passes)",
    1: "a candidate is not ready (the gate fails)",
    2: "usage or configuration error (bad option, suite, log file, missing extra)",
    3: "infrastructure failure (too many vendor errors to judge a candidate)",
    4: "needs evidence (similarity alone cannot decide: add a noise floor or a judge)",
    70: "internal error (a bug in migrate-eval)",
    130: "interrupted (Ctrl-C or SIGTERM): answers so far are cached, the same command resumes",
}


def exit_codes_help(*codes: int, ok: str | None = None) -> str:
    """The ``Exit codes:`` epilog of a command: only the codes it can return."""
    lines = ["\b", "Exit codes:"]
    for code in codes:
        meaning = ok if code == 0 and ok is not None else EXIT_CODE_MEANINGS[code]
        lines.append(f"  {code:<2} {meaning}")
    return "\n".join(lines) + "\n"


#: run: the gate's codes, and 130 (Ctrl-C during replay).
RUN_EXIT_CODES = exit_codes_help(0, 1, 2, 3, 4, 70, 130)
#: report / gate: the gate's codes (nothing is replayed, so no 130).
EXIT_CODES_HELP = exit_codes_help(0, 1, 2, 3, 4, 70)
#: commands that judge nothing (profile, init, cache, export).
PLAIN_EXIT_CODES = exit_codes_help(0, 2, 70, ok="done")


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


class _Reading:
    """While the logs are read, before any other progress: ``reading the logs: 45,000
    exchanges, 12 s`` on stderr, redrawn in place on a terminal (every half second), one line
    every :attr:`LINE_EVERY` seconds otherwise. Call it with the count read so far; a
    background thread keeps the time moving between counts; :meth:`stop` clears it."""

    LINE_EVERY = 5.0
    REDRAW_EVERY = 0.5

    def __init__(
        self,
        enabled: bool,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.clock = clock
        self.write = write or (lambda text: click.echo(text, err=True, nl=False))
        self.start = self.last = clock()
        self.count = 0
        self.done = False
        self.drawn = False
        self._thread: Any = None
        self._stop: Any = None

    def __call__(self, count: int) -> None:
        self.count = count
        self.tick()

    def tick(self) -> None:
        if not self.enabled or self.done:
            return
        now = self.clock()
        if now - self.last < (self.REDRAW_EVERY if self.tty else self.LINE_EVERY):
            return
        self.last = now
        counted = f"{self.count:,} exchanges, " if self.count else ""
        text = f"reading the logs: {counted}{now - self.start:.0f} s"
        if self.tty:
            self.write("\r" + text + "\x1b[K")
            self.drawn = True
        else:
            self.write(text + "\n")

    def stop(self) -> None:
        if self.done:
            return
        self.done = True
        if self._stop is not None:
            self._stop.set()
        if self.drawn:
            self.write("\r\x1b[K")

    def __enter__(self) -> _Reading:
        if self.enabled:
            import threading

            self._stop = threading.Event()

            def beat() -> None:
                while not self._stop.wait(0.25):
                    self.tick()

            self._thread = threading.Thread(target=beat, name="reading-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=1.0)


class _Progress:
    """Per-candidate progress on stderr: done/total, cached, errors, live rate, ETA,
    concurrency after 429s, time spent rate-limited (see migrate_eval.replay.progress.ProgressBoard).
    Redrawn in place on a terminal; one line per candidate every 10 s otherwise."""

    def __init__(self, enabled: bool, *, redraw: bool | None = None) -> None:
        from migrate_eval.replay.progress import ProgressBoard

        self.enabled = enabled
        self.start = time.monotonic()
        self.board = ProgressBoard(
            lambda text: click.echo(text, err=True, nl=False),
            redraw=sys.stderr.isatty() if redraw is None else redraw,
        )

    def __call__(self, event: Any) -> None:
        if self.enabled:
            self.board(event)


def _set_max_line_bytes(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--max-line-bytes``: checked now, handed to the readers (and to their worker
    processes) through ``MIGRATE_EVAL_MAX_LINE_BYTES``."""
    if value is None:
        return
    from migrate_eval.core.errors import ConfigError
    from migrate_eval.ingest._jsonl import MAX_LINE_BYTES_ENV, parse_size

    try:
        size = parse_size(value, "--max-line-bytes")
    except ConfigError as e:
        raise click.BadParameter(str(e).split(": ", 1)[1], ctx=ctx, param=param) from None
    os.environ[MAX_LINE_BYTES_ENV] = str(size)


max_line_bytes_option = click.option(
    "--max-line-bytes",
    metavar="SIZE",
    envvar="MIGRATE_EVAL_MAX_LINE_BYTES",
    expose_value=False,
    callback=_set_max_line_bytes,
    help="Longest log line read (default 16M; e.g. 64M): a longer line is skipped and counted "
    "as 'line too long', naming its file and line. Bounds memory per line.",
)


#: The command line's cyclic garbage collector: a young-generation collection every 50,000 new
#: container objects instead of 700. Importing pandas, pydantic models and jsonschema creates
#: hundreds of thousands of long-lived objects, which the default thresholds traversed in ~300
#: collections (two of them full) costing ~0.14 s of the cached demo run's CPU; with these,
#: ~20 young ones (~0.05 s). Cyclic garbage waits for at most 50,000 allocations. Set by
#: :func:`console_main` only: a program calling :mod:`migrate_eval.api` (or :func:`main`, as
#: the tests do) keeps its own.
GC_THRESHOLDS = (50_000, 20, 20)


def console_main() -> None:
    """The ``migrate-eval`` command: :func:`main` in a process whose garbage collector is set
    for it (:data:`GC_THRESHOLDS`). Returns or raises ``SystemExit`` as :func:`main` does; the
    executable (:func:`console_script`) then ends the process."""
    import gc

    from migrate_eval.core.signals import sigterm_interrupts

    gc.set_threshold(*GC_THRESHOLDS)
    # a pod stopped, a CI job cancelled: the command stops as on Ctrl-C, its work folders
    # removed on the way out (the replay stops its own way: ReplayInterrupted)
    with sigterm_interrupts():
        main()


def console_script() -> NoReturn:
    """The ``migrate-eval`` executable and ``python -m migrate_eval``: :func:`console_main`,
    then the process ends at once with the command's exit code.

    Once the command has finished, its threads have ended and the ``atexit`` handlers have
    run, nothing is left for the interpreter to do but tear itself down: clear every module
    and free every object one by one (pandas, Arrow, pydantic models, the run's records),
    ~0.2 s of a cached demo run and ~0.4 s after 10,000 exchanges. :func:`exit_now` skips
    that. The normal exit is kept where it could matter: a command that ended with an
    exception (its traceback), a thread other than a daemon still running, Python's
    development mode (its warnings about unclosed resources come from that teardown), a
    profiler, tracer or coverage tool (it writes its results when the program returns)."""
    try:
        console_main()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            exit_now(e.code or 0)
        raise
    exit_now(0)


def _observed() -> bool:
    """A profiler, tracer or coverage tool watches this process (``python -m cProfile -m
    migrate_eval``, a debugger): it writes its output once the program returns, so the
    process must return."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring: Any = getattr(sys, "monitoring", None)  # Python 3.12+: coverage, debuggers
    return monitoring is not None and any(monitoring.get_tool(i) is not None for i in range(6))


def exit_now(code: int) -> NoReturn:
    """End the process with ``code``, its ``atexit`` handlers run, without the interpreter's
    teardown (see :func:`console_script`); or ``sys.exit(code)`` where that teardown is kept."""
    import atexit
    import threading

    main_thread = threading.main_thread()
    running = [
        t for t in threading.enumerate() if t is not main_thread and t.is_alive() and not t.daemon
    ]
    if running or sys.flags.dev_mode or _observed():
        sys.exit(code)  # the normal exit: it waits for those threads
    atexit._run_exitfuncs()  # what was registered to run at exit (temporary folders...)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe, a replaced stream
            stream.flush()
    os._exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="migrate-eval")
def main() -> None:
    """Can you move your OpenAI-powered features to another model? Evidence from your own traffic.

    Start with `migrate-eval run`: it runs the shipped demo suite offline and writes a report.
    """


@main.command(epilog=RUN_EXIT_CODES)
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
    help="[NAME=]PROVIDER:MODEL[@BASE_URL], e.g. llama=openai-compatible:meta-llama/Llama-3.1-8B-Instruct@http://127.0.0.1:8000/v1 (repeatable; BASE_URL starts with http:// or https://). Needs --logs or SUITE.",
)
@click.option(
    "--candidate-param",
    "candidate_params",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="Set a candidate's request parameter (claude.temperature=0; null removes it), price (claude.price.input_per_mtok=3) or limit (claude.concurrency=8, rpm, tpm, timeout, max_retries, stream, api_key_env) (repeatable).",
)
@click.option(
    "--strict-params",
    is_flag=True,
    default=None,
    envvar="MIGRATE_EVAL_STRICT_PARAMS",
    help="Refuse (as unsupported) requests whose sampling parameters, seed, penalties... a candidate's API has no equivalent for, instead of dropping them and counting them (default: the suite's strict_params).",
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
@max_line_bytes_option
@click.option(
    "--quiet", "-q", is_flag=True, envvar="MIGRATE_EVAL_QUIET", help="No progress display."
)
@click.option(
    "--baseline",
    "baseline_n",
    type=click.IntRange(1),
    envvar="MIGRATE_EVAL_BASELINE",
    help="Re-run N logged requests per free-text task against the logged model to measure its "
    "noise floor (default: 20 when OPENAI_API_KEY is set and the logs hold too few repeats).",
)
@click.option(
    "--no-baseline",
    is_flag=True,
    envvar="MIGRATE_EVAL_NO_BASELINE",
    help="Never re-run the logged model (free-text verdicts may then need evidence).",
)
@click.option(
    "--redact/--no-redact",
    default=None,
    envvar="MIGRATE_EVAL_REDACT",
    help="Replace PII and secrets before anything is sent to a candidate (default: the suite's redaction.enabled). Person names are found by heuristics only unless the suite says names: true (presidio extra).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="Where replay runs: this process (local, the default) or a Ray cluster (ray; the "
    "migrate-eval[ray] extra, docs/scale.md). Default: MIGRATE_EVAL_EXECUTOR, else the suite's "
    "executor.",
)
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    envvar="MIGRATE_EVAL_RAY_ADDRESS",
    help="The Ray cluster of --executor ray: auto, or ray://HOST:10001 (default: RAY_ADDRESS, "
    "else a local cluster started for the run).",
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
    redact: bool | None,
    baseline_n: int | None,
    no_baseline: bool,
    candidate_params: tuple[str, ...],
    strict_params: bool | None,
    executor: str | None,
    ray_address: str | None,
) -> None:
    """Replay logged traffic against candidates, score parity, decide, report.

    With no SUITE and no --logs it runs the shipped demo suite, fully offline.
    """
    from migrate_eval.api import run as run_pipeline

    replay_progress = _Progress(not quiet and sys.stderr.isatty())
    reading = _Reading(not quiet)

    def progress(event: Any) -> None:
        reading.stop()  # the replay's own progress takes over
        replay_progress(event)

    def notify(message: str) -> None:
        reading.stop()
        click.echo(message, err=True)

    with reading:
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
                progress=progress,
                command=_command_line(),
                redact=redact,
                baseline=False if no_baseline else baseline_n,
                notify=None if quiet else notify,
                candidate_params=candidate_params,
                strict_params=strict_params or None,
                on_read=reading,
                executor=executor,
                ray_address=ray_address,
            ),
            asks=True,
        )
    summary = (outcome.run_dir / "summary.md").read_text(encoding="utf-8")
    click.echo(summary)
    click.echo(f"Report: {outcome.run_dir / 'report.html'}")
    red = outcome.results.redaction
    if red is not None and red.enabled and red.names == "heuristic":
        click.echo(
            "warning: person names were redacted by heuristics only (after a title, greeting or "
            "sign-off, a list of common first names, name fields); other names reached the "
            "candidates. For more, set redaction.names: true in the suite (presidio extra).",
            err=True,
        )
    sys.exit(int(outcome.exit_code))


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
def report(run_dir: Path) -> None:
    """Re-render a run folder's report.html, results.json and summary.md (no network)."""
    from migrate_eval.api import rerender

    results = _guard(lambda: rerender(run_dir))
    click.echo(f"Report: {run_dir / 'report.html'}")
    sys.exit(results.exit_code)


@main.command("adapt", epilog=PLAIN_EXIT_CODES)
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--task", "tasks", multiple=True, help="Adapt only this task (repeatable).")
@click.option(
    "--candidate", "candidates", multiple=True, help="Adapt only this candidate (repeatable)."
)
@click.option(
    "--optimiser",
    metavar="SPEC",
    help="[NAME=]PROVIDER:MODEL[@BASE_URL] that proposes the edits (default: the candidate).",
)
@click.option("--budget", type=click.IntRange(1), help="At most this many requests in all.")
@click.option("--proposals", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option(
    "--rounds",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Rounds of proposals; each learns from the failures the last best one leaves.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    help="Response cache (default: the one `run` uses).",
)
@click.option("--offline", is_flag=True, help="Answers from the cache only.")
def adapt_cmd(
    run_dir: Path,
    tasks: tuple[str, ...],
    candidates: tuple[str, ...],
    optimiser: str | None,
    budget: int | None,
    proposals: int,
    rounds: int,
    cache: Path | None,
    offline: bool,
) -> None:
    """Adapt the requests of each not-ready task to its candidate (system prompt, tool
    descriptions, response_format, tool_choice); prove it on held-out exchanges (writes
    RUN_DIR/adaptation.json, re-renders results.json, summary.md and report.html)."""
    from migrate_eval.api import adapt
    from migrate_eval.report.summary import adaptation_lines

    result = _guard(
        lambda: adapt(
            run_dir,
            tasks=tasks or None,
            candidates=candidates or None,
            optimiser=optimiser,
            budget=budget,
            proposals=proposals,
            rounds=rounds,
            cache=cache,
            offline=offline,
            notify=lambda m: click.echo(m, err=True),
        ),
        asks=True,
    )
    click.echo("\n".join(adaptation_lines(result.summary())))
    click.echo(f"Details: {run_dir / 'adaptation.json'}")
    click.echo(f"Report: {run_dir / 'report.html'}")


@main.command("profile", epilog=PLAIN_EXIT_CODES)
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--format", "fmt", default="auto", show_default=True, help="Log format name.")
@click.option(
    "--strict", is_flag=True, help="A bad log line is an error (exit 2) instead of being skipped."
)
@click.option(
    "--skipped",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write every skipped line to this file (JSONL: file, line, field, reason).",
)
@max_line_bytes_option
def profile_cmd(
    logs: tuple[Path, ...], as_json: bool, fmt: str, strict: bool, skipped: Path | None
) -> None:
    """Profile logged traffic: volume, tasks, features, tokens, duplicates, errors."""
    from migrate_eval.api import profile as profile_logs
    from migrate_eval.plan.profile import render_text

    with _Reading(True) as reading:
        prof = _guard(
            lambda: profile_logs(
                list(logs), format=fmt, strict=strict, on_read=reading, skipped_out=skipped
            )
        )
    if as_json:
        click.echo(prof.model_dump_json())
    else:
        click.echo(render_text(prof), nl=False)


@main.command("init", epilog=PLAIN_EXIT_CODES)
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Suite file to write (default: suites/<name>/suite.yaml).",
)
@click.option("--name", help="Suite name (default: the first log's name).")
@click.option(
    "--candidate",
    "candidates",
    multiple=True,
    metavar="SPEC",
    help="[NAME=]PROVIDER:MODEL[@BASE_URL] (repeatable).",
)
@click.option("--format", "fmt", default="auto", show_default=True, help="Log format name.")
@click.option("--strict", is_flag=True, help="A bad log line is an error (exit 2).")
@max_line_bytes_option
@click.option("--force", is_flag=True, help="Overwrite an existing suite file.")
def init_cmd(
    logs: tuple[Path, ...],
    out: Path | None,
    name: str | None,
    candidates: tuple[str, ...],
    fmt: str,
    strict: bool,
    force: bool,
) -> None:
    """Write a suite from logs: the discovered tasks with match rules, metrics and thresholds."""
    from migrate_eval.api import init as init_suite

    path = _guard(
        lambda: init_suite(
            list(logs),
            out=out,
            name=name,
            candidates=list(candidates),
            format=fmt,
            strict=strict,
            force=force,
        )
    )
    click.echo(f"Suite written: {path}")
    click.echo(f"Review it, then: migrate-eval run {path}")


@main.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path, exists=True))
@click.argument("run_b", type=click.Path(path_type=Path, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--markdown", "as_md", is_flag=True, help="Print the comparison as Markdown.")
@click.option("--all", "all_rows", is_flag=True, help="Also list unchanged rows.")
@click.option(
    "--fail-on-regression",
    is_flag=True,
    help="Exit 1 when a verdict got worse or parity dropped significantly.",
)
def compare_cmd(
    run_a: Path, run_b: Path, as_json: bool, as_md: bool, all_rows: bool, fail_on_regression: bool
) -> None:
    """What changed from run A (before) to run B (after): regressions first.

    Per candidate and task: parity in both runs, the difference and whether it is significant
    (when both runs have intervals), verdict changes, new and removed tasks. Exit code 0, or 1
    with --fail-on-regression when something regressed; 2 when a folder is not a run.
    """
    from migrate_eval.report.compare import compare_runs, render_json, render_markdown, render_text

    if as_json and as_md:
        click.echo("error: --json and --markdown are exclusive", err=True)
        sys.exit(int(ExitCode.USAGE))
    comparison = _guard(lambda: compare_runs(run_a, run_b))
    if as_json:
        click.echo(render_json(comparison), nl=False)
    elif as_md:
        click.echo(render_markdown(comparison, all_rows=all_rows), nl=False)
    else:
        click.echo(render_text(comparison, all_rows=all_rows), nl=False)
    sys.exit(int(ExitCode.NOT_READY) if fail_on_regression and comparison.regressions else 0)


@main.command("gate", epilog=EXIT_CODES_HELP)
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--min-parity", type=click.FloatRange(0, 1), help="Minimum parity for every task.")
@click.option(
    "--max-error-rate", type=click.FloatRange(0, 1), help="More vendor errors: cannot judge."
)
@click.option(
    "--allow-caveats/--no-allow-caveats",
    default=None,
    help="Whether 'ready with caveats' passes (default: the run's suite).",
)
@click.option(
    "--tasks",
    "tasks",
    multiple=True,
    metavar="TASK",
    help="Gate only these tasks (repeatable, or comma-separated).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the re-gated results.json, summary.md and junit.xml here.",
)
def gate_cmd(
    run_dir: Path,
    min_parity: float | None,
    max_error_rate: float | None,
    allow_caveats: bool | None,
    tasks: tuple[str, ...],
    out: Path | None,
) -> None:
    """Re-apply a gate to a finished run, from its scores, without calling any vendor.

    Verdicts are re-derived from scores.parquet with the new thresholds; prints the summary
    and the verdicts that changed, and exits with the gate's code.
    """
    from migrate_eval.api import changes_text, write_gate_outputs
    from migrate_eval.report import render_summary_md
    from migrate_eval.verdict.gate import GateOverrides, regate

    names = [t.strip() for item in tasks for t in item.split(",") if t.strip()]
    overrides = GateOverrides(
        min_parity=min_parity,
        max_error_rate=max_error_rate,
        allow_caveats=allow_caveats,
        tasks=names or None,
    )
    report = _guard(lambda: regate(run_dir, overrides, command=_command_line()))
    click.echo(render_summary_md(report.results), nl=False)
    changed = changes_text(report.changes)
    click.echo(
        "\nVerdicts changed by this gate:\n" + changed if changed else "\nNo verdict changed."
    )
    if out is not None:
        _guard(lambda: write_gate_outputs(report, out))
        click.echo(f"Written: {out / 'results.json'}, {out / 'summary.md'}, {out / 'junit.xml'}")
    sys.exit(int(report.exit_code))


#: watch: stable, drift, and the usual failures.
WATCH_EXIT_CODES = (
    exit_codes_help(0, 1, 2, 3, 70, 130)
    .replace(EXIT_CODE_MEANINGS[0], "stable: no drift against the previous watch")
    .replace(EXIT_CODE_MEANINGS[1], "drift: a task changed beyond its noise (see docs/watch.md)")
)


@main.command("watch", epilog=WATCH_EXIT_CODES)
@click.argument("suite", type=click.Path(path_type=Path))
@click.option(
    "--probe",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Requests per task in the fixed, seeded probe.",
)
@click.option(
    "--history",
    "history_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="History folder (default: <reports>/history).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="The watch's run folder."
)
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Response cache file.")
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Drift level after Holm across tasks (default 0.01).",
)
@click.option(
    "--fail-on-fingerprint",
    is_flag=True,
    help="Exit 1 when a model fingerprint changed, even with scores that hold.",
)
def watch_cmd(
    suite: Path,
    probe: int,
    history_dir: Path | None,
    out: Path | None,
    cache: Path | None,
    alpha: float | None,
    fail_on_fingerprint: bool,
) -> None:
    """Re-ask a fixed probe of SUITE's traffic and flag drift against the previous watch."""
    from migrate_eval import api

    o = _guard(
        lambda: api.watch(
            suite,
            probe=probe,
            history=history_dir,
            out=out,
            cache=cache,
            alpha=alpha,
            fail_on_fingerprint=fail_on_fingerprint,
            command=_command_line(),
        ),
        asks=True,
    )
    if o.previous_run_id is None:
        click.echo("first watch of this suite: recorded, nothing to compare with yet")
    for d in o.drifts:
        mdd = o.min_detectable.get((d.candidate, d.task))
        status = "DRIFT" if d.drift else "stable"
        before = "-" if d.mean_before is None else f"{d.mean_before:.3f}"
        after = "-" if d.mean_after is None else f"{d.mean_after:.3f}"
        p = "-" if d.p_adjusted is None else f"{d.p_adjusted:.4f}"
        line = f"{d.candidate} / {d.task}: {status} {before} -> {after} ({d.test}, p_holm={p}, n={d.n_paired})"
        if mdd is not None:
            line += f", detects a drop of {mdd:.0%} at 80% power"
        click.echo(line)
        if d.fingerprint_changed:
            click.echo(f"  fingerprint changed: {d.fingerprint_before} -> {d.fingerprint_after}")
    click.echo(f"run folder: {o.run_dir}")
    sys.exit(o.exit_code)


@main.command("history", epilog=PLAIN_EXIT_CODES)
@click.option(
    "--dir",
    "history_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="History folder (default: <reports>/history).",
)
@click.option("--suite", default=None, help="Only this suite's records.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@click.option(
    "--parquet",
    "parquet_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write every record to one Parquet file.",
)
def history_cmd(
    history_dir: Path | None, suite: str | None, as_json: bool, parquet_out: Path | None
) -> None:
    """List the run history: one record per run (or watch), candidate and task."""
    import json
    import warnings

    from migrate_eval import api

    if as_json and parquet_out is not None:
        click.echo("error: --json and --parquet are exclusive", err=True)
        sys.exit(int(ExitCode.USAGE))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = _guard(lambda: api.history(history_dir, suite=suite))
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    if parquet_out is not None:
        df.to_parquet(parquet_out, index=False)
        click.echo(f"{len(df)} records written to {parquet_out}")
    elif as_json:
        click.echo(json.dumps(json.loads(df.to_json(orient="records")), indent=2))
    elif not len(df):
        click.echo("no history yet")
    else:
        cols = ["created", "kind", "suite", "candidate", "task", "n", "parity", "drift"]
        click.echo(df[cols].to_string(index=False))
    sys.exit(0)


@main.command("providers")
@click.option("--json", "as_json", is_flag=True, help="Print the matrix as one JSON object.")
@click.argument("names", nargs=-1)
def providers_cmd(as_json: bool, names: tuple[str, ...]) -> None:
    """Feature-support matrix: which request features each provider can replay.

    yes = translated natively, emulated = reproduced by another mechanism of the vendor,
    no = a logged request using it becomes an 'unsupported' error row (sampling, seed and
    logprobs: replayed without them and counted, unless --strict-params). Give provider
    names to show only those.
    """
    import json

    from migrate_eval.core.errors import ConfigError
    from migrate_eval.replay.providers import available_providers
    from migrate_eval.replay.providers.matrix import matrix_json, render_table

    selected = list(names) or None
    if selected:
        unknown = [n for n in selected if n not in available_providers()]
        if unknown:
            _fail(ConfigError(f"unknown provider(s): {', '.join(unknown)}"))
    if as_json:
        click.echo(json.dumps(matrix_json(selected), indent=2))
    else:
        click.echo(render_table(selected))


@main.group("cache")
def cache_group() -> None:
    """Inspect and move the response cache (answers already received from candidates).

    Recordings are JSONL, one answer a line: identity (provider, base URL, model), request,
    raw response, latency_ms, ttft_ms. API keys are never in them.
    """


_CACHE_OPTION = click.option(
    "--cache",
    "cache_path",
    type=click.Path(path_type=Path),
    envvar="MIGRATE_EVAL_CACHE",
    help="Response cache (SQLite; default reports/.cache/replay.sqlite).",
)


@cache_group.command("export", epilog=PLAIN_EXIT_CODES)
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--candidate",
    "candidate",
    metavar="NAME",
    help="Only this candidate's answers: a candidate of --suite, else a model name.",
)
@click.option(
    "--suite",
    "suite_path",
    type=click.Path(path_type=Path),
    help="Suite whose candidate --candidate names.",
)
@_CACHE_OPTION
def cache_export(
    path: Path, candidate: str | None, suite_path: Path | None, cache_path: Path | None
) -> None:
    """Write cached answers to a JSONL recordings file (replaced atomically)."""
    from migrate_eval.api import cache_export as export

    count = _guard(lambda: export(path, candidate=candidate, suite=suite_path, cache=cache_path))
    click.echo(f"{count} answers written to {path}")


@cache_group.command("import", epilog=PLAIN_EXIT_CODES)
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@_CACHE_OPTION
def cache_import(path: Path, cache_path: Path | None) -> None:
    """Store the answers of a JSONL recordings file in the cache (all or nothing)."""
    from migrate_eval.api import cache_import as import_

    count = _guard(lambda: import_(path, cache=cache_path))
    click.echo(f"{count} answers imported from {path}")


@cache_group.command("stats", epilog=PLAIN_EXIT_CODES)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_CACHE_OPTION
def cache_stats(as_json: bool, cache_path: Path | None) -> None:
    """How many answers the cache holds, per endpoint and model."""
    import json as _json

    from migrate_eval.api import cache_stats as stats_of

    doc = _guard(lambda: stats_of(cache_path))
    if as_json:
        click.echo(_json.dumps(doc, indent=2))
        return
    rows = doc["identities"]
    total = sum(row["answers"] for row in rows)
    click.echo(f"{doc['cache']}: {total} answers, {doc['bytes'] / 1e6:.1f} MB")
    for row in rows:
        extra = f" repeat {row['repeat']}" if "repeat" in row else ""
        latency = f"{row['mean_latency_ms']:.0f} ms" if row["mean_latency_ms"] else "-"
        click.echo(
            f"  {row['answers']:>8}  {row.get('provider', '?')}  {row.get('model', '?')}{extra}"
            f"  @ {row.get('base_url', '-')}  mean latency {latency}  newest {row['newest']}"
        )


@main.group("export")
def export_group() -> None:
    """Export a suite's logged traffic to other evaluation tools."""


@export_group.command("lm-eval", epilog=PLAIN_EXIT_CODES)
@click.argument("suite", type=click.Path(path_type=Path, exists=True))
@click.argument("out_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--limit", type=click.IntRange(min=1), help="At most this many documents per task.")
def export_lm_eval_cmd(suite: Path, out_dir: Path, limit: int | None) -> None:
    """Write an lm-evaluation-harness task folder (YAML + JSONL) per suite task into OUT_DIR.

    Run the tasks with: lm-eval run --include_path OUT_DIR --tasks <task or group> ...
    """
    from migrate_eval.export import export_lm_eval

    tasks = _guard(lambda: export_lm_eval(suite, out_dir, limit=limit))
    for t in tasks:
        click.echo(f"{t.name}: {t.n} documents -> {t.yaml_path}")
    click.echo(f"lm-eval run --include_path {out_dir} --tasks <task> --model ...")


def _guard(fn: Callable[[], Any], *, asks: bool = False) -> Any:
    """``fn()``, its errors mapped to messages and exit codes; ``asks``: a command that asks
    models (its answers are cached as they come, so running it again resumes)."""
    try:
        return fn()
    except BaseException as err:
        if isinstance(err, KeyboardInterrupt):  # Ctrl-C or SIGTERM outside the replay
            resume = (
                "; the answers received are in the response cache, so the same command resumes"
                if asks
                else ""
            )
            click.echo(f"interrupted: stopped before the end{resume}", err=True)
            sys.exit(int(ExitCode.INTERRUPTED))
        if isinstance(err, SystemExit):
            raise
        _fail(err)


def _command_line() -> str:
    import shlex

    return "migrate-eval " + " ".join(shlex.quote(a) for a in sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    console_script()
