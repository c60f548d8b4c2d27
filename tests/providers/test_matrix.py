"""The feature-support matrix and `migrate-eval providers`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.replay.providers import UnsupportedRequestError, available_providers
from migrate_eval.replay.providers.anthropic import AnthropicProvider
from migrate_eval.replay.providers.cohere import CohereProvider
from migrate_eval.replay.providers.gemini import GeminiProvider
from migrate_eval.replay.providers.matrix import FEATURES, feature_matrix, matrix_json, render_table


def test_every_native_provider_declares_every_feature() -> None:
    for cls in (AnthropicProvider, GeminiProvider, CohereProvider):
        assert set(cls.features) == set(FEATURES), cls.__name__
        assert set(cls.features.values()) <= {"yes", "emulated", "no"}


def test_matrix_reflects_declared_capabilities() -> None:
    m = feature_matrix(["openai-compatible", "anthropic", "gemini", "cohere"])
    assert all(v == "yes" for v in (m["openai-compatible"] or {}).values())
    anthropic, gemini, cohere = m["anthropic"] or {}, m["gemini"] or {}, m["cohere"] or {}
    assert anthropic["seed"] == "no" and anthropic["json_schema"] == "yes"
    assert anthropic["json_mode"] == "emulated"
    assert gemini["seed"] == "yes" and gemini["json_schema"] == "yes"
    assert cohere["tool_choice_named"] == "emulated"
    for row in (anthropic, gemini, cohere):
        assert row["n"] == "no" and row["logprobs"] == "no"
    assert anthropic["streaming"] == gemini["streaming"] == "yes"
    assert cohere["streaming"] == "no"
    assert anthropic["sampling"] == "no" and gemini["sampling"] == cohere["sampling"] == "yes"


def test_matrix_covers_every_registered_provider() -> None:
    assert set(feature_matrix()) == set(available_providers())


def test_table_and_json_documents() -> None:
    table = render_table(["anthropic", "cohere"])
    lines = table.splitlines()
    assert lines[0].split() == ["feature", "anthropic", "cohere"]
    assert len(lines) == 2 + len(FEATURES)
    assert any(line.split() == ["tool_choice_named", "yes", "emulated"] for line in lines)
    doc = matrix_json(["gemini"])
    assert list(doc["features"]) == list(FEATURES)
    assert doc["providers"]["gemini"]["images"] == "yes"


def test_cli_providers_table_json_and_unknown() -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["providers"])
    assert out.exit_code == 0, out.output
    assert "anthropic" in out.output and "streaming" in out.output
    out = runner.invoke(main, ["providers", "--json", "anthropic", "gemini"])
    assert out.exit_code == 0
    doc = json.loads(out.output)
    assert set(doc["providers"]) == {"anthropic", "gemini"}
    assert doc["providers"]["anthropic"]["seed"] == "no"
    out = runner.invoke(main, ["providers", "no-such-provider"])
    assert out.exit_code == 2


def _features_used(request: dict[str, Any]) -> set[str]:
    used = {"multi_turn"} if len(request.get("messages", [])) > 1 else set()
    if any(m.get("role") in ("system", "developer") for m in request.get("messages", [])):
        used.add("system_prompt")
    if request.get("tools"):
        used.add("tools")
        choice = request.get("tool_choice")
        if choice == "required":
            used.add("tool_choice_required")
        elif isinstance(choice, dict):
            used.add("tool_choice_named")
    kind = (request.get("response_format") or {}).get("type")
    if kind == "json_object":
        used.add("json_mode")
    elif kind == "json_schema":
        used.add("json_schema")
    if request.get("stop"):
        used.add("stop")
    if any(request.get(k) not in (None, 0) for k in ("temperature", "top_p")) or any(
        request.get(k) not in (None, 0) for k in ("presence_penalty", "frequency_penalty")
    ):
        used.add("sampling")
    if request.get("seed") is not None:
        used.add("seed")
    if (request.get("n") or 1) > 1:
        used.add("n")
    if request.get("logprobs"):
        used.add("logprobs")
    return used


def test_matrix_is_truthful_on_real_recorded_openai_traffic(shared_data: Path) -> None:
    """Every real chat request recorded from OpenAI (OpenTelemetry's VCR cassettes) is refused
    by a native provider exactly when it uses a feature the matrix marks 'no'."""
    yaml = pytest.importorskip("yaml")
    from migrate_eval.replay.providers import anthropic, cohere, gemini

    requests = []
    for path in sorted((shared_data / "otel-openai-cassettes").glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            if interaction["request"]["uri"].endswith("/chat/completions"):
                requests.append(json.loads(interaction["request"]["body"]))
    assert len(requests) >= 30
    outcomes: dict[str, list[bool]] = {}
    for name, module in (("anthropic", anthropic), ("gemini", gemini), ("cohere", cohere)):
        matrix = feature_matrix([name])[name] or {}
        for request in requests:
            refused = {f for f in _features_used(request) if matrix[f] == "no"}
            if refused:
                with pytest.raises(UnsupportedRequestError):
                    module.translate_request(request)
            else:
                module.translate_request(request)
            outcomes.setdefault(name, []).append(bool(refused))
    # n=2 requests are refused everywhere; seed/temperature only by Anthropic
    assert sum(outcomes["gemini"]) == sum(outcomes["cohere"]) == 4
    assert sum(outcomes["anthropic"]) == 6
