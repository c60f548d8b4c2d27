"""The run history: one compact record per (candidate, task) for every run and watch.

The store is a folder (``<reports>/history/`` by default) of small Parquet files, one per run,
named ``<run_id>.parquet``: pandas (``pd.read_parquet(folder)``) and DuckDB
(``SELECT * FROM 'reports/history/*.parquet'``) read it directly. Each file is written to a
hidden temporary sibling and renamed into place, so a killed run leaves no half record (a
leftover ``.*.tmp`` file is ignored) and two runs writing at once never collide (the run id holds
a random part). ``watch`` also keeps, per run, the per-item parities of its probe under
``items/`` (what the next watch's paired tests compare with).
"""

from __future__ import annotations

import functools
import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from migrate_eval.core.errors import HistoryError
from migrate_eval.core.records import ReplayResult
from migrate_eval.core.results import Results
from migrate_eval.verdict._groups import pair_positions

HISTORY_DIRNAME = "history"
ITEMS_DIRNAME = "items"

#: The columns of a history record, in order (a file lacking one is not a history file).
HISTORY_COLUMNS = (
    "run_id",
    "created",
    "suite",
    "kind",
    "candidate",
    "provider",
    "model",
    "task",
    "n",
    "n_total",
    "parity",
    "ci_low",
    "ci_high",
    "pass_rate",
    "noise_floor",
    "cost_per_request_usd",
    "latency_p50_ms",
    "latency_p95_ms",
    "error_rate",
    "refusal_rate",
    "response_models",
    "system_fingerprints",
    "version_headers",
    "probe",
    "drift",
    "drift_p",
    "fingerprint_changed",
)

#: Columns added after the first release: a record file without them is still a history file
#: (read with the column empty: "not recorded", which never counts as a fingerprint change).
OPTIONAL_COLUMNS = frozenset({"version_headers"})

ITEM_COLUMNS = ("candidate", "task", "exchange_id", "parity", "passed")


def default_history_dir() -> Path:
    """``<reports>/history``: the reports folder is ``$MIGRATE_EVAL_REPORTS_DIR`` or ``reports``."""
    from migrate_eval.core.paths import DEFAULT_REPORTS_DIR

    return Path(os.environ.get("MIGRATE_EVAL_REPORTS_DIR", DEFAULT_REPORTS_DIR)) / HISTORY_DIRNAME


def new_run_id() -> str:
    """A collision-free id that sorts in the order the runs were recorded: the UTC time to the
    microsecond (``created`` has whole seconds: two watches may share one), then a random part."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}-{uuid.uuid4().hex[:8]}"


def version_headers_text(answers: Sequence[ReplayResult]) -> str:
    """The answers' version headers as one stable text: per header name (sorted), its distinct
    values (sorted, ``|``-joined): ``openai-model=gpt-4o-2024-08-06; openai-version=2020-10-01``.
    Empty when no answer carried one."""
    values: dict[str, set[str]] = {}
    for r in answers:
        for name, value in (r.version_headers or {}).items():
            values.setdefault(name, set()).add(value)
    return _headers_text(values)


def _headers_text(values: Mapping[str, set[str]]) -> str:
    return "; ".join(f"{k}={'|'.join(sorted(v))}" for k, v in sorted(values.items()))


class _Answers:
    """What the history keeps of a (candidate, task)'s answers, gathered in one pass (a large
    run's answers are on disk: none is held)."""

    __slots__ = ("fingerprints", "headers", "models", "ok", "refusals")

    def __init__(self) -> None:
        self.ok = 0
        self.refusals = 0
        self.models: set[str] = set()
        self.fingerprints: set[str] = set()
        self.headers: dict[str, set[str]] = {}

    def add(self, r: ReplayResult) -> None:
        if r.response is not None:
            self.ok += 1
            if r.response.refusal:
                self.refusals += 1
            if r.response.model:
                self.models.add(r.response.model)
        if r.system_fingerprint:
            self.fingerprints.add(r.system_fingerprint)
        for name, value in (r.version_headers or {}).items():
            self.headers.setdefault(name, set()).add(value)


def _percentile(values: npt.NDArray[np.float64], q: float) -> float | None:
    arr = values[~np.isnan(values)]
    return float(np.percentile(arr, q)) if arr.size else None


def history_records(
    results: Results,
    scores: pd.DataFrame,
    replays: Sequence[ReplayResult],
    *,
    run_id: str,
    kind: str = "run",
    probe: int | None = None,
    assignment: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per (candidate, task) of a finished run (the columns of :data:`HISTORY_COLUMNS`;
    the drift columns are empty: :mod:`migrate_eval.verdict.drift` fills them for a watch).
    ``assignment`` (exchange id -> task, the plan's) spares reading it from ``scores``."""
    task_of: Mapping[str, str] = {} if assignment is None else assignment
    if assignment is None and len(scores) and {"exchange_id", "task"} <= set(scores.columns):
        pairs = scores[["exchange_id", "task"]].drop_duplicates()
        task_of = dict(zip(pairs["exchange_id"], pairs["task"], strict=True))
        del pairs
    answers: dict[tuple[str, str], _Answers] = {}
    for r in replays:
        key = (r.candidate, task_of.get(r.exchange_id, ""))
        seen = answers.get(key)
        if seen is None:
            seen = answers[key] = _Answers()
        seen.add(r)
    del task_of
    # each (candidate, task)'s latencies, in one pass (a boolean filter of the whole frame per
    # pair cost ~3 ms each)
    latency: dict[tuple[str, str], npt.NDArray[np.intp]] = {}
    lat_all = np.zeros(0, dtype=np.float64)
    if len(scores) and {"candidate", "task", "latency_ms"} <= set(scores.columns):
        lat_all = pd.to_numeric(scores["latency_ms"], errors="coerce").to_numpy(dtype=np.float64)
        latency = pair_positions(scores)  # not a list of texts and a list of ints per row
    rows: list[dict[str, Any]] = []
    for c in results.candidates:
        for t in c.tasks:
            mine = answers.get((c.name, t.task)) or _Answers()
            lat = lat_all[latency.get((c.name, t.task), np.zeros(0, dtype=np.intp))]
            rows.append(
                {
                    "run_id": run_id,
                    "created": results.created,
                    "suite": results.suite,
                    "kind": kind,
                    "candidate": c.name,
                    "provider": c.provider,
                    "model": c.model,
                    "task": t.task,
                    "n": t.n,
                    "n_total": t.n_total,
                    "parity": t.parity.mean,
                    "ci_low": t.parity.ci_low,
                    "ci_high": t.parity.ci_high,
                    "pass_rate": t.pass_rate,
                    "noise_floor": t.noise_floor,
                    "cost_per_request_usd": c.cost.per_request_usd,
                    "latency_p50_ms": _percentile(lat, 50),
                    "latency_p95_ms": _percentile(lat, 95),
                    "error_rate": t.errors.rate,
                    "refusal_rate": mine.refusals / mine.ok if mine.ok else None,
                    "response_models": ",".join(sorted(mine.models)),
                    "system_fingerprints": ",".join(sorted(mine.fingerprints)),
                    "version_headers": _headers_text(mine.headers),
                    "probe": probe,
                    "drift": None,
                    "drift_p": None,
                    "fingerprint_changed": None,
                }
            )
    return _typed(pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Stable column types, so that files of different runs concatenate cleanly."""
    df = df.copy()
    for col in ("n", "n_total", "probe"):
        df[col] = df[col].astype("Int64")
    for col in (
        "parity",
        "ci_low",
        "ci_high",
        "pass_rate",
        "noise_floor",
        "cost_per_request_usd",
        "latency_p50_ms",
        "latency_p95_ms",
        "error_rate",
        "refusal_rate",
        "drift_p",
    ):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("drift", "fingerprint_changed"):
        df[col] = df[col].astype("boolean")
    return df


def item_records(scores: pd.DataFrame, pass_threshold: float) -> pd.DataFrame:
    """Per (candidate, task, exchange): the parity and whether it passes (NaN: not scored)."""
    if not len(scores):
        return pd.DataFrame(columns=list(ITEM_COLUMNS))
    df = scores[["candidate", "task", "exchange_id", "parity"]].astype(
        {"candidate": "str", "task": "str"}  # text as every item file has it (the scores' are
    )  # categorical in a run)
    df["parity"] = pd.to_numeric(df["parity"], errors="coerce").astype("float64")
    df["passed"] = pd.array(
        [None if np.isnan(p) else bool(p >= pass_threshold - 1e-9) for p in df["parity"]],
        dtype="boolean",
    )
    return df.reset_index(drop=True)


@functools.cache
def _arrow_schema() -> Any:
    import pyarrow as pa

    ints = {"n", "n_total", "probe"}
    bools = {"drift", "fingerprint_changed"}
    strings = {
        "run_id",
        "created",
        "suite",
        "kind",
        "candidate",
        "provider",
        "model",
        "task",
        "response_models",
        "system_fingerprints",
        "version_headers",
    }
    return pa.schema(
        [
            (
                c,
                pa.int64()
                if c in ints
                else pa.bool_()
                if c in bools
                else pa.string()
                if c in strings
                else pa.float64(),
            )
            for c in HISTORY_COLUMNS
        ]
    )


def _write_atomic(df: pd.DataFrame, target: Path, *, records: bool = False) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:6]}.tmp"
    try:
        if records:  # one schema for every record file: they concatenate without casts
            pq.write_table(
                pa.Table.from_pandas(
                    _typed(df[list(HISTORY_COLUMNS)]), schema=_arrow_schema(), preserve_index=False
                ),
                tmp,
            )
        else:
            df.to_parquet(tmp, index=False)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


#: More record files than this, and :func:`append_history` merges them into one (reading many
#: small files costs a fraction of a millisecond each).
COMPACT_AFTER = 256


def append_history(
    folder: str | Path,
    records: pd.DataFrame,
    items: pd.DataFrame | None = None,
    *,
    compact_after: int | None = COMPACT_AFTER,
) -> Path:
    """Write one run's records (and, for a watch, its items) into the history folder."""
    run_ids = set(records["run_id"])
    if len(run_ids) != 1:
        raise ValueError("append_history writes the records of exactly one run")
    run_id = str(next(iter(run_ids)))
    folder = Path(folder)
    if items is not None:  # items first: a record never points at items that are not there
        _write_atomic(items, folder / ITEMS_DIRNAME / f"{run_id}.parquet")
    path = _write_atomic(records, folder / f"{run_id}.parquet", records=True)
    if compact_after is not None and len(history_files(folder)) > compact_after:
        compact_history(folder)
    return path


def compact_history(folder: str | Path) -> Path | None:
    """Merge the history's record files into one (written atomically, then the merged files
    removed; a reader in between sees a record twice and :func:`read_history` drops the copy).
    Damaged or foreign files are left where they are. Returns the merged file, if any."""
    folder = Path(folder)
    tables, used = _read_tables(history_files(folder), strict=False, warn=False)
    if len(used) < 2:
        return None
    import pyarrow as pa

    merged = pa.concat_tables(tables)
    df = merged.to_pandas().drop_duplicates(["run_id", "candidate", "task"])
    target = folder / f"{new_run_id()}-compacted.parquet"
    _write_atomic(df, target, records=True)
    for p in used:
        if p != target:
            p.unlink(missing_ok=True)
    return target


def history_files(folder: str | Path) -> list[Path]:
    """The history's record files (hidden temporary files of a killed write are left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.parquet") if p.is_file() and not p.name.startswith("."))


_THREADED_ROWS = 10_000


def _read_table(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        # threads pay off on a merged file only: on a one-run file they double the CPU time
        table = parquet.read(use_threads=parquet.metadata.num_rows > _THREADED_ROWS)
    except FileNotFoundError:
        raise  # removed by a compaction since the folder was listed: the caller lists again
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise HistoryError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [
        c for c in HISTORY_COLUMNS if c not in table.schema.names and c not in OPTIONAL_COLUMNS
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise HistoryError(f"{path}: not a migrate-eval history record (missing columns: {shown})")
    schema = _arrow_schema()
    if table.schema.equals(schema):  # as append_history writes it: nothing to select or cast
        return table
    for c in OPTIONAL_COLUMNS - set(table.schema.names):  # an older record file
        table = table.append_column(c, pa.nulls(table.num_rows, schema.field(c).type))
    try:
        return table.select(list(HISTORY_COLUMNS)).cast(schema)
    except Exception as e:
        raise HistoryError(f"{path}: a history column has the wrong type ({e})") from None


def _read_tables(
    paths: Sequence[Path], *, strict: bool, warn: bool = True
) -> tuple[list[Any], list[Path]]:
    tables, used = [], []
    for path in paths:
        try:
            tables.append(_read_table(path))
            used.append(path)
        except FileNotFoundError:
            if warn:  # a reader: its listing is stale, list again (read_history)
                raise
        except HistoryError as e:
            if strict:
                raise
            if warn:
                warnings.warn(f"skipped {e}", stacklevel=3)
    return tables, used


def read_history_file(path: Path) -> pd.DataFrame:
    """One record file; :class:`HistoryError` naming it when corrupt or not a history file."""
    return _typed(_read_table(path).to_pandas())


def read_history(
    folder: str | Path, *, strict: bool = False, suite: str | None = None
) -> pd.DataFrame:
    """Every record of the history folder, in the order the runs were recorded (run id).

    A corrupt or foreign file is skipped with a warning naming it (``strict``: raises
    :class:`HistoryError`); the other files are read all the same.
    """
    for attempt in range(5):  # a compaction may remove files between listing and reading
        try:
            tables, _ = _read_tables(history_files(folder), strict=strict)
            break
        except FileNotFoundError:
            if attempt == 4:
                raise HistoryError(
                    f"{folder}: files keep disappearing while the history is read"
                ) from None
    if not tables:
        return _typed(pd.DataFrame(columns=list(HISTORY_COLUMNS)))
    import pyarrow as pa

    df = _typed(pa.concat_tables(tables).to_pandas())
    df = df.drop_duplicates(["run_id", "candidate", "task"])  # a compaction under way
    if suite is not None:
        df = df[df["suite"] == suite]
    return df.sort_values(["run_id"], kind="stable").reset_index(drop=True)


def read_items(folder: str | Path, run_id: str) -> pd.DataFrame:
    """The per-item parities a watch kept (:class:`HistoryError` naming the file if damaged)."""
    path = Path(folder) / ITEMS_DIRNAME / f"{run_id}.parquet"
    try:
        df = pd.read_parquet(path)
    except FileNotFoundError:
        raise HistoryError(f"{path}: the watch's per-item record is missing") from None
    except Exception as e:
        raise HistoryError(f"{path}: not a readable Parquet file ({e})") from None
    missing = [c for c in ITEM_COLUMNS if c not in df.columns]
    if missing:
        raise HistoryError(f"{path}: not a watch item record (missing: {', '.join(missing)})")
    return df
