"""A finished run folder's answers as plain JSON rows (whichever layout the folder has)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from migrate_eval.core.run_folder import RunFolder


def response_rows(run_dir: Path) -> list[dict[str, Any]]:
    """``responses/`` (or an older run's ``responses.jsonl``), one dict per answer."""
    return [r.model_dump(mode="json") for r in RunFolder(run_dir).responses()]
