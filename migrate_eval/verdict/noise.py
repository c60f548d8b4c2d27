"""The noise floor: how much the baseline (OpenAI) disagrees with itself, per task.

From a baseline re-run (each re-run answer scored against the logged one) or, without one,
from identical requests logged more than once (:func:`migrate_eval.plan.traffic.duplicate_pairs`).
"""

from __future__ import annotations

import itertools
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
from migrate_eval.core.store import pick, record_ids
from migrate_eval.plan.traffic import duplicate_pairs

#: A baseline re-run with more failed calls than this share is broken (not used).
MAX_BASELINE_FAILURES = 0.5
#: A baseline re-run that agrees with the logs less than the logs' own duplicates do, by more
#: than this, is broken (not used): OpenAI re-asked should look like OpenAI logged.
MAX_DUPLICATE_GAP = 0.2
#: A noise floor within this of the level unrelated answers reach is broken: it cannot tell
#: OpenAI's own answers from answers to other requests.
MIN_LIFT_OVER_CHANCE = 0.05
#: Unrelated pairs scored per task for the chance level, at most.
MAX_CHANCE_PAIRS = 200


class TaskNoise(BaseModel):
    """The baseline's agreement with itself on one task."""

    mean: float | None
    n: int = Field(description="pairs of baseline answers scored")
    parities: dict[str, float] = Field(
        default_factory=dict, description="per exchange id: mean parity of its pairs"
    )
    source: Literal["baseline_replay", "duplicates"] | None = None
    broken: bool = Field(
        default=False, description="measured but not trusted (``problem`` says why): not used"
    )
    problem: str | None = None


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
    attempted = scores.groupby("task").size() if len(scores) else pd.Series(dtype=int)
    for task, group in ok.groupby("task", sort=True):
        per_ex = group.groupby("exchange_id")["parity"].mean()
        tasks[str(task)] = TaskNoise(
            mean=float(group["parity"].mean()),
            n=len(group),
            parities={str(k): float(v) for k, v in per_ex.items()},
            source=source,
        )
    for task, total in zip(attempted.index, attempted.to_numpy(), strict=True):
        entry = tasks.get(str(task))
        n_ok = entry.n if entry is not None else 0
        if source == "baseline_replay" and total and (total - n_ok) / total > MAX_BASELINE_FAILURES:
            tasks[str(task)] = TaskNoise(
                mean=entry.mean if entry is not None else None,
                n=n_ok,
                source=source,
                broken=True,
                problem=f"{total - n_ok} of {total} baseline re-run calls failed",
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


def chance_levels(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Per task, the parity that logged answers reach against UNRELATED logged answers of the
    same task (each exchange's logged answer scored against the next one's in a seeded
    shuffled cycle, at most :data:`MAX_CHANCE_PAIRS` pairs): what an off-topic candidate would
    reach. Judge metrics are left out (they would cost calls); a task with fewer than two logged
    answers, or only judge metrics, has none."""
    import random

    from migrate_eval.score.scoring import score

    by_task: dict[str, list[int]] = {}  # numbers, not exchanges: a large run's are on disk
    for i, ex in enumerate(exchanges):
        task = assignment.get(ex.id)
        if task is not None and ex.response is not None and ex.error is None:
            by_task.setdefault(task, []).append(i)
    orders: list[tuple[TaskInfo, list[int]]] = []
    for info in tasks:
        metrics = [m for m in info.metrics if not m.startswith("judge_")]
        group = by_task.get(info.name, [])
        if len(group) < 2 or not metrics:
            continue
        order = list(group)
        random.Random(f"chance:{seed}:{info.name}").shuffle(order)
        orders.append((info.model_copy(update={"metrics": metrics}), order[:MAX_CHANCE_PAIRS]))
    picked = pick(exchanges, [i for _, order in orders for i in order])
    refs: list[Exchange] = []
    rows: list[ReplayResult] = []
    scored_tasks = [info for info, _ in orders]
    for _, order in orders:
        for a, b in itertools.pairwise([*order, order[0]]):
            refs.append(picked[a])
            rows.append(
                ReplayResult(
                    exchange_id=picked[a].id, candidate="unrelated", response=picked[b].response
                )
            )
    if not rows:
        return {}
    frame = score(refs, scored_tasks, assignment, rows)
    ok = frame[(frame["status"] == "ok") & frame["parity"].notna()]
    return {str(task): float(g["parity"].mean()) for task, g in ok.groupby("task")}


def guard(
    floor: NoiseFloor | None,
    chance: Mapping[str, float],
    duplicates: NoiseFloor | None = None,
) -> NoiseFloor | None:
    """Check a baseline re-run's floor against what the logs themselves show: per task, a floor
    no higher than unrelated answers reach (plus :data:`MIN_LIFT_OVER_CHANCE`), or far below the
    logs' own duplicates (:data:`MAX_DUPLICATE_GAP`), is broken: reported, not used; the
    duplicates' floor stands in where there is one."""
    if floor is None:
        return duplicates
    tasks = dict(floor.tasks)
    for name, entry in floor.tasks.items():
        dup = duplicates.tasks.get(name) if duplicates is not None else None
        problem = entry.problem
        if not entry.broken and entry.mean is not None:
            level = chance.get(name)
            if level is not None and entry.mean < level + MIN_LIFT_OVER_CHANCE:
                problem = (
                    f"the baseline re-run agrees with the logged answers {entry.mean:.3f}, no more "
                    f"than unrelated answers do ({level:.3f})"
                )
            elif (
                floor.source == "baseline_replay"
                and dup is not None
                and dup.mean is not None
                and dup.n >= 10
                and entry.mean < dup.mean - MAX_DUPLICATE_GAP
            ):
                problem = (
                    f"the baseline re-run agrees with the logged answers {entry.mean:.3f}, far "
                    f"less than the logs' own duplicate requests do ({dup.mean:.3f}, n={dup.n})"
                )
        if problem is None:
            continue
        if (
            dup is not None
            and dup.mean is not None
            and not dup.broken
            and floor.source != "duplicates"
        ):
            tasks[name] = dup.model_copy(
                update={"problem": f"baseline re-run not used: {problem}; duplicates used"}
            )
        else:
            tasks[name] = entry.model_copy(update={"broken": True, "problem": problem})
    used = [e for e in tasks.values() if not e.broken and e.mean is not None]
    n = sum(e.n for e in used)
    overall = sum((e.mean or 0.0) * e.n for e in used) / n if n else None
    return NoiseFloor(source=floor.source, tasks=tasks, overall=overall, n=n)


def noise_floor_for_run(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
    baseline_file: Path | None = None,
    *,
    baseline_replays: Sequence[ReplayResult] | None = None,
    duplicates: tuple[Mapping[str, Sequence[tuple[str, str]]], Mapping[str, Exchange]]
    | None = None,
    chance: Mapping[str, float] | None = None,
) -> NoiseFloor | None:
    """The run's noise floor: from the baseline re-run (``baseline_replays``, or
    ``baseline_file``, a ``baseline.jsonl``, when it exists), else from duplicate requests in the
    logs (``duplicates``: the :func:`duplicate_pairs` of the whole traffic and the exchanges
    they name, else those among ``exchanges``), else None (the verdict then uses
    ``min_parity`` alone). Every floor is checked by :func:`guard` (with ``chance``, the
    :func:`chance_levels` of the run)."""
    measured = _measure(exchanges, tasks, assignment, baseline_file, baseline_replays)
    dups = (
        noise_floor_from_pairs(duplicates[0], duplicates[1], tasks, assignment)
        if duplicates is not None
        else noise_floor_from_duplicates(exchanges, tasks, assignment)
    )
    return guard(measured if measured is not None else dups, chance or {}, dups)


def _measure(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
    baseline_file: Path | None,
    baseline_replays: Sequence[ReplayResult] | None,
) -> NoiseFloor | None:
    if baseline_replays:
        ids = set(record_ids(exchanges))
        kept = [r for r in baseline_replays if r.exchange_id in ids]
        if kept:
            return noise_floor_from_replays(exchanges, tasks, assignment, kept)
    if baseline_file is not None and baseline_file.is_file():
        from migrate_eval.replay.baseline import read_baseline

        by_id = set(record_ids(exchanges))
        rows = [r for r in read_baseline(baseline_file) if r.exchange_id in by_id]
        if rows:
            return noise_floor_from_replays(exchanges, tasks, assignment, rows)
    return None
