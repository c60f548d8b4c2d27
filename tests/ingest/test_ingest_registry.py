"""The format registry: built-ins, register_format and the migrate_eval.log_formats entry points."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.core.records import Exchange, Response
from migrate_eval.ingest import (
    LineContext,
    LogFormat,
    RecordError,
    available_formats,
    read_logs,
    register_format,
    registry,
)
from tests.ingest.helpers import write_jsonl


def _sniff(record: dict[str, Any]) -> bool:
    return "prompt" in record and "completion" in record


def _read(record: dict[str, Any], ctx: LineContext) -> Exchange:
    prompt = record["prompt"]
    if not isinstance(prompt, str):
        raise RecordError("prompt", "wrong type", "expected a string")
    return Exchange(
        id=ctx.default_id(),
        source=ctx.source(),
        request={"model": ctx.model_fallback, "messages": [{"role": "user", "content": prompt}]},
        response=Response(text=record["completion"]),
    )


#: A third-party format, as a plugin package would define it.
PROMPT_COMPLETION = LogFormat(
    name="prompt-completion", sniff=_sniff, reader=_read, description="toy"
)


def make_format() -> LogFormat:
    return LogFormat(name="prompt-completion-2", sniff=lambda r: "p2" in r, reader=_read)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    available_formats()  # built-ins loaded
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    yield


def test_built_in_formats_in_detection_order() -> None:
    formats = available_formats()
    assert list(formats)[:15] == [
        "openai-batch",
        "openai-stored-completions",
        "openai-preference",
        "openai-stored-responses",
        "helicone",
        "langfuse",
        "langsmith",
        "litellm",
        "openpipe",
        "portkey",
        "openai-responses",
        "chat-jsonl",
        "finetune-chat",
        "otel-genai",
        "table",
    ]
    assert all(f.description for f in formats.values())


def test_register_format_makes_it_detectable(tmp_path: Path, clean_registry: None) -> None:
    register_format(PROMPT_COMPLETION)
    assert "prompt-completion" in available_formats()
    path = write_jsonl(
        tmp_path / "pc.jsonl",
        [{"prompt": "2+2?", "completion": "4"}, {"prompt": 4, "completion": "?"}],
    )
    result = read_logs([path], default_model="gpt-3.5-turbo-instruct")
    assert result.formats == {"prompt-completion": 1}
    (ex,) = result.exchanges
    assert ex.source.format == "prompt-completion"
    assert ex.request["messages"][0]["content"] == "2+2?" and ex.model == "gpt-3.5-turbo-instruct"
    assert ex.response is not None and ex.response.text == "4"
    assert [(i.line, i.field, i.reason) for i in result.skipped] == [
        (2, "prompt", "wrong type: expected a string")
    ]

    with pytest.raises(ValueError, match="already registered"):
        register_format(PROMPT_COMPLETION)
    register_format(PROMPT_COMPLETION, replace=True)
    with pytest.raises(ValueError, match="invalid log format name"):
        register_format(LogFormat(name="auto", sniff=_sniff, reader=_read))


def test_entry_point_plugins(
    monkeypatch: pytest.MonkeyPatch, clean_registry: None, caplog: pytest.LogCaptureFixture
) -> None:
    group = "migrate_eval.log_formats"
    module = __name__
    eps = [
        importlib.metadata.EntryPoint("pc", f"{module}:PROMPT_COMPLETION", group),
        importlib.metadata.EntryPoint("pc2", f"{module}:make_format", group),
        importlib.metadata.EntryPoint("broken", f"{module}:does_not_exist", group),
        importlib.metadata.EntryPoint(
            "clash", "migrate_eval.ingest.formats.chat_jsonl:FORMAT", group
        ),
    ]

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        assert group == "migrate_eval.log_formats"
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with caplog.at_level(logging.WARNING, logger="migrate_eval.ingest.registry"):
        formats = available_formats()
    assert formats["prompt-completion"].origin == f"{module}:PROMPT_COMPLETION"
    assert formats["prompt-completion-2"].origin == f"{module}:make_format"
    assert formats["chat-jsonl"].origin == "builtin"
    messages = [r.getMessage() for r in caplog.records]
    assert any("'broken'" in m and "not loaded" in m for m in messages)
    assert any("'clash'" in m and "is taken" in m for m in messages)


def test_a_failing_sniff_does_not_break_detection(tmp_path: Path, clean_registry: None) -> None:
    def bad_sniff(record: dict[str, Any]) -> bool:
        raise KeyError("boom")

    register_format(LogFormat(name="bad", sniff=bad_sniff, reader=_read, priority=1))
    path = write_jsonl(
        tmp_path / "ft.jsonl",
        [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}],
    )
    assert read_logs([path]).formats == {"finetune-chat": 1}


def test_a_plugin_reader_failing_validation_skips_the_line(
    tmp_path: Path, clean_registry: None
) -> None:
    def sloppy(record: dict[str, Any], ctx: LineContext) -> Exchange:
        return Exchange(id=record["q"], source=ctx.source(), request={"messages": []})

    register_format(LogFormat(name="sloppy", sniff=lambda r: "q" in r, reader=sloppy))
    result = read_logs([write_jsonl(tmp_path / "q.jsonl", [{"q": "a"}, {"q": 5}])])
    assert [ex.id for ex in result.exchanges] == ["a"]
    (issue,) = result.skipped
    assert (issue.line, issue.field) == (2, "id")
    assert issue.reason.startswith("invalid value: Input should be a valid string")
