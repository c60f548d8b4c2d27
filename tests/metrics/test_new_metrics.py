"""BLEU/TER/ROUGE-L, refusals, IFEval checks, tolerant JSON parity, per-argument tool agreement,
tool-use rates, metric weights and the batch hook."""

from __future__ import annotations

from typing import Any

import pytest
import sacrebleu

from migrate_eval.core.records import Exchange, OutputKind, ReplayResult, Response, Source, ToolCall
from migrate_eval.core.results import TaskInfo
from migrate_eval.score import MetricContext, get_metric, register_metric, score
from migrate_eval.score.ifeval import parse_instructions
from migrate_eval.score.structured import field_parity
from migrate_eval.score.text import bleu_score, is_refusal, rouge_l_score, ter_score


def _ctx(
    reference: Response | str | None,
    candidate: Response | str | None,
    *,
    kind: OutputKind = "free_text",
    request: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> MetricContext:
    ref = reference if isinstance(reference, Response) else Response(text=reference)
    cand = candidate if isinstance(candidate, Response) else Response(text=candidate)
    ex = Exchange(
        id="x1",
        source=Source(file="log.jsonl", line=1, format="test"),
        request=request or {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        response=ref,
        metadata=metadata or {},
    )
    task = TaskInfo(name="t", output=kind, metrics=[], min_parity=0.8, n=1, source="suite")
    return MetricContext(exchange=ex, reference=ref, candidate=cand, task=task)


def _m(name: str, ctx: MetricContext) -> float | None:
    return get_metric(name).func(ctx)


REF = "The order NW-10023 shipped on Monday and should arrive by Thursday afternoon."
CAND = "Order NW-10023 was shipped Monday; it should arrive by Thursday afternoon."


def test_bleu_and_ter_come_from_sacrebleu_through_lm_eval() -> None:
    assert bleu_score(REF, CAND) == pytest.approx(
        sacrebleu.corpus_bleu([CAND], [[REF]]).score / 100
    )
    assert ter_score(REF, CAND) == pytest.approx(
        1 - sacrebleu.corpus_ter([CAND], [[REF]]).score / 100
    )
    assert bleu_score(REF, REF) == ter_score(REF, REF) == 1.0
    assert ter_score(REF, "x " * 200) == 0.0  # TER above 100 is clipped
    assert 0 < _m("bleu", _ctx(REF, CAND)) < _m("ter", _ctx(REF, CAND)) < 1  # type: ignore[operator]


def test_rouge_l_is_the_lcs_f_measure() -> None:
    assert rouge_l_score("a b c d", "a b c d") == 1.0
    # LCS "a c d" = 3 of 4 words each side
    assert rouge_l_score("a b c d", "a x c d") == pytest.approx(0.75)
    assert rouge_l_score("a b", "c d") == 0.0


@pytest.mark.parametrize(
    ("text", "refuses"),
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("I’m sorry, but I can’t assist with that.", True),
        ("I cannot provide instructions for that.", True),
        ("Unfortunately, I am unable to share account details.", True),
        ("Sure! Your order shipped on Monday.", False),
        ("Sorry for the delay: your order shipped.", False),
        ("", False),
    ],
)
def test_refusal_detection(text: str, refuses: bool) -> None:
    assert is_refusal(Response(text=text)) is refuses


def test_refusal_match_and_the_refusal_field() -> None:
    refusal = Response(refusal="I can't help with that.")
    assert is_refusal(refusal)
    assert _m("refusal_match", _ctx(refusal, "I'm sorry, I cannot help with that.")) == 1.0
    assert _m("refusal_match", _ctx(refusal, "Here is how to do it.")) == 0.0
    assert _m("refusal_match", _ctx("Paris.", "It is Paris.")) == 1.0


def test_ifeval_match_keeps_the_instructions_the_logged_answer_followed() -> None:
    meta = {
        "ifeval": [
            {"id": "change_case:english_lowercase"},
            {
                "id": "length_constraints:number_words",
                "kwargs": {"relation": "less than", "num_words": 6},
            },
            {"id": "punctuation:no_comma"},
        ]
    }
    # the logged answer follows lowercase and <6 words but uses a comma
    ref = "yes, it shipped today"
    assert _m("ifeval_match", _ctx(ref, "it shipped today", metadata=meta)) == 1.0
    assert _m("ifeval_match", _ctx(ref, "It shipped today", metadata=meta)) == 0.5
    assert (
        _m("ifeval_match", _ctx(ref, "It shipped today and will arrive soon", metadata=meta)) == 0.0
    )
    assert _m("ifeval_match", _ctx(ref, "anything")) is None
    assert parse_instructions({"instructions": ["punctuation:no_comma"]}) == [
        ("punctuation:no_comma", {})
    ]


def test_ifeval_unknown_instruction_is_reported() -> None:
    with pytest.raises(Exception, match="unknown IFEval instruction"):
        _m("ifeval_match", _ctx("a", "b", metadata={"ifeval": ["nope:nothing"]}))


SET_SCHEMA = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
        "lines": {"type": "array", "x-migrate-eval": "set"},
        "steps": {"type": "array"},
    },
}


def test_field_parity_sets_normalised_strings_and_tolerance() -> None:
    ref = {
        "tags": ["a", "b"],
        "lines": [{"sku": 1}, {"sku": 2}],
        "steps": ["x", "y"],
        "total": 10.0,
    }
    cand = {
        "tags": ["b", "a"],
        "lines": [{"sku": 2}, {"sku": 1}],
        "steps": ["y", "x"],
        "total": 10.0000001,
    }
    # sets ignore order, the plain array does not, the number differs
    assert field_parity(ref, cand, schema=SET_SCHEMA) == pytest.approx(4 / 7)
    assert field_parity(ref, cand, schema=SET_SCHEMA, numeric_tolerance=True) == pytest.approx(
        5 / 7
    )
    assert field_parity({"city": "Paris"}, {"city": " paris."}, normalize_strings=True) == 1.0
    assert field_parity({"city": "Paris"}, {"city": " paris."}) == 0.0
    assert field_parity(True, 1, numeric_tolerance=True) == 0.0  # booleans are not numbers


def test_json_metrics_read_the_request_schema() -> None:
    request = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "tags?"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "t", "schema": SET_SCHEMA},
        },
    }
    ctx = _ctx('{"tags": ["a", "b"]}', '{"tags": ["B", "a"]}', kind="structured", request=request)
    assert _m("json_match", ctx) == pytest.approx(1 / 3)  # "a" matches; "b" and "B" differ
    assert _m("json_match_normalized", ctx) == 1.0
    assert _m("json_key_coverage", ctx) == 1.0
    cov = _ctx('{"a": 1, "b": {"c": 2}}', '{"a": 5, "b": {}}', kind="structured")
    assert _m("json_key_coverage", cov) == pytest.approx(2 / 3)
    assert _m("json_key_coverage", _ctx("[1, 2]", "[1]", kind="structured")) is None
    assert _m("json_key_coverage", _ctx('{"a": 1}', "not json", kind="structured")) == 0.0


def _call(name: str, args: str) -> ToolCall:
    return ToolCall.from_raw(name, args)


def test_tool_args_match_scores_each_argument() -> None:
    ref = Response(
        tool_calls=[_call("refund", '{"order": "NW-1", "amount": 20, "reason": "late"}')]
    )
    cand = Response(
        tool_calls=[_call("refund", '{"order": "NW-1", "amount": 20.0, "reason": "slow"}')]
    )
    assert _m("tool_args_match", _ctx(ref, cand, kind="tool_call")) == pytest.approx(2 / 3)
    assert _m("tool_call_match", _ctx(ref, cand, kind="tool_call")) == 0.0
    # parallel calls pair by name and best agreement, order irrelevant
    ref2 = Response(tool_calls=[_call("a", '{"x": 1}'), _call("b", '{"y": 1, "z": 2}')])
    cand2 = Response(tool_calls=[_call("b", '{"y": 1, "z": 3}'), _call("a", '{"x": 1}')])
    assert _m("tool_args_match", _ctx(ref2, cand2, kind="tool_call")) == pytest.approx(
        (1 + 0.5) / 2
    )
    assert _m("tool_args_match", _ctx(ref, "text", kind="tool_call")) == 0.0
    assert _m("tool_args_match", _ctx("a", "b", kind="tool_call")) is None


def test_unexpected_and_missed_tool_calls_are_separate_rates() -> None:
    call = Response(tool_calls=[_call("a", "{}")])
    assert _m("no_unexpected_tool_call", _ctx("text", call, kind="tool_call")) == 0.0
    assert _m("no_unexpected_tool_call", _ctx("text", "text", kind="tool_call")) == 1.0
    assert _m("no_unexpected_tool_call", _ctx(call, "text", kind="tool_call")) is None
    assert _m("no_missed_tool_call", _ctx(call, "text", kind="tool_call")) == 0.0
    assert _m("no_missed_tool_call", _ctx(call, call, kind="tool_call")) == 1.0
    assert _m("no_missed_tool_call", _ctx("text", call, kind="tool_call")) is None


def _ex(i: str, text: str) -> Exchange:
    return Exchange(
        id=i,
        source=Source(file="f", line=1, format="t"),
        request={"model": "m", "messages": [{"role": "user", "content": i}]},
        response=Response(text=text),
    )


def test_metric_weights_shape_the_parity() -> None:
    task = TaskInfo(
        name="t",
        output="free_text",
        metrics=["exact_match", "length_ratio"],
        metric_weights={"exact_match": 3.0},
        min_parity=0.8,
        n=1,
        source="suite",
    )
    df = score(
        [_ex("a", "abcd")],
        [task],
        {"a": "t"},
        [ReplayResult(exchange_id="a", candidate="c", response=Response(text="ab"))],
    )
    # exact 0 (weight 3), length ratio 0.5 (weight 1)
    assert df["parity"].iloc[0] == pytest.approx(0.5 / 4)


calls: list[int] = []


def _batch(contexts: Any) -> None:
    calls.append(len(contexts))
    if len(contexts) > 2:
        raise RuntimeError("backend down")


@register_metric("test_batched", description="test", prepare=_batch)
def _batched(ctx: MetricContext) -> float | None:
    return 1.0


def test_batch_hook_runs_once_and_its_failure_is_reported_per_row() -> None:
    task = TaskInfo(
        name="t",
        output="free_text",
        metrics=["test_batched", "exact_match"],
        min_parity=0.8,
        n=1,
        source="suite",
    )
    exs = [_ex(i, "x") for i in "abc"]
    reps = [ReplayResult(exchange_id=i, candidate="c", response=Response(text="x")) for i in "ab"]
    calls.clear()
    df = score(exs, [task], {i: "t" for i in "abc"}, reps)
    assert calls == [2] and df["test_batched"].tolist() == [1.0, 1.0]
    reps.append(ReplayResult(exchange_id="c", candidate="c", response=Response(text="x")))
    df = score(exs, [task], {i: "t" for i in "abc"}, reps)
    assert df["test_batched"].isna().all()
    assert df["parity"].tolist() == [1.0, 1.0, 1.0]  # exact_match still counts
    assert all("metric test_batched: RuntimeError: backend down" in e for e in df["error"])
