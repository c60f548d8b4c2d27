"""Candidate endpoints: the :class:`Provider` interface, the registry and built-in providers.

Built in: ``openai-compatible`` (any Chat Completions endpoint) and ``openai``. Others come
from :func:`register_lazy_provider` (optional vendor SDKs) or from packages that declare an
entry point in the ``migrate_eval.replay.providers`` group.
"""

from __future__ import annotations

from migrate_eval.replay.providers.base import (
    MAX_RETRY_AFTER,
    MalformedResponseError,
    Provider,
    ProviderResponse,
    UnsupportedRequestError,
    VendorConnectionError,
    VendorTimeout,
    is_retryable_status,
    parse_retry_after,
)
from migrate_eval.replay.providers.openai_compatible import (
    OPENAI_BASE_URL,
    OpenAICompatibleProvider,
    OpenAIProvider,
)
from migrate_eval.replay.providers.registry import (
    ENTRY_POINT_GROUP,
    Requirement,
    available_providers,
    get_provider,
    register_lazy_provider,
    register_provider,
)

# Azure OpenAI, AWS Bedrock and local Hugging Face models: imported only when a suite uses them.
register_lazy_provider("azure", "migrate_eval.replay.providers.azure:AzureOpenAIProvider")
register_lazy_provider(
    "openai-sdk",
    "migrate_eval.replay.providers.openai_sdk:OpenAISDKProvider",
    requires=[("openai", "openai")],
)
register_lazy_provider(
    "bedrock",
    "migrate_eval.replay.providers.bedrock:BedrockProvider",
    requires=[("boto3", "bedrock")],
)
# Native vendor APIs (Anthropic Messages, Gemini, Cohere Chat v2) through their official SDKs.
register_lazy_provider(
    "anthropic",
    "migrate_eval.replay.providers.anthropic:AnthropicProvider",
    requires=[("anthropic", "anthropic")],
)
register_lazy_provider(  # "google" first: find_spec("google.genai") raises without it
    "gemini",
    "migrate_eval.replay.providers.gemini:GeminiProvider",
    requires=[("google", "gemini"), ("google.genai", "gemini")],
)
register_lazy_provider(
    "cohere", "migrate_eval.replay.providers.cohere:CohereProvider", requires=[("cohere", "cohere")]
)
for _name in ("hf-local", "transformers"):
    register_lazy_provider(
        _name,
        "migrate_eval.replay.providers.local_hf:LocalHFProvider",
        requires=[("transformers", "local"), ("torch", "local")],
    )

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_RETRY_AFTER",
    "OPENAI_BASE_URL",
    "MalformedResponseError",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderResponse",
    "Requirement",
    "UnsupportedRequestError",
    "VendorConnectionError",
    "VendorTimeout",
    "available_providers",
    "get_provider",
    "is_retryable_status",
    "parse_retry_after",
    "register_lazy_provider",
    "register_provider",
]
