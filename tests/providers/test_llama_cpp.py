"""The llama-cpp provider on a tiny random GGUF model the test writes itself (offline, CPU).

The model (:mod:`tests.providers.tiny_gguf`) answers gibberish, so the tests check what holds
whatever the weights: the replay path end to end, the usage counts, seeded determinism, and
what llama.cpp's grammars guarantee (structured output valid against the request's schema,
tool calls when ``tool_choice`` asks for one). Tests that need llama-cpp-python and gguf skip
without them (``nox -s llama_cpp`` installs both).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import migrate_eval
from migrate_eval.core.errors import ConfigError, MissingExtraError
from migrate_eval.core.records import Exchange, Source
from migrate_eval.core.suite import CandidateSpec, parse_candidate_spec
from migrate_eval.replay.cache import ResponseCache
from migrate_eval.replay.engine import replay
from migrate_eval.replay.providers import ProviderResponse, UnsupportedRequestError, get_provider
from migrate_eval.replay.providers.llamacpp import LlamaCppProvider
from migrate_eval.replay.providers.matrix import provider_features
from tests.run_rows import response_rows

SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["refund", "replace", "reject"]},
        "urgent": {"type": "boolean"},
        "items": {"type": "integer"},
        "code": {"type": "string", "maxLength": 6},
    },
    "required": ["verdict", "urgent", "items", "code"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Local time in a time zone",
            "parameters": {
                "type": "object",
                "properties": {"utc_offset": {"type": "integer"}},
                "required": ["utc_offset"],
                "additionalProperties": False,
            },
        },
    },
]


def _needs(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed ({why}; `nox -s llama_cpp` installs it)")


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _needs("llama_cpp", "the llama-cpp extra: llama-cpp-python")
    _needs("gguf", "the gguf package writes the tiny test model")
    from tests.providers.tiny_gguf import build_tiny_gguf

    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")


def spec_for(path: Path, **kw: Any) -> CandidateSpec:
    kw.setdefault("params", {"n_ctx": 1024, "threads": 1})
    return CandidateSpec(name="gguf", provider="llama-cpp", model=str(path), **kw)


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


def test_a_missing_llama_cpp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kw: Any) -> Any:
        return None if name == "llama_cpp" else real(name, *args, **kw)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    spec = parse_candidate_spec("llama-cpp:models/tiny.gguf")
    with pytest.raises(MissingExtraError, match=r"pip install 'migrate-eval\[llama-cpp\]'") as e:
        get_provider(spec)
    assert e.value.exit_code == 2


def test_the_feature_matrix_declares_grammar_constrained_output() -> None:
    features = provider_features("llama-cpp")
    assert features is not None
    assert features["json_schema"] == "yes" and features["json_mode"] == "yes"
    assert features["tool_choice_named"] == "emulated" and features["n"] == "no"


def test_bad_loading_options_are_config_errors() -> None:
    spec = CandidateSpec(
        name="gguf", provider="llama-cpp", model="x.gguf", params={"n_gpu_layers": "all"}
    )
    with pytest.raises(ConfigError, match=r"params.n_gpu_layers must be an integer >= -1"):
        LlamaCppProvider(spec)  # checked when the provider is built, before llama.cpp loads


@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {"type": "json_schema", "json_schema": {
            "name": "r", "schema": {"$ref": "https://example.com/schema.json"}}}},
        {"tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"$ref": "http://127.0.0.1:9/p.json"}}}],
         "tool_choice": "required"},
    ],
)  # fmt: skip
def test_a_schema_ref_to_another_document_is_never_fetched(extra: dict[str, Any]) -> None:
    # llama-cpp-python's converter would GET it: a logged schema must not make replay call out
    provider = LlamaCppProvider(CandidateSpec(name="g", provider="llama-cpp", model="x.gguf"))
    with pytest.raises(UnsupportedRequestError, match="another document"):
        provider._generate(chat(**extra))  # refused before the model is loaded


@pytest.mark.llama_cpp
def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    _needs("llama_cpp", "the llama-cpp extra: llama-cpp-python")
    with pytest.raises(ConfigError, match="no GGUF file"):
        run(spec_for(tmp_path / "missing.gguf"), chat())


@pytest.mark.llama_cpp
def test_chat_is_generated_with_usage_and_seeded_determinism(gguf_path: Path) -> None:
    request = chat(seed=7, temperature=0.8, top_p=0.95, max_tokens=8)
    first, second, other = run(spec_for(gguf_path), request, request, chat(seed=8, max_tokens=8))
    assert isinstance(first.response.text, str) and first.response.text
    assert first.response.text == second.response.text  # same seed, same answer
    usage = first.response.usage
    assert usage is not None and usage.prompt_tokens is not None and usage.prompt_tokens > 10
    # llama-cpp-python finishes a UTF-8 character cut by max_tokens: up to 3 byte tokens more
    assert usage.completion_tokens is not None and 1 <= usage.completion_tokens <= 8 + 3
    assert first.response.finish_reason in ("stop", "length")
    assert first.latency_ms > 0 and first.response.latency_ms == first.latency_ms
    assert first.raw["object"] == "chat.completion"
    json.dumps(first.raw)  # cacheable
    assert other.response.usage is not None


@pytest.mark.llama_cpp
def test_greedy_is_deterministic_and_max_tokens_gives_length(gguf_path: Path) -> None:
    a, b = run(
        spec_for(gguf_path), chat(temperature=0, max_tokens=5), chat(temperature=0, max_tokens=5)
    )
    assert a.response.text == b.response.text
    assert a.response.usage is not None and a.response.usage.completion_tokens is not None
    if a.response.usage.completion_tokens == 5:
        assert a.response.finish_reason == "length"


@pytest.mark.llama_cpp
def test_json_schema_output_is_valid_against_the_schema(gguf_path: Path) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "triage", "schema": SCHEMA}}
    answers = run(
        spec_for(gguf_path),
        *(chat(f"Ticket {i}", response_format=fmt, seed=i, max_tokens=200) for i in range(4)),
        chat("Ticket greedy", response_format=fmt, temperature=0, max_tokens=200),
    )
    for answer in answers:
        assert answer.response.text is not None
        jsonschema.validate(json.loads(answer.response.text), SCHEMA)  # random weights, valid


@pytest.mark.llama_cpp
def test_json_object_output_is_a_json_object(gguf_path: Path) -> None:
    # any JSON object: random weights may write long strings, so only a whole answer is checked
    (answer,) = run(
        spec_for(gguf_path),
        chat(response_format={"type": "json_object"}, temperature=0, max_tokens=400),
    )
    assert answer.response.text is not None
    if answer.response.finish_reason == "stop":
        assert isinstance(json.loads(answer.response.text), dict)
    else:
        assert answer.response.text.lstrip().startswith("{")


@pytest.mark.llama_cpp
def test_tool_choice_named_and_required_give_valid_tool_calls(gguf_path: Path) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    answers = run(
        spec_for(gguf_path),
        chat("Weather in Paris?", tools=TOOLS, tool_choice=named, seed=1, max_tokens=60),
        *(
            chat("Weather or time?", tools=TOOLS, tool_choice="required", seed=i, max_tokens=80)
            for i in range(3)
        ),
    )
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for i, answer in enumerate(answers):
        response = answer.response
        assert response.finish_reason == "tool_calls"
        assert response.text is None and len(response.tool_calls) == 1
        call = response.tool_calls[0]
        assert call.id and call.id.startswith("call_")
        if i == 0:
            assert call.name == "get_weather"
        assert call.parsed_arguments is not None
        jsonschema.validate(call.parsed_arguments, params[call.name])
        message = answer.raw["choices"][0]["message"]
        assert message["tool_calls"][0]["function"]["name"] == call.name


@pytest.mark.llama_cpp
def test_tools_reach_the_chat_template(gguf_path: Path) -> None:
    # the template renders the tools into the system turn: the prompt is longer by their JSON
    plain, with_tools, choice_none = run(
        spec_for(gguf_path),
        chat(max_tokens=1),
        chat(tools=TOOLS, max_tokens=1),
        chat(tools=TOOLS, tool_choice="none", max_tokens=1),
    )
    counts = [
        a.response.usage.prompt_tokens if a.response.usage else None
        for a in (plain, with_tools, choice_none)
    ]
    assert counts[0] is not None and counts[1] is not None
    assert counts[1] > counts[0] + len(json.dumps(TOOLS)) // 2
    assert counts[2] == counts[0]  # tool_choice "none": rendered without tools


@pytest.mark.llama_cpp
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 3}, "n=3"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "not among the request's tools",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {
                "name": "r", "schema": {"type": "string", "pattern": "^a{x}$"}}}},
            "cannot turn this JSON schema into a grammar",
        ),
        ({"temperature": "hot"}, "temperature='hot'"),
    ],
)  # fmt: skip
def test_requests_it_cannot_follow_are_unsupported(
    gguf_path: Path, extra: dict[str, Any], named: str
) -> None:
    with pytest.raises(UnsupportedRequestError, match=named):
        run(spec_for(gguf_path), chat(**extra))


@pytest.mark.llama_cpp
def test_images_are_unsupported(gguf_path: Path) -> None:
    request = {
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        ]}]
    }  # fmt: skip
    with pytest.raises(UnsupportedRequestError, match="image"):
        run(spec_for(gguf_path), request)


@pytest.mark.llama_cpp
def test_a_prompt_longer_than_n_ctx_names_n_ctx(gguf_path: Path) -> None:
    spec = spec_for(gguf_path, params={"n_ctx": 256, "threads": 1})  # llama.cpp's least
    with pytest.raises(Exception, match=r"n_ctx=256.*raise params.n_ctx") as e:
        run(spec, chat("word " * 300, max_tokens=4))
    assert not isinstance(e.value, UnsupportedRequestError)


@pytest.mark.llama_cpp
def test_replay_end_to_end_with_cache_and_weights_identity(gguf_path: Path, tmp_path: Path) -> None:
    exchanges = [
        Exchange(
            id=f"ex{i}",
            source=Source(file="log.jsonl", line=i + 1, format="chat-jsonl"),
            request=chat(f"question {i}", seed=i, max_tokens=6),
        )
        for i in range(4)
    ]
    spec = spec_for(gguf_path, concurrency=4)  # one model instance: served one at a time
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        results = replay(exchanges, [spec], cache=cache)
        again = replay(exchanges, [spec], cache=cache)
    assert all(r.ok and r.response is not None for r in results)
    assert all(r.cached for r in again)
    assert [r.response.text for r in again if r.response] == [
        r.response.text for r in results if r.response
    ]
    identity = get_provider(spec).identity()
    assert identity["model"] == str(gguf_path.resolve())
    assert isinstance(identity["weights"], str) and identity["weights"].startswith("sha256:")


@pytest.mark.llama_cpp
def test_new_weights_at_the_same_path_are_asked_again(tmp_path: Path) -> None:
    _needs("llama_cpp", "the llama-cpp extra: llama-cpp-python")
    _needs("gguf", "the gguf package writes the tiny test model")
    from tests.providers.tiny_gguf import build_tiny_gguf

    path = build_tiny_gguf(tmp_path / "model.gguf", seed=0)
    exchanges = [
        Exchange(
            id="ex0",
            source=Source(file="log.jsonl", line=1, format="chat-jsonl"),
            request=chat("question", temperature=0, max_tokens=6),
        )
    ]
    spec = spec_for(path)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        before = replay(exchanges, [spec], cache=cache)
        build_tiny_gguf(path, seed=1)  # same size, other weights
        after = replay(exchanges, [spec], cache=cache)
    assert before[0].ok and after[0].ok
    assert not after[0].cached


@pytest.mark.llama_cpp
def test_migrate_eval_run_with_a_llama_cpp_candidate(gguf_path: Path, tmp_path: Path) -> None:
    rows = []
    for i in range(6):
        request = chat(f"Ticket {i}: my parcel is late", max_tokens=200, temperature=0)
        if i % 2:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "triage", "schema": SCHEMA, "strict": True},
            }
            answer = json.dumps({"verdict": "refund", "urgent": True, "items": 1, "code": "A1"})
        else:
            answer = f"Sorry about ticket {i}."
        rows.append(
            {
                "request": request,
                "response": {
                    "id": f"chatcmpl-{i}",
                    "object": "chat.completion",
                    "created": 1760000000 + i,
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                },
            }
        )
    logs = tmp_path / "logs.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    outcome = migrate_eval.run(
        logs=[logs],
        candidates=[f"tiny=llama-cpp:{gguf_path}"],
        candidate_params=["tiny.n_ctx=1024", "tiny.threads=1"],
        out=tmp_path / "run",
        cache=tmp_path / "cache.sqlite",
    )
    (candidate,) = outcome.results.candidates
    assert candidate.name == "tiny" and candidate.errors.count == 0
    answers = response_rows(outcome.run_dir)
    assert len(answers) == 6 and all(a["candidate"] == "tiny" for a in answers)

    def follows_schema(answer: dict[str, Any]) -> bool:
        try:
            jsonschema.validate(json.loads(answer["response"]["text"]), SCHEMA)
        except (ValueError, TypeError, jsonschema.ValidationError):
            return False
        return True

    # the three structured requests got schema-valid answers from random weights (grammar)
    assert sum(follows_schema(a) for a in answers) == 3
    assert (outcome.run_dir / "report.html").exists()
