"""Azure OpenAI: Chat Completions on a deployment of an Azure OpenAI resource.

The wire protocol is OpenAI's Chat Completions, so this provider reuses the aiohttp path of
:class:`~migrate_eval.replay.providers.openai_compatible.OpenAICompatibleProvider` (one shared
session, no SDK) and only changes the URL, the authentication and some error mapping:

* URL: ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={version}``.
  ``endpoint`` is ``base_url`` (e.g. ``https://my-resource.openai.azure.com``) or the
  ``AZURE_OPENAI_ENDPOINT`` environment variable. A ``base_url`` that already ends with
  ``/openai/deployments/<name>`` is used as is.
* deployment: ``params.deployment`` if given, else ``model``.
* api-version: ``params.api_version`` (or ``params["api-version"]``), else an
  ``api-version`` query in ``base_url``, else ``AZURE_OPENAI_API_VERSION`` /
  ``OPENAI_API_VERSION``, else :data:`DEFAULT_API_VERSION`.
  ``deployment`` and ``api_version`` are removed from the body before it is sent.
* authentication, first that applies: an ``api-key`` header from ``api_key_env`` (default
  ``AZURE_OPENAI_API_KEY``); a Microsoft Entra ID bearer token from ``AZURE_OPENAI_AD_TOKEN``;
  a token from ``azure-identity``'s ``DefaultAzureCredential`` (extra ``azure``), refreshed
  before it expires.

A request blocked by Azure's content filter (HTTP 400 with ``code: content_filter``) raises
:class:`ContentFilterError`; an answer whose ``finish_reason`` is ``content_filter`` is a
normal answer (the filter cut the output; parity scoring sees it).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import time
from typing import Any, ClassVar

from yarl import URL

from migrate_eval.core.errors import ConfigError, MissingExtraError, VendorError
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers.base import ProviderResponse
from migrate_eval.replay.providers.matrix import CHAT_COMPLETIONS_FEATURES
from migrate_eval.replay.providers.openai_compatible import OpenAICompatibleProvider

DEFAULT_API_VERSION = "2024-10-21"
DEFAULT_KEY_ENV = "AZURE_OPENAI_API_KEY"
AD_TOKEN_ENV = "AZURE_OPENAI_AD_TOKEN"
ENDPOINT_ENV = "AZURE_OPENAI_ENDPOINT"
API_VERSION_ENVS = ("AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION")
#: The OAuth scope of Azure OpenAI (Cognitive Services) for Entra ID tokens.
TOKEN_SCOPE = "https://cognitiveservices.azure.com/.default"
#: Request-body keys that configure the provider and are never sent.
PROVIDER_PARAMS = ("deployment", "api_version", "api-version")
_FILTERED = "content_filter: "
_REFRESH_MARGIN = 300.0  # refresh an Entra ID token this many seconds before it expires


class ContentFilterError(VendorError):
    """Azure's content filter rejected the prompt (HTTP 400, ``code: content_filter``)."""

    #: The replay engine's ``error_kind`` for this failure.
    error_kind: ClassVar[str] = "content_filter"

    def __init__(self, message: str, *, status: int | None = 400) -> None:
        super().__init__(message, status=status, retryable=False)


class AzureOpenAIProvider(OpenAICompatibleProvider):
    """Azure OpenAI Chat Completions on a deployment (see the module docstring)."""

    #: The feature matrix (:mod:`migrate_eval.replay.providers.matrix`): Chat Completions itself.
    features: ClassVar[dict[str, str]] = dict(CHAT_COMPLETIONS_FEATURES)
    #: OpenAI's, plus Azure's ``x-ms-deployment-name`` (the deployment that served the request:
    #: another one when spillover moved it off a provisioned deployment) and
    #: ``azureml-model-session`` (the model's serving session, e.g. ``turbo-0613-07015ca4``).
    #: ``apim-request-id``, ``x-ms-region`` and the rate-limit headers are not versions.
    version_header_names: ClassVar[tuple[str, ...]] = (
        *OpenAICompatibleProvider.version_header_names,
        "x-ms-deployment-name",
        "azureml-model-session",
    )

    def __init__(self, spec: CandidateSpec) -> None:
        endpoint = spec.base_url or os.environ.get(ENDPOINT_ENV)
        if not endpoint:
            raise ConfigError(
                f"candidate '{spec.name}': azure needs base_url (https://<resource>"
                f".openai.azure.com) or the {ENDPOINT_ENV} environment variable"
            )
        url = URL(endpoint)
        query_version = url.query.get("api-version")
        endpoint = str(url.with_query(None)).rstrip("/")
        super().__init__(spec.model_copy(update={"base_url": endpoint}))
        self.spec = spec
        params = spec.params
        deployment = params.get("deployment") or spec.model
        version = (
            params.get("api_version")
            or params.get("api-version")
            or query_version
            or next((os.environ[e] for e in API_VERSION_ENVS if os.environ.get(e)), None)
            or DEFAULT_API_VERSION
        )
        if not isinstance(deployment, str) or not isinstance(version, str):
            raise ConfigError(
                f"candidate '{spec.name}': azure deployment and api_version must be strings"
            )
        self.deployment = deployment
        self.api_version = version
        if "/openai/deployments/" in endpoint:
            path = endpoint + "/chat/completions"
        else:
            path = f"{endpoint}/openai/deployments/{deployment}/chat/completions"
        self._url = URL(path).with_query({"api-version": version})
        # The base class would send the key as a bearer token: Azure wants an api-key header.
        self._headers.pop("Authorization", None)
        if self._api_key:
            self._headers["api-key"] = self._api_key
        self._static_token = (
            None if self._api_key or self._key_problem else os.environ.get(AD_TOKEN_ENV) or None
        )
        if self._static_token:
            self._headers["Authorization"] = f"Bearer {self._static_token}"
        self._ad_token: str | None = None
        self._credential: Any = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    def _resolve_key(self, spec: CandidateSpec) -> tuple[str | None, str | None]:
        # Called by the base constructor. A missing key is no error here: Entra ID may sign in.
        env = spec.api_key_env or DEFAULT_KEY_ENV
        key = os.environ.get(env) or None
        if key is None and spec.api_key_env is not None:  # named explicitly: it must be set
            return (
                None,
                f"candidate '{spec.name}': the API key environment variable {env} is not set",
            )
        return key, None

    def identity(self) -> dict[str, Any]:
        return {
            **super().identity(),
            "deployment": self.deployment,
            "api_version": self.api_version,
        }

    async def _entra_token(self) -> str:
        """A token from azure-identity's DefaultAzureCredential (cached until near expiry)."""
        async with self._token_lock:
            now = time.time()
            if self._ad_token is not None and now < self._token_expires - _REFRESH_MARGIN:
                return self._ad_token
            if self._credential is None:
                try:
                    identity = importlib.import_module("azure.identity")
                except ImportError:
                    raise MissingExtraError(
                        "azure-identity",
                        "azure",
                        f"candidate '{self.spec.name}' without {DEFAULT_KEY_ENV} or "
                        f"{AD_TOKEN_ENV} (Entra ID sign-in)",
                    ) from None
                self._credential = identity.DefaultAzureCredential()
            try:
                token = await asyncio.to_thread(self._credential.get_token, TOKEN_SCOPE)
            except Exception as e:  # azure-identity raises ClientAuthenticationError & co
                raise ConfigError(
                    f"candidate '{self.spec.name}': no Azure credential: "
                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                ) from None
            self._ad_token = str(token.token)
            self._token_expires = float(token.expires_on)
            return self._ad_token

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        if any(k in request for k in PROVIDER_PARAMS):
            request = {k: v for k, v in request.items() if k not in PROVIDER_PARAMS}
        if self._key_problem is not None:
            raise ConfigError(self._key_problem)
        if not self._api_key and not self._static_token:
            bearer = f"Bearer {await self._entra_token()}"
            self._headers["Authorization"] = bearer
            if self._session is not None:
                self._session.headers["Authorization"] = bearer
        try:
            return await super().complete(request)
        except VendorError as e:
            if e.status == 400 and str(e).startswith(f"HTTP 400: {_FILTERED}"):
                raise ContentFilterError(str(e)) from None
            raise

    def _error_detail(self, body: bytes) -> str:
        detail = super()._error_detail(body)
        try:
            parsed = json.loads(body[:65536].decode("utf-8", "replace"))
        except ValueError:
            return detail
        err = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(err, dict):
            code = err.get("code")
            inner = err.get("innererror")
            inner_code = inner.get("code") if isinstance(inner, dict) else None
            if code == "content_filter" or inner_code == "ResponsibleAIPolicyViolation":
                return f"{_FILTERED}{detail}"
        return detail
