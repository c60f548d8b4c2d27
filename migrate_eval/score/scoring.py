"""Scoring: every (exchange, candidate) pair gets its task's metrics and a parity.

:func:`score` returns one row per replay result with the columns of
:data:`migrate_eval.core.results.SCORE_COLUMNS` plus one float column per metric used by any task
(NaN where a metric does not apply or the row was not scored). The text columns of few
distinct values (``task``, ``candidate``, ``status``, ``error`` and the two label columns) are
categoricals, their categories in text order (a byte a row; ``scores.parquet`` stores them as
text: :func:`migrate_eval.core.run_folder.write_scores`). ``status`` is:

* ``ok``: the candidate answered and the exchange has a logged answer; ``parity`` is the mean of
  the task's metrics that apply (not None), NaN when none applies;
* ``error``: the candidate call failed; ``error`` holds ``"<error_kind>: <message>"``;
* ``unsupported``: the candidate cannot express a feature of the request (``error_kind``
  ``unsupported``); ``error`` holds ``"unsupported: <message>"``;
* ``no_reference``: the candidate answered but the exchange has no logged answer to compare with.

Judge metrics (:mod:`migrate_eval.score.judge`) are validated on planted controls first: each
task's ``judge_controls`` is set (in place) to how the judge did, and a judge metric whose
judge failed them is NaN on the task's rows, with the note ``metric <name>:
judge_failed_controls: <why>``.

A metric that raises does not stop scoring: its value is NaN and the row's ``error`` notes
``metric <name>: <ExceptionType>: <message>`` (notes are joined with ``"; "``); the other metrics
still make up the parity. A metric that returns something other than None or a number in
[0, 1] is treated the same way.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.results import SCORE_COLUMNS, TaskInfo
from migrate_eval.core.store import SpilledRecords, pick, record_ids
from migrate_eval.score.registry import MetricContext, MetricFn, MetricInfo, get_metric
from migrate_eval.score.text import answer_text, normalize_label

NAN = math.nan

#: Extra columns of the scores frame: the normalised logged and candidate labels of
#: classification tasks ("" elsewhere), read by the statistics (Cohen's kappa, confusion matrix).
REFERENCE_LABEL = "reference_label"
CANDIDATE_LABEL = "candidate_label"
#: Extra columns: tokens the LLM judge spent on the row (0 without a judge metric).
JUDGE_PROMPT_TOKENS = "judge_prompt_tokens"
JUDGE_COMPLETION_TOKENS = "judge_completion_tokens"

#: Extra column: 1 when the candidate's answer matches the exchange's gold label (normalised),
#: 0 when not, NaN without a gold label or an answer (read by the label agreement statistics).
GOLD_AGREE = "gold_agree"

#: Status values of the scores frame.
STATUSES = ("ok", "error", "unsupported", "no_reference")
#: Statuses that mean the candidate did not produce a usable answer.
FAILED_STATUSES = ("error", "unsupported")

_KIND_PREFIX = re.compile(r"^([a-z][a-z0-9_]*): ")


def format_error(kind: str | None, message: str | None) -> str:
    """The ``error`` text of a failed row: ``"<kind>: <message>"`` (kind ``error`` when unknown)."""
    kind = kind or "error"
    message = (message or "").strip() or "no response"
    if message.startswith(f"{kind}:"):
        return message
    return f"{kind}: {message}"


def error_kind_of(text: str | None) -> str:
    """The error kind of a failed row's ``error`` text (see :func:`format_error`); ``other`` if none."""
    if not text:
        return "other"
    m = _KIND_PREFIX.match(text)
    return m.group(1) if m else "other"


def _check_value(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, Real):
        v = float(value)
        if 0.0 <= v <= 1.0:
            return v
    raise ValueError(f"returned {value!r}, expected a number in [0, 1] or None")


def metric_columns(tasks: Iterable[TaskInfo]) -> list[str]:
    """The metric columns a scores frame has for these tasks: each metric once, in task order."""
    seen: dict[str, None] = {}
    for t in tasks:
        for m in t.metrics:
            seen.setdefault(m, None)
    return list(seen)


def score(
    exchanges: Iterable[Exchange] | Mapping[str, Exchange],
    tasks: Iterable[TaskInfo] | Mapping[str, TaskInfo],
    assignment: Mapping[str, str],
    replays: Iterable[ReplayResult],
) -> pd.DataFrame:
    """Score every replay result against its exchange's logged answer (see the module docstring).

    ``assignment`` maps exchange id to task name; replay results of exchanges it does not list
    are left out. Unknown metric names raise :class:`ConfigError` before anything is scored; a
    replay result for an exchange that is not given, or an assignment to a task that is not
    given, raises ``ValueError``.
    """
    if isinstance(exchanges, Mapping):
        ex_by_id = dict(exchanges)
    elif isinstance(exchanges, SpilledRecords):  # a large run's, on disk: those replayed only
        replays = list(replays)  # a few (a baseline's, the chance pairs')
        wanted = {r.exchange_id for r in replays}
        numbers = [i for i, ex_id in enumerate(record_ids(exchanges)) if ex_id in wanted]
        ex_by_id = {ex.id: ex for ex in pick(exchanges, numbers).values()}
    else:
        ex_by_id = {e.id: e for e in exchanges}
    task_by_name = dict(tasks) if isinstance(tasks, Mapping) else {t.name: t for t in tasks}

    names = metric_columns(task_by_name.values())
    clash = [m for m in names if m in SCORE_COLUMNS]
    if clash:
        raise ConfigError(
            f"metric name(s) {', '.join(clash)} clash with score columns; rename the metric"
        )
    infos = [get_metric(m) for m in names]
    column_of = {m: i for i, m in enumerate(names)}
    plan: dict[str, list[tuple[int, MetricInfo]]] = {
        t.name: [(column_of[m], infos[column_of[m]]) for m in dict.fromkeys(t.metrics)]
        for t in task_by_name.values()
    }

    # The cyclic garbage collector is paused while the rows are built: scoring allocates many
    # short-lived objects but no reference cycles, and with a large run in memory (every exchange
    # and response) each full collection it would trigger walks the whole heap.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _score_rows(ex_by_id, task_by_name, assignment, replays, names, infos, plan)
    finally:
        if gc_was_enabled:
            gc.enable()


#: Exchanges a chunk of :func:`score_chunks` scores.
SCORE_CHUNK = 5_000


def score_chunks(
    exchanges: Sequence[Exchange],
    tasks: Iterable[TaskInfo],
    assignment: Mapping[str, str],
    replays: Sequence[ReplayResult],
    candidates: int,
    *,
    chunk: int | None = None,
) -> pd.DataFrame:
    """:func:`score` of a replay too large to hold (a spilled run's exchanges and answers,
    read back in order): ``chunk`` exchanges (with their ``candidates`` answers each, as the
    replay returns them) at a time, the frames joined. Metrics with a batch hook (embeddings,
    a judge) get a chunk's pairs at a time."""
    task_list = list(tasks)
    chunk = SCORE_CHUNK if chunk is None else chunk
    frames: list[pd.DataFrame] = []
    answers = iter(replays)
    part: list[Exchange] = []
    rows: list[ReplayResult] = []

    def flush() -> None:
        if part:
            frames.append(score(part, task_list, assignment, rows))
            part.clear()
            rows.clear()

    for ex in exchanges:
        part.append(ex)
        for _ in range(candidates):
            rows.append(next(answers))
        if len(part) >= chunk:
            flush()
    flush()
    if not frames:
        return score([], task_list, assignment, [])
    return _joined(frames)


def _labels(values: Sequence[str]) -> pd.Categorical:
    """A text column of few distinct values (task, candidate, status, notes, labels) as a
    categorical: a byte a row instead of a string's offset and bytes, categories in text order
    (so sorting and grouping on it order rows as on the texts)."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), sort=True)
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype="str"))


def _same_types(a: pd.Series, b: pd.Series) -> bool:
    """Whether two frames' dtypes are the same, categoricals alike whatever their categories
    (:func:`_joined` unites those)."""
    return len(a) == len(b) and all(
        x == y or (isinstance(x, pd.CategoricalDtype) and isinstance(y, pd.CategoricalDtype))
        for x, y in zip(a, b, strict=True)
    )


def _joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(frames, ignore_index=True)``, emptying ``frames`` as it goes. When they have
    the same columns and types, each chunk is first cut into its columns (a NumPy column
    copied out of the chunk's 2-D block, which then goes), then the whole is joined a column
    at a time, each column's pieces let go once joined: the chunks and the whole are never
    both held (``pd.concat`` holds them both: twice the scores' memory at a million
    exchanges)."""
    from pandas.api.types import union_categoricals

    first = frames[0]
    columns, dtypes = list(first.columns), first.dtypes
    if len(frames) == 1 or any(
        list(f.columns) != columns or not _same_types(f.dtypes, dtypes) for f in frames
    ):
        joined = pd.concat(frames, ignore_index=True)
        frames.clear()
        return joined
    del first
    dense = {n for n, t in dtypes.items() if isinstance(t, np.dtype) and t.kind != "O"}
    labels = {n for n, t in dtypes.items() if isinstance(t, pd.CategoricalDtype)}
    pieces: dict[str, list[Any]] = {name: [] for name in columns}
    while frames:
        chunk = frames.pop(0)
        for name in columns:
            column = chunk[name]
            pieces[name].append(
                column.to_numpy(copy=True) if name in dense else column.reset_index(drop=True)
            )
        del chunk, column  # the chunk's blocks go now
    whole: dict[str, pd.Series] = {}
    for name in columns:
        parts = pieces.pop(name)
        if name in dense:
            whole[name] = pd.Series(np.concatenate(parts), copy=False)
        elif name in labels:  # the chunks' categories united, in text order
            whole[name] = pd.Series(union_categoricals(parts, sort_categories=True), copy=False)
        else:
            whole[name] = pd.concat(parts, ignore_index=True)
        del parts
    return pd.DataFrame(whole, copy=False)


_Row = tuple[ReplayResult, TaskInfo, str, list[str], MetricContext | None]


def _score_rows(
    ex_by_id: dict[str, Exchange],
    task_by_name: dict[str, TaskInfo],
    assignment: Mapping[str, str],
    replays: Iterable[ReplayResult],
    names: list[str],
    infos: list[MetricInfo],
    plan: dict[str, list[tuple[int, MetricInfo]]],
) -> pd.DataFrame:
    # Pass 1: resolve every row and build the metric contexts, so that metrics with a batch
    # hook (embeddings, judges) see all their pairs at once before anything is scored.
    rows: list[_Row] = []
    for r in replays:
        task_name = assignment.get(r.exchange_id)
        if task_name is None:
            continue
        task = task_by_name.get(task_name)
        if task is None:
            raise ValueError(f"exchange {r.exchange_id} is assigned to unknown task {task_name!r}")
        ex = ex_by_id.get(r.exchange_id)
        if ex is None:
            raise ValueError(f"replay result for unknown exchange {r.exchange_id!r}")
        cand = r.response
        if r.error is not None or cand is None:
            if r.error_kind == "unsupported":
                rows.append((r, task, "unsupported", [format_error("unsupported", r.error)], None))
            else:
                rows.append((r, task, "error", [format_error(r.error_kind, r.error)], None))
        elif ex.response is None:
            note = f"no logged response ({ex.error})" if ex.error else "no logged response"
            rows.append((r, task, "no_reference", [note], None))
        else:
            new = MetricContext(exchange=ex, reference=ex.response, candidate=cand, task=task)
            rows.append((r, task, "ok", [], new))

    prepare_errors = _run_prepares(rows, plan, infos)
    untrusted = judge_controls(task_by_name, names)

    # Per task, once: each metric's column, function, weight and batch-hook failure (if any).
    steps: dict[str, list[tuple[int, MetricFn, str, float, str | None]]] = {}
    for name, metrics in plan.items():
        weights = task_by_name[name].metric_weights or {}
        steps[name] = [
            (
                col,
                info.func,
                info.name,
                float(weights.get(info.name, 1.0)),
                prepare_errors.get(info.name) or untrusted.get((name, info.name)),
            )
            for col, info in metrics
        ]

    n = len(rows)
    metric_cols: list[list[float]] = [[NAN] * n for _ in names]
    parity_col = [NAN] * n
    ref_label_col = [""] * n
    cand_label_col = [""] * n
    gold_col = [NAN] * n
    error_col = [""] * n
    latency_col = [NAN] * n
    prompt_col: list[int | None] = [None] * n
    completion_col: list[int | None] = [None] * n
    for i, (r, task, _, notes, ctx) in enumerate(rows):
        cand = r.response
        if ctx is not None:
            total, count = 0.0, 0.0
            for col, func, name, weight, prepare_error in steps[task.name]:
                if prepare_error is not None:
                    notes.append(prepare_error)
                    continue
                try:
                    value = func(ctx)
                    if type(value) is not float or not 0.0 <= value <= 1.0:
                        value = _check_value(value)
                except Exception as e:
                    notes.append(f"metric {name}: {type(e).__name__}: {e}")
                    continue
                if value is not None:
                    metric_cols[col][i] = value
                    total += weight * value
                    count += weight
            if count > 0:
                parity_col[i] = total / count
            if task.output == "classification":
                ref_label_col[i] = normalize_label(answer_text(ctx.reference))
                cand_label_col[i] = normalize_label(answer_text(ctx.candidate))
            gold = ctx.exchange.gold
            if gold is not None:
                same = normalize_label(answer_text(ctx.candidate)) == normalize_label(gold)
                gold_col[i] = 1.0 if same else 0.0
        if notes:
            error_col[i] = "; ".join(notes)
        latency = r.latency_ms
        if cand is not None:
            if latency is None:
                latency = cand.latency_ms
            usage = cand.usage
            if usage is not None:
                prompt_col[i] = usage.prompt_tokens
                completion_col[i] = usage.completion_tokens
        if latency is not None:
            latency_col[i] = float(latency)

    data: dict[str, object] = {
        "exchange_id": pd.array([row[0].exchange_id for row in rows], dtype="str"),
        "task": _labels([row[1].name for row in rows]),
        "candidate": _labels([row[0].candidate for row in rows]),
        "status": _labels([row[2] for row in rows]),
        "error": _labels(error_col),
        "parity": np.asarray(parity_col, dtype=np.float64),
        "latency_ms": np.asarray(latency_col, dtype=np.float64),
        "prompt_tokens": pd.array(prompt_col, dtype="Int64"),
        "completion_tokens": pd.array(completion_col, dtype="Int64"),
        "cached": np.fromiter((bool(row[0].cached) for row in rows), dtype=np.bool_, count=n),
    }
    for name, values in zip(names, metric_cols, strict=True):
        data[name] = np.asarray(values, dtype=np.float64)
    data[REFERENCE_LABEL] = _labels(ref_label_col)
    data[CANDIDATE_LABEL] = _labels(cand_label_col)
    data[GOLD_AGREE] = np.asarray(gold_col, dtype=np.float64)
    if any(name.startswith("judge_") for name in names):
        data.update(judge_usage_columns(rows))
    else:
        zeros = np.zeros(n, dtype=np.int64)
        data[JUDGE_PROMPT_TOKENS] = zeros
        data[JUDGE_COMPLETION_TOKENS] = zeros.copy()
    return pd.DataFrame(data)


def judge_controls(tasks: Mapping[str, TaskInfo], names: list[str]) -> dict[tuple[str, str], str]:
    """Record on each task how the judge did on its planted controls (``TaskInfo.judge_controls``,
    in place) and return, per (task, judge metric) the judge failed on, the row note that
    replaces the metric's value: ``metric <name>: judge_failed_controls: <why>``."""
    if not any(name.startswith("judge_") for name in names):
        return {}
    from migrate_eval.score.judge import task_controls

    notes: dict[tuple[str, str], str] = {}
    for task in tasks.values():
        controls = {m: c for m, c in task_controls(task.name).items() if m in task.metrics}
        task.judge_controls = controls or None
        for metric, c in controls.items():
            if not c.passed:
                notes[(task.name, metric)] = f"metric {metric}: judge_failed_controls: {c.reason}"
    return notes


def judge_usage_columns(rows: list[_Row]) -> dict[str, object]:
    """Per row, the judge tokens spent on it (see :func:`migrate_eval.score.judge.usage_of`)."""
    from migrate_eval.score.judge import usage_of

    prompt: list[int] = []
    completion: list[int] = []
    for _, _, _, _, ctx in rows:
        p, c = usage_of(ctx) if ctx is not None else (0, 0)
        prompt.append(p)
        completion.append(c)
    return {
        JUDGE_PROMPT_TOKENS: np.asarray(prompt, dtype=np.int64),
        JUDGE_COMPLETION_TOKENS: np.asarray(completion, dtype=np.int64),
    }


def _run_prepares(
    rows: list[_Row],
    plan: dict[str, list[tuple[int, MetricInfo]]],
    infos: list[MetricInfo],
) -> dict[str, str]:
    """Call each batch hook once with the contexts of the rows its metric scores.

    A hook that raises does not stop scoring: the metric is NaN on every row, with a note.
    """
    errors: dict[str, str] = {}
    for info in infos:
        if info.prepare is None:
            continue
        users = {
            name for name, metrics in plan.items() if any(i.name == info.name for _, i in metrics)
        }
        contexts = [ctx for _, task, _, _, ctx in rows if ctx is not None and task.name in users]
        if not contexts:
            continue
        try:
            info.prepare(contexts)
        except Exception as e:
            errors[info.name] = f"metric {info.name}: {type(e).__name__}: {e}"
    return errors
