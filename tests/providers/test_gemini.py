"""The Gemini provider through the real google-genai SDK against a loopback Gemini API."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

pytest.importorskip("google.genai")

from migrate_eval.replay.providers import UnsupportedRequestError
from tests.providers.fake_vendors import GEMINI, WEATHER, FakeVendors, Reply, gemini_text

KEY = GEMINI.key
call = GEMINI.call

_key = GEMINI.key_fixture()


def either(obj: dict[str, Any], camel: str) -> Any:
    """A field by its proto JSON name: the SDK sends some nested fields in snake_case,
    which the Gemini API accepts as well (proto3 JSON parsers take both spellings)."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj[camel] if camel in obj else obj[snake]


def test_text_system_prompt_sampling_and_stop(server: FakeVendors) -> None:
    server.script("gemini", Reply(body=gemini_text("Bonjour")))
    resp = call(
        server,
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Translate to French."},
                {"role": "user", "content": "Hello"},
            ],
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 5,
            "max_tokens": 64,
            "stop": ["END"],
            "presence_penalty": 0.1,
        },
    )
    got = server.last("gemini")
    assert got.path == "/v1beta/models/gemini-test:generateContent"
    assert got.headers["x-goog-api-key"] == KEY
    body = got.body
    assert body["systemInstruction"]["parts"] == [{"text": "Translate to French."}]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hello"}]}]
    gc = body["generationConfig"]
    assert gc["temperature"] == 0.2 and gc["topP"] == 0.9 and gc["seed"] == 5
    assert gc["maxOutputTokens"] == 64 and gc["stopSequences"] == ["END"]
    assert gc["presencePenalty"] == 0.1
    assert resp.text == "Bonjour" and resp.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 10
    assert resp.usage.total_tokens == 13


def test_multi_turn_tool_results_and_parallel_calls(server: FakeVendors) -> None:
    server.script(
        "gemini",
        Reply(
            body={
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {
                                    "functionCall": {
                                        "name": "get_weather",
                                        "args": {"city": "Paris"},
                                    }
                                },
                                {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                            ],
                        },
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 50,
                    "candidatesTokenCount": 8,
                    "totalTokenCount": 58,
                    "cachedContentTokenCount": 32,
                },
            }
        ),
    )
    resp = call(
        server,
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": '{"sky": "rain"}'},
                {"role": "assistant", "content": "Rain."},
                {"role": "user", "content": "Paris and Rome?"},
            ],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
    )
    body = server.last("gemini").body
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user", "model", "user"]
    assert body["contents"][1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
    ]
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"sky": "rain"}}}
    ]
    decl = body["tools"][0]["functionDeclarations"][0]
    assert decl["name"] == "get_weather"
    assert either(decl, "parametersJsonSchema") == WEATHER["function"]["parameters"]
    assert body["toolConfig"]["functionCallingConfig"] == {
        "mode": "ANY",
        "allowedFunctionNames": ["get_weather"],
    }
    assert resp.finish_reason == "tool_calls"
    assert [(c.name, c.parsed_arguments) for c in resp.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert len({c.id for c in resp.tool_calls}) == 2
    assert json.loads(resp.tool_calls[1].arguments) == {"city": "Rome"}
    assert resp.usage is not None and resp.usage.cached_tokens == 32


@pytest.mark.parametrize(
    ("choice", "mode"), [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")]
)
def test_tool_choice_modes(server: FakeVendors, choice: str, mode: str) -> None:
    call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER],
            "tool_choice": choice,
        },
    )
    assert server.last("gemini").body["toolConfig"]["functionCallingConfig"] == {"mode": mode}


def test_structured_output_is_native(server: FakeVendors) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    server.script("gemini", Reply(body=gemini_text('{"label": "positive"}')))
    resp = call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "I love it"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": schema},
            },
        },
    )
    gc = server.last("gemini").body["generationConfig"]
    assert gc["responseMimeType"] == "application/json"
    assert gc["responseJsonSchema"] == schema
    assert json.loads(resp.text or "") == {"label": "positive"}


def test_json_mode(server: FakeVendors) -> None:
    call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        },
    )
    gc = server.last("gemini").body["generationConfig"]
    assert gc["responseMimeType"] == "application/json" and "responseJsonSchema" not in gc


def test_images(server: FakeVendors) -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    call(
        server,
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                    ],
                }
            ],
        },
    )
    parts = server.last("gemini").body["contents"][0]["parts"]
    inline, remote = either(parts[1], "inlineData"), either(parts[2], "fileData")
    assert either(inline, "mimeType") == "image/png" and inline["data"] == png
    assert either(remote, "fileUri") == "https://example.com/a.jpg"
    assert either(remote, "mimeType") == "image/jpeg"


def test_blocked_prompt_is_content_filter(server: FakeVendors) -> None:
    server.script("gemini", Reply(body={"promptFeedback": {"blockReason": "SAFETY"}}))
    resp = call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert resp.finish_reason == "content_filter" and resp.text is None


def test_key_from_google_api_key(server: FakeVendors, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")  # without either, see test_native_vendors
    monkeypatch.setenv("GOOGLE_API_KEY", "g2")
    call(server, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert server.last("gemini").headers["x-goog-api-key"] == "g2"


def test_translation_edge_cases() -> None:
    from migrate_eval.replay.providers.gemini import translate_request

    # a tool result is named after the call it answers; a non-object result is wrapped
    args = translate_request(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "function": {"name": "lookup", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
        }
    )
    assert args["contents"][1]["parts"][0]["function_response"] == {
        "name": "lookup",
        "response": {"result": "42"},
    }
    with pytest.raises(UnsupportedRequestError, match="answers no known tool call"):
        translate_request(
            {"model": "m", "messages": [{"role": "tool", "tool_call_id": "zz", "content": "x"}]}
        )
    with pytest.raises(UnsupportedRequestError, match="remote image URL of unknown type"):
        part = {"type": "image_url", "image_url": {"url": "https://example.com/image"}}
        translate_request({"model": "m", "messages": [{"role": "user", "content": [part]}]})


def test_streaming_reassembles_and_measures_ttft(server: FakeVendors) -> None:
    server.script(
        "gemini",
        Reply(body=gemini_text("Bonjour tout le monde")),
        Reply(
            body={
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {"functionCall": {"name": "get_weather", "args": {"city": "A"}}},
                                {"functionCall": {"name": "get_weather", "args": {"city": "B"}}},
                            ],
                        },
                        "finishReason": "STOP",
                    }
                ]
            }
        ),
    )
    req = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    resp = call(server, req, stream=True)
    assert server.last("gemini").path == "/v1beta/models/gemini-test:streamGenerateContent"
    assert resp.text == "Bonjour tout le monde" and resp.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens == 13
    assert resp.ttft_ms is not None and resp.latency_ms is not None
    assert 0 < resp.ttft_ms < resp.latency_ms
    resp = call(server, {**req, "tools": [WEATHER]}, stream=True)
    assert resp.finish_reason == "tool_calls"
    assert [c.parsed_arguments for c in resp.tool_calls] == [{"city": "A"}, {"city": "B"}]
