"""Tool-use metrics: the same tools called with the same arguments.

Calls are compared as a multiset, so parallel calls in a different order still match. With R the
reference's calls and C the candidate's, the score is ``matched / max(len(R), len(C))``:

* neither answer calls a tool: not applicable (None);
* one answer calls a tool and the other answers in text: 0;
* otherwise each reference call is paired with at most one equal candidate call.

Two calls are equal when their names are equal and their arguments are JSON-aware equal (key
order irrelevant, ``1 == 1.0``). Arguments that are not valid JSON compare by their raw text
(whitespace-trimmed), and never equal valid JSON.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from migrate_eval.metrics._json import canonical_key
from migrate_eval.metrics.registry import MetricContext, register_metric
from migrate_eval.metrics.structured import schema_validator
from migrate_eval.records import ToolCall


def call_key(call: ToolCall) -> tuple[str, str]:
    """A hashable key equal for two calls exactly when they match (name + JSON-aware arguments)."""
    if call.arguments_valid_json:
        return call.name, "j" + canonical_key(call.parsed_arguments)
    return call.name, "r" + call.arguments.strip()


def multiset_match(reference: Sequence[Any], candidate: Sequence[Any]) -> float | None:
    """``matched / max(len(reference), len(candidate))`` over hashable items, as multisets."""
    if not reference and not candidate:
        return None
    if not reference or not candidate:
        return 0.0
    matched = sum((Counter(reference) & Counter(candidate)).values())
    return matched / max(len(reference), len(candidate))


@register_metric(
    "tool_call_match",
    kinds=("tool_call",),
    description="Share of tool calls with the same name and JSON-equal arguments (parallel calls as a "
    "multiset); n/a when neither answer calls a tool.",
)
def tool_call_match(ctx: MetricContext) -> float | None:
    return multiset_match(
        [call_key(c) for c in ctx.reference.tool_calls],
        [call_key(c) for c in ctx.candidate.tool_calls],
    )


@register_metric(
    "tool_name_match",
    kinds=("tool_call",),
    description="Share of tool calls naming the same tool, arguments ignored (multiset); n/a when "
    "neither answer calls a tool.",
)
def tool_name_match(ctx: MetricContext) -> float | None:
    return multiset_match(
        [c.name for c in ctx.reference.tool_calls],
        [c.name for c in ctx.candidate.tool_calls],
    )


def _tool_parameters(request: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in request.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            params = fn.get("parameters")
            out[fn["name"]] = params if isinstance(params, dict | bool) else {}
    return out


@register_metric(
    "tool_args_valid",
    kinds=("tool_call",),
    description="Share of the candidate's tool calls that name a tool of the request and whose "
    "arguments are valid against its parameters schema; n/a when the candidate calls no tool.",
)
def tool_args_valid(ctx: MetricContext) -> float | None:
    calls = ctx.candidate.tool_calls
    if not calls:
        return None
    tools = _tool_parameters(ctx.exchange.request)
    valid = 0
    for call in calls:
        schema = tools.get(call.name)
        if schema is None or not call.arguments_valid_json:
            continue
        if schema_validator(schema).is_valid(call.parsed_arguments):
            valid += 1
    return valid / len(calls)
