"""``migrate-eval gate RUN_DIR``: re-apply a gate to a finished run, without calling any vendor.

The verdicts are re-derived from the run's per-exchange scores (``scores.parquet``) with the
new thresholds, by the same statistics as the run itself (:func:`migrate_eval.verdict.aggregate.aggregate`
and :func:`migrate_eval.verdict.aggregate.gate_outcome`), so a team can ask "would this run pass at a
minimum parity of 0.9?" or gate only the tasks a pull request touches.

Exit codes are the run's: 0 every candidate the gate reads is ready, 1 a candidate is not
ready, 2 usage error (not a run folder, an unknown task, a bad threshold), 3 a candidate
cannot be judged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from migrate_eval.core.errors import ConfigError, ExitCode, UserError
from migrate_eval.core.results import Results, TaskInfo
from migrate_eval.core.suite import Gate, Suite, Thresholds


class GateOverrides(BaseModel):
    """What the command line may change; None keeps the run's own setting."""

    model_config = ConfigDict(extra="forbid")

    min_parity: float | None = Field(default=None, ge=0, le=1)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)
    allow_caveats: bool | None = None
    tasks: list[str] | None = None


@dataclass
class VerdictChange:
    candidate: str
    task: str | None  # None: the candidate's overall verdict
    before: str
    after: str


@dataclass
class GateReport:
    """The re-gated results, what changed, and the exit code."""

    results: Results
    before: Results
    exit_code: ExitCode
    changes: list[VerdictChange] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path.parent}: not a complete run folder (no {path.name})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON: {e}") from None


def _load(
    run_dir: Path,
) -> tuple[Results, Suite, list[TaskInfo], dict[str, str], pd.DataFrame]:
    if not (run_dir / "results.json").is_file():
        raise UserError(f"{run_dir}: not a run folder (no results.json)")
    try:
        before = Results.model_validate_json((run_dir / "results.json").read_text("utf-8"))
    except ValidationError as e:
        raise UserError(f"{run_dir / 'results.json'}: not a valid results file: {e}") from None
    try:
        suite = Suite.model_validate(_read_json(run_dir / "suite.json"))
    except ValidationError as e:
        raise UserError(f"{run_dir / 'suite.json'}: not a valid suite: {e}") from None
    suite.base_dir = run_dir
    tasks_doc = _read_json(run_dir / "tasks.json")
    raw_tasks = tasks_doc.get("tasks") if isinstance(tasks_doc, dict) else None
    assignment = tasks_doc.get("assignment") if isinstance(tasks_doc, dict) else None
    if not isinstance(raw_tasks, list):
        raise UserError(f"{run_dir / 'tasks.json'}: no task list")
    try:
        tasks = [TaskInfo.model_validate(t) for t in raw_tasks]
    except ValidationError as e:
        raise UserError(f"{run_dir / 'tasks.json'}: invalid task: {e}") from None
    if not (run_dir / "scores.parquet").is_file():
        raise UserError(f"{run_dir}: not a complete run folder (no scores.parquet)")
    scores = pd.read_parquet(run_dir / "scores.parquet")
    return before, suite, tasks, dict(assignment or {}), scores


def _noise_floor(run_dir: Path, tasks: Sequence[TaskInfo], assignment: dict[str, str]) -> Any:
    """The run's noise floor, measured again from what the run folder keeps: the baseline
    re-run (``baseline.jsonl``) when there is one, else duplicate requests among the run's
    exchanges. None when neither exists."""
    from migrate_eval.core.records import Exchange
    from migrate_eval.verdict.noise import noise_floor_for_run

    path = run_dir / "exchanges.jsonl"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        exchanges = [Exchange.model_validate_json(line) for line in fh if line.strip()]
    return noise_floor_for_run(exchanges, tasks, assignment, run_dir / "baseline.jsonl")


def regate(
    run_dir: str | os.PathLike[str],
    overrides: GateOverrides | None = None,
    *,
    command: str | None = None,
) -> GateReport:
    """Re-derive the verdicts of a finished run with new thresholds and gate settings."""
    from migrate_eval.verdict.aggregate import aggregate, gate_outcome

    d = Path(run_dir)
    ov = overrides or GateOverrides()
    before, suite, tasks, assignment, scores = _load(d)
    thresholds: Thresholds = suite.thresholds
    updates: dict[str, Any] = {}
    if ov.min_parity is not None:
        updates["min_parity"] = ov.min_parity
        tasks = [t.model_copy(update={"min_parity": ov.min_parity}) for t in tasks]
    if ov.max_error_rate is not None:
        updates["max_error_rate"] = ov.max_error_rate
    if updates:
        thresholds = thresholds.model_copy(update=updates)
    gate: Gate = suite.gate
    gate_updates: dict[str, Any] = {}
    if ov.allow_caveats is not None:
        gate_updates["allow_caveats"] = ov.allow_caveats
    if ov.tasks:
        names = {t.name for t in tasks}
        unknown = [t for t in ov.tasks if t not in names]
        if unknown:
            raise ConfigError(
                f"--tasks names unknown task(s) {', '.join(map(repr, unknown))}; "
                f"the run's tasks are: {', '.join(sorted(names)) or '(none)'}"
            )
        gate_updates["tasks"] = list(dict.fromkeys(ov.tasks))
    if gate_updates:
        gate = gate.model_copy(update=gate_updates)

    judge = getattr(suite, "judge", None)
    candidates = aggregate(
        scores,
        tasks,
        suite.candidates,
        thresholds,
        gate,
        noise_floor=_noise_floor(d, tasks, assignment),
        judge_price=getattr(judge, "price", None),
    )
    outcome, code = gate_outcome(candidates, gate)
    # keep what the run measured that thresholds do not change (cost projections and the like)
    old = {c.name: c for c in before.candidates}
    for c in candidates:
        prev = old.get(c.name)
        if prev is None:
            continue
        for name in type(c.cost).model_fields:
            if getattr(c.cost, name) is None and getattr(prev.cost, name) is not None:
                setattr(c.cost, name, getattr(prev.cost, name))
        for name in type(c).model_fields:
            if getattr(c, name) is None and getattr(prev, name) is not None:
                setattr(c, name, getattr(prev, name))
    results = before.model_copy(
        update={
            "thresholds": thresholds.model_dump(mode="json"),
            "tasks": tasks,
            "candidates": candidates,
            "gate": outcome,
            "exit_code": int(code),
            "command": command or before.command,
        }
    )
    return GateReport(
        results=results, before=before, exit_code=code, changes=_changes(before, results)
    )


def _changes(before: Results, after: Results) -> list[VerdictChange]:
    out: list[VerdictChange] = []
    old = {c.name: c for c in before.candidates}
    for c in after.candidates:
        prev = old.get(c.name)
        if prev is None:
            continue
        if prev.verdict != c.verdict:
            out.append(VerdictChange(c.name, None, prev.verdict, c.verdict))
        prev_tasks = {t.task: t for t in prev.tasks}
        for t in c.tasks:
            pt = prev_tasks.get(t.task)
            if pt is not None and pt.verdict != t.verdict:
                out.append(VerdictChange(c.name, t.task, pt.verdict, t.verdict))
    return out


def write_gate_outputs(report: GateReport, out_dir: str | os.PathLike[str]) -> None:
    """Write the re-gated ``results.json``, ``summary.md`` and ``junit.xml`` into ``out_dir``."""
    from migrate_eval.report import write_junit_xml, write_results_json, write_summary_md

    d = Path(out_dir)
    write_results_json(report.results, d / "results.json")
    write_summary_md(report.results, d / "summary.md")
    write_junit_xml(report.results, d / "junit.xml")


def changes_text(changes: Sequence[VerdictChange]) -> str:
    """One line per verdict that the new gate changed (empty when none did)."""
    from migrate_eval.report import verdict_label

    lines = []
    for ch in changes:
        where = ch.candidate if ch.task is None else f"{ch.candidate} / {ch.task}"
        lines.append(f"{where}: {verdict_label(ch.before)} -> {verdict_label(ch.after)}")
    return "\n".join(lines)


__all__ = [
    "GateOverrides",
    "GateReport",
    "VerdictChange",
    "changes_text",
    "regate",
    "write_gate_outputs",
]
