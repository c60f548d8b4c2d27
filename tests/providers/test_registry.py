"""Provider registry: built-ins, lazy optional providers, missing extras, entry-point plugins."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest

from migrate_eval.core.errors import ConfigError, MissingExtraError
from migrate_eval.core.records import Response
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers import (
    ENTRY_POINT_GROUP,
    OpenAICompatibleProvider,
    Provider,
    ProviderResponse,
    available_providers,
    get_provider,
    register_lazy_provider,
    register_provider,
    registry,
)


class EchoProvider(Provider):
    """A plugin-style provider used by these tests (no network)."""

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        text = request["messages"][-1]["content"]
        return ProviderResponse(response=Response(text=text), raw={"echo": text}, latency_ms=0.0)

    def identity(self) -> dict[str, Any]:
        return {"provider": self.name, "model": self.spec.model}


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry.PROVIDERS, "_entries", dict(registry.PROVIDERS._entries))
    monkeypatch.setattr(registry.PROVIDERS, "_entry_points_loaded", False)


def spec(provider: str) -> CandidateSpec:
    return CandidateSpec(name="c", provider=provider, model="m", base_url="http://127.0.0.1:9/v1")


def test_builtins_are_available() -> None:
    names = available_providers()
    assert {"openai", "openai-compatible"} <= set(names)
    assert names == sorted(names)
    assert isinstance(get_provider(spec("openai-compatible")), OpenAICompatibleProvider)


def test_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown provider 'nope' \(known: .*openai-compatible"):
        get_provider(spec("nope"))


def test_register_provider_decorator() -> None:
    register_provider("echo")(EchoProvider)
    provider = get_provider(spec("echo"))
    assert isinstance(provider, EchoProvider)
    assert provider.identity() == {"provider": "echo", "model": "m"}
    assert "echo" in available_providers()


def test_lazy_provider_with_missing_sdk_names_the_extra() -> None:
    register_lazy_provider(
        "fancy",
        "migrate_eval_fancy_provider_not_installed:Fancy",
        requires=[("fancy_vendor_sdk_not_installed", "fancy")],
    )
    assert "fancy" in available_providers()
    with pytest.raises(MissingExtraError) as info:
        get_provider(spec("fancy"))
    assert info.value.extra == "fancy"
    assert "pip install 'migrate-eval[fancy]'" in str(info.value)
    assert info.value.exit_code == 2


def test_lazy_provider_is_imported_on_first_use() -> None:
    register_lazy_provider("lazy-echo", f"{__name__}:EchoProvider", requires=[("json", "none")])
    provider = get_provider(spec("lazy-echo"))
    assert isinstance(provider, EchoProvider)


def test_lazy_target_that_does_not_exist_is_a_config_error() -> None:
    register_lazy_provider("ghost", f"{__name__}:NoSuchThing")
    with pytest.raises(ConfigError, match="does not exist"):
        get_provider(spec("ghost"))


def test_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [
        importlib.metadata.EntryPoint(
            name="plugged", value=f"{__name__}:EchoProvider", group=ENTRY_POINT_GROUP
        ),
        # A plugin cannot take over a built-in name.
        importlib.metadata.EntryPoint(
            name="openai", value=f"{__name__}:EchoProvider", group=ENTRY_POINT_GROUP
        ),
    ]

    def fake_entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return eps if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    assert "plugged" in available_providers()
    assert isinstance(get_provider(spec("plugged")), EchoProvider)
    assert isinstance(get_provider(spec("openai")), OpenAICompatibleProvider)


def test_factory_must_return_a_provider() -> None:
    register_provider("broken")(lambda s: object())  # type: ignore[type-var]
    with pytest.raises(ConfigError, match="not a Provider"):
        get_provider(spec("broken"))
