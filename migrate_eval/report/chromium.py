"""Drive a headless Chromium through the DevTools protocol (no browser download, no npm).

Used by the browser tests, the report benchmark and the ``screenshot`` nox session::

    async with Chromium.launch() as browser:
        page = await browser.new_page()
        await page.goto(Path("report.html").resolve().as_uri())
        await page.wait_for("window.__ready === true")

Chromium is started with the flags that keep a machine without network quiet (no background
networking, no component updates, no sync) and a fresh profile folder that is removed on exit.
Every DevTools event of the page is recorded in :attr:`Page.events` (network requests, console
messages, exceptions, dialogs), so that callers can assert on them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from migrate_eval.core.errors import ConfigError, InfrastructureError

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
)
#: The first screen a report is judged by (a laptop browser window), in CSS pixels.
FIRST_SCREEN = (1400, 900)
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The Chromium binary: ``$MIGRATE_EVAL_CHROMIUM``, else the first known name on PATH."""
    env = os.environ.get("MIGRATE_EVAL_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One browser tab with its DevTools session; events are recorded as they arrive."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
                continue
            self.events.append(data)
            if data.get("method") == "Page.javascriptDialogOpening":
                # never let a dialog block the page; the event stays recorded
                asyncio.get_running_loop().create_task(
                    self.send("Page.handleJavaScriptDialog", accept=False)
                )
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(InfrastructureError("the browser closed the DevTools session"))

    async def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send a DevTools command and return its result (raises on a protocol error)."""
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise InfrastructureError(f"DevTools {method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression in the page and return its JSON value."""
        res = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in res:
            raise InfrastructureError(f"JavaScript error: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def wait_for(self, expression: str, timeout: float = 10.0) -> float:
        """Poll until ``expression`` is truthy; returns the seconds waited."""
        start = time.perf_counter()
        while True:
            try:
                if await self.evaluate(expression):
                    return time.perf_counter() - start
            except InfrastructureError:
                pass  # the page is still navigating
            if time.perf_counter() - start > timeout:
                raise InfrastructureError(f"timed out after {timeout:g}s waiting for {expression}")
            await asyncio.sleep(0.02)

    async def click(self, selector: str) -> None:
        """Click the first element matching a CSS selector (a real mouse click)."""
        box = await self.evaluate(
            "(() => { const e = document.querySelector(" + json.dumps(selector) + ");"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if not box:
            raise InfrastructureError(f"no element matches {selector!r}")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def type_text(self, selector: str, text: str) -> None:
        """Focus an input and type text into it (key events, as a user would)."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def set_viewport(
        self, width: int = FIRST_SCREEN[0], height: int = FIRST_SCREEN[1]
    ) -> None:
        """Emulate a window of ``width`` x ``height`` CSS pixels (scale 1, desktop)."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    async def screenshot(
        self, path: Path, width: int = FIRST_SCREEN[0], height: int = FIRST_SCREEN[1]
    ) -> None:
        """A PNG of the viewport (the first screen)."""
        await self.set_viewport(width, height)
        await asyncio.sleep(0.2)
        res = await self.send("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(res["data"]))

    def methods(self, name: str) -> list[dict[str, Any]]:
        """The params of every recorded event named ``name``."""
        return [e.get("params", {}) for e in self.events if e.get("method") == name]

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Chromium:
    """A headless Chromium process with a throw-away profile."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, profile: str) -> None:
        self.proc = proc
        self.port = port
        self.profile = profile
        self._http = aiohttp.ClientSession()
        self._pages: list[Page] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, binary: str | None = None) -> AsyncIterator[Chromium]:
        exe = binary or find_chromium()
        if exe is None:
            raise ConfigError(
                "no Chromium found: install it (e.g. apt-get install chromium) "
                "or set MIGRATE_EVAL_CHROMIUM"
            )
        profile = tempfile.mkdtemp(prefix="migrate-eval-chromium-")
        proc = await asyncio.create_subprocess_exec(
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        browser: Chromium | None = None
        try:
            port = await _devtools_port(Path(profile), proc)
            browser = cls(proc, port, profile)
            yield browser
        finally:
            if browser is not None:
                await browser._close()
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            shutil.rmtree(profile, ignore_errors=True)

    async def new_page(self) -> Page:
        """A new tab, with the Page, Runtime, Network and Log domains enabled."""
        async with self._http.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as r:
            target = await r.json()
        ws = await self._http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        self._pages.append(page)
        for domain in ("Page", "Runtime", "Network", "Log"):
            await page.send(f"{domain}.enable")
        return page

    async def _close(self) -> None:
        for p in self._pages:
            await p.close()
        await self._http.close()


async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise InfrastructureError(f"Chromium exited with code {proc.returncode}")
        if marker.exists():
            first = marker.read_text(encoding="utf-8").splitlines()[:1]
            if first and first[0].strip().isdigit():
                return int(first[0])
        await asyncio.sleep(0.05)
    raise InfrastructureError("Chromium did not open its DevTools port within 30 s")


async def _screenshot(report: Path, out: Path) -> None:
    async with Chromium.launch() as browser:
        page = await browser.new_page()
        await page.set_viewport()
        await page.goto(report.resolve().as_uri())
        await page.wait_for("window.__ready === true", timeout=30)
        await page.screenshot(out)


def screenshot(report: str | os.PathLike[str], out: str | os.PathLike[str]) -> None:
    """Write a PNG of a report's first screen (:data:`FIRST_SCREEN`, 1400 x 900)."""
    asyncio.run(_screenshot(Path(report), Path(out)))


__all__ = ["CHROMIUM_FLAGS", "FIRST_SCREEN", "Chromium", "Page", "find_chromium", "screenshot"]
