"""Browser tests: reports opened in a real headless Chromium through the DevTools protocol.

They skip, with a message, on a machine without Chromium; CI (``.ci/run``) installs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from migrate_eval.report.chromium import Chromium, Page, find_chromium

T = TypeVar("T")


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    exe = find_chromium()
    if exe is None:
        pytest.skip(
            "no Chromium binary found (apt-get install chromium, or set MIGRATE_EVAL_CHROMIUM); "
            "browser tests run in CI"
        )
    return exe


def in_browser(binary: str, report: Path, scenario: Callable[[Page], Awaitable[T]]) -> T:
    """Open ``report`` in a fresh headless Chromium, wait until it is interactive, run a scenario."""

    async def main() -> T:
        async with Chromium.launch(binary) as browser:
            page = await browser.new_page()
            await page.goto(report.resolve().as_uri())
            await page.wait_for("window.__ready === true", timeout=20)
            return await scenario(page)

    return asyncio.run(main())


def problems(page: Page) -> list[Any]:
    """Console errors/warnings, uncaught exceptions, log errors and dialogs the page produced."""
    found: list[Any] = []
    found += page.methods("Runtime.exceptionThrown")
    found += [
        c
        for c in page.methods("Runtime.consoleAPICalled")
        if c.get("type") in ("error", "warning", "assert")
    ]
    found += [
        e
        for e in page.methods("Log.entryAdded")
        if e.get("entry", {}).get("level") in ("error", "warning")
    ]
    found += page.methods("Page.javascriptDialogOpening")
    return found
