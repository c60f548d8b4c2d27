"""The run history and the drift watch (docs/watch.md)."""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import migrate_eval
from migrate_eval.cli import main
from migrate_eval.core.errors import HistoryError
from migrate_eval.core.suite import CandidateSpec, LogSpec, Sampling, Suite, TaskMatch, TaskSpec
from migrate_eval.verdict.drift import detect_drift, min_detectable_drop
from migrate_eval.verdict.history import (
    HISTORY_COLUMNS,
    append_history,
    compact_history,
    history_files,
    read_history,
    read_history_file,
)
from tests import servers
from tests.servers import LoopbackServer

TASKS = ("alpha", "beta")


def write_logs(path: Path, per_task: int = 16) -> Path:
    rows = []
    for task in TASKS:
        for i in range(per_task):
            q = f"{task} question {i}"
            rows.append(
                {
                    "request": {"model": "m", "messages": [{"role": "user", "content": q}]},
                    "response": {
                        "choices": [{"message": {"role": "assistant", "content": f"echo: {q}"}}]
                    },
                    "metadata": {"feature": task},
                }
            )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def make_suite(logs: Path, base_url: str) -> Suite:
    return Suite(
        name="watched",
        logs=[LogSpec(path=str(logs))],
        candidates=[CandidateSpec(name="c", model="x", base_url=base_url)],
        tasks=[
            TaskSpec(name=t, match=TaskMatch(metadata={"feature": t}), metrics=["exact_match"])
            for t in TASKS
        ],
        sampling=Sampling(seed=5),
    )


def test_watch_flags_drift_on_the_changed_task_at_the_right_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vendor whose answers on one task degrade (and whose fingerprint changes) after the
    2nd watch: drift on that task only, at the 3rd watch; the 4th (same behaviour) is stable."""
    logs = write_logs(tmp_path / "logs.jsonl")
    state = {"changed": False}
    original = servers.make_completion

    def vendor(body: dict[str, Any]) -> dict[str, Any]:
        out = original(body)
        if state["changed"]:
            out["model"] = "x-2025-new"
            out["system_fingerprint"] = "fp_new"
            if "beta" in servers.last_user_text(body):
                out["choices"][0]["message"]["content"] = "I cannot help with that."
        else:
            out["system_fingerprint"] = "fp_old"
        return out

    monkeypatch.setattr(servers, "make_completion", vendor)
    history = tmp_path / "history"
    outcomes = []
    with LoopbackServer() as server:
        suite = make_suite(logs, server.base_url)
        for k in range(4):
            state["changed"] = k >= 2
            outcomes.append(
                migrate_eval.watch(
                    suite,
                    probe=12,
                    out=tmp_path / f"w{k}",
                    cache=tmp_path / "c.sqlite",
                    history=history,
                )
            )
        # every watch asked the vendor again (the cache was bypassed): 4 x 2 tasks x 12
        assert server.total == 4 * 2 * 12
    first, stable, changed, after = outcomes
    assert first.previous_run_id is None and first.drifts == [] and first.exit_code == 0
    assert stable.exit_code == 0 and not stable.drifted and not stable.fingerprint_changes
    assert changed.exit_code == 1
    assert [(d.candidate, d.task) for d in changed.drifted] == [("c", "beta")]
    assert {d.task for d in changed.fingerprint_changes} == {"alpha", "beta"}
    assert after.exit_code == 0 and not after.drifted and not after.fingerprint_changes
    # the same probe requests every time
    ids = [set(migrate_eval.load_run(o.run_dir).scores["exchange_id"]) for o in outcomes]
    assert ids[0] == ids[1] == ids[2] == ids[3]
    df = migrate_eval.history(history)
    assert len(df) == 8 and list(df.columns) == list(HISTORY_COLUMNS)
    row = df[(df["run_id"] == changed.run_id) & (df["task"] == "beta")].iloc[0]
    assert bool(row["drift"]) and bool(row["fingerprint_changed"])
    assert row["response_models"] == "x-2025-new" and row["system_fingerprints"] == "fp_new"
    assert row["parity"] == 0.0 and row["kind"] == "watch" and row["probe"] == 12
    assert changed.min_detectable[("c", "alpha")] is not None
    summary = (changed.run_dir / "summary.md").read_text(encoding="utf-8")
    assert "- DRIFT: c / beta: parity now 0.000" in summary and "DRIFT: c / alpha" not in summary
    assert "fingerprint changed: c / alpha: now x-2025-new fp_new" in summary
    assert "no drift, no fingerprint change" in (stable.run_dir / "summary.md").read_text()
    page = (after.run_dir / "report.html").read_text(encoding="utf-8")
    assert (
        '<section id="over-time">' in page and page.count('<svg role="img" aria-label="c / ') == 2
    )
    assert page.count('fill="#c0392b"') == 1  # the one drift event, on beta's line
    assert "now answers as x-2025-new fp_new" in page
    # a re-render (rerender, adapt) keeps a watch's own sections, as of that watch
    summary_before = (changed.run_dir / "summary.md").read_text(encoding="utf-8")
    page_before = (changed.run_dir / "report.html").read_text(encoding="utf-8")
    migrate_eval.rerender(changed.run_dir)
    assert (changed.run_dir / "summary.md").read_text(encoding="utf-8") == summary_before
    page_again = (changed.run_dir / "report.html").read_text(encoding="utf-8")
    assert '<section id="over-time">' in page_again
    over_time = page_again[page_again.index('<section id="over-time">') :]
    assert over_time == page_before[page_before.index('<section id="over-time">') :]


def test_stable_vendor_within_noise_raises_at_most_one_false_alarm_in_20_watches() -> None:
    """A vendor that fails ~15% of items at random each watch (its noise): 20 seeded watches,
    each compared with the one before, Holm over two tasks, at most one drift flagged."""
    rng = np.random.default_rng(19)
    n = 40

    def watch_items() -> pd.DataFrame:
        rows = [
            {
                "candidate": "c",
                "task": t,
                "exchange_id": f"{t}{i}",
                "parity": float(rng.random() > 0.15),
            }
            for t in TASKS
            for i in range(n)
        ]
        return pd.DataFrame(rows)

    previous = watch_items()
    alarms = 0
    for _ in range(19):
        current = watch_items()
        alarms += sum(d.drift for d in detect_drift(previous, current))
        previous = current
    assert alarms <= 1
    # and a real drop on one task is caught
    degraded = previous.copy()
    beta = degraded["task"] == "beta"
    degraded.loc[beta, "parity"] = np.where(rng.random(int(beta.sum())) < 0.5, 0.0, 1.0)
    flagged = [d.task for d in detect_drift(previous, degraded) if d.drift]
    assert flagged == ["beta"]


def test_continuous_parities_use_the_paired_wilcoxon_test() -> None:
    before = pd.DataFrame(
        {"candidate": "c", "task": "t", "exchange_id": [f"e{i}" for i in range(30)]}
    )
    before["parity"] = np.linspace(0.6, 0.9, 30)
    after = before.copy()
    after["parity"] = before["parity"] - 0.2
    (d,) = detect_drift(before, after)
    assert d.test == "wilcoxon" and d.drift and d.mean_after < d.mean_before  # type: ignore[operator]


def test_min_detectable_drop_holds_its_power_by_simulation() -> None:
    n, pass_rate = 50, 0.9
    drop = min_detectable_drop(n, pass_rate)
    assert drop is not None and 0 < drop < pass_rate
    smaller = min_detectable_drop(200, pass_rate)
    assert smaller is not None and smaller < drop  # a larger probe sees smaller drops
    # simulate: each passing item fails with probability drop / pass_rate; detected >= 80%
    rng = np.random.default_rng(7)
    passing = round(pass_rate * n)
    base = np.array([1.0] * passing + [0.0] * (n - passing))
    before = pd.DataFrame(
        {"candidate": "c", "task": "t", "exchange_id": [f"e{i}" for i in range(n)], "parity": base}
    )
    hits = 0
    trials = 300
    for _ in range(trials):
        after = before.copy()
        fail = (rng.random(n) < drop * n / passing) & (base == 1.0)
        after.loc[fail, "parity"] = 0.0
        hits += detect_drift(before, after)[0].drift
    assert hits / trials >= 0.75  # 80% power, less simulation error
    assert min_detectable_drop(5, 0.9) is None  # too small a probe to see anything


def records(run_id: str, created: str = "2026-01-01T00:00:00+00:00") -> pd.DataFrame:
    row: dict[str, Any] = dict.fromkeys(HISTORY_COLUMNS)
    row.update(
        run_id=run_id,
        created=created,
        suite="s",
        kind="run",
        candidate="c",
        provider="openai-compatible",
        model="x",
        task="t",
        n=10,
        n_total=10,
        parity=0.9,
        response_models="x",
        system_fingerprints="",
    )
    return pd.DataFrame([row])


def test_history_ignores_a_killed_write_and_survives_two_writers(tmp_path: Path) -> None:
    folder = tmp_path / "history"
    append_history(folder, records("r1"))
    # a run killed mid-write leaves only its hidden temporary file: never read
    (folder / ".r2.parquet.123-abcdef.tmp").write_bytes(b"PAR1 half a file")
    assert [p.name for p in history_files(folder)] == ["r1.parquet"]
    # two writers at once, many records each: every record is there, none torn
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            for i in range(15):
                append_history(folder, records(f"{tag}-{i:02d}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    df = read_history(folder, strict=True)
    assert len(df) == 31 and df["run_id"].is_unique


def test_history_compacts_many_small_files_and_loses_no_record(tmp_path: Path) -> None:
    folder = tmp_path / "history"
    for i in range(7):
        append_history(folder, records(f"r{i}"), compact_after=3)
    (folder / "bad.parquet").write_bytes(b"junk")  # a damaged file is left where it is
    append_history(folder, records("r7"), compact_after=3)
    assert len(history_files(folder)) <= 4
    with pytest.warns(UserWarning, match="bad.parquet"):
        df = read_history(folder)
    assert sorted(df["run_id"]) == [f"r{i}" for i in range(8)]
    assert (folder / "bad.parquet").exists()


def test_a_corrupt_or_foreign_history_file_is_named_and_loses_nothing_else(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "history"
    append_history(folder, records("r1"))
    append_history(folder, records("r3"))
    (folder / "r2.parquet").write_bytes(b"not parquet at all")
    pd.DataFrame({"x": [1]}).to_parquet(folder / "foreign.parquet")
    with pytest.raises(HistoryError, match=r"r2\.parquet: not a readable Parquet file"):
        read_history_file(folder / "r2.parquet")
    with pytest.raises(HistoryError, match=r"foreign\.parquet: not a migrate-eval history"):
        read_history(folder, strict=True)
    with pytest.warns(UserWarning) as caught:
        df = read_history(folder)
    assert set(df["run_id"]) == {"r1", "r3"}
    text = " ".join(str(w.message) for w in caught)
    assert "r2.parquet" in text and "foreign.parquet" in text and "missing columns" in text


def test_every_run_appends_to_the_history_and_the_cli_lists_it(tmp_path: Path) -> None:
    logs = write_logs(tmp_path / "logs.jsonl", per_task=4)
    with LoopbackServer() as server:
        suite = make_suite(logs, server.base_url)
        migrate_eval.run(suite, out=tmp_path / "run", cache=tmp_path / "c.sqlite")
    df = migrate_eval.history()  # the reports folder's history (MIGRATE_EVAL_REPORTS_DIR)
    assert sorted(df["task"]) == ["alpha", "beta"] and set(df["kind"]) == {"run"}
    assert df["latency_p50_ms"].notna().all() and (df["error_rate"] == 0).all()
    runner = CliRunner()
    res = runner.invoke(main, ["history", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 2 and rows[0]["suite"] == "watched"
    out = tmp_path / "all.parquet"
    res = runner.invoke(main, ["history", "--parquet", str(out)])
    assert res.exit_code == 0 and len(pd.read_parquet(out)) == 2
    res = runner.invoke(main, ["history"])
    assert res.exit_code == 0 and "alpha" in res.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        migrate_eval.history(tmp_path / "nothing-here")  # no folder: an empty history


def test_watch_cli_exit_codes_stable_drift_and_infrastructure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = write_logs(tmp_path / "logs.jsonl", per_task=8)
    state = {"changed": False}
    original = servers.make_completion

    def vendor(body: dict[str, Any]) -> dict[str, Any]:
        out = original(body)
        if state["changed"] and "alpha" in servers.last_user_text(body):
            out["choices"][0]["message"]["content"] = "something else entirely"
        return out

    monkeypatch.setattr(servers, "make_completion", vendor)
    runner = CliRunner()
    with LoopbackServer() as server:
        suite_file = tmp_path / "suite.yaml"
        suite_file.write_text(json.dumps(make_suite(logs, server.base_url).dump()))
        args = ["watch", str(suite_file), "--probe", "8", "--cache", str(tmp_path / "c.sqlite")]
        first = runner.invoke(main, args)
        assert first.exit_code == 0, first.output
        assert "first watch" in first.output
        second = runner.invoke(main, args)
        assert second.exit_code == 0, second.output
        assert "c / alpha: stable" in second.output and "80% power" in second.output
        state["changed"] = True
        third = runner.invoke(main, args)
        assert third.exit_code == 1, third.output
        assert "c / alpha: DRIFT 1.000 -> 0.000" in third.output
        assert "c / beta: stable" in third.output
        server.fail(400, times=1000)  # the vendor refuses everything: nothing to judge
        fourth = runner.invoke(main, args)
        assert fourth.exit_code == 3, fourth.output
    listed = runner.invoke(main, ["history", "--suite", "watched", "--json"])
    assert listed.exit_code == 0
    alpha = [r for r in json.loads(listed.output) if r["task"] == "alpha"]
    assert [r["drift"] for r in alpha] == [None, False, True, False]
    assert [r["n"] for r in alpha] == [8, 8, 8, 0]
    # the next watch compares with the last one that scored something, not the refused one
    with LoopbackServer() as server:
        suite_file.write_text(json.dumps(make_suite(logs, server.base_url).dump()))
        fifth = runner.invoke(main, args)
    assert fifth.exit_code == 0 and "c / alpha: stable 0.000 -> 0.000" in fifth.output


def test_two_processes_appending_at_once_lose_no_record(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = tmp_path / "history"
    script = (
        "import sys, pandas as pd\n"
        "from migrate_eval.verdict.history import HISTORY_COLUMNS, append_history\n"
        "for i in range(20):\n"
        "    row = dict.fromkeys(HISTORY_COLUMNS)\n"
        "    row.update(run_id=f'{sys.argv[2]}-{i:02d}', created='2026-01-01T00:00:00+00:00',\n"
        "               suite='s', kind='run', candidate='c', provider='p', model='m', task='t',\n"
        "               response_models='m', system_fingerprints='')\n"
        "    append_history(sys.argv[1], pd.DataFrame([row]), compact_after=8)\n"
    )
    root = Path(__file__).resolve().parent.parent
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(folder), tag], cwd=root)
        for tag in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    df = read_history(folder, strict=True)  # compactions ran concurrently too
    assert sorted(df["run_id"]) == sorted(f"{t}-{i:02d}" for t in "ab" for i in range(20))


def test_a_file_removed_by_a_compaction_while_listing_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate_eval.verdict import history as h

    folder = tmp_path / "history"
    append_history(folder, records("r1"))
    real = h.history_files
    calls = {"n": 0}

    def stale_then_real(f: str | Path) -> list[Path]:
        calls["n"] += 1
        files = real(f)
        return [*files, Path(f) / "gone-by-now.parquet"] if calls["n"] == 1 else files

    monkeypatch.setattr(h, "history_files", stale_then_real)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: a vanished file is not a damaged one
        df = read_history(folder, strict=True)
    assert list(df["run_id"]) == ["r1"] and calls["n"] == 2


# --- vendor version headers in the model fingerprint ----------------------------------------------

#: What OpenAI sends with an answer: two version headers among ids and rate-limit counters.
OPENAI_HEADERS = {
    "openai-model": "gpt-4o-2024-08-06",
    "openai-version": "2020-10-01",
    "openai-processing-ms": "231",
    "x-request-id": "req_0123456789abcdef",
    "x-ratelimit-remaining-requests": "4999",
}


@pytest.mark.parametrize("stream", [False, True])
def test_the_allow_listed_version_headers_are_captured_and_nothing_else(stream: bool) -> None:
    from tests.providers.calls import call

    with LoopbackServer() as server:
        server.response_headers = OPENAI_HEADERS
        spec = CandidateSpec(name="c", model="x", base_url=server.base_url, stream=stream)
        answer = call(spec, {"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.version_headers == {
        "openai-model": "gpt-4o-2024-08-06",
        "openai-version": "2020-10-01",
    }  # no request id, timing or rate-limit counter: they change on every call


def test_azure_adds_its_deployment_and_model_session_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.providers.calls import call
    from tests.providers.test_azure import AzureServer

    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-test-key-123456")
    with AzureServer() as server:
        server.response_headers = {
            "x-ms-deployment-name": "gpt-4o-paygo",
            "azureml-model-session": "d089-20240815073451",
            "apim-request-id": "9a705e27-2f04-4bd6-abd8-01848165ebbf",
            "x-ms-region": "East US",
        }
        spec = CandidateSpec(name="az", provider="azure", model="gpt-4o", base_url=server.endpoint)
        answer = call(spec, {"model": "x", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.version_headers == {
        "x-ms-deployment-name": "gpt-4o-paygo",
        "azureml-model-session": "d089-20240815073451",
    }


def test_a_changed_version_header_alone_is_a_fingerprint_change(tmp_path: Path) -> None:
    """Same answers, same body ``model`` and ``system_fingerprint``: only ``openai-model``
    moves (a server-side reroute). The watch flags a fingerprint change and no drift; the
    history, the summary and the CLI name the new header value."""
    logs = write_logs(tmp_path / "logs.jsonl", per_task=6)
    history = tmp_path / "history"
    outcomes = []
    with LoopbackServer() as server:
        suite = make_suite(logs, server.base_url)
        for k, served in enumerate(["gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"]):
            server.response_headers = {**OPENAI_HEADERS, "openai-model": served}
            outcomes.append(
                migrate_eval.watch(
                    suite,
                    probe=6,
                    out=tmp_path / f"w{k}",
                    cache=tmp_path / "c.sqlite",
                    history=history,
                )
            )
    _, same, rerouted = outcomes
    assert not same.fingerprint_changes and same.exit_code == 0
    assert {d.task for d in rerouted.fingerprint_changes} == set(TASKS)
    assert not rerouted.drifted and rerouted.exit_code == 0  # scores held
    change = rerouted.fingerprint_changes[0]
    assert "gpt-4o-2024-08-06" in change.fingerprint_before
    assert "openai-model=gpt-4o-2024-11-20" in change.fingerprint_after
    df = migrate_eval.history(history)
    last = df[df["run_id"] == rerouted.run_id]
    assert set(last["version_headers"]) == {
        "openai-model=gpt-4o-2024-11-20; openai-version=2020-10-01"
    }
    assert last["fingerprint_changed"].all() and not last["drift"].any()
    summary = (rerouted.run_dir / "summary.md").read_text(encoding="utf-8")
    assert "[openai-model=gpt-4o-2024-11-20; openai-version=2020-10-01]" in summary
    answers = migrate_eval.load_run(rerouted.run_dir).responses
    assert answers[0].version_headers == {
        "openai-model": "gpt-4o-2024-11-20",
        "openai-version": "2020-10-01",
    }


def test_a_history_from_before_version_headers_reads_and_raises_no_false_change(
    tmp_path: Path,
) -> None:
    """Record and item files written without the ``version_headers`` column (an older
    migrate-eval): the history reads them (the column empty), and the first watch that records
    headers compares with them on model and system fingerprint only."""
    logs = write_logs(tmp_path / "logs.jsonl", per_task=6)
    history = tmp_path / "history"
    with LoopbackServer() as server:
        suite = make_suite(logs, server.base_url)
        old = migrate_eval.watch(
            suite, probe=6, out=tmp_path / "w0", cache=tmp_path / "c.sqlite", history=history
        )
        # rewrite the record file as an older version wrote it: no version_headers column
        path = history / f"{old.run_id}.parquet"
        pd.read_parquet(path).drop(columns=["version_headers"]).to_parquet(path, index=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # not a damaged or foreign file
            before = read_history(history, strict=True)
        assert before["version_headers"].isna().all() and len(before) == 2
        server.response_headers = OPENAI_HEADERS
        new = migrate_eval.watch(
            suite, probe=6, out=tmp_path / "w1", cache=tmp_path / "c.sqlite", history=history
        )
    assert new.previous_run_id == old.run_id
    assert not new.fingerprint_changes and new.exit_code == 0


# --- false alarms of a stable loopback vendor -----------------------------------------------------


def test_a_loopback_vendor_within_its_noise_raises_at_most_one_alarm_in_20_watches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 real watches (live answers, cache bypassed) of a vendor that is stable but noisy:
    on ``alpha`` (exact match, McNemar) it gets each item wrong with probability 0.15, drawn
    anew every watch; on ``beta`` (token F1, Wilcoxon) it picks one of four paraphrases that
    score close to the logged answer. Draws are seeded by (watch, request): deterministic
    whatever order the requests arrive in. At most one drift alarm over the 19 comparisons."""
    import hashlib

    logs = tmp_path / "logs.jsonl"
    write_logs(logs, per_task=20)
    paraphrases = ("{q}", "the {q}", "{q} here", "so {q}")
    state = {"watch": 0}
    original = servers.make_completion

    def draw(user: str, salt: str) -> float:
        digest = hashlib.sha256(f"19:{state['watch']}:{salt}:{user}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def vendor(body: dict[str, Any]) -> dict[str, Any]:
        out = original(body)
        user = servers.last_user_text(body)
        if user.startswith("alpha"):
            text = f"echo: {user}" if draw(user, "flip") >= 0.15 else f"echo: {user}?"
        else:
            text = "echo: " + paraphrases[int(draw(user, "pick") * 4)].format(q=user)
        out["choices"][0]["message"]["content"] = text
        return out

    monkeypatch.setattr(servers, "make_completion", vendor)
    history = tmp_path / "history"
    outcomes = []
    with LoopbackServer(record=False) as server:
        suite = Suite(
            name="noisy",
            logs=[LogSpec(path=str(logs))],
            candidates=[CandidateSpec(name="c", model="x", base_url=server.base_url)],
            tasks=[
                TaskSpec(name=t, match=TaskMatch(metadata={"feature": t}), metrics=[metric])
                for t, metric in (("alpha", "exact_match"), ("beta", "token_f1"))
            ],
            sampling=Sampling(seed=5),
        )
        for k in range(20):
            state["watch"] = k
            outcomes.append(
                migrate_eval.watch(
                    suite,
                    probe=20,
                    out=tmp_path / f"w{k:02d}",
                    cache=tmp_path / "c.sqlite",
                    history=history,
                )
            )
        assert server.total == 20 * 2 * 20  # every watch asked again: nothing from the cache
    alarms = [(i, d.task) for i, o in enumerate(outcomes) for d in o.drifted]
    assert len(alarms) <= 1, alarms
    assert all(o.exit_code in (0, 1) for o in outcomes)
    assert sum(o.exit_code == 1 for o in outcomes) == len({i for i, _ in alarms})
    # the vendor did move within its noise: flips on alpha, other paraphrases on beta
    df = migrate_eval.history(history)
    assert len(df) == 40 and (df["kind"] == "watch").all()
    alpha = df[df["task"] == "alpha"]["parity"]
    beta = df[df["task"] == "beta"]["parity"]
    assert alpha.nunique() > 3 and 0.7 < alpha.mean() < 0.95
    assert beta.nunique() > 3 and beta.min() > 0.7
    compared = [d for o in outcomes[1:] for d in o.drifts]
    assert {d.test for d in compared} == {"mcnemar", "wilcoxon"} and len(compared) == 38


# --- a history writer killed for real -------------------------------------------------------------

#: The child: appends one run to the history, stopped by a hook at the chosen step (the marker
#: file written, then it waits to be killed); or, with ``loop``, run after run named after the
#: marker, printing each one's number once it is written.
KILLED_WRITER = r"""
import io, os, pathlib, sys, time
import pandas as pd
import pyarrow.parquet as pq
from migrate_eval.verdict.history import HISTORY_COLUMNS, ITEM_COLUMNS, append_history

folder, point, marker = sys.argv[1:4]

def block(*args, **kwargs):
    pathlib.Path(marker).write_text("stopped")
    while True:
        time.sleep(1)  # SIGKILLed here

def record(run_id):
    row = dict.fromkeys(HISTORY_COLUMNS)
    row.update(run_id=run_id, created="2026-01-01T00:00:00+00:00", suite="s", kind="watch",
               candidate="c", provider="p", model="m", task="t", n=3, parity=0.5,
               response_models="m", system_fingerprints="", version_headers="")
    return pd.DataFrame([row])

items = pd.DataFrame([{"candidate": "c", "task": "t", "exchange_id": "e1", "parity": 1.0,
                       "passed": True}], columns=list(ITEM_COLUMNS))
if point == "loop":
    for i in range(10_000):
        append_history(folder, record(f"{pathlib.Path(marker).name}-{i:05d}"), items,
                       compact_after=4)
        print(i, flush=True)
    sys.exit(0)
if point == "mid-write":  # half the file's bytes on disk, then killed
    real = pq.write_table
    def half(table, where, **kwargs):
        buffer = io.BytesIO()
        real(table, buffer, **kwargs)
        data = buffer.getvalue()
        with open(where, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        block()
    pq.write_table = half
elif point == "before-rename":  # the temporary file complete, not renamed yet
    os.replace = block
elif point == "after-items":  # the watch's items in place, its record not yet
    real_replace = os.replace
    calls = []
    def second_blocks(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            block()
        real_replace(src, dst)
    os.replace = second_blocks
elif point == "mid-compaction":  # merged file renamed in, merged-away files not yet removed
    pathlib.Path.unlink = block
append_history(folder, record("killed"), items if point == "after-items" else None,
               compact_after=3 if point == "mid-compaction" else None)
print("not stopped", flush=True)
"""


def _child_env(root: Path) -> dict[str, str]:
    """The child imports this checkout's migrate_eval (a script's folder, not the working
    directory, heads ``sys.path``)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }


def _wait_for(path: Path, proc: Any) -> None:
    import time

    for _ in range(1200):  # a guard against a child that never gets there, not a timing
        if path.exists() or proc.poll() is not None:
            return
        time.sleep(0.05)


@pytest.mark.parametrize("point", ["mid-write", "before-rename", "after-items", "mid-compaction"])
def test_history_survives_a_writer_killed_at_each_step(tmp_path: Path, point: str) -> None:
    """A real process appending to the history is SIGKILLed at one step of the write: the
    history then reads back (strictly, no warning) with every earlier record intact and the
    killed run either whole or absent, never half; the next append and compaction work."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "history"
    for i in range(3):
        append_history(folder, records(f"r{i}"))
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER, encoding="utf-8")
    marker = tmp_path / "stopped"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder), point, str(marker)],
        cwd=root,
        env=_child_env(root),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(marker, proc)
        assert marker.exists(), f"the writer ended before the step: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(60)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a killed write is no damaged file
        df = read_history(folder, strict=True)
    expected = ["r0", "r1", "r2"] + (["killed"] if point == "mid-compaction" else [])
    assert sorted(df["run_id"]) == sorted(expected) and df["run_id"].is_unique
    if point in ("mid-write", "before-rename"):  # killed with its temporary file on disk
        assert [p.name.split(".")[1] for p in folder.glob(".*.tmp")] == ["killed"]
    if point == "after-items":  # its items were written first: harmless without a record
        assert (folder / "items" / "killed.parquet").exists()
    # the history goes on: another append, a compaction, nothing lost, leftovers never read
    append_history(folder, records("r3"))
    compact_history(folder)
    df = read_history(folder, strict=True)
    assert sorted(df["run_id"]) == sorted([*expected, "r3"]) and df["run_id"].is_unique


def test_history_survives_a_busy_writer_killed_at_arbitrary_moments(tmp_path: Path) -> None:
    """A real process appending run after run (with its items, compacting every few files) is
    SIGKILLed right after it reports its k-th append, wherever the next append then is: the
    history reads back strictly as an unbroken prefix of its runs, nothing torn, no copy."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "history"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER, encoding="utf-8")
    root = Path(__file__).resolve().parent.parent
    kills = {"first": 3, "second": 11}
    for tag, k in kills.items():
        proc = subprocess.Popen(
            [sys.executable, str(script), str(folder), "loop", str(tmp_path / tag)],
            cwd=root,
            env=_child_env(root),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        reported = -1
        for line in proc.stdout:
            reported = int(line)
            if reported == k:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(60)
        proc.stdout.close()
        assert reported == k and proc.returncode == -signal.SIGKILL
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a killed write is no damaged file
        df = read_history(folder, strict=True)
    assert df["run_id"].is_unique
    for tag, k in kills.items():
        landed = sorted(int(r.split("-")[1]) for r in df["run_id"] if r.startswith(tag))
        # runs 0..k were reported written; run k+1 was under way: whole or absent
        assert landed == list(range(len(landed))) and k + 1 <= len(landed) <= k + 2


def test_a_watch_whose_answers_all_failed_is_not_a_fingerprint_change() -> None:
    from migrate_eval.verdict.drift import TaskDrift

    def drift(before: str, after: str) -> TaskDrift:
        return TaskDrift(
            candidate="c",
            task="t",
            n_paired=0,
            test="none",
            mean_before=None,
            mean_after=None,
            p_value=None,
            p_adjusted=None,
            drift=False,
            fingerprint_before=before,
            fingerprint_after=after,
        )

    # every answer failed: no model, no system_fingerprint, no headers recorded
    assert not drift("gpt-4o-2024-08-06|fp_1", "|").fingerprint_changed
    assert not drift("gpt-4o-2024-08-06|fp_1|openai-version=2020-10-01", "||").fingerprint_changed
    assert not drift("|", "gpt-4o-2024-08-06|fp_1").fingerprint_changed
    assert drift("gpt-4o-2024-08-06|fp_1", "gpt-4o-2024-11-20|fp_2").fingerprint_changed
