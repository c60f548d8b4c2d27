"""report.html in headless Chromium: it renders, its controls work, it loads nothing, and
logged content planted with scripts never executes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from migrate_eval.report import render_html
from migrate_eval.report.chromium import Page
from tests.report.conftest import build_run

from .conftest import in_browser, problems

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_report(demo_run_dir: Path) -> Path:
    """The report of the shipped demo suite, run offline."""
    return demo_run_dir / "report.html"


def _requests(page: Page) -> list[str]:
    return [r["request"]["url"] for r in page.methods("Network.requestWillBeSent")]


def test_demo_report_renders_with_no_errors_and_no_network(
    chromium_binary: str, demo_report: Path
) -> None:
    async def scenario(page: Page) -> dict[str, Any]:
        return {
            "title": await page.evaluate("document.querySelector('h1').textContent"),
            "cards": await page.evaluate("document.querySelectorAll('#verdict .card').length"),
            "rows": await page.evaluate("document.querySelectorAll('#matrix tbody tr').length"),
            "charts": await page.evaluate("document.querySelectorAll('svg.hist').length"),
            "xb_rows": await page.evaluate(
                "document.querySelectorAll('#xb-table tbody tr').length"
            ),
            "problems": problems(page),
            "requests": _requests(page),
        }

    got = in_browser(chromium_binary, demo_report, scenario)
    assert "Can we switch?" in got["title"]
    assert got["cards"] >= 2 and got["rows"] >= 1 and got["charts"] >= 1
    assert 0 < got["xb_rows"] <= 50  # first page of the exchange browser
    assert got["problems"] == []
    # the file itself is the only request the page ever makes
    assert got["requests"] == [demo_report.resolve().as_uri()]


def test_demo_report_shows_traffic_profile_sampling_and_redaction(
    chromium_binary: str, demo_report: Path
) -> None:
    results = json.loads((demo_report.parent / "results.json").read_text(encoding="utf-8"))
    profile = results["profile"]

    async def scenario(page: Page) -> dict[str, Any]:
        count = "(s) => document.querySelectorAll(s).length"
        out: dict[str, Any] = {
            k: await page.evaluate(f"({count})({json.dumps(sel)})")
            for k, sel in {
                "bars": "#profile svg.volume-chart rect.vb",
                "tasks": "#profile .profile-tasks tbody tr",
                "features": "#profile .profile-features tbody tr",
                "sampling": "#sampling .sampling-table tbody tr",
                "nav": "nav.toc a[href='#profile'], nav.toc a[href='#sampling'],"
                " nav.toc a[href='#redaction']",
                "dumps": "section.extra",
            }.items()
        }
        out["chart_name"] = await page.evaluate(
            "document.querySelector('#profile svg.volume-chart').getAttribute('aria-label')"
        )
        out["redaction"] = await page.evaluate("document.getElementById('redaction').innerText")
        out["profile"] = await page.evaluate("document.getElementById('profile').innerText")
        out["problems"] = problems(page)
        return out

    got = in_browser(chromium_binary, demo_report, scenario)
    assert got["bars"] == len(profile["by_day"])  # the demo's logs have traffic every day
    assert got["chart_name"].startswith("Exchanges per day")
    assert got["tasks"] == len(profile["tasks"]) == got["sampling"]
    assert got["features"] == sum(1 for f in profile["features"].values() if f["count"])
    assert got["nav"] == 3 and got["dumps"] == 0
    for t in profile["tasks"]:
        assert t["name"] in got["profile"]
    assert "Redaction was off" in got["redaction"]
    assert got["problems"] == []


def test_matrix_sorts_by_a_candidate_column(chromium_binary: str, demo_report: Path) -> None:
    col = 3  # first candidate column (task, output, exchanges, candidates...)
    read = (
        "Array.from(document.querySelectorAll('#matrix tbody tr'))"
        f".map(r => parseFloat(r.cells[{col}].getAttribute('data-sort')))"
    )

    async def scenario(page: Page) -> tuple[list[float], list[float], str | None]:
        selector = f"#matrix thead th:nth-child({col + 1}) .sort-button"
        await page.click(selector)
        asc = await page.evaluate(read)
        await page.click(selector)
        desc = await page.evaluate(read)
        aria = await page.evaluate(
            f"document.querySelector('#matrix thead th:nth-child({col + 1})')"
            ".getAttribute('aria-sort')"
        )
        return asc, desc, aria

    asc, desc, aria = in_browser(chromium_binary, demo_report, scenario)
    assert asc == sorted(asc)
    assert desc == sorted(desc, reverse=True)
    assert aria == "descending"


def test_filter_regressions_by_text(chromium_binary: str, demo_report: Path) -> None:
    visible = "Array.from(document.querySelectorAll('.regression')).filter(e => !e.hidden).length"

    async def scenario(page: Page) -> tuple[int, str, int, int, int]:
        total = await page.evaluate(visible)
        ex_id = await page.evaluate(
            "document.querySelector('.regression .exchange-id code').textContent"
        )
        await page.type_text("#regression-filter", ex_id)
        await page.wait_for(f"({visible}) < {total}")
        shown = await page.evaluate(visible)
        matching = await page.evaluate(
            "Array.from(document.querySelectorAll('.regression'))"
            f".filter(e => e.textContent.toLowerCase().includes({json.dumps(ex_id.lower())})).length"
        )
        await page.evaluate("document.getElementById('regression-filter').value = ''")
        await page.type_text("#regression-filter", "no-such-text-anywhere-42")
        await page.wait_for(f"({visible}) === 0")
        return total, ex_id, shown, matching, await page.evaluate(visible)

    total, ex_id, shown, matching, none = in_browser(chromium_binary, demo_report, scenario)
    assert total > 1 and ex_id
    assert shown == matching >= 1
    assert none == 0


def test_exchange_browser_filters_and_opens_an_exchange(
    chromium_binary: str, demo_report: Path
) -> None:
    async def scenario(page: Page) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["all"] = await page.evaluate("document.getElementById('xb-count').textContent")
        # only the regressions of the first candidate, then one exchange by its id
        await page.evaluate(
            "(() => { const s = document.getElementById('xb-outcome'); s.value = 'below';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        out["below"] = await page.evaluate("document.getElementById('xb-count').textContent")
        first_id = await page.evaluate(
            "document.querySelector('#xb-table tbody tr .xb-id').textContent"
        )
        await page.type_text("#xb-search", first_id)
        await page.wait_for("document.querySelectorAll('#xb-table tbody tr').length === 1")
        await page.click("#xb-table tbody tr")
        await page.wait_for("!document.getElementById('xb-detail').hidden")
        out["id"] = first_id
        out["detail"] = await page.evaluate("document.getElementById('xb-detail').textContent")
        out["answers"] = await page.evaluate(
            "document.querySelectorAll('#xb-detail .answer').length"
        )
        out["problems"] = problems(page)
        return out

    got = in_browser(chromium_binary, demo_report, scenario)
    n_all = int(got["all"].split(" of ")[0])
    n_below = int(got["below"].split(" of ")[0])
    assert 0 < n_below < n_all
    assert got["id"] in got["detail"] and "Logged OpenAI answer" in got["detail"]
    assert got["answers"] >= 3  # the logged answer and one per candidate
    assert got["problems"] == []


SENTINEL_PAYLOADS = [
    '<img src=x onerror="window.__xss=1;alert(1)">',
    "<script>window.__xss=2;alert(2)</script>",
    "</script><script>window.__xss=3</script>",
    '<svg onload="window.__xss=4">',
    '<iframe src="javascript:window.top.__xss=5"></iframe>',
    '"><details open ontoggle="window.__xss=6">',
    "\u2028</script><img src=x onerror=window.__xss=7>",
]


def test_planted_scripts_never_execute(chromium_binary: str, tmp_path: Path) -> None:
    run = build_run()
    # plant the payloads everywhere logged content reaches: user messages, logged answers,
    # candidate answers and errors, exchange ids
    for i, ex in enumerate(list(run.exchanges.values())):
        payload = SENTINEL_PAYLOADS[i % len(SENTINEL_PAYLOADS)]
        ex.request["messages"][-1] = {"role": "user", "content": f"hello {payload}"}
        if ex.response is not None and ex.response.text is not None:
            ex.response.text = f"logged {payload} answer"
    for i, rep in enumerate(run.replays.values()):
        payload = SENTINEL_PAYLOADS[(i + 3) % len(SENTINEL_PAYLOADS)]
        if rep.response is not None and rep.response.text is not None:
            rep.response.text = f"candidate {payload} answer"
        elif rep.error:
            rep.error = f"error {payload}"
    report = tmp_path / "report.html"
    render_html(run.results, run.scores, run.exchanges, run.replays, report)

    async def scenario(page: Page) -> dict[str, Any]:
        # open every exchange in the browser, so that every payload is rendered at least once
        n = await page.evaluate("document.querySelectorAll('#xb-table tbody tr').length")
        for i in range(n):
            await page.click(f"#xb-table tbody tr:nth-child({i + 1})")
        await page.type_text("#xb-search", "onerror")
        await page.type_text("#regression-filter", "script")
        await page.evaluate("new Promise(r => setTimeout(r, 300))")
        return {
            "opened": n,
            "xss": await page.evaluate("window.__xss === undefined ? null : window.__xss"),
            "dialogs": page.methods("Page.javascriptDialogOpening"),
            "requests": _requests(page),
            "visible": await page.evaluate("document.body.innerText.includes('onerror=')"),
        }

    got = in_browser(chromium_binary, report, scenario)
    assert got["opened"] > 10
    assert got["xss"] is None
    assert got["dialogs"] == []
    assert got["requests"] == [report.resolve().as_uri()]
    assert got["visible"]  # shown to the reader as text


def test_first_screen_holds_the_decision_verdicts_and_cost_latency(
    chromium_binary: str, demo_report: Path
) -> None:
    """At 1400x900, without scrolling: the decision sentence, every candidate's verdict and
    its cost and latency change are inside the viewport."""

    async def scenario(page: Page) -> dict[str, Any]:
        await page.set_viewport(1400, 900)
        await page.evaluate("window.scrollTo(0, 0)")
        return dict(
            await page.evaluate(
                """(() => {
                  const h = window.innerHeight, w = window.innerWidth;
                  const seen = (el) => { const r = el.getBoundingClientRect();
                    return r.height > 0 && r.top >= 0 && r.bottom <= h && r.right <= w; };
                  const all = (sel) => Array.from(document.querySelectorAll(sel));
                  return {
                    viewport: [w, h],
                    sentence: document.getElementById('decision-sentence').innerText,
                    sentence_seen: seen(document.getElementById('decision-sentence')),
                    cands: all('.decision-cand').map((li) => ({
                      name: li.dataset.candidate,
                      verdict: li.querySelector('.badge').innerText,
                      verdict_seen: seen(li.querySelector('.badge')),
                      cost: li.querySelector('.decision-cost').innerText,
                      cost_seen: seen(li.querySelector('.decision-cost')),
                      latency: li.querySelector('.decision-latency').innerText,
                      latency_seen: seen(li.querySelector('.decision-latency')),
                    })),
                    red_gate: all('.gate-fail').length,
                  };
                })()"""
            )
        )

    got = in_browser(chromium_binary, demo_report, scenario)
    assert got["viewport"] == [1400, 900]
    assert got["sentence_seen"] and "can take" in got["sentence"]
    results = json.loads((demo_report.parent / "results.json").read_text(encoding="utf-8"))
    assert sorted(c["name"] for c in got["cands"]) == sorted(
        c["name"] for c in results["candidates"]
    )
    for c in got["cands"]:
        assert c["verdict_seen"] and c["cost_seen"] and c["latency_seen"], c
        assert c["cost"].startswith("cost ") and "%" in c["cost"]
        assert c["latency"].startswith("latency ") and "%" in c["latency"]
    assert got["red_gate"] == 0  # the gate is not a red headline above the decision


def test_exchange_browser_labels_follow_parity(chromium_binary: str, demo_report: Path) -> None:
    """A returned answer with low parity reads "differs from logged", never "ok"."""

    async def scenario(page: Page) -> list[list[str]]:
        return list(
            await page.evaluate(
                """Array.from(document.querySelectorAll('#xb-table tbody tr')).map(
                  (tr) => [tr.children[3].innerText, tr.children[4].innerText])"""
            )
        )

    rows = in_browser(chromium_binary, demo_report, scenario)
    assert rows
    for parity, label in rows:
        assert label.lower() != "ok"
        if parity != "n/a" and float(parity) < 0.5:
            assert label == "differs from logged"


def test_adaptation_section_renders_with_its_diff(chromium_binary: str, tmp_path: Path) -> None:
    from tests.report.test_report_adaptation import adaptation

    run = build_run()
    results = run.results.model_copy(update={"adaptation": adaptation()})
    report = tmp_path / "report.html"
    render_html(results, run.scores, run.exchanges, run.replays, report)

    async def scenario(page: Page) -> dict[str, Any]:
        await page.click('nav.toc a[href="#adaptation"]')
        return {
            "rows": await page.evaluate(
                "document.querySelectorAll('#adaptation .adaptation-table tbody tr').length"
            ),
            "outcomes": await page.evaluate(
                "[...document.querySelectorAll('#adaptation .adaptation-outcome strong')]"
                ".map(e => e.innerText)"
            ),
            "diff": await page.evaluate("document.querySelector('#adaptation pre.diff').innerText"),
            "diff_visible": await page.evaluate(
                "document.querySelector('#adaptation pre.diff').getBoundingClientRect().height > 0"
            ),
            "xss": await page.evaluate("window.__xss === undefined ? null : window.__xss"),
            "problems": problems(page),
            "requests": _requests(page),
        }

    got = in_browser(chromium_binary, report, scenario)
    assert got["rows"] == 3
    assert got["outcomes"] == ["ready after adaptation", "no reliable gain", "not adapted"]
    assert '+Answer only with JSON: {"reply": "<script>alert(9)</script>"}' in got["diff"]
    assert got["diff_visible"]
    assert got["xss"] is None and got["problems"] == []
    assert got["requests"] == [report.resolve().as_uri()]
