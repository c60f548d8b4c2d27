"""`migrate-eval gate RUN_DIR`: verdicts re-derived from a finished run's scores, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate_eval.api import write_gate_outputs
from migrate_eval.cli import main
from migrate_eval.core.errors import ConfigError, ExitCode, UserError
from migrate_eval.report import read_results_json
from migrate_eval.verdict.gate import GateOverrides, regate

pytestmark = pytest.mark.slow  # the shared demo run takes a few seconds


def _verdicts(results_json: Path) -> dict[tuple[str, str], str]:
    data = json.loads(results_json.read_text(encoding="utf-8"))
    return {(c["name"], t["task"]): t["verdict"] for c in data["candidates"] for t in c["tasks"]}


def test_regate_without_overrides_reproduces_the_run(demo_run_dir: Path) -> None:
    report = regate(demo_run_dir)
    before = read_results_json(demo_run_dir / "results.json")
    assert report.changes == []
    assert report.results.gate == before.gate
    assert int(report.exit_code) == before.exit_code == 1  # the demo: one candidate not ready
    assert [c.verdict for c in report.results.candidates] == [c.verdict for c in before.candidates]


def test_lenient_thresholds_pass_and_strict_ones_fail(demo_run_dir: Path) -> None:
    lenient = regate(
        demo_run_dir, GateOverrides(min_parity=0.0, max_error_rate=1.0, allow_caveats=True)
    )
    assert lenient.exit_code == ExitCode.READY and lenient.results.gate == "pass"
    assert lenient.results.thresholds["min_parity"] == 0.0
    assert all(t.min_parity == 0.0 for t in lenient.results.tasks)
    assert any(ch.after == "ready" and ch.before == "not_ready" for ch in lenient.changes)

    strict = regate(demo_run_dir, GateOverrides(min_parity=1.0))
    assert strict.exit_code == ExitCode.NOT_READY
    assert all(c.verdict == "not_ready" for c in strict.results.candidates)


def test_gate_only_some_tasks(demo_run_dir: Path) -> None:
    before = read_results_json(demo_run_dir / "results.json")
    bad = next(c for c in before.candidates if c.verdict == "not_ready")
    ready_tasks = [t.task for t in bad.tasks if t.verdict in ("ready", "ready_with_caveats")]
    assert ready_tasks, "the demo's not-ready candidate has a ready task"
    report = regate(demo_run_dir, GateOverrides(tasks=ready_tasks, allow_caveats=True))
    cand = next(c for c in report.results.candidates if c.name == bad.name)
    assert cand.verdict in ("ready", "ready_with_caveats")
    with pytest.raises(ConfigError, match="unknown task"):
        regate(demo_run_dir, GateOverrides(tasks=["no-such-task"]))


def test_no_allow_caveats_fails_on_caveats(demo_run_dir: Path) -> None:
    loose = regate(demo_run_dir, GateOverrides(min_parity=0.0, max_error_rate=1.0))
    has_caveats = any(c.verdict == "ready_with_caveats" for c in loose.results.candidates)
    report = regate(
        demo_run_dir, GateOverrides(min_parity=0.0, max_error_rate=1.0, allow_caveats=False)
    )
    if has_caveats:
        assert report.exit_code == ExitCode.NOT_READY
    else:
        assert report.exit_code == ExitCode.READY


def test_outputs_written_and_run_untouched(demo_run_dir: Path, tmp_path: Path) -> None:
    original = (demo_run_dir / "results.json").read_bytes()
    report = regate(demo_run_dir, GateOverrides(min_parity=0.0, max_error_rate=1.0))
    write_gate_outputs(report, tmp_path / "out")
    assert (demo_run_dir / "results.json").read_bytes() == original
    for name in ("results.json", "summary.md", "junit.xml"):
        assert (tmp_path / "out" / name).is_file()
    assert read_results_json(tmp_path / "out" / "results.json").gate == report.results.gate


def test_cli_exit_codes(demo_run_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["gate", str(demo_run_dir)])
    assert res.exit_code == 1, res.output
    assert res.output.startswith("# migrate-eval: gate FAIL")
    res = runner.invoke(
        main,
        [
            "gate",
            str(demo_run_dir),
            "--min-parity",
            "0",
            "--max-error-rate",
            "1",
            "--allow-caveats",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Verdicts changed by this gate" in res.output
    res = runner.invoke(main, ["gate", str(demo_run_dir), "--tasks", "nope"])
    assert res.exit_code == 2 and "unknown task" in res.output
    res = runner.invoke(main, ["gate", str(demo_run_dir), "--min-parity", "1.5"])
    assert res.exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(main, ["gate", str(empty)])
    assert res.exit_code == 2 and "not a run folder" in res.output


def test_cannot_judge_exits_3(demo_run_dir: Path, tmp_path: Path) -> None:
    import pandas as pd

    run = tmp_path / "run"
    shutil.copytree(demo_run_dir, run)
    scores = pd.read_parquet(run / "scores.parquet")
    first = scores["candidate"].iloc[0]
    mask = scores["candidate"] == first
    scores.loc[mask, "status"] = "error"
    scores.loc[mask, "error"] = "HTTP 503"
    scores.loc[mask, "parity"] = float("nan")
    scores.to_parquet(run / "scores.parquet", index=False)
    report = regate(run)
    assert report.exit_code == ExitCode.INFRASTRUCTURE and report.results.gate == "error"
    res = CliRunner().invoke(main, ["gate", str(run)])
    assert res.exit_code == 3


def test_incomplete_run_folder_is_a_usage_error(demo_run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(demo_run_dir, run)
    (run / "suite.json").unlink()
    with pytest.raises(UserError, match=r"suite\.json"):
        regate(run)
