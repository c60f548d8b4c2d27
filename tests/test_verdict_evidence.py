"""Verdicts only as strong as their evidence (issue 13): a guarded noise floor, one named bar per
task, "needs evidence" for similarity alone, "not ready" for a candidate that cannot express the
traffic, and the statistics a reviewer reads (clusters, flips, minimum detectable drop).

The texts are built by the tests (seeded): logged answers, OpenAI-like re-runs that reword a few
words, off-topic answers, gibberish. Each case runs the real scoring (chrF), noise floor and
aggregation; several failed on the code before this change (noted per test).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from migrate_eval.core.errors import ExitCode
from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.results import CandidateResult, TaskInfo
from migrate_eval.core.suite import CandidateSpec, Gate, Thresholds
from migrate_eval.score import score
from migrate_eval.verdict.aggregate import (
    ABSOLUTE_FLOOR,
    aggregate,
    clusters_of,
    gate_outcome,
    task_bar,
)
from migrate_eval.verdict.noise import chance_levels, noise_floor_for_run
from tests.servers import LoopbackServer

TOPICS = [
    "hiking boots",
    "rain jackets",
    "camping stoves",
    "sleeping bags",
    "trekking poles",
    "water filters",
    "climbing ropes",
    "trail running shoes",
    "down vests",
    "headlamps",
]
WORDS = [
    "choose",
    "fit",
    "weight",
    "warmth",
    "budget",
    "season",
    "terrain",
    "waterproof",
    "breathable",
    "durable",
    "packable",
    "layer",
    "comfort",
    "grip",
    "insulation",
    "care",
    "repair",
    "warranty",
    "size",
    "sole",
    "zipper",
    "strap",
    "capacity",
]
SWAPS = {"choose": "pick", "durable": "sturdy", "comfort": "ease", "budget": "price"}

N = 60
TH = Thresholds(min_parity=0.85, pass_threshold=0.5, max_error_rate=0.2, min_samples=30)


def _answer(rng: random.Random, topic: str) -> str:
    words = rng.sample(WORDS, 12)
    return (
        f"For {topic}, first {words[0]} the {words[1]} and {words[2]}. "
        f"Then think about {words[3]}, {words[4]} and {words[5]}. "
        f"Finally check {words[6]} and {words[7]} before you buy {topic}."
    )


def _reword(rng: random.Random, text: str) -> str:
    """What OpenAI answers when asked again: the same answer with a few words changed."""
    out = []
    for w in text.split(" "):
        bare = w.strip(".,")
        if bare in SWAPS and rng.random() < 0.7:
            w = w.replace(bare, SWAPS[bare])
        elif rng.random() < 0.08:
            w = rng.choice(WORDS)
        out.append(w)
    return " ".join(out)


def _gibberish(rng: random.Random) -> str:
    return " ".join(
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))
        for _ in range(30)
    )


def _exchanges(rng: random.Random, user: bool = False) -> list[Exchange]:
    out = []
    for i in range(N):
        topic = TOPICS[i % len(TOPICS)]
        out.append(
            Exchange(
                id=f"ex{i}",
                source=Source(file="logs.jsonl", line=i + 1, format="chat-jsonl"),
                request={
                    "model": "gpt-4o",
                    "messages": [{"role": "user", "content": f"How do I choose {topic}? #{i}"}],
                    **({"user": f"user-{i % 6}"} if user else {}),
                },
                response=Response(text=_answer(rng, topic)),
            )
        )
    return out


TASK = TaskInfo(
    name="advice", output="free_text", metrics=["chrf"], min_parity=0.85, n=N, source="suite"
)


def _rows(name: str, exchanges: Sequence[Exchange], texts: Sequence[str]) -> list[ReplayResult]:
    return [
        ReplayResult(exchange_id=e.id, candidate=name, response=Response(text=t))
        for e, t in zip(exchanges, texts, strict=True)
    ]


def _verdict(
    exchanges: list[Exchange],
    candidate_texts: Sequence[str],
    baseline_texts: Sequence[str] | None = None,
    *,
    task: TaskInfo = TASK,
) -> tuple[CandidateResult, ExitCode]:
    assignment = {e.id: task.name for e in exchanges}
    rows = _rows("cand", exchanges, candidate_texts)
    scores = score(exchanges, [task], assignment, rows)
    chance = chance_levels(exchanges, [task], assignment)
    baseline = _rows("baseline", exchanges, baseline_texts) if baseline_texts else None
    floor = noise_floor_for_run(
        exchanges, [task], assignment, baseline_replays=baseline, chance=chance
    )
    [result] = aggregate(
        scores,
        [task],
        [CandidateSpec(name="cand", model="m")],
        TH,
        Gate(),
        noise_floor=floor,
        chance=chance,
        clusters=clusters_of(exchanges),
    )
    _, code = gate_outcome([result], Gate())
    return result, code


def test_a_junk_baseline_rerun_is_broken_and_gibberish_is_not_ready() -> None:
    # before: the junk re-run gave a floor near 0, the bar max(0, floor - margin) = 0, and the
    # gibberish candidate was "ready", exit 0
    rng = random.Random(1)
    exchanges = _exchanges(rng)
    junk = [_gibberish(rng) for _ in exchanges]
    gibberish = [_gibberish(rng) for _ in exchanges]
    result, code = _verdict(exchanges, gibberish, junk)
    [task] = result.tasks
    assert task.noise_floor_status == "broken"
    assert task.noise_floor_problem and "unrelated" in task.noise_floor_problem
    assert task.noise_floor is None
    assert task.verdict == "not_ready" and code == ExitCode.NOT_READY
    assert "no_closer_than_unrelated" in [r.code for r in task.reasons]
    assert (
        task.effective_threshold is not None
        and task.effective_threshold >= ABSOLUTE_FLOOR["free_text"]
    )


def test_a_candidate_as_good_as_the_baseline_is_ready() -> None:
    rng = random.Random(2)
    exchanges = _exchanges(rng)
    rerun = [_reword(rng, e.response.text or "") for e in exchanges]
    twin = [_reword(rng, e.response.text or "") for e in exchanges]  # OpenAI once more
    result, code = _verdict(exchanges, twin, rerun)
    [task] = result.tasks
    assert task.noise_floor_status == "used" and task.bar_source == "noise_floor"
    assert task.evidence == "noise_floor"
    assert task.verdict in ("ready", "ready_with_caveats") and code == ExitCode.READY
    assert task.flips is not None and task.flips.against == "baseline_replay"
    assert task.flips.better + task.flips.worse + task.flips.same == N


def test_a_different_but_on_topic_candidate_needs_evidence_not_a_no() -> None:
    # a candidate that answers the question its own way is not shown worse by similarity
    rng = random.Random(3)
    exchanges = _exchanges(rng)
    rerun = [_reword(rng, e.response.text or "") for e in exchanges]
    own_way = [_answer(rng, TOPICS[i % len(TOPICS)]) for i in range(N)]
    result, code = _verdict(exchanges, own_way, rerun)
    [task] = result.tasks
    assert task.verdict == "needs_evidence", task.reasons
    assert code == ExitCode.NEEDS_EVIDENCE
    assert "judge" in task.reasons[0].message


def test_similarity_without_a_noise_floor_needs_evidence_even_above_min_parity() -> None:
    # before: the demo called a free-text task "ready" at chrF 0.57 against a 0.5 bar
    rng = random.Random(4)
    exchanges = _exchanges(rng)
    near = [_reword(rng, e.response.text or "") for e in exchanges]
    task = TASK.model_copy(update={"min_parity": 0.3})
    result, code = _verdict(exchanges, near, task=task)
    [t] = result.tasks
    assert t.evidence == "none" and t.noise_floor_status == "none"
    assert t.verdict == "needs_evidence" and code == ExitCode.NEEDS_EVIDENCE
    assert "baseline" in t.reasons[0].message and "judge" in t.reasons[0].message
    assert result.verdict == "needs_evidence"


def test_gibberish_without_a_noise_floor_is_not_ready() -> None:
    rng = random.Random(5)
    exchanges = _exchanges(rng)
    result, code = _verdict(exchanges, [_gibberish(rng) for _ in exchanges])
    assert result.tasks[0].verdict == "not_ready" and code == ExitCode.NOT_READY


def test_a_candidate_that_cannot_express_the_traffic_is_not_ready_not_an_outage() -> None:
    # before: every request unsupported left nothing scored: "cannot judge", exit 3
    rng = random.Random(6)
    exchanges = _exchanges(rng)
    assignment = {e.id: TASK.name for e in exchanges}
    rows = [
        ReplayResult(
            exchange_id=e.id,
            candidate="cand",
            error="the candidate cannot express tool_choice 'required'",
            error_kind="unsupported",
        )
        for e in exchanges
    ]
    scores = score(exchanges, [TASK], assignment, rows)
    [result] = aggregate(scores, [TASK], [CandidateSpec(name="cand", model="m")], TH, Gate())
    _, code = gate_outcome([result], Gate())
    assert result.tasks[0].verdict == "not_ready"
    assert [r.code for r in result.tasks[0].reasons] == ["cannot_express_traffic"]
    assert code == ExitCode.NOT_READY


def test_the_bar_never_falls_below_the_floor_of_the_output_kind() -> None:
    task = TASK.model_copy(update={"output": "classification", "metrics": ["normalized_match"]})
    bar, source, why = task_bar(task, floor=0.1, floor_n=50, chance=None, margin=0.05)
    assert bar == ABSOLUTE_FLOOR["classification"] and source == "absolute_floor"
    assert "0.500" in why and "min_parity" not in why
    bar, source, why = task_bar(task, floor=0.8, floor_n=50, chance=0.7, margin=0.05)
    assert bar == pytest.approx(0.75) and source == "noise_floor" and "0.800" in why
    bar, source, _ = task_bar(task, floor=None, floor_n=0, chance=0.84, margin=0.05)
    assert bar == pytest.approx(0.89) and source == "chance_level"


def test_exchanges_of_one_user_widen_the_interval_and_the_detectable_drop() -> None:
    rng = random.Random(7)
    alone = _exchanges(rng)
    rng = random.Random(7)
    grouped = _exchanges(rng, user=True)
    assert len(set(clusters_of(grouped).values())) == 6 and clusters_of(alone) == {}
    # per-user quality: each user's answers all pass or all fail
    texts = [(e.response.text or "") if i % 6 < 3 else _gibberish(rng) for i, e in enumerate(alone)]
    free = TASK.model_copy(update={"metrics": ["exact_match"], "output": "classification"})
    a, _ = _verdict(alone, texts, task=free)
    b, _ = _verdict(grouped, texts, task=free)
    ta, tb = a.tasks[0], b.tasks[0]
    assert ta.clusters is None and tb.clusters == 6
    assert ta.parity.mean == tb.parity.mean
    assert (tb.parity.ci_high or 0) - (tb.parity.ci_low or 0) > (ta.parity.ci_high or 0) - (
        ta.parity.ci_low or 0
    )
    assert ta.min_detectable_drop is not None and tb.min_detectable_drop is not None
    assert tb.min_detectable_drop > ta.min_detectable_drop


# ------------------------------------------------- the noise floor measured when it can be


def _log_line(i: int) -> dict[str, object]:
    # the loopback server answers "echo: <question>": the logged answers are what OpenAI
    # answered, each question its own words (unrelated answers share little)
    question = _answer(random.Random(i), TOPICS[i % len(TOPICS)])
    return {
        "request": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are Trailguide, the gear advisor."},
                {"role": "user", "content": question},
            ],
        },
        "response": {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "created": 1760000000 + i,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"echo: {question}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
        },
    }


@pytest.fixture
def free_text_logs(tmp_path: Path) -> Path:
    import json

    path = tmp_path / "logs.jsonl"
    path.write_text("".join(json.dumps(_log_line(i)) + "\n" for i in range(40)), "utf-8")
    return path


def _baseline_calls(server: LoopbackServer) -> int:
    return sum(1 for body in server.bodies if body.get("model") == "gpt-4o-mini")


def test_the_logged_model_is_re_run_when_reachable_and_its_cost_said_first(
    tmp_path: Path,
    server: LoopbackServer,
    free_text_logs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import migrate_eval

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    told: list[str] = []
    outcome = migrate_eval.run(
        logs=[free_text_logs],
        candidates=[f"cand=openai-compatible:other@{server.base_url}"],
        out=tmp_path / "run",
        notify=told.append,
    )
    assert _baseline_calls(server) == 20  # AUTO_BASELINE_SAMPLE requests of the one task
    assert len(told) == 1 and "20 logged requests" in told[0] and "$" in told[0]
    [task] = outcome.results.candidates[0].tasks
    assert task.noise_floor_status == "used" and task.noise_floor_n == 20
    assert (tmp_path / "run" / "baseline.jsonl").is_file()


def test_no_baseline_without_a_key_or_when_declined(
    tmp_path: Path,
    server: LoopbackServer,
    free_text_logs: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import migrate_eval

    cand = f"cand=openai-compatible:other@{server.base_url}"
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    outcome = migrate_eval.run(logs=[free_text_logs], candidates=[cand], out=tmp_path / "a")
    assert _baseline_calls(server) == 0  # no key: the logged model is not reachable
    assert outcome.results.candidates[0].tasks[0].noise_floor_status == "none"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    migrate_eval.run(logs=[free_text_logs], candidates=[cand], out=tmp_path / "b", baseline=False)
    assert _baseline_calls(server) == 0
    migrate_eval.run(logs=[free_text_logs], candidates=[cand], out=tmp_path / "c", baseline=5)
    assert _baseline_calls(server) == 5


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as s:
        yield s
