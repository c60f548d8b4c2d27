"""One provider call from a synchronous test: open the provider, complete, close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from migrate_eval.core.errors import VendorError
from migrate_eval.core.suite import CandidateSpec
from migrate_eval.replay.providers import ProviderResponse, get_provider


def call(spec: CandidateSpec, request: dict[str, Any]) -> ProviderResponse:
    """The answer of the provider built from ``spec`` to ``request``."""

    async def go() -> ProviderResponse:
        async with get_provider(spec) as provider:
            return await provider.complete(request)

    return asyncio.run(go())


def call_error(spec: CandidateSpec, request: dict[str, Any]) -> VendorError:
    """The :class:`VendorError` the call raises (the test fails when it raises none)."""
    with pytest.raises(VendorError) as info:
        call(spec, request)
    return info.value
