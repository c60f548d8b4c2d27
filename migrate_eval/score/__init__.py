"""Parity metrics: the registry, the built-in metrics and scoring.

A metric is a function ``(ctx: MetricContext) -> float | None`` returning a value in [0, 1]
(higher = closer to the logged OpenAI answer) or None when it does not apply. See
:mod:`migrate_eval.score.registry` for how names resolve (built-ins, entry points in the group
``migrate_eval.metrics``, ``module:function``).

Built-in metrics, by family (docs/metrics.md has the full table):

* text (:mod:`~migrate_eval.score.text`): ``exact_match``, ``normalized_match``, ``gold_match``,
  ``length_ratio``, ``chrf``, ``bleu``, ``ter``, ``rouge_l``, ``refusal_match``;
* semantic (:mod:`~migrate_eval.score.semantic`, extra ``embedding``): ``semantic_similarity``;
* instruction following (:mod:`~migrate_eval.score.ifeval`): ``ifeval_match``;
* structured output (:mod:`~migrate_eval.score.structured`): ``json_valid``,
  ``json_schema_valid``, ``json_match``, ``json_match_normalized``, ``json_key_coverage``;
* tool use (:mod:`~migrate_eval.score.tools`): ``tool_call_match``, ``tool_name_match``,
  ``tool_args_match``, ``tool_args_valid``, ``no_unexpected_tool_call``, ``no_missed_tool_call``;
* LLM judge (:mod:`migrate_eval.score.judge`): ``judge_pairwise``, ``judge_rubric``.

Automatic choice by output kind (:func:`default_metrics`): ``tool_call`` -> ``tool_call_match``;
``structured`` -> ``json_valid``, ``json_schema_valid``, ``json_match``; ``classification`` ->
``normalized_match``; ``free_text`` -> ``semantic_similarity`` and ``token_f1`` (parity = their
mean; docs/free-text-parity.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrate_eval.core.suite import default_metrics
from migrate_eval.score import ifeval, judge, overlap, semantic, structured, text, tools
from migrate_eval.score.registry import (
    ENTRY_POINT_GROUP,
    MetricContext,
    MetricFn,
    MetricInfo,
    get_metric,
    list_metrics,
    register_metric,
)

if TYPE_CHECKING:
    from migrate_eval.score.scoring import (
        FAILED_STATUSES,
        STATUSES,
        error_kind_of,
        format_error,
        metric_columns,
        score,
    )

#: Names read from :mod:`migrate_eval.score.scoring` when first asked for: scoring brings
#: pandas, which checking a suite's metric names (before the logs are read) does not need.
_SCORING = frozenset(
    {"FAILED_STATUSES", "STATUSES", "error_kind_of", "format_error", "metric_columns", "score"}
)


def __getattr__(name: str) -> Any:
    if name in _SCORING:
        from migrate_eval.score import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "ifeval",
    "judge",
    "list_metrics",
    "metric_columns",
    "overlap",
    "register_metric",
    "score",
    "semantic",
    "structured",
    "text",
    "tools",
]
