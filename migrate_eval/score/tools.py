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

from migrate_eval.core.records import ToolCall
from migrate_eval.score._json import canonical_key, json_equal
from migrate_eval.score.registry import MetricContext, register_metric
from migrate_eval.score.structured import schema_validator


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
    tools = ctx.exchange.request.tool_parameters
    valid = 0
    for call in calls:
        schema = tools.get(call.name)
        if schema is None or not call.arguments_valid_json:
            continue
        if schema_validator(schema).is_valid(call.parsed_arguments):
            valid += 1
    return valid / len(calls)


def argument_agreement(reference: ToolCall, candidate: ToolCall) -> float:
    """Share of top-level arguments equal in both calls (JSON-aware), over the union of names.

    Arguments that are not JSON objects compare as a whole (1 or 0). No arguments on either
    side: 1.
    """
    ref, cand = reference.parsed_arguments, candidate.parsed_arguments
    if not (
        reference.arguments_valid_json
        and candidate.arguments_valid_json
        and isinstance(ref, dict)
        and isinstance(cand, dict)
    ):
        return 1.0 if call_key(reference)[1] == call_key(candidate)[1] else 0.0
    keys = ref.keys() | cand.keys()
    if not keys:
        return 1.0
    same = sum(1 for k in keys if k in ref and k in cand and json_equal(ref[k], cand[k]))
    return same / len(keys)


def pair_calls(
    reference: Sequence[ToolCall], candidate: Sequence[ToolCall]
) -> list[tuple[ToolCall, ToolCall]]:
    """Pair calls of the same tool, each call at most once, best argument agreement first."""
    scored = sorted(
        (
            (-argument_agreement(r, c), i, j)
            for i, r in enumerate(reference)
            for j, c in enumerate(candidate)
            if r.name == c.name
        ),
    )
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs: list[tuple[ToolCall, ToolCall]] = []
    for _, i, j in scored:
        if i in used_r or j in used_c:
            continue
        used_r.add(i)
        used_c.add(j)
        pairs.append((reference[i], candidate[j]))
    return pairs


@register_metric(
    "tool_args_match",
    kinds=("tool_call",),
    description="Per-argument agreement of calls to the same tool (share of equal top-level "
    "arguments), summed over paired calls / max(calls); n/a when neither answer calls a tool.",
)
def tool_args_match(ctx: MetricContext) -> float | None:
    ref, cand = ctx.reference.tool_calls, ctx.candidate.tool_calls
    if not ref and not cand:
        return None
    if not ref or not cand:
        return 0.0
    total = sum(argument_agreement(r, c) for r, c in pair_calls(ref, cand))
    return total / max(len(ref), len(cand))


@register_metric(
    "no_unexpected_tool_call",
    kinds=("tool_call",),
    description="Where the logged answer replied in text: 1 if the candidate did too, 0 if it "
    "called a tool (1 - mean = unexpected tool call rate); n/a where the logged answer called one.",
)
def no_unexpected_tool_call(ctx: MetricContext) -> float | None:
    if ctx.reference.tool_calls:
        return None
    return 0.0 if ctx.candidate.tool_calls else 1.0


@register_metric(
    "no_missed_tool_call",
    kinds=("tool_call",),
    description="Where the logged answer called a tool: 1 if the candidate called one too, 0 if "
    "it answered in text (1 - mean = missed tool call rate); n/a where the logged answer did not.",
)
def no_missed_tool_call(ctx: MetricContext) -> float | None:
    if not ctx.reference.tool_calls:
        return None
    return 1.0 if ctx.candidate.tool_calls else 0.0
