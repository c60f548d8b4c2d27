"""Structured-output metrics: JSON validity, validity against the request's schema, field parity.

Answers are parsed with :func:`~migrate_eval.metrics._json.parse_json_answer`, which accepts an
answer that is exactly one ```` ```json ```` fenced block (documented leniency).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import jsonschema

from migrate_eval.metrics._json import canonical_key, json_equal, leaves
from migrate_eval.metrics.registry import MetricContext, register_metric

_VALIDATORS: OrderedDict[str, Any] = OrderedDict()
_VALIDATOR_CACHE_SIZE = 256


def request_schema(request: dict[str, Any]) -> dict[str, Any] | bool | None:
    """The JSON schema of a request's ``response_format`` (``json_schema.schema``), if any."""
    rf = request.get("response_format")
    if not isinstance(rf, dict) or rf.get("type") != "json_schema":
        return None
    js = rf.get("json_schema")
    if not isinstance(js, dict):
        return None
    schema = js.get("schema")
    return schema if isinstance(schema, dict | bool) else None


def schema_validator(schema: dict[str, Any] | bool) -> Any:
    """A Draft 2020-12 validator for ``schema``, checked once and cached (LRU, by content).

    Raises ``jsonschema.SchemaError`` when the schema itself is invalid.
    """
    key = canonical_key(schema)
    validator = _VALIDATORS.get(key)
    if validator is None:
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        _VALIDATORS[key] = validator
        if len(_VALIDATORS) > _VALIDATOR_CACHE_SIZE:
            _VALIDATORS.popitem(last=False)
    else:
        _VALIDATORS.move_to_end(key)
    return validator


@register_metric(
    "json_valid",
    kinds=("structured",),
    description="1 if the candidate's text is JSON (a ```json fenced block is accepted), else 0.",
)
def json_valid(ctx: MetricContext) -> float | None:
    return 1.0 if ctx.candidate_json[0] else 0.0


@register_metric(
    "json_schema_valid",
    kinds=("structured",),
    description="1 if the candidate's JSON is valid against the request's response_format schema "
    "(Draft 2020-12); n/a without a schema.",
)
def json_schema_valid(ctx: MetricContext) -> float | None:
    schema = request_schema(ctx.exchange.request)
    if schema is None:
        return None
    ok, value = ctx.candidate_json
    if not ok:
        return 0.0
    return 1.0 if schema_validator(schema).is_valid(value) else 0.0


def json_field_parity(reference: Any, candidate: Any) -> float:
    """Share of leaf fields on which two JSON values agree.

    Both values are flattened into leaf paths (:func:`~migrate_eval.metrics._json.leaves`;
    arrays by position). The score is the number of paths present in both with JSON-equal
    values, divided by the number of distinct paths in either. So a missing or wrong field
    costs one, and so does every extra leaf the candidate adds (an extra key, an extra array
    item): a reference with 4 fields answered with those 4 plus 1 extra scores 4/5.
    """
    if json_equal(reference, candidate):
        return 1.0
    ref, cand = leaves(reference), leaves(candidate)
    matched = sum(1 for p, v in ref.items() if p in cand and json_equal(v, cand[p]))
    union = len(ref) + sum(1 for p in cand if p not in ref)
    return matched / union if union else 1.0


@register_metric(
    "json_match",
    kinds=("structured",),
    description="Share of leaf fields equal to the logged JSON answer (key order irrelevant, 1 == 1.0; "
    "extra candidate fields count against); 0 if the candidate is not JSON, n/a if the reference is not.",
)
def json_match(ctx: MetricContext) -> float | None:
    ref_ok, ref = ctx.reference_json
    if not ref_ok:
        return None
    cand_ok, cand = ctx.candidate_json
    if not cand_ok:
        return 0.0
    return json_field_parity(ref, cand)
