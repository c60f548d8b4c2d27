"""The Anthropic provider through the real SDK against a loopback Messages API."""

from __future__ import annotations

import asyncio
import builtins
import json
from typing import Any

import pytest

pytest.importorskip("anthropic")

from migrate_eval.core.errors import MissingExtraError, VendorError
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import replay
from migrate_eval.replay.providers import UnsupportedRequestError, get_provider
from migrate_eval.replay.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider
from migrate_eval.replay.providers.base import MalformedResponseError
from tests.providers.fake_vendors import ANTHROPIC, WEATHER, FakeVendors, Reply, anthropic_text

KEY = ANTHROPIC.key
spec = ANTHROPIC.spec
call = ANTHROPIC.call

_key = ANTHROPIC.key_fixture()


def sent_key(headers: dict[str, str]) -> str:
    """The key as the SDK sends it (``x-api-key`` or a bearer token, by SDK version)."""
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


def test_text_with_system_prompt_and_sampling(server: FakeVendors) -> None:
    server.script("anthropic", Reply(body=anthropic_text("Bonjour")))
    resp = call(
        server,
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Translate to French."},
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": "Hello"},
            ],
            "stop": "\n\n",
            "user": "u-1",
        },
    )
    got = server.last("anthropic")
    assert got.path == "/v1/messages"
    assert sent_key(got.headers) == KEY
    assert got.body["model"] == "claude-test"
    assert got.body["system"] == "Translate to French.\n\nBe brief."
    assert got.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}
    ]
    assert got.body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "temperature" not in got.body
    assert got.body["stop_sequences"] == ["\n\n"]
    assert "user" not in got.body and "metadata" not in got.body
    assert resp.text == "Bonjour"
    assert resp.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 10
    assert resp.usage.completion_tokens == 3 and resp.usage.total_tokens == 13
    assert resp.latency_ms is not None and resp.latency_ms > 0


def test_multi_turn_tool_results_and_parallel_calls(server: FakeVendors) -> None:
    server.script(
        "anthropic",
        Reply(
            body=anthropic_text(
                "",
                content=[
                    {"type": "text", "text": "Checking both."},
                    {
                        "type": "tool_use",
                        "id": "tu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "tu_2",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
                stop_reason="tool_use",
                usage={
                    "input_tokens": 5,
                    "output_tokens": 7,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 20,
                },
            )
        ),
    )
    request = {
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "Weather in Oslo and Bergen?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_b", "content": "snow"},
            {"role": "assistant", "content": "Rain in Oslo, snow in Bergen."},
            {"role": "user", "content": "And Paris and Rome?"},
        ],
        "tools": [WEATHER],
        "tool_choice": "required",
        "parallel_tool_calls": True,
    }
    resp = call(server, request)
    body = server.last("anthropic").body
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any"}
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Bergen"}},
    ]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_a", "content": "rain"},
        {"type": "tool_result", "tool_use_id": "call_b", "content": "snow"},
    ]
    assert resp.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.parsed_arguments) for c in resp.tool_calls] == [
        ("tu_1", "get_weather", {"city": "Paris"}),
        ("tu_2", "get_weather", {"city": "Rome"}),
    ]
    assert json.loads(resp.tool_calls[0].arguments) == {"city": "Paris"}
    assert resp.text == "Checking both."
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == 125 and resp.usage.cached_tokens == 100


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice_mapping(
    server: FakeVendors, choice: Any, parallel: Any, expected: Any
) -> None:
    request: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER],
        "tool_choice": choice,
    }
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    call(server, request)
    assert server.last("anthropic").body["tool_choice"] == expected


def test_json_schema_is_native_structured_output(server: FakeVendors) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    server.script("anthropic", Reply(body=anthropic_text('{"label": "positive"}')))
    resp = call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "I love it"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "sentiment", "schema": schema, "strict": True},
            },
            "max_completion_tokens": 50,
        },
    )
    body = server.last("anthropic").body
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "tools" not in body
    assert body["max_tokens"] == 50
    assert json.loads(resp.text or "") == {"label": "positive"}
    assert resp.tool_calls == [] and resp.finish_reason == "stop"


def test_images_data_url_and_remote(server: FakeVendors) -> None:
    call(
        server,
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                }
            ],
        },
    )
    content = server.last("anthropic").body["messages"][0]["content"]
    assert content[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert content[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }


def test_json_object_mode(server: FakeVendors) -> None:
    call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"},
        },
    )
    body = server.last("anthropic").body
    assert body["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }


def test_sampling_params_are_dropped_and_counted_unless_strict(
    server: FakeVendors, tmp_path: Any
) -> None:
    ex = Exchange(
        id="t",
        source=Source(file="log.jsonl", line=1, format="chat-jsonl"),
        request={
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "q"}],
            "temperature": 0.3,
            "top_p": 0.9,
        },
    )
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        (lenient,) = replay([ex], [spec(server)], cache=cache)
        sent = server.last("anthropic").body
        (strict,) = replay([ex], [spec(server, strict_params=True)], cache=cache)
        (removed,) = replay([ex], [spec(server, params={"temperature": None})], cache=cache)
    # soft gaps: dropped before sending, named on the row
    assert lenient.ok and lenient.dropped == ["temperature", "top_p"]
    assert "temperature" not in sent and "top_p" not in sent
    # strict: refused, naming them and the way out
    assert strict.error_kind == "unsupported" and "temperature=0.3" in (strict.error or "")
    assert "top_p=0.9" in (strict.error or "") and "--strict-params" in (strict.error or "")
    # a parameter the suite removes itself (params: null) is not a drop
    assert removed.ok and removed.dropped == ["top_p"]


def test_drops_are_counted_per_row_when_equal_requests_share_one_call(
    server: FakeVendors, tmp_path: Any
) -> None:
    def ex(i: str, **extra: Any) -> Exchange:
        request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}], **extra}
        return Exchange(
            id=i, source=Source(file="log.jsonl", line=1, format="chat-jsonl"), request=request
        )

    exchanges = [ex("plain"), ex("seeded", seed=3), ex("warm", temperature=0.7)]
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        rows = replay(exchanges, [spec(server)], cache=cache)
    # once the soft fields are gone the three requests are one: one call, three answers
    assert len(server.received) == 1 and all(r.ok for r in rows)
    assert [r.dropped for r in rows] == [None, ["seed"], ["temperature"]]


def test_no_op_defaults_are_accepted(server: FakeVendors) -> None:
    resp = call(
        server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "n": 1,
            "logprobs": False,
            "frequency_penalty": 0,
            "presence_penalty": 0.0,
        },
    )
    assert resp.text == "echo: x"


def test_key_from_a_named_variable(server: FakeVendors, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")  # without it, see test_native_vendors
    monkeypatch.setenv("MY_CLAUDE_KEY", "k2")
    call(
        server,
        {"model": "m", "messages": [{"role": "user", "content": "x"}]},
        api_key_env="MY_CLAUDE_KEY",
    )
    assert sent_key(server.last("anthropic").headers) == "k2"


def test_identity_has_no_secret(server: FakeVendors) -> None:
    p = get_provider(spec(server))
    assert isinstance(p, AnthropicProvider)
    ident = p.identity()
    assert ident == {"provider": "anthropic", "base_url": server.url, "model": "claude-test"}
    assert KEY not in json.dumps(ident)


def test_missing_sdk_at_first_call(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "anthropic":
            raise ImportError("No module named 'anthropic'")
        return real_import(name, *args, **kwargs)

    p = AnthropicProvider(CandidateSpec(name="c", provider="anthropic", model="m"))
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingExtraError, match="anthropic"):
        asyncio.run(p.complete({"model": "m", "messages": [{"role": "user", "content": "x"}]}))


def test_end_to_end_replay_good_row_and_unsupported_row(server: FakeVendors, tmp_path: Any) -> None:
    def ex(i: str, **extra: Any) -> Exchange:
        return Exchange(
            id=i,
            source=Source(file="log.jsonl", line=1, format="chat-jsonl"),
            request={
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": f"q{i}"}],
                **extra,
            },
        )

    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        rows = replay([ex("1"), ex("2", seed=42), ex("3", n=2)], [spec(server)], cache=cache)
    good, seeded, bad = rows
    assert good.ok and good.response is not None and good.response.text == "echo: q1"
    assert good.dropped is None
    # seed is a soft gap: dropped and named on the row; n > 1 is a hard one: refused
    assert seeded.ok and seeded.dropped == ["seed"]
    assert bad.error_kind == "unsupported" and bad.error is not None and "n=2" in bad.error
    assert bad.attempts <= 1
    assert len(server.received) == 2


def test_translation_edge_cases() -> None:
    from migrate_eval.replay.providers.anthropic import translate_request

    # legacy functions / function_call and a legacy function result
    params = translate_request(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "f", "arguments": "{}"},
                },
                {"role": "function", "name": "f", "content": "done"},
            ],
            "functions": [{"name": "f", "parameters": {"type": "object"}}],
            "function_call": {"name": "f"},
        }
    )
    assert params["tool_choice"] == {"type": "tool", "name": "f"}
    assert params["messages"][1]["content"][0]["type"] == "tool_use"
    assert params["messages"][2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "f",
        "content": "done",
    }
    # history whose tool arguments are not JSON cannot be translated faithfully
    bad = {
        "model": "m",
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}],
            }
        ],
    }
    with pytest.raises(UnsupportedRequestError, match="not valid JSON"):
        translate_request(bad)
    # unknown request fields are named, never dropped
    with pytest.raises(UnsupportedRequestError, match="reasoning_effort=high"):
        translate_request(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "reasoning_effort": "high",
            }
        )


def test_streaming_reassembles_text_tool_calls_and_measures_ttft(server: FakeVendors) -> None:
    server.script(
        "anthropic",
        Reply(body=anthropic_text("Hello there, streaming world")),
        Reply(
            body=anthropic_text(
                "",
                content=[
                    {"type": "text", "text": "Calling."},
                    {
                        "type": "tool_use",
                        "id": "tu_9",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                ],
                stop_reason="tool_use",
            )
        ),
    )
    req = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    resp = call(server, req, stream=True)
    assert server.last("anthropic").body["stream"] is True
    assert resp.text == "Hello there, streaming world" and resp.finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    assert resp.ttft_ms is not None and resp.latency_ms is not None
    assert 0 < resp.ttft_ms < resp.latency_ms
    resp = call(server, {**req, "tools": [WEATHER]}, stream=True)
    assert resp.finish_reason == "tool_calls" and resp.text == "Calling."
    assert [(c.id, c.parsed_arguments) for c in resp.tool_calls] == [("tu_9", {"city": "Oslo"})]


def test_stream_reassembly_rejects_broken_streams() -> None:
    from migrate_eval.replay.providers.anthropic import reassemble_stream

    with pytest.raises(MalformedResponseError):
        reassemble_stream([{"type": "ping"}])
    with pytest.raises(VendorError, match="overloaded"):
        reassemble_stream([{"type": "error", "error": {"type": "x", "message": "overloaded"}}])


def test_an_anthropic_judge_is_asked_without_its_temperature(
    server: FakeVendors, tmp_path: Any
) -> None:
    """The judge sends ``temperature`` (JudgeSpec, default 0): a soft gap on Anthropic,
    dropped, where it used to make every judge call an unsupported request."""
    from migrate_eval.core.suite import JudgeSpec
    from migrate_eval.score import score
    from migrate_eval.score.judge import judge_session
    from tests.test_judge import TASK, _data

    server.script("anthropic", *[Reply(body=anthropic_text("Grade: [[8]]")) for _ in range(16)])
    exs, reps = _data()
    judge = JudgeSpec(provider="anthropic", model="claude-test", base_url=server.url)
    with judge_session(judge, cache_path=tmp_path / "cache.sqlite"):
        df = score(exs, [TASK], {e.id: "t" for e in exs}, reps)
    sent = [r.body for r in server.received]
    assert sent and all("temperature" not in body for body in sent)
    # every exchange's grade was asked for (none refused as unsupported); a judge answering a
    # constant grade then fails its planted controls, so the values themselves are not used
    assert len(sent) >= len(exs)
    assert "judge_rubric" in df.columns
