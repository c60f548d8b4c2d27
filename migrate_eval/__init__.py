"""migrate-eval: evidence for moving OpenAI-powered features to other models.

The Python API mirrors the CLI: ``migrate_eval.run(...)`` does what ``migrate-eval run`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["RunOutcome", "__version__", "load_suite", "rerender", "run"]

if TYPE_CHECKING:
    from migrate_eval.pipeline import RunOutcome, rerender, run
    from migrate_eval.suite import load_suite


def __getattr__(name: str) -> Any:  # lazy: importing the package stays cheap
    if name in ("run", "rerender", "RunOutcome"):
        from migrate_eval import pipeline

        return getattr(pipeline, name)
    if name == "load_suite":
        from migrate_eval.suite import load_suite

        return load_suite
    raise AttributeError(name)
