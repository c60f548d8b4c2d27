"""XSS through real logs: a chat-jsonl log carrying script payloads in every logged field runs
through the whole pipeline (ingest, tasks, replay against a loopback vendor that echoes the
payloads back, scoring, rendering) and the report opened in headless Chromium never runs them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import migrate_eval
from migrate_eval.report.chromium import Page
from tests.servers import LoopbackServer

from .conftest import in_browser, problems

pytestmark = pytest.mark.slow

XSS_CORPUS = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=1">',
    "</script><script>window.__xss=1</script>",
    "{{ 7*7 }}",
    "{% raw %}",
    "javascript:window.__xss=1",
    "<svg onload=window.__xss=1>",
    "\u2028",
]
ALL_PAYLOADS = " ".join(XSS_CORPUS)
# task names come from the logs' metadata: two free-text features and a tool-calling one
FEATURES = [
    "faq <script>window.__xss=1</script> {{ 7*7 }}",
    'triage "><img src=x onerror="window.__xss=1"> {% raw %}',
]
TOOL_FEATURE = "lookup <svg onload=window.__xss=1> javascript:window.__xss=1"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": f"Look up {ALL_PAYLOADS}",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        },
    }
]


def _completion(i: int, message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1760000000 + i,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
    }


def _text_line(i: int, feature: str) -> dict[str, Any]:
    payload = XSS_CORPUS[i % len(XSS_CORPUS)]
    user = f"question {i} {payload} [link](javascript:window.__xss=1)"
    # half the logged answers match the echo exactly, half differ: regressions to expand
    answer = f"echo: {user}" if i % 2 else f"logged answer {i} {ALL_PAYLOADS}"
    return {
        "request": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": f"You are {ALL_PAYLOADS}. Answer briefly."},
                {"role": "user", "content": user},
            ],
            "temperature": 0,
        },
        "response": _completion(i, {"role": "assistant", "content": answer}, "stop"),
        "metadata": {"feature": feature},
    }


def _tool_line(i: int) -> dict[str, Any]:
    payload = XSS_CORPUS[i % len(XSS_CORPUS)]
    user = f"find {i} {payload}"
    # the loopback vendor calls the tool with {"text": <user text>}; half the logged calls agree
    args = {"text": user if i % 2 else f"{ALL_PAYLOADS} {i}"}
    call = {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": "lookup", "arguments": json.dumps(args, ensure_ascii=False)},
    }
    return {
        "request": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": f"Use the tool. {ALL_PAYLOADS}"},
                {"role": "user", "content": user},
            ],
            "tools": TOOLS,
            "tool_choice": "required",
            "temperature": 0,
        },
        "response": _completion(
            i, {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
        ),
        "metadata": {"feature": TOOL_FEATURE},
    }


@pytest.fixture(scope="module")
def xss_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xss-logs")
    lines = [_text_line(i, FEATURES[i % 2]) for i in range(24)]
    lines += [_tool_line(i) for i in range(100, 112)]
    log = root / "traffic.jsonl"
    log.write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8"
    )
    with LoopbackServer() as server:
        out = migrate_eval.run(
            logs=[log],
            candidates=[f"x=openai-compatible:m@{server.base_url}"],
            out=root / "run",
            cache=root / "cache.sqlite",
        )
    assert {t.name for t in out.results.tasks} == {*FEATURES, TOOL_FEATURE}
    assert out.results.ingest.exchanges == len(lines)
    return out.run_dir


def test_payloads_from_logs_never_execute_in_the_report(
    chromium_binary: str, xss_run: Path
) -> None:
    report = xss_run / "report.html"
    xss = "window.__xss === undefined ? null : window.__xss"

    async def scenario(page: Page) -> dict[str, Any]:
        out: dict[str, Any] = {"xss": []}
        # collapse and expand every task's evidence (and "More figures")
        await page.evaluate(
            "(() => { for (const d of document.querySelectorAll('details'))"
            " { d.open = !d.open; d.open = true; } })()"
        )
        # every task in the exchange browser's task filter, then every exchange of every page
        n_tasks = await page.evaluate("document.getElementById('xb-task').options.length")
        out["task_options"] = await page.evaluate(
            "Array.from(document.getElementById('xb-task').options).map(o => o.textContent)"
        )
        for i in range(n_tasks):
            await page.evaluate(
                "(() => { const s = document.getElementById('xb-task');"
                f" s.selectedIndex = {i}; s.dispatchEvent(new Event('change')); }})()"
            )
            out["xss"].append(await page.evaluate(xss))
        await page.evaluate(
            "(() => { const s = document.getElementById('xb-task');"
            " s.selectedIndex = 0; s.dispatchEvent(new Event('change')); })()"
        )
        opened = 0
        for _ in range(5):  # pages of the exchange browser
            n = await page.evaluate("document.querySelectorAll('#xb-table tbody tr').length")
            for i in range(n):
                await page.click(f"#xb-table tbody tr:nth-child({i + 1})")
                await page.wait_for("!document.getElementById('xb-detail').hidden")
                opened += 1
            label = await page.evaluate("document.getElementById('xb-page').textContent")
            await page.click("#xb-next")
            if await page.evaluate("document.getElementById('xb-page').textContent") == label:
                break
        out["opened"] = opened
        # outcome filters and free-text searches for the payloads themselves
        for outcome in ("regression", "below", "failed", "perfect", "all"):
            await page.evaluate(
                "(() => { const s = document.getElementById('xb-outcome');"
                f" s.value = {json.dumps(outcome)}; s.dispatchEvent(new Event('change')); }})()"
            )
        await page.type_text("#xb-search", "<script>")
        await page.wait_for("document.querySelectorAll('#xb-table tbody tr').length >= 1")
        out["search_rows"] = await page.evaluate(
            "document.querySelectorAll('#xb-table tbody tr').length"
        )
        await page.click("#xb-table tbody tr")
        await page.wait_for("!document.getElementById('xb-detail').hidden")
        out["detail"] = await page.evaluate("document.getElementById('xb-detail').innerText")
        await page.type_text("#regression-filter", "onerror")
        await page.evaluate("new Promise(r => setTimeout(r, 300))")
        out["regressions_shown"] = await page.evaluate(
            "Array.from(document.querySelectorAll('.regression')).filter(e => !e.hidden).length"
        )
        out["xss"].append(await page.evaluate(xss))
        out["text"] = await page.evaluate("document.body.innerText")
        out["elements"] = await page.evaluate(
            "document.querySelectorAll('img, iframe, svg:not(.hist), svg:not(.hist) *').length"
            " + Array.from(document.querySelectorAll('*')).filter(e => Array.from(e.attributes)"
            ".some(a => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value))).length"
        )
        out["scripts"] = await page.evaluate(
            "Array.from(document.scripts).map(s => s.id || s.type || 'page')"
        )
        out["problems"] = problems(page)
        out["dialogs"] = page.methods("Page.javascriptDialogOpening")
        return out

    got = in_browser(chromium_binary, report, scenario)
    assert set(got["xss"]) == {None}
    assert got["dialogs"] == [] and got["problems"] == []
    assert got["opened"] == 36  # every exchange of the run was opened once
    assert got["search_rows"] >= 1 and got["regressions_shown"] >= 1
    # no element was created from logged content (the page's own charts are svg.hist)
    assert got["elements"] == 0
    assert sorted(got["scripts"]) == ["exchange-data", "page", "task-verdicts"]
    # the payloads are shown to the reader as text: task names, messages, answers, tool args
    assert set(got["task_options"]) >= {*FEATURES, TOOL_FEATURE}
    text = got["text"]
    for shown in (
        "<script>window.__xss=1</script>",
        '"><img src=x onerror="window.__xss=1">',
        "<svg onload=window.__xss=1>",
        "{{ 7*7 }}",
        "{% raw %}",
        "javascript:window.__xss=1",
        "echo: question",  # the candidate's answer, which echoes the payload back
    ):
        assert shown in text, shown
    assert "<script>window.__xss=1</script>" in got["detail"]


def test_machine_outputs_of_a_run_with_payloads_are_well_formed(xss_run: Path) -> None:
    junit = ET.parse(xss_run / "junit.xml").getroot()
    names = {case.get("name", "") for case in junit.iter("testcase")}
    assert any("<script>window.__xss=1</script>" in n for n in names)
    summary = (xss_run / "summary.md").read_text(encoding="utf-8")
    assert "<script" not in summary.lower()
    assert "<img" not in summary.lower() and "<svg" not in summary.lower()
    assert "\u2028" not in summary
    results = json.loads((xss_run / "results.json").read_text(encoding="utf-8"))
    assert {t["name"] for t in results["tasks"]} == {*FEATURES, TOOL_FEATURE}
