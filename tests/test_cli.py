"""The CLI contract: `migrate-eval run` and its exit codes (0 ready, 1 not ready, 2 usage, 3 infra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import migrate_eval
from migrate_eval.cli import main
from migrate_eval.core.results import Results
from tests.servers import LoopbackServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as s:
        yield s


def _line(i: int, user: str, answer: str, feature: str = "qa") -> dict[str, Any]:
    return {
        "request": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": user},
            ],
            "temperature": 0,
        },
        "response": {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "created": 1760000000 + i,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
        "metadata": {"feature": feature},
    }


def write_logs(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


#: ``console_script`` (the executable) with ARGV[2:], after registering an ``atexit`` handler
#: that writes ARGV[1].atexit; the command prints a last line (``print``: buffered); with
#: ``MIGRATE_EVAL_TEST_THREAD`` set, a thread (not a daemon) writes ARGV[1].thread once the
#: command has finished.
_EXITING = """
import atexit, os, sys, threading
from pathlib import Path
from migrate_eval import cli
marker = Path(sys.argv[1])
atexit.register(lambda: marker.with_suffix(".atexit").write_text("ran"))
done = threading.Event()
real = cli.main
def main():
    try:
        real()
    finally:
        print("printed last, not flushed")  # a pipe: in the buffer when the command ends
        done.set()
cli.main = main
if os.environ.get("MIGRATE_EVAL_TEST_THREAD"):
    def late_writer():
        done.wait()
        marker.with_suffix(".thread").write_text("written")
    threading.Thread(target=late_writer).start()
sys.argv = ["migrate-eval", *sys.argv[2:]]
cli.console_script()
"""


def _exiting(tmp_path: Path, *args: str, thread: bool = False) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MIGRATE_EVAL_TEST_THREAD", "PYTHONUNBUFFERED")  # stdout buffered, as usual
    }
    env["COLUMNS"] = "100"  # the help's width, as the test's CliRunner has it
    if thread:
        env["MIGRATE_EVAL_TEST_THREAD"] = "1"
    return subprocess.run(
        [sys.executable, "-c", _EXITING, str(tmp_path / "m"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_executable_ends_with_the_commands_code_its_output_and_its_exit_handlers(
    tmp_path: Path,
) -> None:
    # the process ends without the interpreter's teardown (cli.exit_now): what a user or a CI
    # job sees is the same: the exit code, all of stdout through a pipe, the atexit handlers
    proc = _exiting(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    expected = CliRunner().invoke(main, ["--help"], prog_name="migrate-eval", terminal_width=100)
    assert proc.stdout == expected.output + "printed last, not flushed\n"
    assert (tmp_path / "m.atexit").read_text() == "ran"
    (tmp_path / "m.atexit").unlink()
    proc = _exiting(tmp_path, "run", str(tmp_path / "no-such-suite.yaml"))
    assert proc.returncode == 2, proc.stderr  # a usage error
    assert "no-such-suite.yaml" in proc.stderr
    assert proc.stdout == "printed last, not flushed\n"
    assert (tmp_path / "m.atexit").read_text() == "ran"


def test_the_executable_under_a_profiler_lets_it_write_its_results(tmp_path: Path) -> None:
    # docs/performance.md: `python -m cProfile -o run.prof -m migrate_eval ...` (cProfile
    # writes the file once the program returns: an ending process would take it along)
    proc = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", "run.prof", "-m", "migrate_eval", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert (tmp_path / "run.prof").stat().st_size > 0


def test_the_executable_waits_for_a_thread_still_running(tmp_path: Path) -> None:
    # a thread (not a daemon) that still has work when the command ends: the normal exit,
    # which waits for it (ending the process at once would lose what it writes)
    proc = _exiting(tmp_path, "--help", thread=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.thread").read_text() == "written"
    assert (tmp_path / "m.atexit").read_text() == "ran"


def test_demo_runs_offline_and_writes_every_output(tmp_path: Path) -> None:
    # the real console entry point, in a subprocess, with no network access needed
    env = {**os.environ, "MIGRATE_EVAL_REPORTS_DIR": str(tmp_path / "reports")}
    proc = subprocess.run(
        [sys.executable, "-m", "migrate_eval", "run", "--offline"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr  # one demo candidate is not ready
    run_dirs = list((tmp_path / "reports" / "demo").iterdir())
    run_dirs = [d for d in run_dirs if d.is_dir()]
    assert len(run_dirs) == 1
    d = run_dirs[0]
    for name in (
        "report.html",
        "results.json",
        "summary.md",
        "scores.parquet",
        "exchanges/data-00000-of-00001.arrow",
        "responses/data-00000-of-00001.arrow",
    ):
        assert (d / name).stat().st_size > 0, name
    results = Results.model_validate_json((d / "results.json").read_text(encoding="utf-8"))
    assert results.simulated and results.gate == "fail" and results.exit_code == 1
    verdicts = {c.name: c.verdict for c in results.candidates}
    assert verdicts["llama-3.1-8b"] == "not_ready"
    assert verdicts["qwen2.5-72b"] in ("ready", "ready_with_caveats")
    # every answer came from the shipped recordings through the cache: no error rows
    assert all(c.errors.count == 0 for c in results.candidates)
    assert {t.name for t in results.tasks} >= {
        "ticket-triage",
        "order-extraction",
        "order-assistant",
    }
    assert len(results.tasks) == 5  # four named tasks + the gear advisor found from its template
    assert "gate FAIL" in proc.stdout.splitlines()[0]


_STOPPED_CHILD = """
import os, signal, sys
import migrate_eval.verdict.aggregate as stage
from migrate_eval import cli

real = stage.aggregate

def aggregate(*args, **kwargs):  # SIGTERM arrives after the replay, while the run decides
    os.kill(os.getpid(), signal.SIGTERM)
    return real(*args, **kwargs)

stage.aggregate = aggregate
sys.argv = ["migrate-eval", *sys.argv[1:]]
cli.console_main()
"""


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_after_the_replay_exits_130_and_leaves_no_work_files(tmp_path: Path) -> None:
    # a pod stopped while a large run scores: it stops as on Ctrl-C (it was killed outright,
    # exit -15, its files on disk left behind: gigabytes for a large sample)
    env = {
        **os.environ,
        "MIGRATE_EVAL_REPORTS_DIR": str(tmp_path / "reports"),
        "MIGRATE_EVAL_SPILL_ABOVE": "0",  # the sample on disk, as a large run's
    }
    cache = tmp_path / "cache" / "c.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", _STOPPED_CHILD, "run", "--offline", "--cache", str(cache),
         "--out", str(tmp_path / "run")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert "the same command resumes" in proc.stderr  # its answers are in the cache
    assert not (tmp_path / "run").exists()  # no run folder half written
    left = sorted(p.name for p in cache.parent.iterdir())
    assert all(name.startswith("c.sqlite") for name in left), left  # no spill-, ingest-
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], list(tmp_path.iterdir())


def test_python_api_matches_cli(tmp_path: Path, server: LoopbackServer) -> None:
    logs = write_logs(tmp_path / "l.jsonl", [_line(i, f"q{i}", f"echo: q{i}") for i in range(35)])
    out = migrate_eval.run(
        logs=[logs], candidates=[f"c=openai-compatible:m@{server.base_url}"], out=tmp_path / "r"
    )
    assert int(out.exit_code) == 0
    assert out.results.candidates[0].verdict == "ready"
    assert (out.run_dir / "report.html").exists()


def test_exit_0_when_candidate_reproduces_the_logged_answers(
    tmp_path: Path, server: LoopbackServer
) -> None:
    logs = write_logs(
        tmp_path / "l.jsonl", [_line(i, f"question {i}", f"echo: question {i}") for i in range(40)]
    )
    code, output = invoke(
        "run",
        "--logs",
        str(logs),
        "--candidate",
        f"echo=openai-compatible:m@{server.base_url}",
        "--out",
        str(tmp_path / "run"),
        "-q",
    )
    assert code == 0, output
    assert server.total == 40
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["gate"] == "pass"
    # resumable: the second run is served from the cache, nothing is sent again
    code, output = invoke(
        "run",
        "--logs",
        str(logs),
        "--candidate",
        f"echo=openai-compatible:m@{server.base_url}",
        "--out",
        str(tmp_path / "run2"),
        "-q",
    )
    assert code == 0 and server.total == 40


def test_exit_4_on_real_text_that_differs_without_evidence(
    tmp_path: Path, server: LoopbackServer, shared_data: Path
) -> None:
    records = json.loads(
        (shared_data / "alpaca_eval" / "gpt4_0613.json").read_text(encoding="utf-8")
    )[:40]
    logs = write_logs(
        tmp_path / "alpaca.jsonl",
        [_line(i, r["instruction"], r["output"]) for i, r in enumerate(records)],
    )
    code, output = invoke(
        "run",
        "--logs",
        str(logs),
        "--candidate",
        f"openai-compatible:echo-model@{server.base_url}",
        "--out",
        str(tmp_path / "run"),
        "-q",
    )
    # free text with neither a noise floor nor a judge: similarity alone cannot say "not
    # ready" (an answer can differ and be as good); the run says what evidence to get (exit 4)
    assert code == 4, output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["candidates"][0]["verdict"] == "needs_evidence"
    assert results["tasks"][0]["output"] == "free_text"
    reason = results["candidates"][0]["tasks"][0]["reasons"][0]["message"]
    assert "baseline" in reason and "judge" in reason


def test_exit_3_when_the_vendor_fails_too_often(tmp_path: Path, server: LoopbackServer) -> None:
    server.fail(500, times=1000)
    logs = write_logs(tmp_path / "l.jsonl", [_line(i, f"q{i}", f"echo: q{i}") for i in range(10)])
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"name: infra\nlogs: [{logs}]\ncandidates:\n"
        f"  - {{name: down, model: m, base_url: '{server.base_url}', max_retries: 0}}\n",
        encoding="utf-8",
    )
    code, output = invoke("run", str(suite), "--out", str(tmp_path / "run"), "-q")
    assert code == 3, output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["gate"] == "error"
    assert results["candidates"][0]["errors"]["count"] == 10


def test_a_misspelt_metric_names_the_suite_file_the_task_and_the_fix(tmp_path: Path) -> None:
    write_logs(tmp_path / "l.jsonl", [_line(0, "q", "a")])
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: x\nlogs: [l.jsonl]\n"
        "candidates: [{name: c, provider: openai-compatible, model: m, "
        "base_url: 'http://127.0.0.1:9/v1'}]\n"
        "tasks: [{name: faq, output: free_text, metrics: [chrff]}]\n",
        encoding="utf-8",
    )
    code, output = invoke("run", str(suite), "--offline")
    assert code == 2, output
    assert f"{suite}: task 'faq': metrics: unknown metric 'chrff' (did you mean 'chrf'?)" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "run",
                "--logs",
                "{tmp}/missing.jsonl",
                "--candidate",
                "openai-compatible:m@http://127.0.0.1:9/v1",
            ],
            "missing.jsonl",
        ),
        (["run", "--logs", "{tmp}/l.jsonl"], "--candidate"),
        (
            ["run", "--logs", "{tmp}/l.jsonl", "--candidate", "not a spec"],
            "expected [NAME=]PROVIDER:MODEL",
        ),
        (["run", "--logs", "{tmp}/l.jsonl", "--candidate", "nosuchprovider:m"], "nosuchprovider"),
        (["run", "{tmp}/bad-suite.yaml"], "field 'candidates'"),
        (["run", "--concurrency", "0"], "concurrency"),
        # the demo's simulated traffic is never sent to an endpoint the user names
        (["run", "--candidate", "openai-compatible:m@http://127.0.0.1:9/v1"], "pass --logs"),
        # a base URL without its scheme is not folded into the model (traffic to api.openai.com)
        (
            ["run", "--logs", "{tmp}/l.jsonl", "--candidate", "openai-compatible:m@127.0.0.1:8000/v1"],
            "looks like a base URL without its scheme",
        ),
        (
            ["run", "--logs", "{tmp}/l.jsonl", "--candidate", "openai:m@localhost:8000"],
            "accepted forms:",
        ),
        (
            [
                "run", "--logs", "{tmp}/l.jsonl",
                "--candidate", "c=openai-compatible:m@http://127.0.0.1:9/v1",
                "--candidate-param", "x.temperature=0",
            ],
            "no candidate named 'x'",
        ),
        (
            [
                "run", "--logs", "{tmp}/l.jsonl",
                "--candidate", "c=openai-compatible:m@http://127.0.0.1:9/v1",
                "--candidate-param", "c.concurrency=0",
            ],
            "concurrency",
        ),
    ],
)  # fmt: skip
def test_exit_2_on_usage_and_config_errors(tmp_path: Path, args: list[str], message: str) -> None:
    write_logs(tmp_path / "l.jsonl", [_line(0, "q", "a")])
    (tmp_path / "bad-suite.yaml").write_text("name: x\nlogs: [l.jsonl]\n", encoding="utf-8")
    code, output = invoke(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 2, output
    assert message in output


def test_offline_never_calls_the_network(tmp_path: Path, server: LoopbackServer) -> None:
    logs = write_logs(tmp_path / "l.jsonl", [_line(i, f"q{i}", f"echo: q{i}") for i in range(5)])
    code, output = invoke(
        "run",
        "--logs",
        str(logs),
        "--candidate",
        f"openai-compatible:m@{server.base_url}",
        "--offline",
        "--out",
        str(tmp_path / "run"),
        "-q",
    )
    assert server.total == 0
    assert code == 3, output  # nothing cached: every request is an error row, nothing to judge


def test_env_vars_set_options(
    tmp_path: Path, server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = write_logs(
        tmp_path / "l.jsonl",
        [_line(i, f"q{i}", f"echo: q{i}", feature=f"f{i % 2}") for i in range(20)],
    )
    monkeypatch.setenv("MIGRATE_EVAL_LIMIT", "3")
    monkeypatch.setenv("MIGRATE_EVAL_OUT", str(tmp_path / "envrun"))
    code, output = invoke(
        "run", "--logs", str(logs), "--candidate", f"openai-compatible:m@{server.base_url}", "-q"
    )
    assert code == 0, output
    assert server.total == 6  # at most 3 exchanges for each of the 2 tasks
    assert (tmp_path / "envrun" / "report.html").exists()


def test_report_rerenders_without_network(tmp_path: Path, server: LoopbackServer) -> None:
    logs = write_logs(tmp_path / "l.jsonl", [_line(i, f"q{i}", f"echo: q{i}") for i in range(5)])
    invoke(
        "run",
        "--logs",
        str(logs),
        "--candidate",
        f"openai-compatible:m@{server.base_url}",
        "--out",
        str(tmp_path / "run"),
        "-q",
    )
    (tmp_path / "run" / "report.html").unlink()
    sent = server.total
    code, _output = invoke("report", str(tmp_path / "run"))
    assert (tmp_path / "run" / "report.html").exists()
    assert server.total == sent
    assert code == json.loads((tmp_path / "run" / "results.json").read_text())["exit_code"]


def test_help_documents_exit_codes() -> None:
    code, output = invoke("run", "--help")
    assert code == 0
    for line in (
        "0  every candidate is ready",
        "1  a candidate is not ready",
        "2  usage",
        "3  infrastructure",
    ):
        assert line in output
    # run can be interrupted during replay: 130 is documented there
    assert "130 interrupted (Ctrl-C or SIGTERM)" in output and "70 internal error" in output


@pytest.mark.parametrize(
    "command", [["profile"], ["init"], ["cache", "stats"], ["export", "lm-eval"]]
)
def test_commands_that_judge_nothing_list_only_their_own_exit_codes(command: list[str]) -> None:
    code, output = invoke(*command, "--help")
    assert code == 0
    epilog = output[output.index("Exit codes:") :]
    codes = [line.split()[0] for line in epilog.splitlines()[1:] if line.strip()]
    assert codes == ["0", "2", "70"]
    assert "candidate is not ready" not in epilog and "130" not in epilog


def test_readme_and_cli_docs_list_every_exit_code_run_can_return() -> None:
    from migrate_eval.cli import EXIT_CODE_MEANINGS

    for doc in ("README.md", "docs/cli.md"):
        text = (REPO / doc).read_text(encoding="utf-8")
        table = {
            line.split("|")[1].strip()
            for line in text.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()
        }
        assert {str(c) for c in EXIT_CODE_MEANINGS} <= table, doc


def test_run_compares_candidates_on_the_same_exchanges(
    tmp_path: Path, server: LoopbackServer
) -> None:
    logs = write_logs(tmp_path / "l.jsonl", [_line(i, f"q{i}", f"echo: q{i}") for i in range(35)])
    out = migrate_eval.run(
        logs=[logs],
        candidates=[
            f"a=openai-compatible:m@{server.base_url}",
            f"b=openai-compatible:m2@{server.base_url}",
        ],
        out=tmp_path / "r",
    )
    (comparison,) = out.results.comparisons
    assert (comparison.task, comparison.a, comparison.b, comparison.n) == ("qa", "a", "b", 35)
    assert comparison.mean_diff == 0.0 and comparison.p_wilcoxon == 1.0
    saved = json.loads((out.run_dir / "results.json").read_text(encoding="utf-8"))
    assert saved["comparisons"][0]["p_adjusted"] == 1.0
    assert 'class="comparison-table"' in (out.run_dir / "report.html").read_text(encoding="utf-8")


def test_candidate_params_complete_a_suite_less_run(tmp_path: Path, server: LoopbackServer) -> None:
    """``--candidate-param`` sets request parameters, price and limits without a suite."""
    logs = write_logs(tmp_path / "l.jsonl", [_line(i, f"q{i}", f"echo: q{i}") for i in range(5)])
    code, output = invoke(
        "run",
        "--logs",
        str(logs),
        "--candidate",
        f"llama-3.1=openai-compatible:m@{server.base_url}",
        "--candidate-param",
        "llama-3.1.temperature=0.25",
        "--candidate-param",
        "llama-3.1.price.input_per_mtok=2",
        "--candidate-param",
        "llama-3.1.price.output_per_mtok=4",
        "--candidate-param",
        "llama-3.1.concurrency=3",
        "--candidate-param",
        "llama-3.1.max_retries=0",
        "--out",
        str(tmp_path / "run"),
        "-q",
    )
    assert code in (0, 1), output
    assert server.bodies and all(b["temperature"] == 0.25 for b in server.bodies)
    suite = json.loads((tmp_path / "run" / "suite.json").read_text(encoding="utf-8"))
    (cand,) = suite["candidates"]
    assert cand["concurrency"] == 3 and cand["max_retries"] == 0
    assert cand["price"]["input_per_mtok"] == 2 and cand["price"]["output_per_mtok"] == 4
    results = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert results["candidates"][0]["cost"]["total_usd"] > 0


def test_ctrl_c_in_a_command_that_asks_no_model_says_nothing_of_resuming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # re-rendering a report sends nothing: "the answers received are in the response cache,
    # so the same command resumes" would be beside the point there
    from migrate_eval import api

    def stopped(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "rerender", stopped)
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 130, res.output
    assert "interrupted: stopped before the end" in res.output
    assert "cache" not in res.output
