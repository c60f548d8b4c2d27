"""Any endpoint that speaks the OpenAI Chat Completions wire protocol.

Covers vLLM, SGLang, TGI, Ollama, llama.cpp server, LM Studio, Together, Fireworks, Groq,
DeepInfra, OpenRouter, Mistral, the compatibility endpoints of Gemini and Anthropic, and
OpenAI itself (registered again as ``openai``).

The protocol is spoken directly with one shared :class:`aiohttp.ClientSession` per provider
(a bare aiohttp loop is far cheaper in client CPU than the OpenAI SDK's transport). The
request body is sent as is: tools, ``tool_choice``, ``response_format`` and sampling
parameters pass through unchanged.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, ClassVar

import aiohttp
from yarl import URL

from migrate_eval.errors import ConfigError, VendorError
from migrate_eval.providers.base import (
    MalformedResponseError,
    Provider,
    ProviderResponse,
    VendorConnectionError,
    VendorTimeout,
    is_retryable_status,
    parse_retry_after,
    redact,
)
from migrate_eval.providers.registry import register_provider
from migrate_eval.records import Response
from migrate_eval.suite import CandidateSpec

OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
_USER_AGENT = "migrate-eval/0.1 (aiohttp)"
_ERROR_SNIPPET = 300


@register_provider("openai-compatible")
class OpenAICompatibleProvider(Provider):
    """Chat Completions over HTTP against ``spec.base_url`` (default: OpenAI's)."""

    default_base_url: ClassVar[str | None] = None

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        base = spec.base_url or self.default_base_url or OPENAI_BASE_URL
        url = URL(base)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                f"candidate '{spec.name}': base_url {base!r} must be an http(s):// URL"
            )
        self.base_url = base.rstrip("/")
        self._url = URL(self.base_url + "/chat/completions")
        self._api_key, self._key_problem = self._resolve_key(spec)
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._session: aiohttp.ClientSession | None = None

    def _resolve_key(self, spec: CandidateSpec) -> tuple[str | None, str | None]:
        """The API key and, when a needed key is missing, why (reported on first use).

        A missing key is not an error at construction time: offline runs never need it.
        """
        env = spec.api_key_env
        if env is None and spec.base_url is None:
            env = DEFAULT_KEY_ENV  # OpenAI's own endpoint
        if env is None:
            return None, None  # a custom base URL without a key is fine (local servers)
        key = os.environ.get(env) or None
        if key is None:
            return None, (
                f"candidate '{spec.name}': the API key environment variable {env} is not set"
            )
        return key, None

    def identity(self) -> dict[str, Any]:
        return {
            "provider": self.name or self.spec.provider,
            "base_url": self.base_url,
            "model": self.spec.model,
        }

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=max(1, self.spec.concurrency), ttl_dns_cache=300, enable_cleanup_closed=False
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=aiohttp.ClientTimeout(total=self.spec.timeout),
            raise_for_status=False,
        )
        return self._session

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        if self._key_problem is not None:
            raise ConfigError(self._key_problem)
        session = self._session or self._open()
        data = json.dumps(request, ensure_ascii=False).encode()
        start = time.perf_counter()
        try:
            # No redirects: an API endpoint has no reason to send the key somewhere else.
            async with session.post(self._url, data=data, allow_redirects=False) as resp:
                body = await resp.read()
                status = resp.status
                retry_after = parse_retry_after(resp.headers) if status >= 400 else None
        except TimeoutError:
            raise VendorTimeout(f"no answer within {self.spec.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            detail = redact(str(e) or type(e).__name__, self._api_key)
            raise VendorConnectionError(f"connection failed: {detail}") from None
        latency_ms = (time.perf_counter() - start) * 1000.0
        if status >= 300:
            raise VendorError(
                f"HTTP {status}: {self._error_detail(body)}",
                status=status,
                retryable=is_retryable_status(status),
                retry_after=retry_after,
            )
        return self._parse(body, status, latency_ms)

    def _parse(self, body: bytes, status: int, latency_ms: float) -> ProviderResponse:
        try:
            text = body.decode("utf-8")
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            snippet = body[:_ERROR_SNIPPET].decode("utf-8", "replace")
            raise MalformedResponseError(
                f"HTTP {status} with a body that is not JSON: {redact(snippet, self._api_key)!r}",
                status=status,
            ) from None
        if not isinstance(raw, dict):
            raise MalformedResponseError(
                f"HTTP {status} with a JSON {type(raw).__name__}, not a chat completion object",
                status=status,
            )
        if not raw.get("choices") and isinstance(raw.get("error"), dict | str):
            raise MalformedResponseError(
                f"HTTP {status} carrying an error: {self._error_detail(body)}", status=status
            )
        try:
            response = Response.from_chat_completion(raw, latency_ms=latency_ms)
        except (ValueError, TypeError, AttributeError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise MalformedResponseError(
                f"HTTP {status} with a body that is not a chat completion: {reason}",
                status=status,
            ) from None
        return ProviderResponse(
            response=response, raw=raw, latency_ms=latency_ms, status=status, raw_json=text
        )

    def _error_detail(self, body: bytes) -> str:
        text = body[:4096].decode("utf-8", "replace")
        detail = text
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            err = parsed.get("error", parsed)
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                detail = err["message"]
            elif isinstance(err, str):
                detail = err
        detail = " ".join(detail.split())[:_ERROR_SNIPPET] or "(empty body)"
        return redact(detail, self._api_key)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


@register_provider("openai")
class OpenAIProvider(OpenAICompatibleProvider):
    """OpenAI itself (the baseline re-run): Chat Completions at ``https://api.openai.com/v1``."""

    default_base_url = OPENAI_BASE_URL
