"""Reading a run folder back: one place that knows its files and says clearly what is wrong.

Used by ``rerender``, ``gate``, ``compare`` and :func:`migrate_eval.load_run`. Every error is
a :class:`~migrate_eval.core.errors.UserError` naming the file.

A run's exchanges and responses are Arrow datasets (:func:`write_records`): the folders
``exchanges/`` and ``responses/`` in Hugging Face ``datasets``' ``save_to_disk`` layout (Arrow
stream files, ``state.json``, ``dataset_info.json``), so ``datasets.load_from_disk``,
``pyarrow`` (and from it pandas and DuckDB) open them directly. Each row has a few plain columns
to query (ids, candidate, model...) and ``record``: the whole record as JSON, exactly what
``exchanges.jsonl``/``responses.jsonl`` held one a line in run folders written before (those are
still read: :meth:`RunFolder.exchanges` takes whichever layout the folder has).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from migrate_eval.core.errors import UserError
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.results import Results, TaskInfo
from migrate_eval.core.suite import Suite

if TYPE_CHECKING:  # imported where the scores are read
    import pandas as pd

M = TypeVar("M", bound=BaseModel)

#: Rows per Arrow record batch written (memory while writing stays bounded by one batch).
BATCH_ROWS = 2_000
_DATA_FILE = "data-00000-of-00001.arrow"
_DTYPES = {"string": "string", "int64": "int64", "double": "float64", "bool": "bool"}


def _exchange_columns(ex: Any) -> dict[str, Any]:
    model = ex.request.get("model") if isinstance(ex.request, dict) else None
    return {
        "id": ex.id,
        "file": ex.source.file,
        "line": ex.source.line,
        "model": model if isinstance(model, str) else None,
    }


def _response_columns(r: Any) -> dict[str, Any]:
    return {
        "exchange_id": r.exchange_id,
        "candidate": r.candidate,
        "ok": r.error is None and r.response is not None,
        "error_kind": r.error_kind,
        "latency_ms": r.latency_ms,
    }


#: The plain columns of each record dataset (``record`` is added after them).
RECORD_COLUMNS: dict[str, tuple[dict[str, str], Callable[[Any], dict[str, Any]]]] = {
    "exchanges": (
        {"id": "string", "file": "string", "line": "int64", "model": "string"},
        _exchange_columns,
    ),
    "responses": (
        {
            "exchange_id": "string",
            "candidate": "string",
            "ok": "bool",
            "error_kind": "string",
            "latency_ms": "double",
        },
        _response_columns,
    ),
}


def write_tasks(
    path: Path, tasks: Iterable[TaskInfo], ids: Iterable[str], assignment: Mapping[str, str]
) -> None:
    """``tasks.json``: the tasks and the task of each exchange of ``ids`` (in their order),
    written as ``json.dumps({"tasks": ..., "assignment": ...}, indent=1)`` writes it, a line at
    a time (a million exchanges' assignment is never one string, nor a second mapping)."""
    head = json.dumps(
        {"tasks": [t.model_dump(mode="json") for t in tasks]}, indent=1, ensure_ascii=False
    )
    with path.open("w", encoding="utf-8") as f:
        f.write(head[: -len("\n}")] + ',\n "assignment": {')
        separator = "\n  "
        for ex_id in ids:
            f.write(f"{separator}{json.dumps(ex_id, ensure_ascii=False)}: ")
            f.write(json.dumps(assignment[ex_id], ensure_ascii=False))
            separator = ",\n  "
        f.write("}\n}" if separator == "\n  " else "\n }\n}")


#: Rows of the scores frame written at a time (each a row group of ``scores.parquet``).
SCORE_ROWS = 1 << 18


def write_scores(scores: pd.DataFrame, path: Path) -> None:
    """Write the scores frame to ``path`` (``scores.parquet``), :data:`SCORE_ROWS` rows at a
    time. The frame's categorical text columns (task, candidate, status, ...) are written as
    plain text, so a run folder reads back as it always did (Parquet dictionary-encodes the
    pages either way); the text of one slice is made at a time, not of the whole column."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = {c: "str" for c, t in scores.dtypes.items() if isinstance(t, pd.CategoricalDtype)}
    writer: Any = None
    try:
        for start in range(0, max(len(scores), 1), SCORE_ROWS):
            part = scores.iloc[start : start + SCORE_ROWS].astype(labels)
            table = pa.Table.from_pandas(part, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(path), table.schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def write_records(folder: Path, name: str, records: Iterable[BaseModel]) -> Path:
    """Write ``records`` (exchanges or replay results) as the Arrow dataset ``folder/name``, a
    batch of :data:`BATCH_ROWS` at a time; returns the dataset's folder."""
    import pyarrow as pa

    types, columns_of = RECORD_COLUMNS[name]
    fields = [pa.field(c, pa.type_for_alias(t)) for c, t in types.items()]
    schema = pa.schema([*fields, pa.field("record", pa.string())])
    out = folder / name
    out.mkdir(parents=True, exist_ok=True)

    def flush(rows: list[BaseModel], sink: Any) -> None:
        cols: dict[str, list[Any]] = {c: [] for c in types}
        blobs: list[str] = []
        for r in rows:
            for c, v in columns_of(r).items():
                cols[c].append(v)
            blobs.append(r.model_dump_json(exclude_none=True))
        arrays = [pa.array(cols[c], type=f.type) for c, f in zip(types, fields, strict=True)]
        sink.write_batch(pa.record_batch([*arrays, pa.array(blobs, pa.string())], schema=schema))

    with pa.OSFile(str(out / _DATA_FILE), "wb") as fh, pa.ipc.new_stream(fh, schema) as sink:
        batch: list[BaseModel] = []
        for r in records:
            batch.append(r)
            if len(batch) >= BATCH_ROWS:
                flush(batch, sink)
                batch = []
        if batch:
            flush(batch, sink)
    features = {c: {"dtype": _DTYPES[t], "_type": "Value"} for c, t in types.items()}
    features["record"] = {"dtype": "string", "_type": "Value"}
    info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
    state: dict[str, Any] = {
        "_data_files": [{"filename": _DATA_FILE}],
        "_fingerprint": f"migrate-eval-{name}",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (out / "dataset_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    (out / "state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    return out


@dataclass(frozen=True)
class RunFolder:
    """A finished run's folder (``results.json`` and the files beside it)."""

    path: Path

    def __post_init__(self) -> None:
        if not (self.path / "results.json").is_file():
            raise UserError(f"{self.path}: not a run folder (no results.json)")

    def _file(self, name: str) -> Path:
        p = self.path / name
        if not p.is_file():
            raise UserError(f"{self.path}: not a complete run folder (no {name})")
        return p

    def _json(self, name: str) -> Any:
        p = self._file(name)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{p}: not valid JSON: {e}") from None

    def _jsonl(self, name: str, model: type[M]) -> list[M]:
        p = self._file(name)
        out: list[M] = []
        with p.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        out.append(model.model_validate_json(line))
                    except ValidationError as e:
                        raise UserError(f"{p}:{n}: not a valid record: {e}") from None
        return out

    def _arrow(self, name: str, model: type[M]) -> list[M]:
        """The records of the Arrow dataset ``name/`` (see the module docstring)."""
        import pyarrow as pa

        folder = self.path / name
        try:
            state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
            files = [folder / f["filename"] for f in state["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"{folder / 'state.json'}: not a dataset's state: {e}") from None
        out: list[M] = []
        for f in files:
            try:
                with pa.memory_map(str(f), "r") as src:
                    reader = pa.ipc.open_stream(src)
                    for batch in reader:
                        for blob in batch.column("record").to_pylist():
                            try:
                                out.append(model.model_validate_json(blob))
                            except ValidationError as e:
                                raise UserError(
                                    f"{f}: row {len(out) + 1}: not a valid record: {e}"
                                ) from None
            except (OSError, pa.ArrowException, KeyError) as e:
                raise UserError(f"{f}: not a readable Arrow file: {e}") from None
        return out

    def _records(self, name: str, model: type[M]) -> list[M]:
        """``name/`` (Arrow dataset) where the folder has it, else ``name.jsonl`` (older runs)."""
        if (self.path / name).is_dir():
            return self._arrow(name, model)
        if not (self.path / f"{name}.jsonl").is_file():
            raise UserError(f"{self.path}: not a complete run folder (no {name}/ or {name}.jsonl)")
        return self._jsonl(f"{name}.jsonl", model)

    def has_records(self, name: str) -> bool:
        """Whether the folder has its ``exchanges``/``responses`` (either layout)."""
        return (self.path / name).is_dir() or self.has(f"{name}.jsonl")

    def results(self) -> Results:
        return read_results(self.path / "results.json")

    def suite(self) -> Suite:
        try:
            suite = Suite.model_validate(self._json("suite.json"))
        except ValidationError as e:
            raise UserError(f"{self.path / 'suite.json'}: not a valid suite: {e}") from None
        suite.base_dir = self.path
        return suite

    def tasks(self) -> tuple[list[TaskInfo], dict[str, str]]:
        """The run's tasks and the exchange-id -> task assignment (``tasks.json``)."""
        doc = self._json("tasks.json")
        raw = doc.get("tasks") if isinstance(doc, dict) else None
        assignment = doc.get("assignment") if isinstance(doc, dict) else None
        if not isinstance(raw, list):
            raise UserError(f"{self.path / 'tasks.json'}: no task list")
        try:
            tasks = [TaskInfo.model_validate(t) for t in raw]
        except ValidationError as e:
            raise UserError(f"{self.path / 'tasks.json'}: invalid task: {e}") from None
        return tasks, dict(assignment or {})

    def scores(self) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self._file("scores.parquet"))

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def exchanges(self) -> list[Exchange]:
        return self._records("exchanges", Exchange)

    def responses(self) -> list[ReplayResult]:
        return self._records("responses", ReplayResult)


def read_results(path: str | Path) -> Results:
    """A ``results.json`` (or a run folder's), validated."""
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise UserError(f"{p}: not a run folder (no results.json)")
    try:
        return Results.model_validate_json(f.read_text(encoding="utf-8"))
    except ValidationError as e:
        raise UserError(f"{f}: not a valid results file: {e}") from None
