"""Reading a run folder back: one place that knows its files and says clearly what is wrong.

Used by ``rerender``, ``gate``, ``compare`` and :func:`migrate_eval.load_run`. Every error is
a :class:`~migrate_eval.core.errors.UserError` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from pydantic import BaseModel, ValidationError

from migrate_eval.core.errors import UserError
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.results import Results, TaskInfo
from migrate_eval.core.suite import Suite

M = TypeVar("M", bound=BaseModel)


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
        return pd.read_parquet(self._file("scores.parquet"))

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def exchanges(self) -> list[Exchange]:
        return self._jsonl("exchanges.jsonl", Exchange)

    def responses(self) -> list[ReplayResult]:
        return self._jsonl("responses.jsonl", ReplayResult)


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
