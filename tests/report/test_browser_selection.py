"""The exchange browser's selection of a large run, done over the scores frame's arrays
(issue 17: no Python object a row of a million-exchange run) shows exactly what the
row-by-row algorithm it replaced showed: the same ids in the same order and the same data,
byte for byte."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pandas as pd
import pytest

from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.results import Results
from migrate_eval.report import explorer
from migrate_eval.report._format import last_user_message
from migrate_eval.report.explorer import _blob_data, _cut, shown_answer, text_limit

from .conftest import CANDIDATES, TASKS, build_run

# --------------------------------------------------------------------------- the reference
# The algorithm as it was before issue 17 (one Python object per row of the scores), kept
# here as the specification of what the browser shows.


def _reference_blob_data(
    results: Results,
    scores: pd.DataFrame,
    exchanges: Mapping[str, Exchange],
    replays: Mapping[tuple[str, str], ReplayResult],
) -> tuple[dict[str, Any], int, int, int]:
    cand_names = [c.name for c in results.candidates]
    task_list = [t.name for t in results.tasks]
    sc = scores[["exchange_id", "task", "candidate"]].astype(str)
    parity_col = pd.to_numeric(scores["parity"], errors="coerce")
    status_col = scores["status"].astype(str)
    for t in sc["task"].unique():
        if t not in task_list:
            task_list.append(str(t))
    for c in sc["candidate"].unique():
        if c not in cand_names:
            cand_names.append(str(c))
    firsts = sc.drop_duplicates("exchange_id")
    ids = firsts["exchange_id"].tolist()
    task_of = dict(zip(firsts["exchange_id"], firsts["task"], strict=True))
    for ex_id in exchanges:
        if ex_id not in task_of:
            ids.append(ex_id)
            task_of[ex_id] = ""
    if "" in task_of.values() and "" not in task_list:
        task_list.append("")
    total = len(ids)
    if total > explorer.MAX_BROWSER_EXCHANGES:
        ids = _reference_browsed(
            ids, task_of, sc["exchange_id"].tolist(), parity_col.tolist(), status_col.tolist()
        )
        keep = set(ids)
        mask = sc["exchange_id"].isin(keep).to_numpy()
        sc, parity_col, status_col = sc[mask], parity_col[mask], status_col[mask]
    task_index = {t: i for i, t in enumerate(task_list)}
    pos = {ex_id: i for i, ex_id in enumerate(ids)}
    n = len(ids)
    limit = text_limit(n, len(cand_names))
    statuses = ["ok", "error", "unsupported", "missing"]
    status_index = {s: i for i, s in enumerate(statuses)}
    parity: list[list[Any]] = [[None] * n for _ in cand_names]
    status = [[status_index["missing"]] * n for _ in cand_names]
    cidx = {c: i for i, c in enumerate(cand_names)}
    rows_ex = [pos[e] for e in sc["exchange_id"].tolist()]
    rows_c = [cidx[c] for c in sc["candidate"].tolist()]
    for r, c, p, s in zip(
        rows_ex, rows_c, parity_col.round(3).tolist(), status_col.tolist(), strict=True
    ):
        parity[c][r] = p if p == p else None
        if s not in status_index:
            status_index[s] = len(statuses)
            statuses.append(s)
        status[c][r] = status_index[s]
    user: list[str] = []
    logged: list[str] = []
    answers: list[list[str]] = [[] for _ in cand_names]
    for ex_id in ids:
        ex = exchanges.get(ex_id)
        if ex is None:
            user.append("")
            logged.append("(not in this run folder)")
        else:
            user.append(_cut(last_user_message(ex) or "", limit))
            logged.append(
                _cut(shown_answer(ex.response) if ex.response else (ex.error or ""), limit)
            )
        for ci, cname in enumerate(cand_names):
            rep = replays.get((ex_id, cname))
            if rep is None:
                answers[ci].append("")
            elif rep.response is not None:
                answers[ci].append(_cut(shown_answer(rep.response), limit))
            else:
                answers[ci].append(_cut(f"[error] {rep.error or ''}", limit))
    data: dict[str, Any] = {
        "candidates": cand_names,
        "tasks": task_list,
        "statuses": statuses,
        "text_limit": limit,
        "ids": ids,
        "task": [task_index[task_of[e]] for e in ids],
        "user": user,
        "logged": logged,
        "parity": parity,
        "status": status,
        "answer": answers,
    }
    return data, limit, n, total


def _reference_browsed(
    ids: list[str],
    task_of: Mapping[str, str],
    row_ids: Sequence[str],
    parities: Sequence[Any],
    statuses: Sequence[Any],
) -> list[str]:
    import hashlib

    worst: dict[str, float] = {}
    for ex_id, p, st in zip(row_ids, parities, statuses, strict=True):
        value = -1.0 if st != "ok" or p is None or p != p else float(p)
        worst[ex_id] = min(worst.get(ex_id, 2.0), value)
    by_task: dict[str, list[str]] = {}
    for ex_id in ids:
        by_task.setdefault(task_of.get(ex_id, ""), []).append(ex_id)
    total, cap = len(ids), explorer.MAX_BROWSER_EXCHANGES
    kept: set[str] = set()
    for members in by_task.values():
        quota = min(len(members), max(explorer.MIN_BROWSER_PER_TASK, cap * len(members) // total))
        low = sorted(members, key=lambda e: worst.get(e, -1.0))[: quota // 2]
        kept.update(low)
        rest = [e for e in members if e not in kept]
        rest.sort(key=lambda e: hashlib.sha256(e.encode("utf-8")).digest())
        kept.update(rest[: quota - len(low)])
    return [e for e in ids if e in kept]


# --------------------------------------------------------------------------- a run


def _exchange(ex_id: str, i: int) -> Exchange:
    return Exchange(
        id=ex_id,
        source=Source(file="logs.jsonl", line=i + 1, format="chat-jsonl"),
        request={"messages": [{"role": "user", "content": f"question {i} </script> &"}]},
        response=Response(text=f"logged answer {i}") if i % 9 else None,
        error=None if i % 9 else "HTTP 500 upstream",
    )


def _run(seed: int) -> tuple[Results, pd.DataFrame, dict[str, Exchange], dict[Any, ReplayResult]]:
    """Tasks of 300, 200, 80 and 6 exchanges (the last smaller than the browser's minimum per
    task), parities in tenths (many ties), NaN parities, errors and unsupported answers, a
    candidate the results do not name, a repeated row, exchanges without a score row and
    score rows without an exchange; the rows shuffled."""
    rng = random.Random(seed)
    results = build_run().results
    sizes = {TASKS[0]: 300, TASKS[1]: 200, TASKS[2]: 80, "tiny": 6}
    rows: list[dict[str, Any]] = []
    exchanges: dict[str, Exchange] = {}
    replays: dict[Any, ReplayResult] = {}
    i = 0
    for task, size in sizes.items():
        for _ in range(size):
            ex_id = f"ex-{rng.randrange(10**9):09d}-{i}"
            if i % 37:  # a few score rows name an exchange the run folder lacks
                exchanges[ex_id] = _exchange(ex_id, i)
            cands = [*CANDIDATES, "extra"] if i % 11 == 0 else list(CANDIDATES)
            for cand in cands:
                roll = rng.random()
                status = "error" if roll < 0.08 else "unsupported" if roll < 0.12 else "ok"
                parity = math.nan if status != "ok" or roll > 0.95 else rng.randrange(11) / 10
                rows.append(
                    {"exchange_id": ex_id, "task": task, "candidate": cand,
                     "status": status, "parity": parity}
                )  # fmt: skip
                if i % 3:
                    replays[(ex_id, cand)] = ReplayResult(
                        exchange_id=ex_id,
                        candidate=cand,
                        response=Response(text=f"{cand} answer {i}") if status == "ok" else None,
                        error=None if status == "ok" else "boom",
                    )
            i += 1
    for j in range(14):  # logged, never scored
        exchanges[f"unscored-{j}"] = _exchange(f"unscored-{j}", i + j)
    rng.shuffle(rows)
    rows.append(dict(rows[5], parity=0.123456))  # the same exchange and candidate again
    return results, pd.DataFrame(rows), exchanges, replays


def _same(*args: Any) -> tuple[dict[str, Any], int, int, int]:
    new = _blob_data(*args)
    old = _reference_blob_data(*args)
    assert new[0]["ids"] == old[0]["ids"]
    assert orjson.dumps(new[0]) == orjson.dumps(old[0])
    assert new[1:] == old[1:]
    return new


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_large_runs_browser_shows_what_it_showed(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(explorer, "MAX_BROWSER_EXCHANGES", 120)
    monkeypatch.setattr(explorer, "MIN_BROWSER_PER_TASK", 10)
    monkeypatch.setattr(explorer, "_HASH_CHUNK", 7)  # hashed a few at a time
    results, scores, exchanges, replays = _run(seed)
    data, _, n, total = _same(results, scores, exchanges, replays)
    # shares of 120: 60, 40 and 16; the 6 of the small task and 10 of the 14 unscored
    assert total == 586 + 14 and n == 60 + 40 + 16 + 6 + 10
    assert "tiny" in data["tasks"] and "" in data["tasks"]
    tiny = data["tasks"].index("tiny")
    assert data["task"].count(tiny) == 6  # a task smaller than the minimum: all of it
    # the same with the columns as plain objects, as a frame read from an older parquet
    _same(results, scores.astype(object), exchanges, replays)
    # and as a run holds them: the text columns categorical
    _same(results, scores.astype({c: "category" for c in ("task", "candidate", "status")}),
          exchanges, replays)  # fmt: skip


def test_ids_whose_first_hash_bytes_tie_are_ordered_by_the_whole_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(explorer, "MAX_BROWSER_EXCHANGES", 120)
    monkeypatch.setattr(explorer, "MIN_BROWSER_PER_TASK", 10)
    monkeypatch.setattr(explorer, "_HASH_PREFIX", 1)  # 256 values for hundreds of ids
    _same(*_run(4))


def test_a_run_under_the_cap_shows_every_exchange() -> None:
    results, scores, exchanges, replays = _run(5)
    data, _, n, total = _same(results, scores, exchanges, replays)
    assert n == total == 600 and len(set(data["ids"])) == 600


def test_scores_without_rows_or_columns() -> None:
    results, scores, exchanges, replays = _run(6)
    for frame in (scores.iloc[:0], scores[["exchange_id", "task"]]):
        data, _, n, _ = _blob_data(results, frame, exchanges, replays)
        assert n == len(exchanges) and data["ids"] == list(exchanges)
        assert set(data["task"]) == {data["tasks"].index("")}
        assert all(s == [3] * n for s in data["status"])  # "missing"
