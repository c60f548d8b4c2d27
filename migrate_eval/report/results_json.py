"""``results.json``: the run's results in the versioned schema of :mod:`migrate_eval.core.results`.

Key order is stable: a model's fields keep the schema's declaration order and the keys of
free-form mappings (thresholds, metric means, error counts...) are sorted. Non-finite floats
(NaN, infinities) are written as ``null`` so that the file is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from migrate_eval.core.outputs import write_text_atomic
from migrate_eval.core.results import Results


def _ordered(model_value: Any, dumped: Any) -> Any:
    """Walk the dumped JSON next to the Python value it came from, fixing the key order."""
    if isinstance(dumped, dict):
        if isinstance(model_value, BaseModel):
            # model_dump keeps the declaration order of the fields
            return {k: _ordered(getattr(model_value, k, None), v) for k, v in dumped.items()}
        src = model_value if isinstance(model_value, dict) else {}
        return {k: _ordered(src.get(k), dumped[k]) for k in sorted(dumped, key=str)}
    if isinstance(dumped, list):
        src_list = list(model_value) if isinstance(model_value, list | tuple) else []
        return [
            _ordered(src_list[i] if i < len(src_list) else None, v) for i, v in enumerate(dumped)
        ]
    if isinstance(dumped, float) and not math.isfinite(dumped):
        return None
    return dumped


def results_to_json(results: Results) -> str:
    """The text of ``results.json`` (pretty, stable key order, ends with a newline)."""
    data = _ordered(results, results.model_dump(mode="json"))
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_results_json(results: Results, path: str | os.PathLike[str]) -> None:
    """Write ``results.json`` (UTF-8). Parent folders are created."""
    p = Path(path)
    write_text_atomic(p, results_to_json(results))


def read_results_json(path: str | os.PathLike[str]) -> Results:
    """Read a ``results.json`` written by :func:`write_results_json`."""
    return Results.model_validate_json(Path(path).read_text(encoding="utf-8"))
