"""The typed Python API: ``migrate_eval.run(...)`` does what ``migrate-eval run`` does.

Stages, each reading the previous stage's output only::

    ingest -> tasks (+ sample) -> replay (cache) -> score -> aggregate/verdict -> report

Ingest reads the whole logged traffic once, in bounded memory (:mod:`migrate_eval.traffic`):
only the sample, and the duplicate pairs the noise floor scores, are held as exchanges.

A run lives in one folder that holds everything needed to re-render it without calling any
vendor again (:func:`rerender`).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from migrate_eval import __version__
from migrate_eval.errors import ConfigError, ExitCode, UserError
from migrate_eval.records import Exchange, ReplayResult
from migrate_eval.results import Results
from migrate_eval.suite import CandidateSpec, LogSpec, Suite, load_suite, parse_candidate_spec

DEFAULT_REPORTS_DIR = Path("reports")
RUN_FILES = (
    "suite.json",
    "exchanges.jsonl",
    "tasks.json",
    "responses.jsonl",
    "scores.parquet",
    "results.json",
    "summary.md",
    "report.html",
    "junit.xml",
)


def demo_suite_path() -> Path:
    """The shipped demo suite: packaged in wheels, or ``suites/demo`` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_demo", here.parent / "suites" / "demo"):
        if (candidate / "suite.yaml").exists():
            return candidate / "suite.yaml"
    raise ConfigError(
        "the demo suite is not installed (expected migrate_eval/_demo or suites/demo)"
    )


@dataclass
class RunOutcome:
    """What a run produced."""

    results: Results
    run_dir: Path
    exit_code: ExitCode


ProgressFn = Callable[[Any], None]


def _resolve_suite(
    suite: Suite | str | Path | None,
    logs: Sequence[str | Path],
    candidates: Sequence[str | CandidateSpec],
) -> Suite:
    specs = [c if isinstance(c, CandidateSpec) else parse_candidate_spec(c) for c in candidates]
    if suite is None and logs:
        if not specs:
            raise ConfigError("--logs needs at least one --candidate (or a suite file)")
        return Suite(
            name="adhoc",
            logs=[LogSpec(path=str(Path(p).resolve())) for p in logs],
            candidates=specs,
            base_dir=Path.cwd(),
        )
    s = (
        load_suite(demo_suite_path() if suite is None else suite)
        if not isinstance(suite, Suite)
        else suite
    )
    updates: dict[str, Any] = {}
    if logs:
        updates["logs"] = [LogSpec(path=str(Path(p).resolve())) for p in logs]
    if specs:
        by_name = {c.name: c for c in s.candidates}
        for c in specs:
            by_name[c.name] = c
        updates["candidates"] = list(by_name.values())
    if updates:
        base = s.base_dir
        s = s.model_copy(update=updates)
        s.base_dir = base
    return s


def _default_run_dir(suite: Suite) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    root = Path(os.environ.get("MIGRATE_EVAL_REPORTS_DIR", DEFAULT_REPORTS_DIR))
    run_dir = root / suite.name / stamp
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = root / suite.name / f"{stamp}-{n}"
    return run_dir


def default_cache_path() -> Path:
    env = os.environ.get("MIGRATE_EVAL_CACHE")
    return (
        Path(env)
        if env
        else Path(os.environ.get("MIGRATE_EVAL_REPORTS_DIR", DEFAULT_REPORTS_DIR))
        / ".cache"
        / "replay.sqlite"
    )


def _write_jsonl(path: Path, rows: Sequence[Any]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(r.model_dump_json(exclude_none=True))
            f.write("\n")


def run(
    suite: Suite | str | Path | None = None,
    *,
    logs: Sequence[str | Path] = (),
    candidates: Sequence[str | CandidateSpec] = (),
    out: str | Path | None = None,
    offline: bool = False,
    concurrency: int | None = None,
    limit: int | None = None,
    cache: str | Path | None = None,
    strict: bool = False,
    progress: ProgressFn | None = None,
    command: str | None = None,
    redact: bool | None = None,
) -> RunOutcome:
    """Run the whole pipeline and write the run folder.

    ``suite`` is a :class:`Suite`, a path to a suite file (or its folder), or None for the shipped
    demo suite. ``logs`` and ``candidates`` (``[NAME=]PROVIDER:MODEL[@BASE_URL]`` specs) run without
    a suite file, or override the suite's. Returns the results, the run folder and the exit code
    the CLI uses as the gate (see :mod:`migrate_eval.errors`).
    """
    from migrate_eval.cache import ResponseCache
    from migrate_eval.metrics import get_metric, score
    from migrate_eval.redact import redact_exchanges, redact_task_descriptions
    from migrate_eval.replay import replay
    from migrate_eval.sampling import sample_ids
    from migrate_eval.stats import aggregate, gate_outcome
    from migrate_eval.traffic import read_traffic, work_folder

    s = _resolve_suite(suite, logs, candidates)
    for t in s.tasks:  # fail fast on unknown metrics, before any network call
        for m in t.metrics or []:
            get_metric(m)
    from migrate_eval.providers import get_provider

    # an unknown provider or a missing extra is a usage error now, not 1,000 error rows later
    for c in s.candidates:
        get_provider(c)

    # 1. ingest: the whole logged traffic, streamed through Arrow datasets next to the cache
    # (memory does not grow with the logs); logs read with the same options are read together
    # (Batch input and output files join)
    groups: dict[str, tuple[str, dict[str, str] | None, list[Path]]] = {}
    for spec in s.logs:
        key = json.dumps([spec.format, spec.columns], sort_keys=True)
        groups.setdefault(key, (spec.format, spec.columns, []))[2].append(s.resolve(spec.path))
    cache_path = Path(cache) if cache else default_cache_path()
    with work_folder(cache_path.parent, "ingest-") as workdir:
        traffic = read_traffic(
            list(groups.values()),
            workdir,
            strict=strict,
            specs=s.tasks,
            thresholds=s.thresholds,
            auto=s.auto_tasks,
            dedupe=s.sampling.dedupe,
        )
        if not traffic.exchanges:
            from migrate_eval.ingest import explain_nothing_read

            raise UserError(explain_nothing_read(traffic.summary.files, traffic.skipped))

        # 2. tasks + sample. Exchanges without a logged answer cannot be compared with it.
        plan = traffic.plan
        traffic_assignment = dict(plan.assignment)  # before sampling: the volume costs project on
        traffic_profile = traffic.profile
        kept, plan, sampling_summary = sample_ids(
            traffic.order,
            plan,
            fingerprints=traffic.fingerprints,
            limit=limit or s.sampling.limit,
            seed=s.sampling.seed,
            dedupe=s.sampling.dedupe,
            ci_width=s.sampling.ci_width,
            confidence=s.thresholds.confidence,
        )
        if not kept:
            raise UserError("no exchange with a logged response matches the suite's tasks")
        # what the noise floor scores when there is no baseline re-run: duplicate requests
        pairs = traffic.duplicate_pairs(t.name for t in plan.tasks)
        wanted = set(kept) | {ex_id for ps in pairs.values() for pair in ps for ex_id in pair}
        loaded = traffic.load(wanted)
    exchanges = [loaded[ex_id] for ex_id in kept]
    # PII redaction: the request and the logged answer alike, before anything leaves.
    redaction_config = (
        s.redaction if redact is None else s.redaction.model_copy(update={"enabled": redact})
    )
    exchanges, redaction_summary = redact_exchanges(exchanges, redaction_config)
    plan.tasks = redact_task_descriptions(plan.tasks, redaction_config)

    # 3. replay through the cache
    with ResponseCache(cache_path) as rc:
        for rec in s.recordings:
            rc.import_recordings(s.resolve(rec))
        replays = replay(
            exchanges,
            s.candidates,
            cache=rc,
            offline=offline,
            concurrency=concurrency,
            progress=progress,
        )
        baseline_rows = None
        if s.baseline is not None:  # the noise floor: the logged model re-run (baseline.jsonl)
            from migrate_eval.replay import run_baseline

            baseline_rows = run_baseline(
                exchanges, s.baseline, cache=rc, offline=offline, concurrency=concurrency
            )

    # 4. score (LLM judge calls, if any, happen here), 5. noise floor, aggregate + verdict
    from migrate_eval.judge import judge_session
    from migrate_eval.metrics.scoring import apply_metric_weights
    from migrate_eval.stats import noise_floor_for_run

    apply_metric_weights(plan.tasks, s.tasks)
    with judge_session(s.judge, cache_path=cache_path, offline=offline):
        scores = score(exchanges, plan.tasks, plan.assignment, replays)
    noise_floor = noise_floor_for_run(
        exchanges,
        plan.tasks,
        traffic_assignment,
        Path(out) / "baseline.jsonl" if out else None,
        baseline_replays=baseline_rows,
        duplicates=(pairs, loaded),
    )
    cand_results = aggregate(
        scores,
        plan.tasks,
        s.candidates,
        s.thresholds,
        s.gate,
        noise_floor=noise_floor,
        judge_price=s.judge.price if s.judge is not None else None,
    )
    from migrate_eval.pricing import fill_cost_projections

    fill_cost_projections(cand_results, s.candidates, replays, traffic_assignment, traffic.logged)
    from migrate_eval.replay import fill_ttft_stats

    fill_ttft_stats(cand_results, replays)
    gate, code = gate_outcome(cand_results, s.gate)
    from migrate_eval.stats import compare_candidates

    comparisons = compare_candidates(
        scores, plan.tasks, [c.name for c in s.candidates], s.thresholds
    )

    results = Results(
        tool_version=__version__,
        suite=s.name,
        simulated=s.simulated,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command or "migrate-eval run " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
        thresholds=s.thresholds.model_dump(mode="json"),
        ingest=traffic.summary,
        tasks=plan.tasks,
        candidates=cand_results,
        gate=gate,
        exit_code=int(code),
        profile=traffic_profile,
        sampling=sampling_summary,
        redaction=redaction_summary,
        comparisons=comparisons,
    )

    # 6. the run folder
    run_dir = Path(out) if out else _default_run_dir(s)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "suite.json").write_text(
        json.dumps(s.dump(), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    _write_jsonl(run_dir / "exchanges.jsonl", exchanges)
    (run_dir / "tasks.json").write_text(
        json.dumps(
            {
                "tasks": [t.model_dump(mode="json") for t in plan.tasks],
                "assignment": plan.assignment,
            },
            indent=1,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    _write_jsonl(run_dir / "responses.jsonl", replays)
    if baseline_rows is not None:
        from migrate_eval.replay import BASELINE_FILE, write_baseline

        write_baseline(run_dir / BASELINE_FILE, baseline_rows)
    scores.to_parquet(run_dir / "scores.parquet", index=False)
    if traffic.skipped:
        with (run_dir / "skipped.jsonl").open("w", encoding="utf-8") as f:
            for issue in traffic.skipped:
                f.write(json.dumps(issue.__dict__, ensure_ascii=False) + "\n")
    _render(results, scores, exchanges, replays, run_dir)
    return RunOutcome(results=results, run_dir=run_dir, exit_code=code)


def _render(
    results: Results,
    scores: pd.DataFrame,
    exchanges: Sequence[Exchange],
    replays: Sequence[ReplayResult],
    run_dir: Path,
) -> None:
    from migrate_eval.report import render_html, write_results_json, write_summary_md

    write_results_json(results, run_dir / "results.json")
    write_summary_md(results, run_dir / "summary.md")
    from migrate_eval.report.junit import write_junit_xml

    write_junit_xml(results, run_dir / "junit.xml")
    render_html(
        results,
        scores,
        {e.id: e for e in exchanges},
        {(r.exchange_id, r.candidate): r for r in replays},
        run_dir / "report.html",
    )


def load_run(
    run_dir: str | Path,
) -> tuple[Results, pd.DataFrame, list[Exchange], list[ReplayResult]]:
    """Read a finished run folder back (no vendor is called)."""
    d = Path(run_dir)
    if not (d / "results.json").exists():
        raise UserError(f"{d}: not a run folder (no results.json)")
    try:
        results = Results.model_validate_json((d / "results.json").read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{d / 'results.json'}: not a valid results file: {e}") from None
    scores = pd.read_parquet(d / "scores.parquet")
    exchanges = [
        Exchange.model_validate_json(line)
        for line in (d / "exchanges.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    replays = [
        ReplayResult.model_validate_json(line)
        for line in (d / "responses.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return results, scores, exchanges, replays


def rerender(run_dir: str | Path) -> Results:
    """Re-render a run folder's reports from its stored outputs, without any network."""
    results, scores, exchanges, replays = load_run(run_dir)
    _render(results, scores, exchanges, replays, Path(run_dir))
    return results
