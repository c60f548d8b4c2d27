"""Where things live: the reports folder, the replay cache, a run folder and its files, the demo.

Every stage that needs a default location asks here, so that ``MIGRATE_EVAL_REPORTS_DIR`` and
``MIGRATE_EVAL_CACHE`` mean the same everywhere.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from migrate_eval.core.errors import ConfigError

DEFAULT_REPORTS_DIR = Path("reports")


RUN_FILES = (
    "suite.json",
    "exchanges",
    "tasks.json",
    "responses",
    "scores.parquet",
    "results.json",
    "summary.md",
    "report.html",
    "junit.xml",
)


def demo_suite_path() -> Path:
    """The shipped demo suite: packaged in wheels, or ``suites/demo`` in a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_demo", here.parent / "suites" / "demo"):
        if (candidate / "suite.yaml").exists():
            return candidate / "suite.yaml"
    raise ConfigError(
        "the demo suite is not installed (expected migrate_eval/_demo or suites/demo)"
    )


def default_run_dir(suite_name: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    root = Path(os.environ.get("MIGRATE_EVAL_REPORTS_DIR", DEFAULT_REPORTS_DIR))
    run_dir = root / suite_name / stamp
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = root / suite_name / f"{stamp}-{n}"
    return run_dir


def default_cache_path() -> Path:
    env = os.environ.get("MIGRATE_EVAL_CACHE")
    return (
        Path(env)
        if env
        else Path(os.environ.get("MIGRATE_EVAL_REPORTS_DIR", DEFAULT_REPORTS_DIR))
        / ".cache"
        / "replay.sqlite"
    )
