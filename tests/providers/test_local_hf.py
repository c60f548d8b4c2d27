"""The hf-local provider on a tiny Llama the test builds itself (offline, CPU, seconds)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import replay
from migrate_eval.replay.providers import ProviderResponse, UnsupportedRequestError, get_provider
from migrate_eval.replay.providers.local_hf import LocalHFProvider, parse_tool_calls
from tests.providers.tiny_model import build_tiny_model

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # belt and braces: the provider never downloads anyway
    try:
        yield build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
    finally:
        mp.undo()


def spec_for(model_dir: Path, **kw: Any) -> CandidateSpec:
    kw.setdefault("params", {"max_new_tokens": 12})
    return CandidateSpec(name="local", provider="hf-local", model=str(model_dir), **kw)


def run(spec: CandidateSpec, *requests: dict[str, Any]) -> list[ProviderResponse]:
    async def go() -> list[ProviderResponse]:
        async with get_provider(spec) as provider:
            return list(await asyncio.gather(*(provider.complete(r) for r in requests)))

    return asyncio.run(go())


def chat(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": text}],
        **extra,
    }


def test_chat_is_generated_with_usage_latency_and_seeded_determinism(model_dir: Path) -> None:
    request = chat(seed=7, temperature=0.8, top_p=0.95, max_tokens=8)
    first, second, other = run(spec_for(model_dir), request, request, chat(seed=8, max_tokens=8))
    assert isinstance(first.response.text, str)
    assert first.response.text == second.response.text  # same seed, same answer
    usage = first.response.usage
    assert usage is not None and usage.prompt_tokens and usage.prompt_tokens > 5
    assert usage.completion_tokens is not None and 1 <= usage.completion_tokens <= 8
    assert first.latency_ms > 0 and first.response.latency_ms == first.latency_ms
    assert first.response.finish_reason in ("stop", "length")
    assert first.raw["object"] == "chat.completion"
    json.dumps(first.raw)  # cacheable
    assert other.response.usage is not None


def test_greedy_is_deterministic_and_max_tokens_gives_length(model_dir: Path) -> None:
    a, b = run(
        spec_for(model_dir), chat(temperature=0, max_tokens=5), chat(temperature=0, max_tokens=5)
    )
    assert a.response.text == b.response.text
    assert a.response.usage is not None and a.response.usage.completion_tokens is not None
    if a.response.usage.completion_tokens == 5:
        assert a.response.finish_reason == "length"


def test_tools_reach_the_chat_template_and_history_renders(model_dir: Path) -> None:
    request = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        ],
        "tools": TOOLS,
        "tool_choice": "auto",
        "temperature": 0,
        "max_tokens": 4,
    }  # fmt: skip
    provider = get_provider(spec_for(model_dir))
    assert isinstance(provider, LocalHFProvider)

    async def go() -> tuple[ProviderResponse, str]:
        async with provider:
            answer = await provider.complete(request)
            prompt = provider._tokenizer.apply_chat_template(
                [{"role": "user", "content": "x"}], tools=TOOLS, tokenize=False
            )
            return answer, prompt

    answer, prompt = asyncio.run(go())
    assert '"name": "get_weather"' in prompt and "<tools>" in prompt
    assert answer.response.usage is not None
    # the tools block, the tool call and its result are all in the prompt
    assert answer.response.usage.prompt_tokens is not None
    assert answer.response.usage.prompt_tokens > 60


def test_parse_hermes_qwen_tool_calls() -> None:
    text = (
        "Let me check.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>{"name": "get_time", "arguments": "{\\"tz\\": \\"CET\\"}"}</tool_call>'
    )
    content, calls = parse_tool_calls(text)
    assert content == "Let me check."
    assert [(c.name, c.parsed_arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "CET"}),
    ]
    assert all(c.id and c.id.startswith("call_") for c in calls)
    content, calls = parse_tool_calls("<tool_call>not json</tool_call>")
    assert calls == [] and content == "<tool_call>not json</tool_call>"


TOOL_NAMES = {"get_weather", "get_time"}
WEATHER_TIME = [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]


@pytest.mark.parametrize(
    ("family", "text", "content"),
    [
        (
            "mistral before v11",
            'Checking.[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "get_time", "arguments": {"tz": "CET"}}]',
            "Checking.",
        ),
        (
            "mistral v11",
            '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time{"tz": "CET"}',
            None,
        ),
        (
            "mistral v13 with call ids",
            '[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Paris"}'
            '[TOOL_CALLS]get_time[CALL_ID]f5g6h7i8j[ARGS]{"tz": "CET"}',
            None,
        ),
        (
            "llama 3.1 python_tag",
            '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
            '{"name": "get_time", "parameters": {"tz": "CET"}}',
            None,
        ),
        (
            "llama 3.x JSON, special tokens stripped",
            '{"name": "get_weather", "parameters": {"city": "Paris"}}\n'
            '{"name": "get_time", "parameters": {"tz": "CET"}}',
            None,
        ),
        (
            "mistral list, special tokens stripped",
            '[{"name": "get_weather", "arguments": {"city": "Paris"}}, '
            '{"name": "get_time", "arguments": {"tz": "CET"}}]',
            None,
        ),
        (
            "llama 3.2 / 4 pythonic",
            "<|python_start|>[get_weather(city='Paris'), get_time(tz=\"CET\")]<|python_end|>",
            None,
        ),
    ],
)
def test_tool_calls_of_other_families_are_parsed(family: str, text: str, content: Any) -> None:
    got, calls = parse_tool_calls(text, TOOL_NAMES)
    assert got == content, family
    assert [(c.name, c.parsed_arguments) for c in calls] == WEATHER_TIME, family
    assert all(c.id and c.id.startswith("call_") for c in calls)


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "Ada", "age": 36}',  # a JSON answer with a name field
        '{"name": "get_weather", "parameters": {"city": "Paris"}, "note": "x"}',  # more fields
        '{"name": "unknown_tool", "parameters": {}}',  # not a declared tool
        "[get_weather(city=input())]",  # not a literal
        "[unknown(city='Paris')]",
        "[1, 2, 3]",
        "I would call get_weather(city='Paris') for you.",
    ],
)
def test_answers_that_only_look_like_calls_stay_text(text: str) -> None:
    assert parse_tool_calls(text, TOOL_NAMES) == (text, [])


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 3}, "n=3"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format=json_object"),
        ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice=required"),
    ],
)
def test_unsupported_features_are_named(model_dir: Path, extra: dict[str, Any], named: str) -> None:
    with pytest.raises(UnsupportedRequestError, match=named):
        run(spec_for(model_dir), chat(**extra))


def test_never_downloads_a_missing_model(tmp_path: Path) -> None:
    spec = CandidateSpec(name="local", provider="transformers", model="no-such-org/no-such-model")
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        run(spec, chat())


def test_replay_end_to_end_with_concurrency(model_dir: Path, tmp_path: Path) -> None:
    exchanges = [
        Exchange(
            id=f"ex{i}",
            source=Source(file="log.jsonl", line=i + 1, format="chat-jsonl"),
            request=chat(f"question {i}", seed=i, max_tokens=4),
        )
        for i in range(4)
    ]
    spec = spec_for(model_dir, concurrency=4)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        results = replay(exchanges, [spec], cache=cache)
        again = replay(exchanges, [spec], cache=cache)
    assert all(r.response is not None and r.error is None for r in results)
    assert all(r.cached for r in again)
    assert [r.response.text for r in again if r.response] == [
        r.response.text for r in results if r.response
    ]


def test_non_numeric_sampling_values_are_refused(model_dir: Path) -> None:
    with pytest.raises(UnsupportedRequestError, match="temperature='hot'"):
        run(spec_for(model_dir), chat(temperature="hot"))


def test_new_weights_at_the_same_path_are_asked_again(tmp_path: Path) -> None:
    # bug: the cache identity was the path and name, so replaced weights answered from the cache
    folder = build_tiny_model(tmp_path / "model", seed=0)
    exchanges = [
        Exchange(
            id=f"ex{i}",
            source=Source(file="log.jsonl", line=i + 1, format="chat-jsonl"),
            request=chat(f"question {i}", temperature=0, max_tokens=6),
        )
        for i in range(3)
    ]
    spec = spec_for(folder)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        before = replay(exchanges, [spec], cache=cache)
        assert all(r.cached for r in replay(exchanges, [spec], cache=cache))  # same weights
        build_tiny_model(folder, seed=1)  # retrained: same files, same sizes, other values
        after = replay(exchanges, [spec], cache=cache)
    assert all(r.ok for r in before + after)
    assert not any(r.cached for r in after)
    # the new answers are the new weights' own (greedy): what a fresh cache gets
    with ResponseCache(tmp_path / "fresh.sqlite") as fresh:
        expected = replay(exchanges, [spec], cache=fresh)
    assert [r.response.text for r in after if r.response] == [
        r.response.text for r in expected if r.response
    ]


def test_the_weights_fingerprint_follows_content_and_large_files_by_mtime(tmp_path: Path) -> None:
    import os

    from migrate_eval.replay.providers._files import model_files_fingerprint

    (tmp_path / "config.json").write_text('{"a": 1}')
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    (tmp_path / "README.md").write_text("notes")
    first = model_files_fingerprint(tmp_path)
    assert first is not None and first == model_files_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("other notes")  # not read by the loader
    assert model_files_fingerprint(tmp_path) == first
    stamp = weights.stat().st_mtime_ns
    weights.write_bytes(b"\x01" * 64)  # same size, same mtime: content tells them apart
    os.utime(weights, ns=(stamp, stamp))
    assert model_files_fingerprint(tmp_path) != first
    # a file above the hash limit counts by size and mtime
    large = model_files_fingerprint(tmp_path, hash_limit=16)
    os.utime(weights, ns=(stamp + 1_000, stamp + 1_000))
    assert model_files_fingerprint(tmp_path, hash_limit=16) != large
    assert model_files_fingerprint(tmp_path / "missing") is None


def test_the_identity_names_the_weights(model_dir: Path) -> None:
    identity = get_provider(spec_for(model_dir)).identity()
    assert identity["model"] == str(model_dir.resolve())
    assert isinstance(identity["weights"], str) and identity["weights"].startswith("sha256:")
