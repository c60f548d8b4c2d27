"""The baseline re-run: the logged OpenAI model asked the same requests again (the noise floor's
best evidence), written to the run folder's ``baseline.jsonl``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from migrate_eval.core.errors import (
    MigrateEvalError,
)
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.store import pick
from migrate_eval.core.suite import BaselineSpec, CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import ProgressEvent, replay_rows

#: Request fields that are tied to the logging OpenAI account or that the engine controls.


BASELINE_FILE = "baseline.jsonl"


class BaselineResult(ReplayResult):
    """One answer of the baseline re-run: a :class:`ReplayResult` and its repeat index."""

    repeat: int = 0


def baseline_spec(
    exchanges: Sequence[Exchange], spec: CandidateSpec | None = None
) -> CandidateSpec:
    """The baseline candidate: ``spec`` if given, else the logs' most used model via ``openai``."""
    if spec is not None:
        return spec
    counts: dict[str, int] = {}
    for ex in exchanges:
        model = ex.model
        if isinstance(model, str) and model:
            counts[model] = counts.get(model, 0) + 1
    if not counts:
        raise MigrateEvalError("the logs name no model to re-run as the baseline")
    model = max(counts, key=lambda m: counts[m])
    return CandidateSpec(name="baseline", provider="openai", model=model)


def replay_baseline(
    exchanges: Sequence[Exchange],
    spec: CandidateSpec,
    *,
    cache: ResponseCache,
    repeats: int = 2,
    offline: bool = False,
    concurrency: int | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    backoff_base: float = 0.5,
    interruptible: bool = True,
) -> list[BaselineResult]:
    """Re-run ``exchanges`` (a sample) ``repeats`` times against the logged model itself.

    This measures the baseline's run-to-run variation (the noise floor): the logged answer
    plus ``repeats`` fresh answers per exchange. Repeat 0 shares the cache with a candidate
    of the same identity; repeats 1, 2... add ``"repeat": n`` to the cache identity, so they
    are real new calls the first time and served from the cache when the run is resumed.
    The results are not a candidate: the verdict never sees them.

    Returns ``len(exchanges) * repeats`` rows, exchange order then repeat order, each with
    ``candidate = spec.name`` and its ``repeat``. :func:`write_baseline` stores them.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    specs = [spec] * repeats
    rows = asyncio.run(
        replay_rows(
            exchanges,
            specs,
            list(range(repeats)),
            cache=cache,
            offline=offline,
            concurrency=concurrency,
            progress=progress,
            backoff_base=backoff_base,
            interruptible=interruptible,
        )
    )
    return [BaselineResult(**row.model_dump(), repeat=i % repeats) for i, row in enumerate(rows)]


def write_baseline(path: str | Path, results: Sequence[BaselineResult]) -> None:
    """Write the baseline re-run as JSONL: the run folder's ``baseline.jsonl``.

    One line per (exchange, repeat): the :class:`~migrate_eval.core.records.ReplayResult` fields
    (``exchange_id``, ``candidate``, ``response`` - a normalised
    :class:`~migrate_eval.core.records.Response` -, ``error``, ``error_kind``, ``status``,
    ``attempts``, ``cached``, ``latency_ms``; absent when null) plus ``repeat`` (0-based).
    Compare each ``response`` with the exchange's logged response (``exchanges/``) and
    with the other repeats of the same ``exchange_id`` to measure the noise floor.
    """
    with Path(path).open("w", encoding="utf-8") as f:
        for r in results:
            f.write(r.model_dump_json(exclude_none=True))
            f.write("\n")


def read_baseline(path: str | Path) -> list[BaselineResult]:
    """Read a ``baseline.jsonl`` written by :func:`write_baseline`."""
    return [
        BaselineResult.model_validate_json(line)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def run_baseline(
    exchanges: Sequence[Exchange],
    config: BaselineSpec,
    *,
    cache: ResponseCache,
    offline: bool = False,
    concurrency: int | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> list[BaselineResult]:
    """The suite's ``baseline:`` re-run: a seeded sample of ``config.sample`` exchanges,
    ``config.repeats`` times, against ``config.candidate`` (default: :func:`baseline_spec`).
    """
    if len(exchanges) > config.sample:  # numbers first: a large run's exchanges are on disk
        picked = random.Random(config.seed).sample(range(len(exchanges)), config.sample)
        chosen = list(pick(exchanges, picked).values())
    else:
        chosen = list(exchanges)
    spec = baseline_spec(chosen, config.candidate)
    return replay_baseline(
        chosen,
        spec,
        cache=cache,
        repeats=config.repeats,
        offline=offline,
        concurrency=concurrency,
        progress=progress,
    )
