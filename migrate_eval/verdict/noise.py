"""The noise floor: how much the baseline (OpenAI) disagrees with itself, per task.

From a baseline re-run (each re-run answer scored against the logged one) or, without one,
from identical requests logged more than once (:func:`migrate_eval.plan.traffic.duplicate_pairs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, Field

from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.request import request_key
from migrate_eval.core.results import (
    TaskInfo,
)
from migrate_eval.plan.traffic import duplicate_pairs


class TaskNoise(BaseModel):
    """The baseline's agreement with itself on one task."""

    mean: float | None
    n: int = Field(description="pairs of baseline answers scored")
    parities: dict[str, float] = Field(
        default_factory=dict, description="per exchange id: mean parity of its pairs"
    )


class NoiseFloor(BaseModel):
    """How much the baseline (OpenAI) disagrees with itself, per task and overall."""

    source: Literal["baseline_replay", "duplicates"]
    tasks: dict[str, TaskNoise]
    overall: float | None
    n: int


def _noise_from_scores(
    scores: pd.DataFrame, source: Literal["baseline_replay", "duplicates"]
) -> NoiseFloor:
    ok = scores[(scores["status"] == "ok") & scores["parity"].notna()]
    tasks: dict[str, TaskNoise] = {}
    for task, group in ok.groupby("task", sort=True):
        per_ex = group.groupby("exchange_id")["parity"].mean()
        tasks[str(task)] = TaskNoise(
            mean=float(group["parity"].mean()),
            n=len(group),
            parities={str(k): float(v) for k, v in per_ex.items()},
        )
    overall = float(ok["parity"].mean()) if len(ok) else None
    return NoiseFloor(source=source, tasks=tasks, overall=overall, n=len(ok))


def noise_floor_from_replays(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
    baseline_replays: Sequence[ReplayResult],
) -> NoiseFloor:
    """The noise floor from the baseline re-run: each re-run answer scored against the logged one.

    ``baseline_replays`` are the baseline's answers (``baseline.jsonl``; several repeats per
    exchange allowed, a ``repeat`` attribute tells them apart). Each is scored with the task's
    metrics exactly like a candidate; failed calls are left out.
    """
    from migrate_eval.score.scoring import score

    rows = [
        r.model_copy(update={"candidate": f"baseline#{getattr(r, 'repeat', 0)}"})
        for r in baseline_replays
    ]
    return _noise_from_scores(score(exchanges, tasks, assignment, rows), "baseline_replay")


def noise_floor_from_pairs(
    pairs: Mapping[str, Sequence[tuple[str, str]]],
    exchanges: Mapping[str, Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
) -> NoiseFloor | None:
    """The noise floor from :func:`duplicate_pairs` (``exchanges`` holds every exchange they
    name, by id): the later answer of each pair scored against the earlier one, with the
    task's metrics; None without pairs."""
    from migrate_eval.score.scoring import score

    refs: list[Exchange] = []
    rows: list[ReplayResult] = []
    for task in sorted(pairs):
        for prev, nxt in pairs[task]:
            refs.append(exchanges[prev])
            rows.append(
                ReplayResult(
                    exchange_id=prev,
                    candidate="logged-duplicate",
                    response=exchanges[nxt].response,
                )
            )
    if not rows:
        return None
    return _noise_from_scores(score(refs, tasks, assignment, rows), "duplicates")


def noise_floor_from_duplicates(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
) -> NoiseFloor | None:
    """The noise floor from duplicate requests in the logs, or None when there are none.

    Exchanges whose canonical requests are identical (same model, messages, tools, parameters)
    are duplicates; their logged answers are independent draws from the baseline. Within each
    group (in timestamp order), every answer after the first is scored against the one before
    it, with the task's metrics. All duplicate pairs count, also those whose answers are
    identical: leaving those out would only keep disagreements and bias the floor down. A task
    with more than :data:`MAX_NOISE_PAIRS` pairs is scored on a seeded random sample of that
    many (an unbiased estimate; scoring every pair of a large log took minutes).
    """
    names = {t.name for t in tasks}
    kept = [
        ex
        for ex in exchanges
        if ex.response is not None and ex.error is None and assignment.get(ex.id) in names
    ]
    pairs = duplicate_pairs(
        (ex.id, request_key(ex), ex.timestamp, assignment[ex.id]) for ex in kept
    )
    return noise_floor_from_pairs(pairs, {ex.id: ex for ex in kept}, tasks, assignment)


def noise_floor_for_run(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
    baseline_file: Path | None = None,
    *,
    baseline_replays: Sequence[ReplayResult] | None = None,
    duplicates: tuple[Mapping[str, Sequence[tuple[str, str]]], Mapping[str, Exchange]]
    | None = None,
) -> NoiseFloor | None:
    """The run's noise floor: from the baseline re-run (``baseline_replays``, or
    ``baseline_file``, a ``baseline.jsonl``, when it exists), else from duplicate requests in the
    logs (``duplicates``: the :func:`duplicate_pairs` of the whole traffic and the exchanges
    they name, else those among ``exchanges``), else None (the verdict then uses
    ``min_parity`` alone)."""
    if baseline_replays:
        ids = {e.id for e in exchanges}
        kept = [r for r in baseline_replays if r.exchange_id in ids]
        if kept:
            return noise_floor_from_replays(exchanges, tasks, assignment, kept)
    if baseline_file is not None and baseline_file.is_file():
        from migrate_eval.replay.baseline import read_baseline

        by_id = {e.id for e in exchanges}
        rows = [r for r in read_baseline(baseline_file) if r.exchange_id in by_id]
        if rows:
            return noise_floor_from_replays(exchanges, tasks, assignment, rows)
    if duplicates is not None:
        return noise_floor_from_pairs(duplicates[0], duplicates[1], tasks, assignment)
    return noise_floor_from_duplicates(exchanges, tasks, assignment)
