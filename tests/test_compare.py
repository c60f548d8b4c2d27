"""`migrate-eval compare RUN_A RUN_B`: what changed between two runs, regressions first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.core.errors import UserError
from migrate_eval.core.results import Interval, Results, TaskInfo
from migrate_eval.report import write_results_json
from migrate_eval.report.compare import (
    compare_results,
    compare_runs,
    difference_test,
    render_markdown,
    render_text,
)
from tests.report.conftest import CANDIDATES, TASKS, build_run


def _pair() -> tuple[Results, Results]:
    a = build_run().results
    b = a.model_copy(deep=True)
    good = b.candidates[0]
    # task 0: a clear, significant drop and a worse verdict
    t0 = good.tasks[0]
    t0.parity = Interval(mean=0.5, ci_low=0.45, ci_high=0.55)
    t0.verdict = "not_ready"
    # task 2: a small change inside the noise
    t2 = good.tasks[2]
    mean = float(t2.parity.mean or 0) + 0.001
    t2.parity = Interval(mean=mean, ci_low=mean - 0.05, ci_high=mean + 0.05)
    # a task only B has, and one only A has
    b.tasks = [
        *b.tasks,
        TaskInfo(
            name="new-task",
            output="free_text",
            metrics=["chrf"],
            min_parity=0.8,
            n=5,
            source="suite",
        ),
    ]
    extra = t2.model_copy(update={"task": "new-task"})
    good.tasks.append(extra)
    removed = a.candidates[0].tasks[1].model_copy(update={"task": "old-task"})
    a.candidates[0].tasks.append(removed)
    a.tasks = [
        *a.tasks,
        TaskInfo(
            name="old-task",
            output="free_text",
            metrics=["chrf"],
            min_parity=0.8,
            n=5,
            source="suite",
        ),
    ]
    return a, b


def test_regressions_first_with_significance() -> None:
    a, b = _pair()
    c = compare_results(a, b)
    first = c.deltas[0]
    assert (first.candidate, first.task, first.change) == (CANDIDATES[0], TASKS[0], "regressed")
    assert first.significant is True and first.p_value is not None and first.p_value < 0.05
    assert first.delta is not None and first.delta < 0
    assert (first.verdict_a, first.verdict_b) == ("ready_with_caveats", "not_ready")
    small = next(d for d in c.deltas if d.task == TASKS[2] and d.candidate == CANDIDATES[0])
    assert small.change == "unchanged" and small.significant is False
    assert c.new_tasks == ["new-task"] and c.removed_tasks == ["old-task"]
    assert {d.change for d in c.deltas if d.task == "new-task"} == {"new"}
    assert {d.change for d in c.deltas if d.task == "old-task"} == {"removed"}
    assert [d for d in c.regressions] == [first]


def test_difference_test() -> None:
    a = Interval(mean=0.9, ci_low=0.88, ci_high=0.92)
    same = difference_test(a, a, 0.95)
    assert same[1] is False and same[0] == pytest.approx(1.0)
    p, sig = difference_test(a, Interval(mean=0.8, ci_low=0.78, ci_high=0.82), 0.95)
    assert sig is True and p is not None and p < 1e-6
    assert difference_test(a, Interval(mean=0.8, ci_low=None, ci_high=None), 0.95) == (None, None)


def test_text_and_markdown_render_regressions_first_and_escape() -> None:
    a, b = _pair()
    c = compare_results(a, b, name_a="runs/a", name_b="runs/b")
    text = render_text(c)
    lines = text.splitlines()
    assert lines[0].startswith("compare runs/a -> runs/b: 1 regression(s)")
    assert lines[2].startswith("regressed") and TASKS[0] in lines[2]
    assert "new tasks: new-task" in text and "removed tasks: old-task" in text
    md = render_markdown(c)
    assert md.startswith("# migrate-eval compare: 1 regression(s)")
    assert "<script>" not in md  # the hostile task name is escaped
    assert "&lt;script&gt;" in md or TASKS[1] not in md


def test_identical_runs_have_no_changes() -> None:
    a = build_run().results
    c = compare_results(a, a)
    assert not c.regressions and all(d.change == "unchanged" for d in c.deltas)
    assert "no change in any verdict" in render_text(c)


def _write(tmp_path: Path, name: str, results: Results) -> Path:
    d = tmp_path / name
    write_results_json(results, d / "results.json")
    return d


def test_cli_compare(tmp_path: Path) -> None:
    a, b = _pair()
    da, db = _write(tmp_path, "a", a), _write(tmp_path, "b", b)
    runner = CliRunner()
    res = runner.invoke(main, ["compare", str(da), str(db)])
    assert res.exit_code == 0, res.output
    assert "regressed" in res.output.splitlines()[2]
    res = runner.invoke(main, ["compare", str(da), str(db), "--json"])
    data = json.loads(res.output)
    assert data["deltas"][0]["change"] == "regressed" and data["new_tasks"] == ["new-task"]
    res = runner.invoke(main, ["compare", str(da), str(db), "--markdown"])
    assert res.output.startswith("# migrate-eval compare")
    res = runner.invoke(main, ["compare", str(da), str(db), "--fail-on-regression"])
    assert res.exit_code == 1
    res = runner.invoke(main, ["compare", str(da), str(da), "--fail-on-regression"])
    assert res.exit_code == 0
    res = runner.invoke(main, ["compare", str(da), str(tmp_path)])
    assert res.exit_code == 2 and "not a run folder" in res.output
    with pytest.raises(UserError):
        compare_runs(da, tmp_path)
