"""``migrate-eval export lm-eval``: the exported folder is a real lm-eval task folder."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from migrate_eval.cli import main
from migrate_eval.export import export_lm_eval, render_prompt

DEMO = Path(__file__).resolve().parents[2] / "suites" / "demo"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lmx")
    tasks = export_lm_eval(DEMO, out, limit=8)
    assert {t.name for t in tasks} >= {
        "migrate_eval_demo_ticket_triage",
        "migrate_eval_demo_conversation_summary",
        "migrate_eval_demo_order_assistant",
    }
    return out


def _docs(folder: Path, task: str) -> list[dict[str, Any]]:
    (path,) = folder.rglob(f"{task}.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_documents_carry_the_full_conversation_and_the_logged_answer(exported: Path) -> None:
    docs = _docs(exported, "migrate_eval_demo_order_assistant")
    assert len(docs) == 8
    doc = docs[0]
    assert doc["messages"][0]["role"] == "system"
    assert doc["prompt"].startswith("System: Tools you may call:")
    assert doc["prompt"].endswith("Assistant:")
    # tool-call answers are exported as JSON
    calls = [d for d in docs if d["target"].startswith("[")]
    assert calls and json.loads(calls[0]["target"])[0]["name"]
    cfg = yaml.safe_load(next(exported.rglob("migrate_eval_demo_ticket_triage.yaml")).read_text())
    assert cfg["dataset_path"] == "json"
    assert Path(cfg["dataset_kwargs"]["data_files"]["test"]).is_absolute()
    assert cfg["output_type"] == "generate_until"


def test_render_prompt_renders_roles_tool_calls_and_results() -> None:
    text = render_prompt(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Where is NW-1?"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "function": {"name": "track", "arguments": '{"id":"NW-1"}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
            ]
        }
    )
    assert text.split("\n\n") == [
        "System: Be brief.",
        "User: Where is NW-1?",
        'Assistant: [tool call] track({"id":"NW-1"})',
        "Tool (c1): shipped",
        "Assistant:",
    ]


def _lm_eval_run(folder: Path, tasks: list[str], answers: dict[str, str]) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lm_eval import simple_evaluate
        from lm_eval.api.model import LM
        from lm_eval.tasks import TaskManager

        class ReplayLM(LM):  # type: ignore[misc]
            """Answers each prompt with a scripted text (the logged answer, or a wrong one)."""

            def generate_until(self, requests: list[Any]) -> list[str]:
                return [answers.get(r.args[0], "no idea") for r in requests]

            def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
                raise NotImplementedError

            def loglikelihood_rolling(self, requests: list[Any]) -> list[float]:
                raise NotImplementedError

        manager = TaskManager(include_path=str(folder))
        assert set(tasks) <= set(manager.all_tasks)
        return simple_evaluate(  # type: ignore[no-any-return]
            model=ReplayLM(),
            tasks=tasks,
            task_manager=manager,
            bootstrap_iters=0,
            log_samples=False,
        )


@pytest.mark.slow
def test_lm_eval_loads_and_evaluates_the_exported_tasks(exported: Path) -> None:
    triage = _docs(exported, "migrate_eval_demo_ticket_triage")
    summary = _docs(exported, "migrate_eval_demo_conversation_summary")
    # the model reproduces the logged answer on the first half of triage, all of the summaries
    answers = {d["prompt"]: d["target"] for d in triage[:4] + summary}
    out = _lm_eval_run(
        exported,
        ["migrate_eval_demo_ticket_triage", "migrate_eval_demo_conversation_summary"],
        answers,
    )
    res = out["results"]
    assert res["migrate_eval_demo_ticket_triage"]["exact_match,none"] == pytest.approx(0.5)
    summ = res["migrate_eval_demo_conversation_summary"]
    # duplicate requests in the log carry different logged answers (OpenAI's own variation):
    # the model can reproduce only one of them per prompt
    expected = sum(answers[d["prompt"]] == d["target"] for d in summary) / len(summary)
    assert summ["exact_match,none"] == pytest.approx(expected)
    if expected == 1.0:
        assert summ["chrf,none"] == pytest.approx(100.0)
        assert summ["bleu,none"] == pytest.approx(100.0)
        assert summ["ter,none"] == pytest.approx(0.0)
    else:
        assert 0.0 < summ["chrf,none"] < 100.0
        assert summ["ter,none"] > 0.0


@pytest.mark.slow
def test_lm_eval_scores_a_byte_identical_tool_call_answer_as_exact(exported: Path) -> None:
    # bug: lm-eval read a target starting with "[" as a Python list, so the logged tool calls
    # reproduced byte for byte scored 0
    task = "migrate_eval_demo_order_assistant"
    docs = _docs(exported, task)
    assert all(d["target"].startswith("[") for d in docs)  # every answer is a tool call
    assert len({d["prompt"] for d in docs}) == len(docs)
    exact = _lm_eval_run(exported, [task], {d["prompt"]: d["target"] for d in docs})
    assert exact["results"][task]["exact_match,none"] == pytest.approx(1.0)
    # one answer calls the right tool with other arguments: that one is not exact
    answers = {d["prompt"]: d["target"] for d in docs}
    first = json.loads(docs[0]["target"])
    first[0]["arguments"] = {"changed": True}
    answers[docs[0]["prompt"]] = json.dumps(first, sort_keys=True)
    partly = _lm_eval_run(exported, [task], answers)
    assert partly["results"][task]["exact_match,none"] == pytest.approx(7 / 8)


def test_cli_export_lm_eval_writes_the_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["export", "lm-eval", str(DEMO), str(tmp_path / "out"), "--limit", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "migrate_eval_demo_ticket_triage" in result.output
    assert (tmp_path / "out" / "migrate_eval_demo.yaml").exists()
    assert len(_docs(tmp_path / "out", "migrate_eval_demo_ticket_triage")) == 3
