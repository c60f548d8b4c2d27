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

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from migrate_eval.core.errors import ConfigError, ExitCode
from migrate_eval.core.records import StrictModel
from migrate_eval.core.results import Results, TaskInfo
from migrate_eval.core.run_folder import RunFolder
from migrate_eval.core.suite import Gate, Suite, Thresholds

if TYPE_CHECKING:
    import pandas as pd


class GateOverrides(StrictModel):
    """What the command line may change; None keeps the run's own setting."""

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


def _load(
    run_dir: Path,
) -> tuple[Results, Suite, list[TaskInfo], dict[str, str], pd.DataFrame]:
    folder = RunFolder(run_dir)
    before = folder.results()
    suite = folder.suite()
    tasks, assignment = folder.tasks()
    return before, suite, tasks, assignment, folder.scores()


def _evidence(
    run_dir: Path, tasks: Sequence[TaskInfo], assignment: dict[str, str], seed: int
) -> dict[str, Any]:
    """What the verdict weighs beside the scores, measured again from what the run folder
    keeps: the noise floor (the baseline re-run, ``baseline.jsonl``, when there is one, else
    duplicate requests among the run's exchanges), the chance levels and the clusters."""
    from migrate_eval.verdict.aggregate import clusters_of
    from migrate_eval.verdict.noise import chance_levels, noise_floor_for_run

    folder = RunFolder(run_dir)
    if not folder.has_records("exchanges"):
        return {"noise_floor": None}
    exchanges = folder.exchanges()
    chance = chance_levels(exchanges, tasks, assignment, seed=seed)
    return {
        "noise_floor": noise_floor_for_run(
            exchanges, tasks, assignment, run_dir / "baseline.jsonl", chance=chance
        ),
        "chance": chance,
        "clusters": clusters_of(exchanges),
    }


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
        judge_price=getattr(judge, "price", None),
        **_evidence(d, tasks, assignment, suite.sampling.seed),
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


__all__ = [
    "GateOverrides",
    "GateReport",
    "VerdictChange",
    "regate",
]
