"""Parity metrics: the registry, the built-in metrics and scoring.

A metric is a function ``(ctx: MetricContext) -> float | None`` returning a value in [0, 1]
(higher = closer to the logged OpenAI answer) or None when it does not apply. See
:mod:`migrate_eval.metrics.registry` for how names resolve (built-ins, entry points in the group
``migrate_eval.metrics``, ``module:function``).

Built-in metrics, by family:

* text (:mod:`~migrate_eval.metrics.text`): ``exact_match``, ``normalized_match``, ``gold_match``,
  ``length_ratio``, ``chrf``;
* structured output (:mod:`~migrate_eval.metrics.structured`): ``json_valid``,
  ``json_schema_valid``, ``json_match``;
* tool use (:mod:`~migrate_eval.metrics.tools`): ``tool_call_match``, ``tool_name_match``,
  ``tool_args_valid``.

Automatic choice by output kind (:func:`default_metrics`): ``tool_call`` -> ``tool_call_match``;
``structured`` -> ``json_valid``, ``json_schema_valid``, ``json_match``; ``classification`` ->
``normalized_match``; ``free_text`` -> ``chrf``.
"""

from __future__ import annotations

from migrate_eval.metrics import structured, text, tools
from migrate_eval.metrics.registry import (
    ENTRY_POINT_GROUP,
    MetricContext,
    MetricFn,
    MetricInfo,
    default_metrics,
    get_metric,
    list_metrics,
    register_metric,
)
from migrate_eval.metrics.scoring import (
    FAILED_STATUSES,
    STATUSES,
    error_kind_of,
    format_error,
    metric_columns,
    score,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "FAILED_STATUSES",
    "STATUSES",
    "MetricContext",
    "MetricFn",
    "MetricInfo",
    "default_metrics",
    "error_kind_of",
    "format_error",
    "get_metric",
    "list_metrics",
    "metric_columns",
    "register_metric",
    "score",
    "structured",
    "text",
    "tools",
]
