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
