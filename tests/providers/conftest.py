"""Fixtures of the provider tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.providers.fake_vendors import FakeVendors


@pytest.fixture
def server() -> Iterator[FakeVendors]:
    """The fake Anthropic, Gemini and Cohere APIs, fresh for each test.

    Modules that test another server (OpenAI-compatible, Azure, Bedrock) define their own
    ``server`` fixture, which replaces this one.
    """
    with FakeVendors() as s:
        yield s
