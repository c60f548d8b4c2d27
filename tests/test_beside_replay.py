"""The work a local run does on one thread while its replay waits on the vendors (issue 17:
"1.1x at 100 ms"): the run folder's ``exchanges/`` dataset is written there, and a failed run
leaves neither that thread's work nor its folder behind; the interpreter's settings are as
they were (the replay's own are ``replay._runtime``'s)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import migrate_eval
from migrate_eval import api
from migrate_eval.core import run_folder
from migrate_eval.core.run_folder import RunFolder

BESIDE = "migrate-eval beside the replay"


def _demo(tmp_path: Path, name: str) -> migrate_eval.RunOutcome:
    return migrate_eval.run(out=tmp_path / name, cache=tmp_path / "cache" / "cache.sqlite")


def _stage_folders(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("stage-")]


def test_the_exchanges_dataset_is_written_while_the_replay_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: dict[str, str] = {}
    write = run_folder.write_records

    def recorded(folder: Path, name: str, records: Any) -> Path:
        writers[name] = threading.current_thread().name
        return write(folder, name, records)

    monkeypatch.setattr(run_folder, "write_records", recorded)
    before = sys.getswitchinterval()
    outcome = _demo(tmp_path, "run")
    assert sys.getswitchinterval() == before  # the process's settings as they were
    assert writers["exchanges"].startswith(BESIDE)
    assert writers["responses"] == threading.current_thread().name  # after the replay
    written = RunFolder(outcome.run_dir).exchanges()
    assignment = json.loads((outcome.run_dir / "tasks.json").read_text())["assignment"]
    assert [ex.id for ex in written] == list(assignment)
    assert _stage_folders(tmp_path) == []  # moved into the run folder, its folder removed


def test_a_failed_early_write_is_written_again_with_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = _demo(tmp_path, "early")

    def fails(folder: Path, exchanges: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(api, "_stage_exchanges", fails)
    late = _demo(tmp_path, "late")
    assert RunFolder(late.run_dir).exchanges() == RunFolder(early.run_dir).exchanges()
    assert _stage_folders(tmp_path) == []


def test_a_failed_replay_ends_the_early_write_and_removes_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migrate_eval.replay.engine as engine

    before = sys.getswitchinterval()
    started = threading.Event()
    stage = api._stage_exchanges

    def slow_stage(folder: Path, exchanges: Any) -> Path:
        started.set()
        return stage(folder, exchanges)

    def fails(*args: Any, **kwargs: Any) -> Any:
        started.wait(30)  # the write is under way when the replay fails
        raise RuntimeError("the replay failed")

    monkeypatch.setattr(api, "_stage_exchanges", slow_stage)
    monkeypatch.setattr(engine, "replay", fails)
    with pytest.raises(RuntimeError, match="the replay failed"):
        _demo(tmp_path, "run")
    assert sys.getswitchinterval() == before
    assert _stage_folders(tmp_path) == []  # the write ended before its folder was removed
    assert not (tmp_path / "run").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith(BESIDE) and t.is_alive()]


def test_a_run_failing_after_its_replay_waits_for_the_early_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early write may still run when a later stage fails: the stage folder is removed
    after it ends, so it never writes into a folder removed under it (which would leave the
    sample's exchanges behind next to the cache)."""
    import time

    import migrate_eval.verdict.aggregate as aggregate

    release = threading.Event()
    stage = api._stage_exchanges

    def held(folder: Path, exchanges: Any) -> Path:
        release.wait(30)
        time.sleep(0.2)  # ordering only: the failed run's clean-up would go first without the wait
        return stage(folder, exchanges)

    def fails(*args: Any, **kwargs: Any) -> Any:
        release.set()
        raise RuntimeError("the verdict failed")

    monkeypatch.setattr(api, "_stage_exchanges", held)
    monkeypatch.setattr(aggregate, "aggregate", fails)
    with pytest.raises(RuntimeError, match="the verdict failed"):
        _demo(tmp_path, "run")
    assert _stage_folders(tmp_path) == []
    assert not [t for t in threading.enumerate() if t.name.startswith(BESIDE) and t.is_alive()]
