"""What the native vendor providers (Anthropic, Gemini, Cohere) share, tested once per vendor
through the real SDKs against the loopback APIs: unsupported features, finish reasons, HTTP
failures and retries, timeouts, malformed bodies, unreachable endpoints, keys and SDKs."""

from __future__ import annotations

from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError, MissingExtraError, VendorError
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers import UnsupportedRequestError, VendorTimeout, get_provider
from migrate_eval.replay.providers.base import MalformedResponseError
from tests.providers.calls import call_error
from tests.providers.fake_vendors import (
    ANTHROPIC,
    COHERE,
    GEMINI,
    VENDORS,
    WEATHER,
    FakeVendors,
    Reply,
    Vendor,
    anthropic_text,
    cohere_text,
    gemini_text,
)


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}


def vendor_id(value: object) -> str | None:
    """Test ids name the vendor (other values keep pytest's ids)."""
    return str(value) if isinstance(value, Vendor) else None


@pytest.fixture(autouse=True)
def _sdk_and_key(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test takes a ``vendor``: skipped without its SDK, else run with its test key."""
    vendor: Vendor = request.node.callspec.params["vendor"]
    pytest.importorskip(vendor.sdk)
    vendor.use_key(monkeypatch)


@pytest.mark.parametrize(
    ("vendor", "extra", "named"),
    [
        (ANTHROPIC, {"seed": 7}, "seed=7"),
        (ANTHROPIC, {"n": 3}, "n=3"),
        (ANTHROPIC, {"logprobs": True, "top_logprobs": 2}, "logprobs=True"),
        (ANTHROPIC, {"frequency_penalty": 0.5}, "frequency_penalty=0.5"),
        (ANTHROPIC, {"temperature": 0.2}, "temperature=0.2"),
        (ANTHROPIC, {"top_p": 0.9, "seed": 1}, "top_p=0.9, seed=1"),
        (GEMINI, {"n": 2}, "n=2"),
        (GEMINI, {"logprobs": True}, "logprobs=True"),
        (GEMINI, {"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls=False"),
        (GEMINI, {"logit_bias": {"50256": -100}}, "logit_bias"),
        (COHERE, {"n": 4}, "n=4"),
        (COHERE, {"logprobs": True}, "logprobs=True"),
        (COHERE, {"tools": [WEATHER], "parallel_tool_calls": False}, "parallel_tool_calls=False"),
    ],
    ids=vendor_id,
)
def test_unsupported_features_are_named_not_dropped(
    server: FakeVendors, vendor: Vendor, extra: dict[str, Any], named: str
) -> None:
    with pytest.raises(UnsupportedRequestError, match=named.replace("+", r"\+")):
        vendor.call(server, chat(**extra))
    assert server.received == []  # nothing was sent


@pytest.mark.parametrize(
    ("vendor", "extra", "dropped"),
    [
        (ANTHROPIC, {"temperature": 0.2, "top_p": 0.9, "seed": 7}, ("temperature", "top_p", "seed")),
        (ANTHROPIC, {"frequency_penalty": 0.5, "logprobs": True, "top_logprobs": 2},
         ("frequency_penalty", "logprobs", "top_logprobs")),
        (ANTHROPIC, {"top_p": 1, "frequency_penalty": 0, "n": 1, "seed": None}, ()),  # no-ops
        (ANTHROPIC, {"n": 3, "tools": [WEATHER]}, ()),  # hard gaps and translated fields stay
        (GEMINI, {"temperature": 0.2, "seed": 7, "presence_penalty": 0.1}, ()),
        (GEMINI, {"logprobs": True, "logit_bias": {"50256": -100}}, ("logprobs", "logit_bias")),
        (GEMINI, {"tools": [WEATHER], "parallel_tool_calls": False}, ("parallel_tool_calls",)),
        (GEMINI, {"n": 2}, ()),
        (COHERE, {"temperature": 0.2, "seed": 7, "top_p": 0.5}, ()),
        (COHERE, {"logprobs": True, "reasoning_effort": "low"}, ("logprobs", "reasoning_effort")),
        (COHERE, {"tools": [WEATHER], "parallel_tool_calls": False}, ("parallel_tool_calls",)),
    ],
    ids=vendor_id,
)  # fmt: skip
def test_soft_gaps_are_what_the_engine_drops(
    server: FakeVendors, vendor: Vendor, extra: dict[str, Any], dropped: tuple[str, ...]
) -> None:
    """What each vendor's API has no equivalent for among the soft fields: the replay engine
    drops these (counted) unless the candidate is strict; hard gaps stay, to be refused."""
    provider = get_provider(vendor.spec(server))
    assert provider.soft_drops(chat(**extra)) == dropped


@pytest.mark.parametrize("vendor", VENDORS, ids=vendor_id)
def test_audio_input_is_unsupported(server: FakeVendors, vendor: Vendor) -> None:
    part = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(UnsupportedRequestError, match="audio input"):
        vendor.call(server, {"model": "m", "messages": [{"role": "user", "content": [part]}]})


@pytest.mark.parametrize(
    ("vendor", "answer", "expected"),
    [
        (ANTHROPIC, anthropic_text("partial", stop_reason="max_tokens"), "length"),
        (ANTHROPIC, anthropic_text("", content=[], stop_reason="refusal"), "content_filter"),
        (GEMINI, gemini_text("t", finish="MAX_TOKENS"), "length"),
        (GEMINI, gemini_text("t", finish="SAFETY"), "content_filter"),
        (GEMINI, gemini_text("t", finish="RECITATION"), "content_filter"),
        (COHERE, cohere_text("t", finish="MAX_TOKENS"), "length"),
        (COHERE, cohere_text("t", finish="STOP_SEQUENCE"), "stop"),
    ],
    ids=vendor_id,
)
def test_finish_reasons(
    server: FakeVendors, vendor: Vendor, answer: dict[str, Any], expected: str
) -> None:
    server.script(vendor.provider, Reply(body=answer))
    assert vendor.call(server, chat()).finish_reason == expected


_STATUSES = [(400, False), (401, False), (404, False), (500, True)]


@pytest.mark.parametrize(
    ("vendor", "status", "retryable"),
    [
        (vendor, status, retryable)
        for vendor, overloaded in ((ANTHROPIC, 529), (GEMINI, 503), (COHERE, 503))
        for status, retryable in [*_STATUSES, (overloaded, True)]
    ],
    ids=vendor_id,
)
def test_http_errors(server: FakeVendors, vendor: Vendor, status: int, retryable: bool) -> None:
    server.script(vendor.provider, Reply(status=status, body=vendor.error(status, f"bad {status}")))
    with pytest.raises(VendorError) as info:
        vendor.call(server, chat())
    assert info.value.status == status and info.value.retryable is retryable
    assert f"bad {status}" in str(info.value) and vendor.key not in str(info.value)
    assert len(server.received) == 1  # the SDK did not retry


@pytest.mark.parametrize(
    ("vendor", "header", "seconds", "message"),
    [
        (ANTHROPIC, "retry-after", "7", "slow down"),
        (GEMINI, "Retry-After", "3", "quota"),
        (COHERE, "Retry-After", "4", "too many"),
    ],
    ids=vendor_id,
)
def test_rate_limit_honours_retry_after(
    server: FakeVendors, vendor: Vendor, header: str, seconds: str, message: str
) -> None:
    body = vendor.error(429, message)
    server.script(vendor.provider, Reply(status=429, body=body, headers={header: seconds}))
    with pytest.raises(VendorError) as info:
        vendor.call(server, chat())
    assert info.value.status == 429 and info.value.retryable
    assert info.value.retry_after == float(seconds)
    assert len(server.received) == 1


@pytest.mark.parametrize("vendor", VENDORS, ids=vendor_id)
def test_timeout(server: FakeVendors, vendor: Vendor) -> None:
    server.script(vendor.provider, Reply(body=vendor.text("late"), delay=1.0))
    with pytest.raises(VendorTimeout):
        vendor.call(server, chat(), timeout=0.3)


@pytest.mark.parametrize(
    ("vendor", "body"),
    [
        (ANTHROPIC, "not json at all"),
        (ANTHROPIC, {"type": "message", "id": "x"}),
        (GEMINI, "<html>oops</html>"),
        (GEMINI, {"candidates": []}),
        (COHERE, "this is not json"),
        (COHERE, {"id": "x", "finish_reason": "COMPLETE"}),
    ],
    ids=vendor_id,
)
def test_malformed_bodies(server: FakeVendors, vendor: Vendor, body: Any) -> None:
    server.script(vendor.provider, Reply(body=body))
    with pytest.raises(MalformedResponseError):
        vendor.call(server, chat())


@pytest.mark.parametrize("vendor", VENDORS, ids=vendor_id)
def test_connection_refused(vendor: Vendor) -> None:
    spec = CandidateSpec(
        name="c", provider=vendor.provider, model="m", base_url="http://127.0.0.1:9"
    )
    assert call_error(spec, chat()).retryable


@pytest.mark.parametrize("vendor", VENDORS, ids=vendor_id)
def test_missing_key_is_a_config_error(
    server: FakeVendors, vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(vendor.key_envs[0])
    with pytest.raises(ConfigError, match=" or ".join(vendor.key_envs)):
        vendor.call(server, chat())


@pytest.mark.parametrize("vendor", VENDORS, ids=vendor_id)
def test_missing_sdk_gives_install_hint(vendor: Vendor, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == vendor.sdk else real_find_spec(name, *a),
    )
    hint = rf"pip install 'migrate-eval\[{vendor.provider}\]'"
    with pytest.raises(MissingExtraError, match=hint):
        get_provider(CandidateSpec(name="c", provider=vendor.provider, model="m"))
