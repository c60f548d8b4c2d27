"""Provider registry: built-in providers (imported lazily) and entry-point plugins.

One :class:`~migrate_eval.core.plugins.Registry` (the pattern log formats and metrics share):

* :func:`register_provider` registers a :class:`Provider` subclass (or any factory that takes
  a :class:`~migrate_eval.core.suite.CandidateSpec`) under a name.
* :func:`register_lazy_provider` registers a ``"module:attribute"`` target that is imported
  only when a suite uses it. Providers built on optional vendor SDKs are registered this way
  with the SDK they need: when it is missing, :func:`get_provider` raises
  :class:`~migrate_eval.core.errors.MissingExtraError` naming the pip extra to install.
* Third-party packages add providers through the ``migrate_eval.providers`` entry-point group
  (``name = "package.module:ProviderClass"``); built-in names win.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.plugins import Registry, Requirement, check_requirements
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers.base import Provider

ENTRY_POINT_GROUP = "migrate_eval.providers"

ProviderFactory = Callable[[CandidateSpec], Provider]
F = TypeVar("F", bound=ProviderFactory)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROVIDERS",
    "ProviderFactory",
    "Requirement",
    "available_providers",
    "get_provider",
    "provider_object",
    "register_lazy_provider",
    "register_provider",
]


def _check(name: str, obj: object) -> ProviderFactory:
    if not callable(obj):
        raise TypeError("is not a class or function")
    if isinstance(obj, type) and issubclass(obj, Provider) and not obj.name:
        obj.name = name
    return cast(ProviderFactory, obj)


PROVIDERS: Registry[ProviderFactory] = Registry("provider", ENTRY_POINT_GROUP, _check)

_PKG = "migrate_eval.replay.providers"
# Built-in providers, imported only when a suite uses them; vendor SDKs are optional extras.
PROVIDERS.add_lazy("openai-compatible", f"{_PKG}.openai_compatible:OpenAICompatibleProvider")
PROVIDERS.add_lazy("openai", f"{_PKG}.openai_compatible:OpenAIProvider")
PROVIDERS.add_lazy("azure", f"{_PKG}.azure:AzureOpenAIProvider")
PROVIDERS.add_lazy(
    "openai-sdk", f"{_PKG}.openai_sdk:OpenAISDKProvider", requires=[("openai", "openai")]
)
PROVIDERS.add_lazy("bedrock", f"{_PKG}.bedrock:BedrockProvider", requires=[("boto3", "bedrock")])
# Native vendor APIs (Anthropic Messages, Gemini, Cohere Chat v2) through their official SDKs.
PROVIDERS.add_lazy(
    "anthropic", f"{_PKG}.anthropic:AnthropicProvider", requires=[("anthropic", "anthropic")]
)
PROVIDERS.add_lazy(  # "google" first: find_spec("google.genai") raises without it
    "gemini",
    f"{_PKG}.gemini:GeminiProvider",
    requires=[("google", "gemini"), ("google.genai", "gemini")],
)
PROVIDERS.add_lazy("cohere", f"{_PKG}.cohere:CohereProvider", requires=[("cohere", "cohere")])
# Model servers the run starts and stops (docs/self-hosting.md).
PROVIDERS.add_lazy("vllm", f"{_PKG}.managed:VLLMProvider")
PROVIDERS.add_lazy("sglang", f"{_PKG}.managed:SGLangProvider")
PROVIDERS.add_lazy("llama-server", f"{_PKG}.managed:LlamaServerProvider")
for _name in ("hf-local", "transformers"):
    PROVIDERS.add_lazy(
        _name,
        f"{_PKG}.local_hf:LocalHFProvider",
        requires=[("transformers", "local"), ("torch", "local")],
    )

# A GGUF file in process through llama.cpp (llama-cpp-python builds llama.cpp from source).
PROVIDERS.add_lazy(
    "llama-cpp", f"{_PKG}.llamacpp:LlamaCppProvider", requires=[("llama_cpp", "llama-cpp")]
)


def register_provider(
    name: str, *, requires: Sequence[tuple[str, str] | Requirement] = ()
) -> Callable[[F], F]:
    """Class (or factory) decorator: make a provider available under ``name``.

    Registering a name again replaces the previous provider.
    """

    def deco(factory: F) -> F:
        if isinstance(factory, type) and issubclass(factory, Provider):
            factory.name = name
        PROVIDERS.add(name, factory)
        return factory

    return deco


def register_lazy_provider(
    name: str, target: str, *, requires: Sequence[tuple[str, str] | Requirement] = ()
) -> None:
    """Register ``"module:attribute"`` under ``name`` without importing it yet.

    ``requires`` lists ``(package, extra)`` pairs checked before the import, so that a missing
    vendor SDK gives a one-line install command instead of a traceback.
    """
    PROVIDERS.add_lazy(name, target, requires=requires)


def available_providers() -> list[str]:
    """Every provider name a suite may use (built-in, lazy and plugins), sorted."""
    return PROVIDERS.names()


def provider_object(name: str) -> object | None:
    """The provider's class or factory, imported without checking its optional SDK (provider
    modules import their SDK on first use), or None when it cannot be imported."""
    target = PROVIDERS.target(name)
    if target is None:
        try:
            return PROVIDERS.get(name)
        except ConfigError:
            return None
    module_name, _, attr = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


def get_provider(spec: CandidateSpec) -> Provider:
    """Build the provider a candidate names. Unknown names are a :class:`ConfigError`."""
    check_requirements(f"provider '{spec.provider}'", PROVIDERS.requires(spec.provider))
    factory = PROVIDERS.get(spec.provider, context=f"candidate '{spec.name}': ")
    provider = factory(spec)
    if not isinstance(provider, Provider):
        raise ConfigError(
            f"provider '{spec.provider}' returned {type(provider).__name__}, not a Provider"
        )
    return provider
