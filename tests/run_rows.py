"""A finished run folder's answers as plain JSON rows (whichever layout the folder has), and its
results.json without what differs between two runs of the same thing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrate_eval.core.run_folder import RunFolder


def response_rows(run_dir: Path) -> list[dict[str, Any]]:
    """``responses/`` (or an older run's ``responses.jsonl``), one dict per answer."""
    return [r.model_dump(mode="json") for r in RunFolder(run_dir).responses()]


def untimed(value: Any) -> Any:
    """``value`` without timings: ``latency`` objects and ``*_ms`` fields."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k != "latency" and not k.endswith("_ms")}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def comparable_results(run_dir: Path) -> dict[str, Any]:
    """results.json without what differs between two runs of the same thing: when, how, and
    how long the vendor took."""
    data: dict[str, Any] = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    for key in ("created", "command"):
        data.pop(key, None)
    out: dict[str, Any] = untimed(data)
    return out
