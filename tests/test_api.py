"""The Python API: every command is a function, and a finished run loads back as a typed object
with pandas accessors (no vendor is called)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import migrate_eval
from migrate_eval.core.errors import UserError


@pytest.fixture
def run_dir(demo_run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(demo_run_dir, copy)
    return copy


def test_load_run_gives_typed_results_and_frames(run_dir: Path) -> None:
    run = migrate_eval.load_run(run_dir)
    assert isinstance(run, migrate_eval.Run) and isinstance(run.results, migrate_eval.Results)
    scores = run.scores_df()
    assert {"exchange_id", "task", "candidate", "status", "parity"} <= set(scores.columns)
    assert len(scores) == len(run.responses)
    tasks = run.tasks_df()
    assert list(tasks.columns[:4]) == ["candidate", "task", "verdict", "parity"]
    assert len(tasks) == sum(len(c.tasks) for c in run.results.candidates)
    assert set(tasks["verdict"]) <= {
        "ready",
        "ready_with_caveats",
        "needs_evidence",
        "not_ready",
        "cannot_judge",
    }
    exchanges = run.exchanges_df()
    assert len(exchanges) == len(run.exchanges) and exchanges["task"].notna().all()
    assert pd.api.types.is_string_dtype(exchanges["exchange_id"])
    # the accessors hand out copies: changing one does not change the run
    scores.loc[:, "parity"] = 0.0
    assert (run.scores_df()["parity"].fillna(1) != 0.0).any()


def test_load_run_names_what_is_wrong(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(UserError, match="not a run folder"):
        migrate_eval.load_run(tmp_path / "nothing")
    shutil.rmtree(run_dir / "responses")  # a run folder of the earlier layout
    (run_dir / "responses.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"responses.jsonl:1: not a valid record"):
        migrate_eval.load_run(run_dir)
    (run_dir / "responses.jsonl").unlink()
    with pytest.raises(UserError, match=r"no responses/ or responses.jsonl"):
        migrate_eval.load_run(run_dir)


def test_gate_and_compare_as_functions(run_dir: Path, tmp_path: Path) -> None:
    report = migrate_eval.gate(run_dir, min_parity=0.0, out=tmp_path / "regated")
    assert (tmp_path / "regated" / "results.json").is_file()
    assert report.results.thresholds["min_parity"] == 0.0
    comparison = migrate_eval.compare(run_dir, run_dir)
    assert not comparison.regressions


def test_cache_functions_round_trip(demo_run_dir: Path, tmp_path: Path) -> None:
    from migrate_eval.core.paths import demo_suite_path

    recordings = demo_suite_path().parent / "recordings" / "qwen2.5-72b.jsonl"
    cache = tmp_path / "cache.sqlite"
    assert migrate_eval.cache_import(recordings, cache=cache) > 0
    stats = migrate_eval.cache_stats(cache)
    assert stats["identities"] and stats["bytes"] > 0
    n = migrate_eval.cache_export(
        tmp_path / "out.jsonl", candidate="Qwen/Qwen2.5-72B-Instruct-Turbo", cache=cache
    )
    assert n == sum(row["answers"] for row in stats["identities"])
    with pytest.raises(UserError, match="no response cache"):
        migrate_eval.cache_stats(tmp_path / "missing.sqlite")


def test_provider_matrix_as_a_function() -> None:
    matrix = migrate_eval.provider_matrix(["openai-compatible", "anthropic"])
    assert set(matrix["providers"]) == {"openai-compatible", "anthropic"}
    assert matrix["providers"]["openai-compatible"]["tools"] == "yes"
