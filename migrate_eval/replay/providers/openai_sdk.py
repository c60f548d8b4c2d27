"""OpenAI (or any Chat Completions endpoint) through the official ``openai`` SDK (extra ``openai``).

For teams that want the SDK's own request path (its headers, its validation) rather than
the bare aiohttp path of ``openai`` / ``openai-compatible``. The SDK runs on its aiohttp
transport (``openai[aiohttp]``: ``DefaultAioHttpClient``), several times faster in client
CPU than its default httpx transport; the bare aiohttp path is still the fastest and
remains the default ``openai`` provider.

Configuration is that of ``openai-compatible``: ``base_url`` (default OpenAI's),
``api_key_env`` (default ``OPENAI_API_KEY`` for OpenAI's endpoint; a custom ``base_url``
without a key sends the placeholder key ``not-needed``). The SDK's retries are off (the
replay engine retries); request fields the SDK does not name are sent through
``extra_body`` unchanged.
"""

from __future__ import annotations

import importlib
import inspect
import time
from typing import Any

import aiohttp

from migrate_eval.core.errors import ConfigError, MissingExtraError, VendorError
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers.base import (
    ProviderResponse,
    VendorConnectionError,
    VendorTimeout,
    is_retryable_status,
    parse_retry_after,
    pick_headers,
    redact,
)
from migrate_eval.replay.providers.openai_compatible import OpenAICompatibleProvider

_PLACEHOLDER_KEY = "not-needed"


def _sdk() -> Any:
    try:
        return importlib.import_module("openai")
    except ImportError:
        raise MissingExtraError("openai", "openai", "provider 'openai-sdk'") from None


def _refused(exc: BaseException) -> bool:
    """Whether a failure was caused by a refused connection.

    The SDK's aiohttp transport reports a refused connection as a connect *timeout*; the
    cause chain still holds aiohttp's ``ClientConnectorError``.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, aiohttp.ClientConnectorError | ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


class OpenAISDKProvider(OpenAICompatibleProvider):
    """Chat Completions through ``openai.AsyncOpenAI`` on its aiohttp transport."""

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        self._client: Any = None
        self._named: frozenset[str] = frozenset()

    def _make_client(self) -> Any:
        sdk = _sdk()
        try:
            http_client = sdk.DefaultAioHttpClient()
        except RuntimeError:  # the SDK was installed without its aiohttp extra
            raise MissingExtraError("openai[aiohttp]", "openai", "provider 'openai-sdk'") from None
        self._client = sdk.AsyncOpenAI(
            api_key=self._api_key or _PLACEHOLDER_KEY,
            base_url=self.base_url,
            timeout=self.spec.timeout,
            max_retries=0,
            http_client=http_client,
        )
        params = inspect.signature(self._client.chat.completions.create).parameters
        self._named = frozenset(params) - {"extra_headers", "extra_query", "extra_body", "timeout"}
        return self._client

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        if self._key_problem is not None:
            raise ConfigError(self._key_problem)
        client = self._client or self._make_client()
        sdk = _sdk()
        named = {k: v for k, v in request.items() if k in self._named}
        extra = {k: v for k, v in request.items() if k not in self._named}
        start = time.perf_counter()
        try:
            raw_response = await client.chat.completions.with_raw_response.create(
                **named, **({"extra_body": extra} if extra else {})
            )
            body: bytes = raw_response.http_response.content
            status = int(raw_response.http_response.status_code)
            versions = pick_headers(raw_response.http_response.headers, self.version_header_names)
        except sdk.APIConnectionError as e:
            if isinstance(e, sdk.APITimeoutError) and not _refused(e):
                raise VendorTimeout(f"no answer within {self.spec.timeout:g} s") from None
            detail = redact(str(e) or type(e).__name__, self._api_key)
            raise VendorConnectionError(f"connection failed: {detail}") from None
        except sdk.APIStatusError as e:
            status = int(e.status_code)
            raise VendorError(
                f"HTTP {status}: {self._error_detail(e.response.content)}",
                status=status,
                retryable=is_retryable_status(status),
                retry_after=parse_retry_after(
                    {k.lower(): v for k, v in e.response.headers.items()}
                ),
            ) from None
        latency_ms = (time.perf_counter() - start) * 1000.0
        answer = self._parse(body, status, latency_ms)
        answer.version_headers = versions
        return answer

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
