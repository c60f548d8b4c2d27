"""The report reads score rows as plain lists (``_records``): the values pandas' ``to_dict``
gives, for every column type the scores frame has."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from migrate_eval.report.html import _records


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b) if a is not pd.NA else b is pd.NA


def test_records_equal_to_dict_records() -> None:
    frame = pd.DataFrame(
        {
            "exchange_id": pd.Series(["a", "b", None], dtype="str"),
            "status": ["ok", "timeout", "ok"],
            "parity": [1.0, float("nan"), 0.25],
            "prompt_tokens": pd.array([3, None, 5], dtype="Int64"),
            "cached": [True, False, True],
            "judge_prompt_tokens": [0, 1, 2],
        },
        index=[7, 3, 9],  # a group's rows keep the whole frame's index
    )
    columns = ("exchange_id", "status", "parity", "prompt_tokens", "cached", "missing", "status")
    expected = frame[[c for c in dict.fromkeys(columns) if c in frame.columns]].to_dict("records")
    got = _records(frame, columns)
    assert [list(r) for r in got] == [list(r) for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert all(_same(g[k], e[k]) for k in e), (g, e)
    assert _records(frame, ("missing",)) == [{}, {}, {}]


# --------------------------------------------------------------------------- issue 17
# A task's worst regressions and failures are picked over arrays of its rows (a million
# exchanges are two million rows): the same rows, in the same order, as sorting every row.


def _scores(seed: int, n: int) -> pd.DataFrame:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ex_id = f"e{rng.randrange(n // 3 + 1):04d}"  # ids repeat: equal ids keep row order
        status = rng.choice(["ok"] * 6 + ["error", "unsupported", "timeout"])
        parity = rng.choice([0.0, 0.25, 0.5, 0.5, 0.5, 0.75, 1.0, math.nan])
        task = rng.choice(["a", "b", "c"])
        rows.append({"exchange_id": ex_id, "task": task, "candidate": rng.choice("xy"),
                     "status": status, "parity": parity, "i": i})  # fmt: skip
    return pd.DataFrame(rows)


def test_regressions_and_failures_are_the_rows_a_full_sort_picks() -> None:
    import numpy as np

    from migrate_eval.report.html import _first_by, _groups

    for seed in range(4):
        frame = _scores(seed, 400)
        for scores in (frame, frame.astype(object)):
            groups = _groups(scores)
            expected = {
                (str(k[0]), str(k[1])): g["i"].tolist()
                for k, g in scores.groupby(["task", "candidate"], sort=False)
            }
            assert {k: scores["i"].iloc[g.positions].tolist() for k, g in groups.items()} == (
                expected
            )
            for g in groups.values():
                status = [str(s) for s in g.column("status").tolist()]
                parity = g.column("parity").astype(float).to_numpy()
                ids = [str(i) for i in g.column("exchange_id").tolist()]
                ok = [i for i in range(len(g)) if status[i] == "ok" and not math.isnan(parity[i])]
                low = [i for i in ok if parity[i] < 1.0 - 1e-9]
                failed = [i for i in range(len(g)) if status[i] != "ok"]
                at_low = np.asarray(low, dtype=np.intp)
                at_failed = np.asarray(failed, dtype=np.intp)
                for k in (0, 1, 3, 10, 500):
                    want = sorted(low, key=lambda i: (parity[i], ids[i]))[:k]
                    got = _first_by(parity, g.column("exchange_id"), at_low, k)
                    assert got.tolist() == want, (seed, k)
                    want = sorted(failed, key=lambda i: ids[i])[:k]
                    assert _first_by(None, g.column("exchange_id"), at_failed, k).tolist() == want
