"""Helpers for the ingest tests: where the shared real data is, and log builders."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import NO_SHARED_DATA, shown

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def data_dir() -> Path:
    """The shared real-data folder beside the checkout, or skip the test."""
    if not DATA.is_dir():
        pytest.skip(NO_SHARED_DATA)
    return DATA


def data_file(*parts: str) -> Path:
    path = data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data file {shown(path)} not present")
    return path


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def completion(
    text: str | None,
    *,
    model: str = "gpt-4-0613",
    id: str = "chatcmpl-test",
    created: int = 1700000000,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Chat Completions response body."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }


def alpaca(n: int | None = None) -> list[dict[str, Any]]:
    """AlpacaEval outputs of GPT-4 (0613): ``{instruction, output, generator}``."""
    records: list[dict[str, Any]] = json.loads(
        data_file("alpaca_eval", "gpt4_0613.json").read_text(encoding="utf-8")
    )
    return records if n is None else records[:n]


def mt_bench_turns() -> list[dict[str, Any]]:
    """MT-bench GPT-4 answers as one conversation per turn: ``{id, category, messages, answer}``
    (turn 2 carries turn 1's question and answer)."""
    questions = {}
    for line in data_file("mt_bench", "question.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        questions[q["question_id"]] = q
    turns = []
    for line in (
        data_file("mt_bench", "model_answer", "gpt-4.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ):
        a = json.loads(line)
        q = questions[a["question_id"]]
        answers = a["choices"][0]["turns"]
        messages: list[dict[str, Any]] = []
        for k, (question, answer) in enumerate(zip(q["turns"], answers, strict=True), start=1):
            messages = [*messages, {"role": "user", "content": question}]
            turns.append(
                {
                    "id": f"mtbench-{q['question_id']}-turn{k}",
                    "category": q["category"],
                    "messages": messages,
                    "answer": answer,
                }
            )
            messages = [*messages, {"role": "assistant", "content": answer}]
    return turns


def cassette_pairs(pattern: str) -> list[dict[str, Any]]:
    """The OpenAI VCR cassettes matching ``pattern`` as ``{"id", "request", "response"}`` log
    lines: the request body as JSON, the response as ``{"status_code", "body"}`` with the body
    string as recorded (JSON, or server-sent events for streamed calls)."""
    folder = data_dir() / "otel-openai-cassettes"
    rows = []
    for path in sorted(folder.glob(pattern)):
        cassette = yaml.safe_load(path.read_text(encoding="utf-8"))
        for i, interaction in enumerate(cassette["interactions"]):
            rows.append(
                {
                    "id": f"{path.stem}#{i}",
                    "request": json.loads(interaction["request"]["body"]),
                    "response": {
                        "status_code": interaction["response"]["status"]["code"],
                        "body": interaction["response"]["body"]["string"],
                    },
                }
            )
    if not rows:
        pytest.skip(f"no cassette matches {pattern} in {shown(folder)}")
    return rows
