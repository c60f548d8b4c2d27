"""Which exchanges a run replays: deduplicated, then a seeded stratified sample per task.

1. **Deduplication** (``sampling.dedupe``, off by default): exchanges whose requests are identical
   (:func:`request_fingerprint`: the canonical request body without bookkeeping fields) are
   replayed once. The first logged one is kept; the copies are counted per task.
2. **Sample size per task**: ``sampling.limit`` caps every task; ``sampling.ci_width`` asks for
   a confidence interval of that total width on a task's mean parity (or pass rate), and
   :func:`required_sample_size` turns it into ``n`` with the normal approximation and the
   worst-case variance of a value in [0, 1] (``p (1 - p) <= 1/4``), finite-population corrected::

       n0 = z^2 / (4 e^2)          e = ci_width / 2, z = the normal quantile of the confidence
       n  = ceil(n0 / (1 + (n0 - 1) / N))     N = the task's exchanges (after dedupe)

   e.g. ``ci_width: 0.1`` at 95 % needs 385 exchanges from a very large task, 80 from a task
   of 100. With both, the smaller ``n`` wins.
3. **Stratified, seeded sampling**: each task is sampled on its own (a random generator seeded
   with ``seed`` and the task's name), so a task's sample does not change when another task's
   traffic does. The kept exchanges keep their log order.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange
from migrate_eval.core.request import request_fingerprint
from migrate_eval.core.results import SamplingSummary, TaskSampling

if TYPE_CHECKING:
    from migrate_eval.plan.tasks import TaskPlan


def required_sample_size(
    ci_width: float, population: int | None = None, *, confidence: float = 0.95
) -> int:
    """Exchanges needed for a ``confidence`` interval of total width ``ci_width`` on a mean in
    [0, 1] (worst-case variance 1/4), finite-population corrected when ``population`` is given."""
    if not 0 < ci_width <= 1:
        raise ConfigError(f"sampling.ci_width must be in (0, 1], got {ci_width}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    e = ci_width / 2
    n0 = z * z * 0.25 / (e * e)
    if population is None:
        return math.ceil(n0)
    if population <= 0:
        return 0
    n = n0 / (1 + (n0 - 1) / population)
    return min(population, math.ceil(n - 1e-9))


def sample_plan(
    exchanges: Sequence[Exchange],
    plan: TaskPlan,
    *,
    limit: int | None = None,
    seed: int = 0,
    dedupe: bool = False,
    ci_width: float | None = None,
    confidence: float = 0.95,
) -> tuple[list[Exchange], TaskPlan, SamplingSummary]:
    """Deduplicate and sample ``exchanges`` per task of ``plan``; see the module docstring.

    Returns the kept exchanges (log order), the plan restricted to them (task counts updated,
    empty tasks dropped) and a summary.
    """
    fingerprints = {e.id: request_fingerprint(e) for e in exchanges} if dedupe else None
    keep_ids, new_plan, summary = sample_ids(
        [e.id for e in exchanges],
        plan,
        fingerprints=fingerprints,
        limit=limit,
        seed=seed,
        dedupe=dedupe,
        ci_width=ci_width,
        confidence=confidence,
    )
    keep = set(keep_ids)
    return [e for e in exchanges if e.id in keep], new_plan, summary


def sample_ids(
    order: Sequence[str],
    plan: TaskPlan,
    *,
    fingerprints: Mapping[str, Hashable] | None = None,
    limit: int | None = None,
    seed: int = 0,
    dedupe: bool = False,
    ci_width: float | None = None,
    confidence: float = 0.95,
) -> tuple[list[str], TaskPlan, SamplingSummary]:
    """:func:`sample_plan` on exchange ids (``order``: the exchanges' ids in log order), for
    traffic too large to hold: ``fingerprints`` gives each id's request fingerprint (equal
    for identical requests; needed with ``dedupe``). Returns the kept ids in log order."""
    from migrate_eval.plan.tasks import TaskPlan

    if dedupe and fingerprints is None:
        raise ValueError("sample_ids(dedupe=True) needs the fingerprints")
    by_task: dict[str, list[str]] = defaultdict(list)
    for ex_id in order:
        t = plan.assignment.get(ex_id)
        if t is not None:
            by_task[t].append(ex_id)
    keep: set[str] = set()
    stats: list[TaskSampling] = []
    for info in plan.tasks:
        members = by_task.get(info.name, [])
        available = len(members)
        unique = members
        if dedupe:
            assert fingerprints is not None
            seen: set[Hashable] = set()
            unique = []
            for ex_id in members:
                fp = fingerprints[ex_id]
                if fp not in seen:
                    seen.add(fp)
                    unique.append(ex_id)
        target: int | None = limit
        if ci_width is not None:
            need = required_sample_size(ci_width, len(unique), confidence=confidence)
            target = need if target is None else min(target, need)
        if target is None or len(unique) <= target:
            chosen = unique
        else:
            rng = random.Random(f"{seed}:{info.name}")
            chosen = rng.sample(unique, target)
        keep.update(chosen)
        stats.append(
            TaskSampling(
                task=info.name,
                available=available,
                duplicates=available - len(unique),
                unique=len(unique),
                target=target,
                sampled=len(chosen),
            )
        )
    kept = [ex_id for ex_id in order if ex_id in keep]
    del keep
    counts = Counter(plan.assignment[ex_id] for ex_id in kept)
    tasks = [
        t.model_copy(update={"n": counts.get(t.name, 0)}) for t in plan.tasks if counts.get(t.name)
    ]
    new_plan = TaskPlan(
        tasks=tasks,
        # every exchange with a task kept (no limit, nothing deduplicated): the same mapping,
        # not a copy of it (a million entries)
        assignment=(
            plan.assignment
            if len(kept) == len(plan.assignment)
            else {ex_id: plan.assignment[ex_id] for ex_id in kept}
        ),
        rules={k: v for k, v in plan.rules.items() if counts.get(k)},
    )
    summary = SamplingSummary(
        seed=seed,
        dedupe=dedupe,
        limit=limit,
        ci_width=ci_width,
        confidence=confidence,
        available=sum(s.available for s in stats),
        duplicates=sum(s.duplicates for s in stats),
        sampled=len(kept),
        tasks=stats,
    )
    return kept, new_plan, summary


def sample(
    exchanges: Sequence[Exchange], plan: TaskPlan, *, limit: int | None, seed: int = 0
) -> tuple[list[Exchange], TaskPlan]:
    """Keep at most ``limit`` exchanges per task (seeded, order preserved).

    Kept for compatibility: :func:`migrate_eval.plan.sampling.sample_plan` also deduplicates and
    sizes samples from a confidence-interval width.
    """
    kept, new_plan, _ = sample_plan(exchanges, plan, limit=limit, seed=seed)
    return kept, new_plan
