from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.core.suite import load_suite
from migrate_eval.ingest import read_logs
from migrate_eval.plan.tasks import assign_tasks
from tests.servers import LoopbackServer


def _row(system: str | None, user: str, answer: str, meta: dict[str, Any] | None = None) -> str:
    messages = [{"role": "user", "content": user}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return json.dumps(
        {
            "request": {"model": "gpt-4o-mini", "messages": messages},
            "response": {"choices": [{"message": {"role": "assistant", "content": answer}}]},
            "metadata": meta or {},
        }
    )


def _logs(path: Path) -> None:
    names = ["Maya", "Liam", "Ana", "Bo", "Chen", "Dora"]
    rows = []
    for i, name in enumerate(names * 2):
        rows.append(
            _row(
                f"You advise {name}. Today is 2026-10-{i + 1:02d}. Order NW-{100 + i} "
                f"contains {i + 1} items.\nBe brief.",
                f"Which tent for {i + 2} people?",
                f"The Ridge {i + 2}P tent, a long answer with several words.",
            )
        )
        rows.append(_row("Classify the ticket: billing, shipping or other.", f"t{i}", "billing"))
        rows.append(_row(None, f"q{i}", "ok", {"trace_name": "langfuse-summary"}))
        rows.append(_row("Any prompt", f"h{i}", "ok", {"Helicone-Property-Feature": "search"}))
        rows.append(_row(None, f"untagged {i}", "free"))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_init_writes_a_suite_that_reproduces_the_discovered_tasks(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "traffic.jsonl"
    logs.parent.mkdir()
    _logs(logs)
    out = tmp_path / "suites" / "traffic" / "suite.yaml"
    with LoopbackServer() as server:
        res = CliRunner().invoke(
            main,
            [
                "init", str(logs), "--out", str(out),
                "--candidate", f"local=openai-compatible:m@{server.base_url}",
            ],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        text = out.read_text(encoding="utf-8")
        assert text.startswith("# Suite written by `migrate-eval init`")
        data = yaml.safe_load(text)
        suite = load_suite(out)  # valid against the suite schema
        assert suite.logs[0].path == "../../logs/traffic.jsonl"
        assert suite.candidates[0].base_url == server.base_url
        by_name = {t["name"]: t for t in data["tasks"]}
        assert by_name["langfuse-summary"]["match"] == {
            "metadata": {"trace_name": "langfuse-summary"}
        }
        assert by_name["search"]["match"] == {"metadata": {"Helicone-Property-Feature": "search"}}
        regexes = [t["match"].get("system_prompt_regex") for t in data["tasks"]]
        assert sum(1 for r in regexes if r) == 2  # the advice template and the triage prompt
        kinds = {t["output"] for t in data["tasks"]}
        assert {"classification", "free_text"} <= kinds
        assert all(t["metrics"] and 0 < t["min_parity"] <= 1 for t in data["tasks"])
        assert "untitled" in text  # left to discovery, with a comment

        run_dir = tmp_path / "run"
        res = CliRunner().invoke(
            main, ["run", str(out), "--out", str(run_dir), "--cache", str(tmp_path / "c.sqlite")]
        )
        assert res.exit_code in (0, 1), res.output
    written = json.loads((run_dir / "tasks.json").read_text(encoding="utf-8"))
    discovered = assign_tasks(read_logs([logs]).exchanges)
    assert written["assignment"] == discovered.assignment
    sources = {t["name"]: t["source"] for t in written["tasks"]}
    assert sources["untitled"] == "fallback"
    assert {s for n, s in sources.items() if n != "untitled"} == {"suite"}


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    logs = tmp_path / "t.jsonl"
    _logs(logs)
    out = tmp_path / "suite.yaml"
    out.write_text("name: mine\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["init", str(logs), "--out", str(out)])
    assert res.exit_code == 2 and "--force" in res.output
    assert out.read_text(encoding="utf-8") == "name: mine\n"
    res = CliRunner().invoke(main, ["init", str(logs), "--out", str(out), "--force"])
    assert res.exit_code == 0
    suite = load_suite(out)
    assert suite.candidates[0].model == "CHANGE-ME"  # a placeholder candidate to edit
