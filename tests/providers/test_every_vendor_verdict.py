"""Every native vendor gets a verdict: the demo suite replayed end to end against the loopback
servers speaking the Anthropic, Gemini, Cohere and Bedrock Converse protocols (issue 14, §4).

Logged requests carry sampling parameters (the demo's ``temperature`` on every request, plus a
``seed`` and ``logprobs: true`` as OpenAI's stored completions and monitoring setups log them).
A vendor without one of them is a *soft* gap: the parameter is dropped before sending and
counted per candidate and task, and the candidate is judged. ``strict_params`` restores the
refusal: every request unsupported, the candidate cannot express the traffic (not ready).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import migrate_eval
from migrate_eval.api import RunOutcome
from migrate_eval.core.errors import ExitCode
from migrate_eval.core.paths import demo_suite_path
from migrate_eval.core.suite import CandidateSpec, LogSpec, Suite, load_suite
from tests.providers.fake_vendors import ANTHROPIC, COHERE, GEMINI, FakeVendors, Vendor
from tests.providers.test_bedrock import MODEL as BEDROCK_MODEL
from tests.providers.test_bedrock import ConverseServer

#: Exchanges per task (5 tasks): within the loopback servers' request budgets.
LIMIT = 30

#: What each vendor's API has no equivalent for, of temperature, seed and logprobs (read from
#: the vendors' references: Anthropic's Messages API in the anthropic 2.x SDK takes no sampling
#: parameter; Gemini's GenerationConfig and Cohere's Chat v2 take temperature and seed;
#: Bedrock's Converse inferenceConfig takes temperature, topP, maxTokens, stopSequences).
DROPPED = {
    "anthropic": ["logprobs", "seed", "temperature"],
    "gemini": ["logprobs"],
    "cohere": ["logprobs"],
    "bedrock": ["logprobs", "seed"],
}


@pytest.fixture(scope="module")
def vendors() -> Iterator[FakeVendors]:
    with FakeVendors(max_requests=2000) as s:
        yield s


@pytest.fixture(scope="module")
def converse() -> Iterator[ConverseServer]:
    pytest.importorskip("boto3")
    with ConverseServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def demo_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's logged traffic, each request with the seed and logprobs a real export holds."""
    src = demo_suite_path().parent / "logs" / "traffic.jsonl"
    out = tmp_path_factory.mktemp("logs") / "traffic.jsonl"
    with src.open(encoding="utf-8") as f, out.open("w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            record = json.loads(line)
            record["request"] |= {"seed": 1000 + i, "logprobs": True}
            g.write(json.dumps(record) + "\n")
    return out


def _suite(candidate: CandidateSpec, logs: Path) -> Suite:
    demo = load_suite(demo_suite_path())
    suite = demo.model_copy(
        update={"candidates": [candidate], "logs": [LogSpec(path=str(logs))], "recordings": []}
    )
    suite.base_dir = demo.base_dir
    return suite


def _aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-test-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _candidate(
    provider: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> CandidateSpec:
    if provider == "bedrock":
        server: ConverseServer = request.getfixturevalue("converse")
        _aws(monkeypatch, tmp_path)
        return CandidateSpec(
            name="br", provider="bedrock", model=BEDROCK_MODEL, base_url=server.url
        )
    vendor: Vendor = {"anthropic": ANTHROPIC, "gemini": GEMINI, "cohere": COHERE}[provider]
    pytest.importorskip(vendor.sdk)
    vendor.use_key(monkeypatch)
    fake: FakeVendors = request.getfixturevalue("vendors")
    return vendor.spec(fake, concurrency=4)


def _run(suite: Suite, tmp_path: Path, limit: int = LIMIT, **kw: Any) -> RunOutcome:
    return migrate_eval.run(
        suite, out=tmp_path / "run", cache=tmp_path / "cache.sqlite", limit=limit, **kw
    )


@pytest.mark.parametrize("provider", list(DROPPED))
def test_demo_against_every_native_vendor_gets_a_verdict_with_drops_counted(
    provider: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    demo_logs: Path,
) -> None:
    spec = _candidate(provider, request, monkeypatch, tmp_path)
    outcome = _run(_suite(spec, demo_logs), tmp_path)

    (cand,) = outcome.results.candidates
    assert cand.verdict != "cannot_judge", cand.reasons
    assert outcome.exit_code != ExitCode.INFRASTRUCTURE
    assert cand.errors.by_kind.get("unsupported", 0) == 0
    for task in cand.tasks:
        assert task.verdict != "cannot_judge", (task.task, task.reasons)
        # every exchange of the task logged them all, so each is dropped on all of them
        assert task.dropped_params == {name: task.n_total for name in DROPPED[provider]}
    # ... and the user reads it in summary.md, report.html and each response row
    summary = (outcome.run_dir / "summary.md").read_text(encoding="utf-8")
    first = cand.tasks[0]
    line = f"{DROPPED[provider][0]} dropped on {first.n_total} of {first.n_total}"
    assert "## Parameters dropped" in summary and line in summary
    assert line in (outcome.run_dir / "report.html").read_text(encoding="utf-8")
    results = json.loads((outcome.run_dir / "results.json").read_text(encoding="utf-8"))
    assert results["candidates"][0]["tasks"][0]["dropped_params"][DROPPED[provider][0]] == (
        first.n_total
    )
    rows = migrate_eval.load_run(outcome.run_dir).responses
    assert rows and all(sorted(r.dropped or []) == DROPPED[provider] for r in rows)


def test_dropped_parameters_never_reach_the_vendor(
    vendors: FakeVendors,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    demo_logs: Path,
) -> None:
    spec = _candidate("anthropic", request, monkeypatch, tmp_path)
    before = len(vendors.received)
    _run(_suite(spec, demo_logs), tmp_path, limit=2)
    sent = [r.body for r in vendors.received[before:]]
    assert sent and not any({"temperature", "seed", "logprobs"} & set(b) for b in sent)


@pytest.mark.parametrize("via", ["suite", "argument"])
def test_strict_params_restores_the_refusal(
    via: str,
    vendors: FakeVendors,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    demo_logs: Path,
) -> None:
    spec = _candidate("anthropic", request, monkeypatch, tmp_path)
    suite = _suite(spec, demo_logs)
    if via == "suite":
        suite.strict_params = True
    before = len(vendors.received)
    outcome = _run(suite, tmp_path, **({"strict_params": True} if via == "argument" else {}))

    (cand,) = outcome.results.candidates
    # every request refused as unsupported: the candidate cannot express the traffic
    assert cand.verdict == "not_ready"
    assert outcome.exit_code == ExitCode.NOT_READY
    assert cand.errors.by_kind == {"unsupported": cand.errors.count}
    assert all("cannot_express_traffic" in {r.code for r in t.reasons} for t in cand.tasks), [
        t.reasons for t in cand.tasks
    ]
    assert all(t.dropped_params is None for t in cand.tasks)
    assert len(vendors.received) == before  # nothing was sent


def test_strict_params_flag_on_the_command_line(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    demo_logs: Path,
) -> None:
    from click.testing import CliRunner

    from migrate_eval.cli import main

    spec = _candidate("anthropic", request, monkeypatch, tmp_path)
    args = [
        "run",
        "--logs",
        str(demo_logs),
        "--candidate",
        f"{spec.name}=anthropic:{spec.model}@{spec.base_url}",
        "--limit",
        "2",
        "--cache",
        str(tmp_path / "cache.sqlite"),
        "-q",
    ]
    lenient = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert lenient.exit_code != ExitCode.INFRASTRUCTURE, lenient.output
    assert "temperature dropped on" in lenient.output
    strict = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--strict-params"])
    assert strict.exit_code == ExitCode.NOT_READY, strict.output
    assert "dropped on" not in strict.output
    results = json.loads((tmp_path / "b" / "results.json").read_text(encoding="utf-8"))
    assert results["candidates"][0]["errors"]["by_kind"] == {
        "unsupported": results["candidates"][0]["errors"]["count"]
    }
