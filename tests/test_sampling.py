from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import migrate_eval
from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import Exchange, Response, Source
from migrate_eval.core.suite import CandidateSpec, LogSpec, Sampling, Suite
from migrate_eval.plan.sampling import request_fingerprint, required_sample_size, sample_plan
from migrate_eval.plan.tasks import assign_tasks
from tests.servers import LoopbackServer


def ex(i: int, task: str, question: str, **req: Any) -> Exchange:
    return Exchange(
        id=f"e{i}",
        source=Source(file="f", line=i, format="t"),
        request={"model": "m", "messages": [{"role": "user", "content": question}], **req},
        response=Response(text="a"),
        metadata={"feature": task},
    )


def test_required_sample_size_normal_approximation() -> None:
    assert required_sample_size(0.1) == 385  # 1.96^2 / (4 * 0.05^2) = 384.1
    assert required_sample_size(0.2) == 97
    assert required_sample_size(0.1, confidence=0.9) == 271
    # finite-population correction: a small task needs fewer, never more than it has
    assert required_sample_size(0.1, 100) == 80
    assert required_sample_size(0.1, 1_000_000) == 384  # n0 / (1 + (n0 - 1) / N)
    assert required_sample_size(0.5, 3) == 3
    assert required_sample_size(0.1, 0) == 0
    with pytest.raises(ConfigError):
        required_sample_size(0)


def test_fingerprint_ignores_bookkeeping_fields() -> None:
    a = ex(1, "t", "q", user="u1", metadata={"x": 1}, stream=True)
    b = ex(2, "t", "q", user="u2")
    c = ex(3, "t", "q", temperature=0.5)
    assert request_fingerprint(a) == request_fingerprint(b) != request_fingerprint(c)


def test_dedupe_keeps_the_first_and_counts_copies() -> None:
    exchanges = [ex(i, "a", f"q{i % 3}") for i in range(9)] + [ex(9, "b", "q0")]
    plan = assign_tasks(exchanges)
    kept, plan2, summary = sample_plan(exchanges, plan, dedupe=True)
    assert [e.id for e in kept] == ["e0", "e1", "e2", "e9"]  # per task: "b" keeps its own
    by_task = {t.task: t for t in summary.tasks}
    assert by_task["a"].available == 9 and by_task["a"].duplicates == 6
    assert by_task["a"].unique == 3 and by_task["a"].sampled == 3
    assert summary.duplicates == 6 and summary.sampled == 4
    assert {t.name: t.n for t in plan2.tasks} == {"a": 3, "b": 1}
    kept_all, plan_all, s_all = sample_plan(exchanges, plan)  # dedupe off keeps every copy
    assert len(kept_all) == 10 and s_all.duplicates == 0
    # every exchange kept: the sample's assignment is the traffic's, not a second mapping of
    # (at scale) a million ids; a sample holds only its own
    assert plan_all.assignment is plan.assignment
    assert plan2.assignment == {e.id: plan.assignment[e.id] for e in kept}


def test_ci_width_sizes_each_stratum_and_is_seeded() -> None:
    exchanges = [ex(i, "big" if i < 300 else "small", f"q{i}") for i in range(330)]
    plan = assign_tasks(exchanges)
    kept, _, summary = sample_plan(exchanges, plan, ci_width=0.2, seed=7)
    by_task = {t.task: t for t in summary.tasks}
    assert by_task["big"].target == required_sample_size(0.2, 300) == by_task["big"].sampled
    assert by_task["small"].sampled == required_sample_size(0.2, 30)
    again, _, _ = sample_plan(exchanges, plan, ci_width=0.2, seed=7)
    other, _, _ = sample_plan(exchanges, plan, ci_width=0.2, seed=8)
    assert [e.id for e in kept] == [e.id for e in again] != [e.id for e in other]
    ids = [int(e.id[1:]) for e in kept]
    assert ids == sorted(ids)  # log order kept
    # the limit wins when it is smaller
    _, _, capped = sample_plan(exchanges, plan, ci_width=0.2, limit=10)
    assert {t.task: t.sampled for t in capped.tasks} == {"big": 10, "small": 10}
    # a task's sample does not depend on another task's traffic
    only_big = [e for e in exchanges if e.metadata["feature"] == "big"]
    k2, _, _ = sample_plan(only_big, assign_tasks(only_big), ci_width=0.2, seed=7)
    assert [e.id for e in k2] == [e.id for e in kept if e.metadata["feature"] == "big"]


def test_suite_sampling_fields_drive_the_run(tmp_path: Path) -> None:
    logs = tmp_path / "logs.jsonl"
    rows = []
    for i in range(40):
        q = f"question {i % 20}"  # every request logged twice
        rows.append(
            {
                "request": {"model": "m", "messages": [{"role": "user", "content": q}]},
                "response": {"choices": [{"message": {"role": "assistant", "content": "ok"}}]},
                "metadata": {"feature": "faq"},
            }
        )
    logs.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with LoopbackServer() as server:
        suite = Suite(
            name="s",
            logs=[LogSpec(path=str(logs))],
            candidates=[CandidateSpec(name="c", model="x", base_url=server.base_url)],
            sampling=Sampling(dedupe=True, ci_width=0.5, seed=3),
        )
        outcome = migrate_eval.run(suite, out=tmp_path / "run", cache=tmp_path / "c.sqlite")
        assert server.total == required_sample_size(0.5, 20)
    s = outcome.results.sampling
    assert s is not None and s.dedupe and s.duplicates == 20
    assert s.tasks[0].unique == 20 and s.tasks[0].sampled == required_sample_size(0.5, 20)
    assert outcome.results.profile is not None
    assert outcome.results.profile.duplicates.duplicates == 20
