"""junit.xml (one case per task x candidate) and the published JSON Schema of results.json."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema

from migrate_eval.core.results import SCHEMA_VERSION, ErrorStats, Interval, Reason, TaskResult
from migrate_eval.report import render_junit_xml, results_to_json, write_junit_xml
from migrate_eval.schema import SCHEMA_PATH, published_schema, results_schema_text

from .conftest import CANDIDATES, HOSTILE_TASK, TASKS, XSS, Run


def _cases(xml: str) -> dict[tuple[str, str], ET.Element]:
    root = ET.fromstring(xml)
    return {
        (str(s.get("name")), str(c.get("name"))): c
        for s in root.iter("testsuite")
        for c in s.iter("testcase")
    }


def test_junit_one_case_per_task_and_candidate(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit_xml(run.results, path)
    xml = path.read_text(encoding="utf-8")
    cases = _cases(xml)
    assert set(cases) == {(f"migrate-eval.{c}", t) for c in CANDIDATES for t in TASKS}
    root = ET.fromstring(xml)
    assert root.get("tests") == str(len(CANDIDATES) * len(TASKS))
    # the fixture: candidate 0 is ready with caveats everywhere, candidate 1 not ready
    for t in TASKS:
        ok = cases[(f"migrate-eval.{CANDIDATES[0]}", t)]
        assert ok.find("failure") is None and ok.find("error") is None
        out = ok.find("system-out")
        assert out is not None and "caveats" in (out.text or "")
        bad = cases[(f"migrate-eval.{CANDIDATES[1]}", t)]
        failure = bad.find("failure")
        assert failure is not None and failure.get("type") == "not_ready"
        assert "parity" in (failure.text or "")
    assert root.get("failures") == str(len(TASKS)) and root.get("errors") == "0"


def test_junit_cannot_judge_is_an_error_and_content_is_escaped(run: Run) -> None:
    results = run.results.model_copy(deep=True)
    cand = results.candidates[0]
    cand.tasks[0] = TaskResult(
        task=cand.tasks[0].task,
        n=0,
        n_total=10,
        verdict="cannot_judge",
        reasons=[Reason(code="too_many_errors", message=f"errors {XSS['script']}\x07")],
        parity=Interval(mean=None, ci_low=None, ci_high=None),
        pass_rate=None,
        min_parity=0.85,
        metrics={},
        errors=ErrorStats(count=10, rate=1.0),
    )
    xml = render_junit_xml(results)
    assert XSS["script"] not in xml and "\x07" not in xml
    case = _cases(xml)[(f"migrate-eval.{cand.name}", cand.tasks[0].task)]
    err = case.find("error")
    assert err is not None and err.get("type") == "cannot_judge"
    assert XSS["script"] in (err.get("message") or "")  # round-trips as text
    assert (f"migrate-eval.{cand.name}", HOSTILE_TASK) in _cases(xml)


def test_published_schema_is_up_to_date_with_the_model() -> None:
    on_disk = SCHEMA_PATH.read_text(encoding="utf-8")
    assert on_disk == results_schema_text(), (
        "migrate_eval/schema/results.schema.json is stale: run "
        "`python -m migrate_eval.schema > migrate_eval/schema/results.schema.json`"
    )
    schema = published_schema()
    assert schema["x-schema-version"] == SCHEMA_VERSION
    jsonschema.Draft202012Validator.check_schema(schema)


def test_results_json_validates_against_the_published_schema(run: Run) -> None:
    data = json.loads(results_to_json(run.results))
    jsonschema.Draft202012Validator(published_schema()).validate(data)
    cand = data["candidates"][0]
    for key in ("name", "verdict", "parity", "noise_floor", "cost", "latency", "errors", "tasks"):
        assert key in cand
    assert set(cand["parity"]) >= {"mean", "ci_low", "ci_high"}
    assert set(cand["tasks"][0]) >= {"task", "n", "verdict", "parity", "metrics"}
    data["candidates"][0]["verdict"] = "maybe"
    try:
        jsonschema.Draft202012Validator(published_schema()).validate(data)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("an unknown verdict must not validate")
