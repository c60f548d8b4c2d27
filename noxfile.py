"""Contributor sessions: `nox -s tests lint typecheck demo bench`."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True



@nox.session
def tests(session: nox.Session) -> None:
    """Install with test extras and run the whole test suite (offline)."""
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "migrate_eval", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "migrate_eval")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """Run the shipped demo suite offline and print where the report is."""
    session.install("-e", ".")
    session.run("migrate-eval", "run", *session.posargs, success_codes=[0, 1])


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: figures printed as ratios against a bare baseline run on the same machine."""
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/bench_replay.py", *session.posargs)
    session.run("python", "benchmarks/bench_metrics.py")
