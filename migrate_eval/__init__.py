"""migrate-eval: evidence for moving OpenAI-powered features to other models.

The Python API mirrors the CLI: every command is a function here (``migrate_eval.run(...)``
does what ``migrate-eval run`` does), and a finished run loads back with :func:`load_run`.
Everything not listed in ``__all__`` is private and may change without notice; the stages
behind these names are described in ``docs/architecture.md``.

Names are imported lazily, so ``import migrate_eval`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from migrate_eval.core.version import __version__

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    # commands (migrate_eval.api)
    "run": "migrate_eval.api",
    "rerender": "migrate_eval.api",
    "load_run": "migrate_eval.api",
    "profile": "migrate_eval.api",
    "init": "migrate_eval.api",
    "gate": "migrate_eval.api",
    "compare": "migrate_eval.api",
    "export_lm_eval": "migrate_eval.api",
    "cache_stats": "migrate_eval.api",
    "cache_export": "migrate_eval.api",
    "cache_import": "migrate_eval.api",
    "provider_matrix": "migrate_eval.api",
    "watch": "migrate_eval.api",
    "history": "migrate_eval.api",
    "adapt": "migrate_eval.api",
    "WatchOutcome": "migrate_eval.api",
    "RunOutcome": "migrate_eval.api",
    "Run": "migrate_eval.api",
    # what the commands take and give
    "Suite": "migrate_eval.core.suite",
    "CandidateSpec": "migrate_eval.core.suite",
    "load_suite": "migrate_eval.core.suite",
    "Results": "migrate_eval.core.results",
    "Exchange": "migrate_eval.core.records",
    "Response": "migrate_eval.core.records",
    "ReplayResult": "migrate_eval.core.records",
    # errors and exit codes
    "ExitCode": "migrate_eval.core.errors",
    "MigrateEvalError": "migrate_eval.core.errors",
    "UserError": "migrate_eval.core.errors",
    "ConfigError": "migrate_eval.core.errors",
    "VendorError": "migrate_eval.core.errors",
    "InfrastructureError": "migrate_eval.core.errors",
    # extending: metrics, providers, log formats
    "register_metric": "migrate_eval.score.registry",
    "MetricContext": "migrate_eval.score.registry",
    "register_provider": "migrate_eval.replay.providers.registry",
    "Provider": "migrate_eval.replay.providers.base",
    "register_format": "migrate_eval.ingest.registry",
    "LogFormat": "migrate_eval.ingest.registry",
}

__all__ = [
    "CandidateSpec",
    "ConfigError",
    "Exchange",
    "ExitCode",
    "InfrastructureError",
    "LogFormat",
    "MetricContext",
    "MigrateEvalError",
    "Provider",
    "ReplayResult",
    "Response",
    "Results",
    "Run",
    "RunOutcome",
    "Suite",
    "UserError",
    "VendorError",
    "WatchOutcome",
    "__version__",
    "adapt",
    "cache_export",
    "cache_import",
    "cache_stats",
    "compare",
    "export_lm_eval",
    "gate",
    "history",
    "init",
    "load_run",
    "load_suite",
    "profile",
    "provider_matrix",
    "register_format",
    "register_metric",
    "register_provider",
    "rerender",
    "run",
    "watch",
]

if TYPE_CHECKING:
    from migrate_eval.api import (
        Run,
        RunOutcome,
        WatchOutcome,
        adapt,
        cache_export,
        cache_import,
        cache_stats,
        compare,
        export_lm_eval,
        gate,
        history,
        init,
        load_run,
        profile,
        provider_matrix,
        rerender,
        run,
        watch,
    )
    from migrate_eval.core.errors import (
        ConfigError,
        ExitCode,
        InfrastructureError,
        MigrateEvalError,
        UserError,
        VendorError,
    )
    from migrate_eval.core.records import Exchange, ReplayResult, Response
    from migrate_eval.core.results import Results
    from migrate_eval.core.suite import CandidateSpec, Suite, load_suite
    from migrate_eval.ingest.registry import LogFormat, register_format
    from migrate_eval.replay.providers.base import Provider
    from migrate_eval.replay.providers.registry import register_provider
    from migrate_eval.score.registry import MetricContext, register_metric


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'migrate_eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
