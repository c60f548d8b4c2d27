"""Shared fixtures. Real public data is read from ../shared/data beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
#: Why a test that reads the shared real data skips without it (no path the user lacks).
NO_SHARED_DATA = "real public data folder (shared/data, beside the clone in CI) not present"


def shown(path: Path) -> str:
    """``path`` as ``shared/data/...`` for a skip message, never an absolute path."""
    try:
        return "shared/data/" + path.resolve().relative_to(SHARED_DATA).as_posix()
    except ValueError:
        return path.name


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder; tests that need it skip with a clear message without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(NO_SHARED_DATA)
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs and caches made by tests never land in the repository's reports/ folder."""
    monkeypatch.setenv("MIGRATE_EVAL_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv("MIGRATE_EVAL_CACHE", raising=False)
    # never the real OpenAI: a developer's key must not make tests call it (automatic baseline)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(scope="session")
def demo_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One offline run of the shipped demo suite, shared (read-only) by the tests that need it.

    Its reports folder and embedding cache are its own and start empty: a session fixture may
    be set up before the per-test isolation, and vectors another run left in a shared cache
    were computed in other batches (their last bits differ), which made its results differ
    from a fresh run's (tests/test_ray.py compares them)."""
    import migrate_eval

    root = tmp_path_factory.mktemp("demo-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIGRATE_EVAL_REPORTS_DIR", str(root / "reports"))
        mp.setenv("MIGRATE_EVAL_EMBEDDING_CACHE", str(root / "embeddings.sqlite"))
        mp.delenv("MIGRATE_EVAL_CACHE", raising=False)
        mp.delenv("OPENAI_API_KEY", raising=False)
        mp.setattr("migrate_eval.score.semantic._MEMORY", {})
        return migrate_eval.run(out=root / "run", cache=root / "cache.sqlite").run_dir
