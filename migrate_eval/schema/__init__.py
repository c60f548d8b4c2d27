"""The published JSON Schema of ``results.json``, generated from the pydantic ``Results`` model.

``results.schema.json`` (package data, next to this file) is the checked-in copy; a test fails
when it is out of date with the model. Regenerate it with::

    python -m migrate_eval.schema > migrate_eval/schema/results.schema.json

The schema's ``$id`` carries the results ``schema_version``; consumers should read
``schema_version`` in a results file before anything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrate_eval.core.results import SCHEMA_VERSION, Results

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
SCHEMA_ID = f"https://migrate-eval.invalid/schema/results-{SCHEMA_VERSION}.schema.json"


def results_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``results.json`` for this version of the model."""
    schema = Results.model_json_schema(mode="serialization")
    out: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "x-schema-version": SCHEMA_VERSION,
    }
    out.update(schema)
    out["title"] = "migrate-eval results.json"
    out["description"] = (
        "Results of a migrate-eval run: per candidate and per task parity with its interval, "
        "verdicts with reasons, noise floor, cost, latency and errors; and the gate."
    )
    return out


def results_schema_text() -> str:
    """The schema as the checked-in file holds it (stable formatting, trailing newline)."""
    return json.dumps(results_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def published_schema() -> dict[str, Any]:
    """The checked-in schema (package data)."""
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return data


__all__ = ["SCHEMA_ID", "SCHEMA_PATH", "published_schema", "results_schema", "results_schema_text"]
