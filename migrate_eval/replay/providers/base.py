"""The provider interface every candidate endpoint implements, and its error types.

A :class:`Provider` receives a Chat Completions request body (already built for the
candidate by :func:`migrate_eval.replay.engine.build_request`) and returns a
:class:`ProviderResponse`: the answer normalised to :class:`~migrate_eval.core.records.Response`,
the raw response body as the vendor sent it, and the latency.

Failures are raised as :class:`~migrate_eval.core.errors.VendorError` (or one of the subclasses
below, which tell the replay engine what kind of failure it was); the replay engine turns
them into error rows and never lets them stop a run.
"""

from __future__ import annotations

import abc
import asyncio
import email.utils
import re
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from types import TracebackType
from typing import Any, ClassVar

from migrate_eval.core.errors import VendorError
from migrate_eval.core.records import Response
from migrate_eval.core.suite import CandidateSpec

#: Retry-After values are capped at this many seconds.
MAX_RETRY_AFTER = 60.0


class VendorTimeout(VendorError):
    """The endpoint did not answer within the candidate's timeout."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class VendorConnectionError(VendorError):
    """The endpoint could not be reached, or the connection broke mid-answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class MalformedResponseError(VendorError):
    """The endpoint answered 2xx with a body that is not a usable chat completion.

    ``retryable`` when the body is not even JSON (truncated, or a proxy's page): sending the
    request again is likely to get a whole answer.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message, status=status, retryable=retryable)


class UnsupportedRequestError(VendorError):
    """The logged request uses a feature this provider has no equivalent for.

    Native (non Chat Completions) providers raise it per request, saying which feature.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(slots=True)
class ProviderResponse:
    """One successful call: the normalised answer, the raw body and the latency."""

    response: Response
    raw: dict[str, Any]
    latency_ms: float
    status: int = 200
    #: The raw body's JSON text as received, when the provider has it (saves re-serialising).
    raw_json: str | None = None
    #: The response headers that name the model or version that served the answer (the
    #: provider's :attr:`Provider.version_header_names`, lowercase names); None when the
    #: provider does not read headers.
    version_headers: dict[str, str] | None = None


class Provider(abc.ABC):
    """A candidate endpoint that speaks chat, tools and structured output.

    Subclasses set :attr:`name` (done by :func:`~migrate_eval.replay.providers.register_provider`)
    and are built from a :class:`~migrate_eval.core.suite.CandidateSpec`. They are used as async
    context managers or closed with :meth:`aclose`.

    The constructor must not open connections nor require the API key: offline runs build
    providers only for :meth:`identity`. Connections are opened on the first
    :meth:`complete`, and a missing key is reported there (as a
    :class:`~migrate_eval.core.errors.ConfigError`).
    """

    #: Registered provider name (e.g. ``openai-compatible``).
    name: ClassVar[str] = ""
    #: Response headers (lowercase) by which this vendor says which model or version served
    #: the answer: part of the model fingerprint a watch compares (docs/watch.md). Request ids,
    #: regions and rate-limit headers are left out: they change on every call or route.
    version_header_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: CandidateSpec) -> None:
        self.spec = spec

    @abc.abstractmethod
    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        """Send one Chat Completions request body; raise :class:`VendorError` on failure.

        ``request`` must not be modified: the replay engine shares its nested objects with
        the logged exchange.
        """

    async def complete_prepared(
        self, request: dict[str, Any], request_json: str
    ) -> ProviderResponse:
        """:meth:`complete`, given also ``request_json``, the request's canonical JSON (the
        replay engine computed it once, for the cache key): a provider that sends the request
        body as is may send this text instead of serialising the request again."""
        return await self.complete(request)

    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """What identifies the endpoint for the response cache: provider, base URL, model.

        Never includes a secret. Parameters are not part of it: they are in the request,
        which is the other half of the cache key.
        """

    def soft_drops(self, request: Mapping[str, Any]) -> tuple[str, ...]:
        """The soft fields of ``request`` (:data:`~migrate_eval.core.request.SOFT_FIELDS`:
        sampling parameters, seed, penalties, log probabilities...) this endpoint has no
        equivalent for. The engine removes them before :meth:`complete` and counts them per
        row, unless the candidate is ``strict_params`` (then :meth:`complete` refuses the
        request as unsupported). An endpoint that speaks Chat Completions drops nothing.
        """
        return ()

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections. Safe to call more than once."""

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class InProcessProvider(Provider):
    """A model run in this process (``hf-local``, ``llama-cpp``): :meth:`_generate` answers one
    request, blocking, on a worker thread of the provider's own (one at a time), so that the
    event loop never waits on it."""

    #: the worker thread's name (seen in thread dumps and profiles)
    thread_name: ClassVar[str] = "in-process-model"

    def __init__(self, spec: CandidateSpec) -> None:
        super().__init__(spec)
        self._pool: ThreadPoolExecutor | None = None

    @abc.abstractmethod
    def _generate(self, request: dict[str, Any]) -> ProviderResponse:
        """Answer one request (blocking; runs on the provider's thread)."""

    async def complete(self, request: dict[str, Any]) -> ProviderResponse:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._generate, request)

    async def aclose(self) -> None:
        """Stop the worker thread (after the call it is running, if any); then
        :meth:`_release` drops the model."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)
        self._release()

    def _release(self) -> None:
        """Drop the loaded model. Safe to call more than once."""


def pick_headers(headers: Mapping[str, str], names: Iterable[str]) -> dict[str, str] | None:
    """The allow-listed ``names`` found in ``headers`` (case-insensitive: aiohttp's mapping, or
    lowercase keys), values stripped and cut at 200 characters; None when ``names`` is empty."""
    wanted = tuple(names)
    if not wanted:
        return None
    found: dict[str, str] = {}
    for name in wanted:
        value = headers.get(name)
        if isinstance(value, str) and value.strip():
            found[name] = value.strip()[:200]
    return found


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After``, capped at 60 s.

    ``headers`` is case-insensitive (aiohttp's) or has lowercase keys. ``Retry-After`` may be
    a number of seconds or an HTTP-date; unparsable values give None.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0 and value == value:  # not NaN
            return min(value, MAX_RETRY_AFTER)
    ra = headers.get("retry-after")
    if ra is None:
        return None
    ra = ra.strip()
    try:
        seconds = float(ra)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(ra)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = now if now is not None else time.time()
        seconds = when.timestamp() - current
        return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER)


#: Statuses worth retrying besides 5xx: rate limited, request timeout, conflict.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-*.]{6,})")


def redact(text: str, secret: str | None) -> str:
    """Remove a secret (and anything shaped like an OpenAI key) from an error message."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)
