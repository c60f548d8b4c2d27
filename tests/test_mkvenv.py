"""tools/mkvenv.py: the quick start's installer also brings the embedding model's weights."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mkvenv() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkvenv", ROOT / "tools" / "mkvenv.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["mkvenv"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-e", "."], True),  # the README's quick start
        ([".[test]"], True),
        (["migrate-eval"], True),
        (["migrate_eval[openai]>=0.5"], True),
        (["nox"], False),  # CI's first step installs nox only
        ([], False),
    ],
)
def test_weights_follow_an_install_of_migrate_eval(args: list[str], expected: bool) -> None:
    assert _mkvenv().installs_migrate_eval(args) is expected


def test_the_weights_are_installed_without_their_dependencies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mkvenv = _mkvenv()
    calls: list[list[str]] = []

    class Done:
        returncode = 0

    def run(cmd: list[object], check: bool = False) -> Done:
        calls.append([str(c) for c in cmd])
        return Done()

    monkeypatch.setattr(mkvenv, "has_pip", lambda python: True)
    monkeypatch.setattr(mkvenv.subprocess, "run", run)
    monkeypatch.delenv("MIGRATE_EVAL_NO_WEIGHTS", raising=False)
    assert mkvenv.main([str(tmp_path), "-e", "."]) == 0
    assert calls[0][-3:] == ["install", "-e", "."]
    assert "--no-deps" in calls[1] and calls[1][-1] == mkvenv.WEIGHTS

    calls.clear()
    monkeypatch.setenv("MIGRATE_EVAL_NO_WEIGHTS", "1")
    assert mkvenv.main([str(tmp_path), "-e", "."]) == 0
    assert len(calls) == 1
