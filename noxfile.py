"""Contributor sessions: `nox -s tests lint typecheck demo bench`."""

from __future__ import annotations

import nox

# virtualenv (a nox dependency) seeds pip itself: unlike `python -m venv`, it works on Debian's
# and Ubuntu's system Python without the python3-venv package.
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


def _install_test(session: nox.Session) -> None:
    # pip's own output (each package as it is collected and installed), not minutes of silence.
    # torch first and pinned: where pip can see the CPU build (CI's find-links, or
    # PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu) it takes 2.13.0+cpu and nothing
    # the extras need pulls a CUDA build; PyPI alone has only the CUDA build for Linux x86_64.
    session.install("torch==2.13.0", silent=False)
    session.install("-e", ".[test]", silent=False)


@nox.session
def tests(session: nox.Session) -> None:
    """Install with test extras and run the whole test suite (offline)."""
    _install_test(session)
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def ray(session: nox.Session) -> None:
    """The Ray executor's tests (`pytest -m ray`): a local 2-CPU Ray cluster, loopback vendors."""
    _install_test(session)
    session.install("-e", ".[test,ray]", silent=False)
    session.run("pytest", "-m", "ray", *(session.posargs or ["-q"]))


@nox.session(name="bench_ray")
def bench_ray(session: nox.Session) -> None:
    """20,000 exchanges against a 100 ms loopback vendor, concurrency 256: --executor ray with
    2 workers vs the local executor vs the bare N*L/C limit, and the driver CPU Ray adds."""
    _install_test(session)
    session.install("-e", ".[test,ray]", silent=False)
    session.run("python", "benchmarks/bench_ray.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and the import contracts of docs/architecture.md."""
    session.install("ruff>=0.6", "import-linter>=2.1")
    session.run("ruff", "check", "migrate_eval", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "migrate_eval")
    # the package is analysed from the source tree: no install needed
    session.run("lint-imports", env={"PYTHONPATH": str(session.invoked_from)})


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    _install_test(session)
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
    _install_test(session)
    session.run("python", "benchmarks/bench_replay.py", *session.posargs)
    session.run("python", "benchmarks/bench_metrics.py")
    session.run("python", "benchmarks/bench_semantic.py")
    session.run("python", "benchmarks/bench_faults.py")


@nox.session
def screenshot(session: nox.Session) -> None:
    """docs/screenshots/report-first-screen.png: the demo report's first screen (needs Chromium)."""
    if session.venv_backend != "none":  # `nox -s screenshot --no-venv` uses the current env
        session.install("-e", ".")
    tmp = session.create_tmp()
    session.run(
        "migrate-eval", "run", "-q", "--out", f"{tmp}/demo-run", "--cache", f"{tmp}/cache.sqlite",
        success_codes=[0, 1],
    )  # fmt: skip
    session.run(
        "python", "-c",
        "import sys; from migrate_eval.report.chromium import screenshot; "
        "screenshot(sys.argv[1], sys.argv[2])",
        f"{tmp}/demo-run/report.html", "docs/screenshots/report-first-screen.png",
    )  # fmt: skip


@nox.session(name="bench_ingest")
def bench_ingest(session: nox.Session) -> None:
    """Ingest throughput and peak RSS vs a bare JSONL loop (default 1,000,000 lines, ~1.3 GB;
    `nox -s bench_ingest -- --n 100000` for a quick run)."""
    _install_test(session)
    session.run("python", "benchmarks/bench_ingest.py", *session.posargs)


@nox.session(name="bench_traffic")
def bench_traffic(session: nox.Session) -> None:
    """`migrate-eval profile` and `run` over a large log: time and peak RSS vs a bare JSONL loop
    (1,000,000 lines; `nox -s bench_traffic -- --n 100000` for a quick run); the run's read
    stage alone: `nox -s bench_traffic -- --read-stage 10000 50000`."""
    _install_test(session)
    session.run("python", "benchmarks/bench_traffic.py", *session.posargs)


@nox.session(name="bench_scale")
def bench_scale(session: nox.Session) -> None:
    """The whole `migrate-eval run` at 10k and 100k exchanges against an instant loopback vendor:
    wall, per exchange, peak RSS, ratio to a bare replay loop (BENCH_SCALE_1M=1 adds 1,000,000;
    `nox -s bench_scale -- --n 10000` for a quick run; docs/performance.md)."""
    _install_test(session)
    session.run("python", "benchmarks/bench_scale.py", *session.posargs)


@nox.session(name="bench_phases")
def bench_phases(session: nox.Session) -> None:
    """Where a whole run's time goes outside its replay, timed inside the process: start-up and
    imports, before the first request, after the last answer, the process's end (10k exchanges,
    100 ms vendor, 3 runs; `-- --delay 0` for an instant vendor)."""
    _install_test(session)
    session.run("python", "benchmarks/bench_phases.py", *session.posargs)


@nox.session(name="bench_ab")
def bench_ab(session: nox.Session) -> None:
    """This checkout against another (`nox -s bench_ab -- /path/to/other [--demo]`), their runs
    interleaved: 10k exchanges against a 100 ms vendor, or the cached demo run."""
    _install_test(session)
    session.run("python", "benchmarks/bench_ab.py", *session.posargs)


@nox.session(name="bench_report")
def bench_report(session: nox.Session) -> None:
    """Report at scale: 100,000 exchanges x 3 candidates, size and time to interactive."""
    _install_test(session)
    session.run("python", "benchmarks/bench_report.py", *session.posargs)


@nox.session(name="bench_fixed")
def bench_fixed(session: nox.Session) -> None:
    """A run's fixed cost: the cached demo run vs a bare interpreter start, `--help` and
    `import migrate_eval.api` (best and median of 5; `-- --check` fails at 1 s or more)."""
    _install_test(session)
    session.run("python", "benchmarks/bench_fixed.py", *session.posargs)


@nox.session(name="bench_faults")
def bench_faults(session: nox.Session) -> None:
    """Soak: a flaky vendor (429/5xx, truncated bodies, hung requests) against a clean one on
    loopback: wall-time ratio (target <= 2x), re-sent requests, peak RSS (bounded: 10 min)."""
    _install_test(session)
    session.run("python", "benchmarks/bench_faults.py", *session.posargs)


@nox.session(name="bench_run_memory")
def bench_run_memory(session: nox.Session) -> None:
    """Peak RSS of `migrate-eval run` (and `profile`) at 10,000 and 50,000 exchanges against a
    loopback server (`-- --n 1000 5000` for a quick run)."""
    _install_test(session)
    session.run("python", "benchmarks/bench_run_memory.py", *session.posargs)


@nox.session(name="bench_bigline")
def bench_bigline(session: nox.Session) -> None:
    """Peak RSS and time of reading a log with one 50 MB line (skipped over the line limit;
    `-- --accept` to raise the limit and parse it)."""
    _install_test(session)
    session.run("python", "benchmarks/bench_bigline.py", *session.posargs)
    session.run("python", "benchmarks/bench_pii_profile.py", "--n", "30000")


def _install_llama_cpp(session: nox.Session) -> None:
    # llama-cpp-python has no wheel on PyPI: pip builds llama.cpp from source (CPU, several
    # minutes on 2 cores). Its multimodal library (mtmd) is left out: replay never loads it.
    _install_test(session)
    session.install(
        "-e", ".[test,llama-cpp]", "gguf", silent=False,
        env={"CMAKE_ARGS": "-DLLAVA_BUILD=OFF"},
    )  # fmt: skip


@nox.session(name="llama_cpp")
def llama_cpp(session: nox.Session) -> None:
    """The llama-cpp provider's tests (marker llama_cpp): a tiny GGUF model written by the
    tests, replayed through llama-cpp-python (installed here: it builds from source)."""
    _install_llama_cpp(session)
    # llama.cpp's OpenMP threads spin between tokens by default: on a busy 2-core machine
    # that made these tests several times slower
    session.run(
        "pytest", "-m", "llama_cpp", *(session.posargs or ["-q", "tests"]),
        env={"OMP_WAIT_POLICY": "passive"},
    )  # fmt: skip


@nox.session(name="bench_llama_cpp")
def bench_llama_cpp(session: nox.Session) -> None:
    """Tokens/s of the llama-cpp candidate through the replay engine vs llama-cpp-python called
    bare on the same tiny GGUF model, in the same process: overhead ratio (target <= 1.10)."""
    _install_llama_cpp(session)
    session.run("python", "benchmarks/bench_llama_cpp.py", *session.posargs)
