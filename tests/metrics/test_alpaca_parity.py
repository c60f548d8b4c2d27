"""Real free text: AlpacaEval outputs, GPT-4 (0613) as the logged reference, two candidates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.results import TaskInfo
from migrate_eval.score import score
from tests.conftest import NO_SHARED_DATA, shown

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alpaca_eval"
N = 100
TASK = TaskInfo(
    name="assistant",
    output="free_text",
    metrics=["chrf", "length_ratio"],
    min_parity=0.5,
    n=N,
    source="suite",
)


def _load(name: str) -> list[dict[str, Any]]:
    path = DATA / name
    if not path.exists():
        reason = f"real data file {shown(path)} not present" if DATA.parent.is_dir() else ""
        pytest.skip(reason or NO_SHARED_DATA)
    rows: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return rows[:N]


@pytest.fixture(scope="module")
def scored() -> Any:
    reference = _load("gpt4_0613.json")
    candidates = {
        "gpt-4o": _load("gpt-4o-2024-05-13.json"),
        "llama-2-7b": _load("llama-2-7b-chat-hf.json"),
    }
    exchanges = [
        Exchange(
            id=f"alpaca-{i}",
            source=Source(file="gpt4_0613.json", line=i + 1, format="alpaca_eval"),
            request={
                "model": "gpt-4-0613",
                "messages": [{"role": "user", "content": row["instruction"]}],
            },
            response=Response(text=row["output"]),
        )
        for i, row in enumerate(reference)
    ]
    replays = []
    for name, rows in candidates.items():
        for i, row in enumerate(rows):
            assert row["instruction"] == reference[i]["instruction"], "files are not aligned"
            replays.append(
                ReplayResult(
                    exchange_id=f"alpaca-{i}", candidate=name, response=Response(text=row["output"])
                )
            )
    assignment = {e.id: TASK.name for e in exchanges}
    return score(exchanges, [TASK], assignment, replays), (exchanges, assignment, replays)


def test_chrf_on_real_answers_is_strictly_between_0_and_1(scored: Any) -> None:
    df, _ = scored
    assert len(df) == 2 * N
    assert (df["status"] == "ok").all()
    assert ((df["chrf"] > 0) & (df["chrf"] < 1)).all()
    assert ((df["parity"] > 0) & (df["parity"] < 1)).all()


def test_scores_are_deterministic(scored: Any) -> None:
    df, (exchanges, assignment, replays) = scored
    again = score(exchanges, [TASK], assignment, replays)
    assert np.array_equal(df["chrf"].to_numpy(), again["chrf"].to_numpy())


def test_a_strong_model_is_closer_to_gpt4_than_llama_2_7b(scored: Any) -> None:
    # Holds robustly on this data: the paired chrF difference has a 95% bootstrap interval of
    # about 0.07-0.10, and gpt-4o is closer on 84 of the 100 instructions.
    df, _ = scored
    by = df.pivot(index="exchange_id", columns="candidate", values="chrf")
    assert by["gpt-4o"].mean() > by["llama-2-7b"].mean() + 0.03
    assert (by["gpt-4o"] > by["llama-2-7b"]).mean() > 0.7
