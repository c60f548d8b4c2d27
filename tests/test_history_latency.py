"""The run history's latency percentiles: each (candidate, task) from its own score rows."""

from __future__ import annotations

import math

import numpy as np

from migrate_eval.verdict.history import history_records
from tests.report.conftest import build_run


def test_latency_percentiles_per_candidate_and_task() -> None:
    run = build_run()
    scores = run.scores.copy()
    scores["latency_ms"] = np.arange(len(scores), dtype=np.float64) * 7.0
    scores.loc[scores.index[::5], "latency_ms"] = math.nan  # missing latencies are left out
    records = history_records(run.results, scores, list(run.replays.values()), run_id="r")
    assert len(records) == sum(len(c.tasks) for c in run.results.candidates) > 2
    for rec in records.to_dict("records"):
        mine = scores[(scores["candidate"] == rec["candidate"]) & (scores["task"] == rec["task"])]
        lat = mine["latency_ms"].dropna().to_numpy()
        assert rec["latency_p50_ms"] == float(np.percentile(lat, 50))
        assert rec["latency_p95_ms"] == float(np.percentile(lat, 95))
    no_latency = history_records(
        run.results, scores.drop(columns="latency_ms"), list(run.replays.values()), run_id="r"
    )
    assert no_latency["latency_p50_ms"].isna().all()


def test_the_plans_assignment_gives_the_records_the_scores_give() -> None:
    # a run passes its plan's exchange -> task map (held already) instead of the history
    # building one from the scores (a dict of a million texts at a million exchanges)
    run = build_run()
    replays = list(run.replays.values())
    assignment = dict(zip(run.scores["exchange_id"], run.scores["task"], strict=True))
    a = history_records(run.results, run.scores, replays, run_id="r")
    b = history_records(run.results, run.scores, replays, run_id="r", assignment=assignment)
    assert len(a) > 2 and a.equals(b)
    assert (a["refusal_rate"].notna() | a["response_models"].ne("")).any()
