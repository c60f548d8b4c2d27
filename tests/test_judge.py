"""LLM-as-judge: pairwise in both orders, rubric grading, cache, cost and failures."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from migrate_eval.core.records import Exchange, ReplayResult, Response, Source
from migrate_eval.core.results import TaskInfo
from migrate_eval.core.suite import CandidateSpec, Gate, JudgeSpec, Price, Thresholds
from migrate_eval.score import score
from migrate_eval.score.judge import judge_session, pairwise_value, parse_grade, parse_pairwise
from migrate_eval.verdict.aggregate import aggregate


def _quality(answer: str, conversation: str) -> int:
    """``q=N`` of an answer that answers this conversation (its ``#i`` is the ``question i``);
    1 for an answer to another question, or one cut short (no tag)."""
    m = re.search(r"q=(\d+)", answer)
    tag = re.search(r"#(\d+)", answer)
    asked = re.search(r"question (\d+)", conversation)
    if m is None or tag is None or (asked is not None and tag.group(1) != asked.group(1)):
        return 1
    return min(10, max(1, int(m.group(1))))


def _overlap(answer: str, conversation: str) -> tuple[int, int]:
    """A deterministic stand-in for judgement on real text: the answer's share of the
    conversation's content words (longer than 3 letters), then its length."""
    words = {w for w in re.findall(r"[a-z]{4,}", conversation.lower())}
    found = {w for w in re.findall(r"[a-z]{4,}", answer.lower())}
    return len(words & found), len(answer.split())


class JudgeServer:
    """An OpenAI-compatible judge: prefers the relevant answer with the higher ``q=N`` tag
    (:func:`_quality`), grades it q. ``biased``: always ``[[A]]``; ``grade``: always that grade;
    ``biased_on``: always ``[[A]]`` on conversations containing one of these texts."""

    def __init__(
        self,
        *,
        biased: bool = False,
        fail_on: str | None = None,
        grade: int | None = None,
        biased_on: tuple[str, ...] = (),
        overlap: bool = False,
    ) -> None:
        self.overlap = overlap
        self.biased = biased
        self.grade = grade
        self.biased_on = biased_on
        self.fail_on = fail_on
        self.calls = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        user = body["messages"][-1]["content"]
        if self.fail_on and self.fail_on in user:
            return web.json_response({"error": {"message": "judge overloaded"}}, status=400)
        conv = user.split("<conversation>")[1].split("</conversation>")[0]
        if "<answer_A>" in user:
            a = user.split("<answer_A>")[1].split("</answer_A>")[0]
            b = user.split("<answer_B>")[1].split("</answer_B>")[0]
            if self.overlap:
                qa, qb = _overlap(a, conv), _overlap(b, conv)
            else:
                qa, qb = _quality(a, conv), _quality(b, conv)
            biased = self.biased or any(t in conv for t in self.biased_on)
            verdict = "A" if biased else ("A" if qa > qb else "B" if qb > qa else "C")
            text = f"Reasoning...\n[[{verdict}]]"
        else:
            ans = user.split("<answer>")[1].split("</answer>")[0]
            text = f"Fine.\n[[{self.grade or _quality(ans, conv)}]]"
        return web.json_response(
            {
                "id": "j",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
            }
        )

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def spec(self, **kw: Any) -> JudgeSpec:
        return JudgeSpec(
            provider="openai-compatible",
            model="judge-model",
            base_url=f"http://127.0.0.1:{self.port}/v1",
            max_retries=0,
            concurrency=4,
            **kw,
        )


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    with JudgeServer() as s:
        yield s


TASK = TaskInfo(
    name="t",
    output="free_text",
    metrics=["judge_pairwise", "judge_rubric", "exact_match"],
    min_parity=0.5,
    n=4,
    source="suite",
)


def _data() -> tuple[list[Exchange], list[ReplayResult]]:
    exs = [
        Exchange(
            id=f"e{i}",
            source=Source(file="f", line=i, format="t"),
            request={"model": "gpt-4o", "messages": [{"role": "user", "content": f"question {i}"}]},
            response=Response(text=f"logged answer q=5 #{i}"),
        )
        for i in range(4)
    ]
    qualities = [9, 5, 1, 5]  # better, tie, worse, tie
    reps = [
        ReplayResult(
            exchange_id=f"e{i}", candidate="cand", response=Response(text=f"answer q={q} #{i}")
        )
        for i, q in enumerate(qualities)
    ]
    return exs, reps


def test_verdict_parsing_and_pairwise_mapping() -> None:
    assert parse_pairwise("I think [[B]] wins... final: [[A]]") == "A"
    assert parse_grade("score [[7]]") == 7.0
    with pytest.raises(Exception, match="no"):
        parse_pairwise("answer B is better")
    with pytest.raises(Exception, match="outside"):
        parse_grade("[[11]]")
    # first order: logged answer is A; second: candidate is A
    assert pairwise_value("B", "A") == 1.0  # candidate wins twice
    assert pairwise_value("B", "C") == 1.0  # a win and a tie
    assert pairwise_value("C", "C") == 1.0  # tie = as good as the logged answer
    assert pairwise_value("A", "C") == 0.5
    assert pairwise_value("A", "B") == 0.0
    # a split (the verdict follows the position) is a tie of the two orders: 0.5, never 1
    assert pairwise_value("A", "A") == 0.5
    assert pairwise_value("B", "B") == 0.5


def test_judge_scores_pairwise_and_rubric_with_cache_and_cost(
    server: JudgeServer, tmp_path: Path
) -> None:
    exs, reps = _data()
    assignment = {e.id: "t" for e in exs}
    cache = tmp_path / "cache.sqlite"
    task = TASK.model_copy(deep=True)
    with judge_session(
        server.spec(price=Price(input_per_mtok=1.0, output_per_mtok=2.0)), cache_path=cache
    ):
        df = score(exs, [task], assignment, reps)
    assert df["judge_pairwise"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert df["judge_rubric"].tolist() == pytest.approx([1.0, 1.0, 0.2, 1.0])
    # 4 pairs x (2 pairwise + 2 rubric) calls, 100 + 10 tokens each
    assert df["judge_prompt_tokens"].tolist() == [400] * 4
    assert df["judge_completion_tokens"].tolist() == [40] * 4
    first_calls = server.calls
    # 4 pairs x (2 pairwise + 2 rubric) calls, plus the controls: per logged answer, pairwise
    # vs itself (1), vs an unrelated answer (2), vs its truncation (2); rubric of the unrelated
    # and truncated answers (2; the logged answer's grade is shared with the pairs)
    assert first_calls == 16 + 4 * 5 + 4 * 2
    pairwise = task.judge_controls and task.judge_controls["judge_pairwise"]
    assert pairwise and pairwise.passed and pairwise.accuracy == 1.0 and pairwise.checks == 12
    assert pairwise.position_bias == 0.0 and pairwise.self_agreement == 1.0
    assert pairwise.prompt_tokens == 20 * 100 and pairwise.cost_usd is not None
    rubric = task.judge_controls["judge_rubric"]
    assert rubric.passed and rubric.accuracy == 1.0 and rubric.position_bias is None
    [res] = aggregate(
        df,
        [task],
        [CandidateSpec(name="cand", model="m")],
        Thresholds(min_samples=1),
        Gate(),
        judge_price=Price(input_per_mtok=1.0, output_per_mtok=2.0),
    )
    assert res.tasks[0].verdict != "cannot_judge"
    assert res.judge_cost is not None
    assert res.judge_cost.input_tokens == 1600 and res.judge_cost.output_tokens == 160
    assert res.judge_cost.total_usd == pytest.approx((1600 * 1 + 160 * 2) / 1e6)
    # re-scoring asks nothing new: everything comes from the cache (offline works too)
    with judge_session(server.spec(), cache_path=cache, offline=True):
        again = score(exs, [task], assignment, reps)
    assert server.calls == first_calls  # the controls were cached too
    assert task.judge_controls and task.judge_controls["judge_pairwise"].passed
    assert again["judge_pairwise"].tolist() == df["judge_pairwise"].tolist()


def test_constant_judge_fails_its_controls_and_is_not_used(tmp_path: Path) -> None:
    exs, reps = _data()
    task = TASK.model_copy(deep=True)
    with (
        JudgeServer(biased=True, grade=10) as constant,
        judge_session(constant.spec(), cache_path=tmp_path / "c"),
    ):
        df = score(exs, [task], {e.id: "t" for e in exs}, reps)
    # always [[A]] and [[10]]: no judgement at all
    assert task.judge_controls is not None
    pairwise, rubric = task.judge_controls["judge_pairwise"], task.judge_controls["judge_rubric"]
    assert not pairwise.passed and pairwise.accuracy == 0.0 and pairwise.checks == 12
    assert pairwise.position_bias == 1.0 and pairwise.self_agreement == 0.0
    assert pairwise.failed == {"self": 4, "truncated": 4, "unrelated": 4}
    assert not rubric.passed and rubric.accuracy == 0.0
    assert (
        pairwise.reason and "0 of 12" in pairwise.reason and "position bias 1.00" in pairwise.reason
    )
    # the judge's metrics are not used; the row says why; exact_match alone makes the parity
    assert df["judge_pairwise"].isna().all() and df["judge_rubric"].isna().all()
    assert "judge_failed_controls" in df["error"].iloc[0]
    assert df["parity"].tolist() == df["exact_match"].tolist()
    [res] = aggregate(
        df, [task], [CandidateSpec(name="cand", model="m")], Thresholds(min_samples=1), Gate()
    )
    assert res.verdict == "cannot_judge"
    assert [r.code for r in res.tasks[0].reasons] == ["judge_failed_controls"]
    assert res.tasks[0].metrics["judge_pairwise"] is None


def test_position_bias_and_self_agreement_figures(tmp_path: Path) -> None:
    exs, reps = _data()
    task = TASK.model_copy(deep=True)
    # sensible, except on questions 0 and 1 where it always answers [[A]]
    with (
        JudgeServer(biased_on=("question 0", "question 1")) as judge,
        judge_session(judge.spec(), cache_path=tmp_path / "c"),
    ):
        df = score(exs, [task], {e.id: "t" for e in exs}, reps)
    assert task.judge_controls is not None
    c = task.judge_controls["judge_pairwise"]
    # per question: self (1 check), unrelated and truncated (2 pairs); 2 of 4 questions biased
    assert (c.items, c.checks, c.correct) == (4, 12, 6)
    assert c.accuracy == 0.5 and c.position_bias == 0.5 and c.self_agreement == 0.5
    assert not c.passed
    assert task.judge_controls["judge_rubric"].passed  # its grades are sensible
    assert df["judge_rubric"].notna().all() and df["judge_pairwise"].isna().all()


def test_split_verdicts_score_a_tie(tmp_path: Path) -> None:
    exs, reps = _data()
    task = TASK.model_copy(deep=True, update={"metrics": ["judge_pairwise"]})
    with (
        JudgeServer(biased_on=("question 0",)) as judge,
        judge_session(
            judge.spec(min_control_accuracy=0.5, max_position_bias=0.5), cache_path=tmp_path / "c"
        ),
    ):
        df = score(exs, [task], {e.id: "t" for e in exs}, reps)
    assert task.judge_controls and task.judge_controls["judge_pairwise"].passed
    # question 0: the candidate (q=9) wins as A and loses as B -> 0.5, no longer 1
    assert df["judge_pairwise"].tolist() == [0.5, 1.0, 0.0, 1.0]


def test_judge_failures_are_nan_with_a_note_never_a_crash(tmp_path: Path) -> None:
    exs, reps = _data()
    assignment = {e.id: "t" for e in exs}
    with (
        JudgeServer(fail_on="question 2") as failing,
        judge_session(failing.spec(), cache_path=tmp_path / "c"),
    ):
        df = score(exs, [TASK], assignment, reps)
    assert df["judge_pairwise"].isna().tolist() == [False, False, True, False]
    assert (
        "metric judge_pairwise: JudgeError" in df["error"].iloc[2] or "judge" in df["error"].iloc[2]
    )
    assert df["status"].tolist() == ["ok"] * 4
    assert df["parity"].notna().all()  # exact_match still makes the parity
    # offline with an empty cache, and no judge configured at all
    with judge_session(
        JudgeSpec(model="j", base_url="http://127.0.0.1:9/v1"),
        cache_path=tmp_path / "e",
        offline=True,
    ):
        off = score(exs, [TASK], assignment, reps)
    assert off["judge_pairwise"].isna().all()
    assert "offline" in off["error"].iloc[0]
    none = score(exs, [TASK], assignment, reps)
    assert none["judge_rubric"].isna().all() and "no judge configured" in none["error"].iloc[0]


def test_suite_judge_section_and_metric_weights_are_validated(tmp_path: Path) -> None:
    from migrate_eval.core.errors import ConfigError
    from migrate_eval.core.suite import load_suite

    (tmp_path / "suite.yaml").write_text(
        """
name: s
logs: [logs.jsonl]
candidates: [{name: c, model: m}]
thresholds: {margin: 0.03}
judge: {provider: openai-compatible, model: judge-m, base_url: "http://127.0.0.1:1/v1",
        rubric: "Be correct.", concurrency: 2}
tasks:
  - name: t
    metrics: [judge_pairwise, semantic_similarity]
    metric_weights: {judge_pairwise: 2}
""",
        encoding="utf-8",
    )
    s = load_suite(tmp_path)
    assert s.judge is not None and s.judge.name == "judge" and s.judge.rubric == "Be correct."
    assert s.judge.concurrency == 2 and s.thresholds.margin == 0.03
    assert s.tasks[0].metric_weights == {"judge_pairwise": 2.0}
    (tmp_path / "suite.yaml").write_text(
        "name: s\nlogs: [l]\ncandidates: [{name: c, model: m}]\njudge: {model: j, rubrik: x}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"judge\.rubrik"):
        load_suite(tmp_path)


def _suite(tmp_path: Path, judge_url: str, candidate_url: str, metric: str) -> Path:
    import json

    rows = []
    for i in range(12):
        rows.append(
            {
                "request": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Name a capital city, case {i}."}],
                },
                "response": {
                    "id": f"c{i}",
                    "object": "chat.completion",
                    "created": 1760000000 + i,
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": f"Case {i}: Paris is the capital of France, on the "
                                "Seine, with about two million inhabitants in the city proper.",
                            },
                            "finish_reason": "stop",
                        }
                    ],
                },
                "metadata": {"feature": "qa"},
            }
        )
    (tmp_path / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "suite.yaml").write_text(
        f"""
name: judged
logs: [logs.jsonl]
candidates: [{{name: gibberish, provider: openai-compatible, model: m, base_url: "{candidate_url}"}}]
judge: {{provider: openai-compatible, model: judge-m, base_url: "{judge_url}", max_retries: 0}}
thresholds: {{min_samples: 5}}
tasks:
  - name: qa
    match: {{metadata: {{feature: qa}}}}
    metrics: [{metric}]
    min_parity: 0.5
""",
        encoding="utf-8",
    )
    return tmp_path / "suite.yaml"


@pytest.mark.parametrize("metric", ["judge_pairwise", "judge_rubric"])
def test_constant_judge_never_makes_gibberish_ready(tmp_path: Path, metric: str) -> None:
    """Bug: a judge that always answers [[A]] (or 10/10) gave a gibberish candidate parity 1.0
    and exit 0. Its planted controls now fail: the task cannot be judged, and the gate is not 0."""
    import json

    from click.testing import CliRunner

    from migrate_eval.cli import main
    from tests.servers import LoopbackServer

    with JudgeServer(biased=True, grade=10) as judge, LoopbackServer() as candidate:
        suite = _suite(tmp_path, f"http://127.0.0.1:{judge.port}/v1", candidate.base_url, metric)
        result = CliRunner().invoke(main, ["run", str(suite), "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code != 0, result.output
    data = json.loads((tmp_path / "r" / "results.json").read_text(encoding="utf-8"))
    [cand] = data["candidates"]
    assert cand["verdict"] != "ready"
    assert "judge_failed_controls" in [r["code"] for r in cand["tasks"][0]["reasons"]]
    [task] = data["tasks"]
    controls = task["judge_controls"][metric]
    assert controls["passed"] is False and controls["accuracy"] == 0.0
    assert controls["items"] == 10  # min(10, n) seeded control items
    summary = (tmp_path / "r" / "summary.md").read_text(encoding="utf-8")
    assert "judge controls FAILED" in summary
    # re-gating the run folder keeps the judge's failure: it lives in tasks.json
    from migrate_eval.verdict.gate import regate

    again = regate(tmp_path / "r")
    assert again.results.candidates[0].verdict == "cannot_judge"


def test_kappa_with_gold_labels_and_user_feedback(server: JudgeServer, tmp_path: Path) -> None:
    exs, reps = _data()
    logged_q = [8, 8, 3, 3]
    gold = ["answer q=9 #0", "answer q=5 #1", "no", "answer q=5 #3"]  # candidate wrong on e2
    feedback: list[object] = ["up", {"score": 1}, "thumbs down", True]
    exs = [
        e.model_copy(
            update={
                "response": Response(text=f"logged answer q={q} #{i}"),
                "gold": g,
                "metadata": {"feedback": f},
            }
        )
        for i, (e, q, g, f) in enumerate(zip(exs, logged_q, gold, feedback, strict=True))
    ]
    task = TASK.model_copy(deep=True)
    with judge_session(server.spec(), cache_path=tmp_path / "c"):
        df = score(exs, [task], {e.id: "t" for e in exs}, reps)
    assert df["gold_agree"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert df["judge_pairwise"].tolist() == [1.0, 0.0, 0.0, 1.0]
    [res] = aggregate(
        df,
        [task],
        [CandidateSpec(name="cand", model="m")],
        Thresholds(min_samples=1, pass_threshold=0.5),
        Gate(),
    )
    agreement = res.tasks[0].label_agreement
    assert agreement is not None and agreement.n == 4
    # judge passes e0, e3; gold says e0, e1, e3: agreement 3/4, chance 1/2 -> kappa 0.5
    assert agreement.kappa["judge_pairwise"] == pytest.approx(0.5)
    assert agreement.kappa["exact_match"] == pytest.approx(0.0)  # passes nothing: chance
    # rubric on the logged answers (grade >= 6 good): good, good, bad, bad; users: good, good,
    # bad, good -> agreement 3/4, chance 1/2 -> kappa 0.5
    assert task.judge_controls is not None
    rubric = task.judge_controls["judge_rubric"]
    assert rubric.feedback == {"bad": {"bad": 1}, "good": {"bad": 1, "good": 2}}
    assert rubric.feedback_kappa == pytest.approx(0.5)


def test_a_small_task_borrows_controls_and_truncation_keeps_15_percent(
    server: JudgeServer, tmp_path: Path
) -> None:
    from migrate_eval.score.judge import truncate_words

    assert truncate_words(" ".join(f"w{i}" for i in range(20))) == "w0 w1 w2"
    assert truncate_words("two words") == "two"
    assert truncate_words("one") is None  # nothing shorter to plant
    exs, reps = _data()
    small = TASK.model_copy(deep=True, update={"name": "small", "metrics": ["judge_pairwise"]})
    big = TASK.model_copy(deep=True, update={"metrics": ["judge_pairwise"]})
    assignment = {"e0": "small", "e1": "t", "e2": "t", "e3": "t"}
    with judge_session(server.spec(), cache_path=tmp_path / "c"):
        score(exs, [small, big], assignment, reps)
    assert small.judge_controls and big.judge_controls
    # one exchange of its own, two borrowed from the run: at least 3 control items
    assert small.judge_controls["judge_pairwise"].items == 3
    assert big.judge_controls["judge_pairwise"].items == 3
    assert small.judge_controls["judge_pairwise"].passed


def test_a_sensible_judge_passes_its_controls_on_real_answers(
    tmp_path: Path, shared_data: Path
) -> None:
    """Real AlpacaEval answers (GPT-4 as the logged model, Claude 3.5 Sonnet as the candidate) and
    a deterministic judge that prefers the answer covering more of the instruction's words, then
    the longer one: it passes its controls; the constant [[A]] judge fails them on the same data."""
    import json

    logged = json.loads((shared_data / "alpaca_eval" / "gpt4_0613.json").read_text("utf-8"))[:40]
    cand = json.loads(
        (shared_data / "alpaca_eval" / "claude-3-5-sonnet-20240620.json").read_text("utf-8")
    )
    by_instruction = {r["instruction"]: r["output"] for r in cand}
    exs = [
        Exchange(
            id=f"a{i}",
            source=Source(file="alpaca", line=i, format="t"),
            request={"model": "gpt-4", "messages": [{"role": "user", "content": r["instruction"]}]},
            response=Response(text=r["output"]),
        )
        for i, r in enumerate(logged)
    ]
    reps = [
        ReplayResult(
            exchange_id=e.id,
            candidate="claude",
            response=Response(text=by_instruction[r["instruction"]]),
        )
        for e, r in zip(exs, logged, strict=True)
    ]
    figures = {}
    for name, kw in {"overlap": {"overlap": True}, "constant": {"biased": True}}.items():
        task = TASK.model_copy(deep=True, update={"metrics": ["judge_pairwise"], "n": 40})
        with JudgeServer(**kw) as judge, judge_session(judge.spec(), cache_path=tmp_path / name):
            score(exs, [task], {e.id: "t" for e in exs}, reps)
        assert task.judge_controls is not None
        figures[name] = task.judge_controls["judge_pairwise"]
    good, constant = figures["overlap"], figures["constant"]
    assert good.items == 10 and good.checks == 30
    assert good.passed and good.accuracy is not None and good.accuracy >= 0.9
    assert good.position_bias == 0.0 and good.self_agreement == 1.0
    assert not constant.passed and constant.accuracy == 0.0 and constant.position_bias == 1.0


def test_the_judge_keeps_its_rpm_and_tpm(
    server: JudgeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: a judge section's ``rpm`` and ``tpm`` were accepted and never applied (only its
    concurrency was). Every call sent now waits for one request of ``rpm`` and its estimated
    tokens of ``tpm``, corrected with the usage the judge reports; cached answers take none."""
    from migrate_eval.replay.ratelimit import RateLimiter

    taken: list[tuple[float, float]] = []  # (per_minute, amount)
    adjusted: list[float] = []
    real_acquire, real_adjust = RateLimiter.acquire, RateLimiter.adjust

    async def acquire(self: RateLimiter, amount: float = 1.0) -> float:
        taken.append((self.per_minute, amount))
        return await real_acquire(self, amount)

    def adjust(self: RateLimiter, delta: float) -> None:
        adjusted.append(delta)
        real_adjust(self, delta)

    monkeypatch.setattr(RateLimiter, "acquire", acquire)
    monkeypatch.setattr(RateLimiter, "adjust", adjust)
    exs, reps = _data()
    cache = tmp_path / "cache.sqlite"
    with judge_session(server.spec(rpm=60_000, tpm=10_000_000), cache_path=cache):
        score(exs, [TASK.model_copy(deep=True)], {e.id: "t" for e in exs}, reps)
    calls = server.calls
    requests = [amount for per_minute, amount in taken if per_minute == 60_000]
    tokens = [amount for per_minute, amount in taken if per_minute == 10_000_000]
    assert requests == [1.0] * calls and len(tokens) == calls and min(tokens) > 110
    assert len(adjusted) == calls and all(d < 0 for d in adjusted)  # 110 used < the estimate
    taken.clear()
    with judge_session(server.spec(rpm=60_000, tpm=10_000_000), cache_path=cache):
        score(exs, [TASK.model_copy(deep=True)], {e.id: "t" for e in exs}, reps)
    assert server.calls == calls and taken == []  # all cached: nothing waited for
