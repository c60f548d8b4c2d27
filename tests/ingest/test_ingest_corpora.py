"""Real text (AlpacaEval and MT-bench answers of GPT-4) written as logs in each format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrate_eval.ingest import read_logs
from tests.ingest.helpers import alpaca, completion, mt_bench_turns, write_jsonl

FORMATS = ("chat-jsonl", "openai-batch", "finetune-chat")


def _write(tmp_path: Path, fmt: str, convos: list[dict[str, Any]], model: str) -> list[Path]:
    """Write conversations ``{id, messages, answer, metadata}`` as a log in ``fmt``."""
    if fmt == "chat-jsonl":
        return [
            write_jsonl(
                tmp_path / "chat.jsonl",
                (
                    {
                        "id": c["id"],
                        "request": {"model": model, "messages": c["messages"], "temperature": 0.7},
                        "response": completion(c["answer"], model=model, id=f"chatcmpl-{i}"),
                        "metadata": c["metadata"],
                    }
                    for i, c in enumerate(convos)
                ),
            )
        ]
    if fmt == "openai-batch":
        inputs = write_jsonl(
            tmp_path / "batch_input.jsonl",
            (
                {
                    "custom_id": c["id"],
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": model,
                        "messages": c["messages"],
                        "temperature": 0.7,
                        "metadata": c["metadata"],
                    },
                }
                for c in convos
            ),
        )
        outputs = write_jsonl(
            tmp_path / "batch_output.jsonl",
            (
                {
                    "id": f"batch_req_{i}",
                    "custom_id": c["id"],
                    "response": {
                        "status_code": 200,
                        "request_id": f"req_{i}",
                        "body": completion(c["answer"], model=model),
                    },
                    "error": None,
                }
                # Batch output files are not in input order.
                for i, c in reversed(list(enumerate(convos)))
            ),
        )
        return [inputs, outputs]
    return [
        write_jsonl(
            tmp_path / "finetune.jsonl",
            (
                {"messages": [*c["messages"], {"role": "assistant", "content": c["answer"]}]}
                for c in convos
            ),
        )
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_alpaca_eval_gpt4_outputs_round_trip(tmp_path: Path, fmt: str) -> None:
    records = alpaca()
    convos = [
        {
            "id": f"alpaca-{i}",
            "messages": [{"role": "user", "content": r["instruction"]}],
            "answer": r["output"],
            "metadata": {"dataset": r["dataset"]},
        }
        for i, r in enumerate(records)
    ]
    result = read_logs(_write(tmp_path, fmt, convos, "gpt-4-0613"))

    assert len(result.exchanges) == len(records) == 805
    assert result.skipped == []
    assert result.lines_read == 805
    assert result.formats == {fmt: 805}
    for ex, record in zip(result.exchanges, records, strict=True):
        assert ex.request["messages"] == [{"role": "user", "content": record["instruction"]}]
        assert ex.response is not None and ex.response.text == record["output"]
    if fmt != "finetune-chat":
        assert [ex.id for ex in result.exchanges] == [c["id"] for c in convos]
        assert all(
            ex.model == "gpt-4-0613" and ex.request["temperature"] == 0.7 for ex in result.exchanges
        )
        assert result.exchanges[0].metadata["dataset"] == records[0]["dataset"]
    else:
        assert all(ex.model == "unknown" for ex in result.exchanges)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mt_bench_two_turn_answers_round_trip(tmp_path: Path, fmt: str) -> None:
    turns = mt_bench_turns()
    assert len(turns) == 160
    convos = [{**t, "metadata": {"category": t["category"]}} for t in turns]
    result = read_logs(_write(tmp_path, fmt, convos, "gpt-4"))

    assert (len(result.exchanges), result.lines_read, result.skipped) == (160, 160, [])
    second_turns = [
        ex for ex, t in zip(result.exchanges, turns, strict=True) if t["id"].endswith("turn2")
    ]
    assert len(second_turns) == 80
    for ex, turn in zip(result.exchanges, turns, strict=True):
        assert ex.request["messages"] == turn["messages"]
        assert ex.response is not None and ex.response.text == turn["answer"]
    # Turn 2 replays the whole conversation: question 1, GPT-4's answer 1, question 2.
    assert [m["role"] for m in second_turns[0].request["messages"]] == ["user", "assistant", "user"]
    if fmt != "finetune-chat":
        assert {ex.metadata["category"] for ex in result.exchanges} == {
            "writing",
            "roleplay",
            "reasoning",
            "math",
            "coding",
            "extraction",
            "stem",
            "humanities",
        }
