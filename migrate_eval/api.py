"""The typed Python API: ``migrate_eval.run(...)`` does what ``migrate-eval run`` does.

Stages, each reading the previous stage's output only::

    ingest -> tasks (+ sample) -> replay (cache) -> score -> aggregate/verdict -> report

Ingest reads the whole logged traffic once, in bounded memory (:mod:`migrate_eval.plan.traffic`):
only the sample, and the duplicate pairs the noise floor scores, are held as exchanges.

A run lives in one folder that holds everything needed to re-render it without calling any
vendor again (:func:`rerender`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate_eval.core.errors import (
    ConfigError,
    ExitCode,
    InfrastructureError,
    MigrateEvalError,
    UserError,
)
from migrate_eval.core.paths import default_cache_path, default_run_dir, demo_suite_path
from migrate_eval.core.records import Exchange, ReplayResult
from migrate_eval.core.results import SCHEMA_VERSION, Profile, Results, TaskInfo
from migrate_eval.core.run_folder import RunFolder
from migrate_eval.core.suite import (
    BaselineSpec,
    CandidateSpec,
    LogSpec,
    Suite,
    apply_candidate_params,
    load_suite,
    parse_candidate_spec,
)
from migrate_eval.core.version import __version__
from migrate_eval.plan.suite_writer import rule_specs, suite_text
from migrate_eval.plan.tasks import TaskDiscovery
from migrate_eval.verdict.gate import GateReport, VerdictChange

if TYPE_CHECKING:  # pandas: imported by the commands that use it (not init, cache, --help)
    from concurrent.futures import Future

    import pandas as pd

    from migrate_eval.adapt import Adaptation
    from migrate_eval.export.lmeval import ExportedTask
    from migrate_eval.replay.cache import ResponseCache
    from migrate_eval.report.compare import Comparison


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
    candidate_params: Sequence[str] = (),
    strict_params: bool | None = None,
) -> Suite:
    s = _suite_with(suite, logs, candidates)
    cands = apply_candidate_params(list(s.candidates), candidate_params)
    strict = s.strict_params if strict_params is None else strict_params
    if strict:  # a run-time setting, applied once here: every candidate refuses soft gaps
        cands = [c.model_copy(update={"strict_params": True}) for c in cands]
    base = s.base_dir
    s = s.model_copy(update={"candidates": cands, "strict_params": strict})
    s.base_dir = base
    return s


def _suite_with(
    suite: Suite | str | Path | None,
    logs: Sequence[str | Path],
    candidates: Sequence[str | CandidateSpec],
) -> Suite:
    specs = [c if isinstance(c, CandidateSpec) else parse_candidate_spec(c) for c in candidates]
    if suite is None and not logs and specs:
        raise ConfigError(
            "--candidate without --logs (or a suite) would replay the shipped demo's simulated "
            "traffic against your endpoint: pass --logs FILE with your own logs, or a suite file"
        )
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
    baseline: int | bool | None = None,
    notify: Callable[[str], None] | None = None,
    candidate_params: Sequence[str] = (),
    strict_params: bool | None = None,
    on_read: Callable[[int], None] | None = None,
    history: str | Path | bool | None = None,
    cache_salt: str | None = None,
    executor: str | None = None,
    ray_address: str | None = None,
) -> RunOutcome:
    """Run the whole pipeline and write the run folder.

    ``suite`` is a :class:`Suite`, a path to a suite file (or its folder), or None for the shipped
    demo suite. ``logs`` and ``candidates`` (``[NAME=]PROVIDER:MODEL[@BASE_URL]`` specs) run without
    a suite file, or override the suite's; ``candidates`` without ``logs`` need a suite (the
    demo's simulated traffic is never sent to an endpoint the user names).
    ``candidate_params`` are ``NAME.KEY=VALUE`` assignments (parameters, price, limits: see
    :func:`~migrate_eval.core.suite.apply_candidate_params`). ``strict_params`` (None: the
    suite's ``strict_params``) refuses requests with soft fields a candidate has no equivalent
    for instead of dropping them (counted). Returns the results, the run folder and the exit
    code the CLI uses as the gate (see :mod:`migrate_eval.core.errors`).

    ``baseline``: the noise-floor re-run of the logged model. None (default): the suite's
    ``baseline:``, else, when free-text tasks have no noise floor from the logs and the logged
    model is reachable (``OPENAI_API_KEY`` set, not ``offline``), a small re-run of those tasks
    (:data:`AUTO_BASELINE_SAMPLE` requests each; ``notify`` is told the cost before it is spent);
    an int: that many requests per such task; False: never. ``on_read`` hears the number of
    exchanges read so far while the logs are read (before any replay progress).

    ``history``: the run history folder a record per (candidate, task) is appended to (None:
    ``<reports>/history``; False: none; see :mod:`migrate_eval.verdict.history`).
    ``cache_salt`` asks every candidate again instead of reusing cached answers (``watch``).

    ``executor``: ``local`` (this process) or ``ray`` (replay on a Ray cluster at
    ``ray_address``; docs/scale.md); None: ``MIGRATE_EVAL_EXECUTOR``, else the suite's.
    """
    from migrate_eval.plan.redact import redact_exchanges, redact_task_descriptions
    from migrate_eval.plan.sampling import sample_ids
    from migrate_eval.plan.traffic import read_traffic, work_folder
    from migrate_eval.replay.cache import ResponseCache
    from migrate_eval.replay.engine import replay
    from migrate_eval.score import get_metric

    s = _resolve_suite(suite, logs, candidates, candidate_params, strict_params)
    from migrate_eval.core.executor import import_ray, resolve_executor

    run_executor = resolve_executor(executor, s.executor)  # applied once, here
    if run_executor == "ray":
        import_ray()  # a missing extra is a usage error now, before the logs are read
        from migrate_eval.replay.cluster import check_candidates

        check_candidates(s.candidates)
    if concurrency is not None:  # applied once, here: replay, projections and results see it
        specs = [c.model_copy(update={"concurrency": concurrency}) for c in s.candidates]
        s = s.model_copy(update={"candidates": specs})
    # Every output location is checked before the first request: a read-only or full disk
    # is found now, not after every answer was paid for.
    from migrate_eval.core.outputs import atomic_folder, check_writable

    run_dir = Path(out) if out else default_run_dir(s.name)
    check_writable(run_dir, "the run folder (--out)")
    cache_path = Path(cache) if cache else default_cache_path()
    work_parent = cache_path.parent
    try:
        check_writable(cache_path.parent, "the response cache (--cache)")
    except (UserError, InfrastructureError):
        if not offline:  # answers must be stored; --offline only reads the cache
            raise
        import tempfile

        work_parent = Path(tempfile.gettempdir())  # read-only cache: work folders elsewhere
    for t in s.tasks:  # fail fast on unknown metrics, before any network call
        for m in t.metrics or []:
            try:
                get_metric(m)
            except ConfigError as e:
                where = str(suite) if isinstance(suite, str | Path) else "the suite"
                raise ConfigError(f"{where}: task {t.name!r}: metrics: {e}") from None
    from migrate_eval.replay.providers import get_provider

    # an unknown provider or a missing extra is a usage error now, not 1,000 error rows later
    for c in s.candidates:
        get_provider(c)

    # a large run keeps its exchanges and answers on disk (core.store), until it ends
    from migrate_eval.core.store import Spill, new_records, record_ids, spill_above

    spill_limit = spill_above()  # applied once, here
    spill: Spill | None = None
    staged: Future[Path] | None = None  # the run folder's exchanges/, written early
    duplicates: dict[int, list[int]] | None = None
    with contextlib.ExitStack() as scope:
        # 1. ingest: the whole logged traffic, streamed through Arrow datasets next to the cache
        # (memory does not grow with the logs); logs read with the same options are read together
        # (Batch input and output files join)
        groups: dict[str, tuple[str, dict[str, str] | None, list[Path]]] = {}
        for spec in s.logs:
            key = json.dumps([spec.format, spec.columns], sort_keys=True)
            groups.setdefault(key, (spec.format, spec.columns, []))[2].append(s.resolve(spec.path))
        with work_folder(work_parent, "ingest-") as workdir:
            traffic = read_traffic(
                list(groups.values()),
                workdir,
                strict=strict,
                specs=s.tasks,
                thresholds=s.thresholds,
                auto=s.auto_tasks,
                dedupe=s.sampling.dedupe,
                on_read=on_read,
                write_group=_ray_group_writer(ray_address) if run_executor == "ray" else None,
                defer_pii=run_executor != "ray",  # counted while the replay waits (below)
            )
            if not traffic.exchanges:
                from migrate_eval.ingest import explain_nothing_read

                raise UserError(explain_nothing_read(traffic.summary.files, traffic.skipped))

            # 2. tasks + sample. Exchanges without a logged answer cannot be compared with it.
            plan = traffic.plan
            # before sampling: the volume costs project on (sampling makes a new plan)
            traffic_assignment: Mapping[str, str] = plan.assignment
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
            pair_ids = {ex_id for ps in pairs.values() for pair in ps for ex_id in pair}
            exchanges: Sequence[Exchange]
            if len(kept) > spill_limit:  # too many to hold: on disk, read back as needed
                spill = scope.enter_context(
                    Spill(scope.enter_context(work_folder(work_parent, "spill-")))
                )
                on_disk = spill.new("exchanges", ids=kept)  # the ids held once, shared
                on_disk.extend(traffic.iter_load(kept))
                exchanges = on_disk
                loaded = traffic.load(pair_ids)  # the duplicates' answers (noise floor)
                duplicates = traffic.duplicate_rows(kept)
                # of the whole traffic, the tasks of the sample and of the duplicate pairs are
                # what the rest of the run reads; the rest is let go
                traffic_assignment = collections.ChainMap(
                    {ex_id: traffic_assignment[ex_id] for ex_id in pair_ids}, plan.assignment
                )
                traffic.release()
            else:
                loaded = traffic.load(set(kept) | pair_ids)
                exchanges = [loaded[ex_id] for ex_id in kept]
        del kept
        # PII redaction: the request and the logged answer alike, before anything leaves.
        redaction_config = (
            s.redaction if redact is None else s.redaction.model_copy(update={"enabled": redact})
        )
        exchanges, redaction_summary = redact_exchanges(
            exchanges,
            redaction_config,
            out=(
                new_records(spill, "redacted", ids=record_ids(exchanges))
                if spill is not None and redaction_config.enabled
                else None
            ),
        )
        plan.tasks = redact_task_descriptions(plan.tasks, redaction_config)

        # self-hosted candidates: will the model fit the GPU at the logged contexts? (before any
        # server starts; docs/self-hosting.md)
        from migrate_eval.replay.fit import hardware_fits
        from migrate_eval.replay.servers import collect_logs

        fits = hardware_fits(s.candidates, exchanges)
        for name, fit in fits.items():
            if notify is not None:
                notify(f"hardware fit: {name}: {fit.summary()}")

        from migrate_eval.score.registry import apply_metric_weights

        apply_metric_weights(plan.tasks, s.tasks)  # before the chance levels start (they score)

        # 3. replay through the cache (servers a candidate starts log into work_parent/servers)
        with (
            ResponseCache(cache_path) as rc,  # read-only where it cannot be written (--offline)
            collect_logs(work_parent / "servers") as server_logs,
        ):
            for rec in s.recordings:
                rc.import_recordings(s.resolve(rec))
            if run_executor == "ray":  # workers share the cache file; exchanges are redacted
                from migrate_eval.replay.cluster import replay_on_ray

                rc.flush()
                from migrate_eval.verdict.noise import chance_levels

                early_chrf: Mapping[int, float] = {}
                replays: Sequence[ReplayResult] = replay_on_ray(
                    exchanges,
                    s.candidates,
                    cache_path=cache_path,
                    offline=offline,
                    progress=progress,
                    cache_salt=cache_salt,
                    address=ray_address,
                    spill=spill,  # a large run's answers go to disk a wave at a time
                )
                # as a local run, before the candidates are scored: the embedding caches then
                # hold the same texts when each is embedded, so the vectors are the same bits
                chance = chance_levels(exchanges, plan.tasks, plan.assignment, seed=s.sampling.seed)
            else:  # while the replay waits: chrF of the answers, chance levels, PII counts,
                # imports, the run folder's exchanges
                from concurrent.futures import wait

                from migrate_eval.score.early import EarlyChrf

                early = EarlyChrf(exchanges, plan.tasks, plan.assignment)
                tasks: list[Callable[[], Any]] = [
                    functools.partial(
                        _chance_levels, exchanges, plan.tasks, plan.assignment, s.sampling.seed
                    ),
                    traffic.full_profile,  # its PII counts
                    _import_later_stages,
                ]
                if spill is None:  # the run folder's exchanges/ (only the sample's, held here)
                    stage = scope.enter_context(work_folder(work_parent, "stage-"))
                    tasks.append(functools.partial(_stage_exchanges, stage, exchanges))
                with _beside_the_replay(tasks) as futures:
                    if spill is None:  # written before its folder is removed, whatever fails
                        staged = futures[-1]
                        scope.callback(wait, [staged])
                    try:
                        replays = replay(
                            exchanges,
                            s.candidates,
                            cache=rc,
                            offline=offline,
                            progress=progress,
                            cache_salt=cache_salt,
                            on_result=early.add if early.active else None,
                            spill=spill,
                            duplicates=duplicates,
                        )
                    except BaseException:
                        early.close()
                        raise
                    early_chrf = early.finish()
                    chance = futures[0].result()  # before the candidates are scored (see above)
                    traffic_profile = futures[1].result()
            baseline_rows = None
            planned = _plan_baseline(s, plan, exchanges, pairs, baseline, offline, notify)
            if planned is not None:  # the noise floor: the logged model re-run (baseline.jsonl)
                from migrate_eval.replay.baseline import run_baseline

                baseline_rows = run_baseline(
                    planned[1], planned[0], cache=rc, offline=offline, concurrency=concurrency
                )

        from migrate_eval.core.memory import return_freed_memory

        return_freed_memory()  # as each stage ends: what it freed stops counting (core.memory)
        # 4. score (LLM judge calls, if any, happen here), 5. noise floor, aggregate + verdict
        from migrate_eval.score import score
        from migrate_eval.score.judge import judge_session
        from migrate_eval.score.text import known_chrf
        from migrate_eval.verdict.aggregate import aggregate, clusters_of, gate_outcome
        from migrate_eval.verdict.noise import noise_floor_for_run

        with (
            judge_session(s.judge, cache_path=cache_path, offline=offline),
            _scoring_on(run_executor, ray_address),
            known_chrf(early_chrf),
        ):
            if spill is not None:  # a chunk of exchanges at a time (held: one chunk)
                from migrate_eval.score.scoring import score_chunks

                scores = score_chunks(
                    exchanges, plan.tasks, plan.assignment, replays, len(s.candidates)
                )
            else:
                scores = score(exchanges, plan.tasks, plan.assignment, replays)
        del early_chrf  # 16 bytes a pair, no longer needed
        return_freed_memory()
        from migrate_eval.score.semantic import missing_weights_notice

        if notify is not None and (
            notice := missing_weights_notice([t.metrics for t in plan.tasks])
        ):
            notify(notice)
        noise_floor = noise_floor_for_run(
            exchanges,
            plan.tasks,
            traffic_assignment,
            Path(out) / "baseline.jsonl" if out else None,
            baseline_replays=baseline_rows,
            duplicates=(pairs, loaded),
            chance=chance,
        )
        cand_results = aggregate(
            scores,
            plan.tasks,
            s.candidates,
            s.thresholds,
            s.gate,
            noise_floor=noise_floor,
            judge_price=s.judge.price if s.judge is not None else None,
            chance=chance,
            clusters=clusters_of(exchanges),
        )
        from migrate_eval.verdict.costs import fill_cost_projections

        for result in cand_results:
            result.hardware = fits.get(result.name)
        fill_cost_projections(
            cand_results, s.candidates, replays, traffic_assignment, traffic.logged
        )
        from migrate_eval.verdict.aggregate import fill_ttft_stats

        fill_ttft_stats(cand_results, replays)
        from migrate_eval.verdict.aggregate import fill_dropped_params

        fill_dropped_params(cand_results, replays, plan.assignment)
        gate, code = gate_outcome(cand_results, s.gate)
        from migrate_eval.verdict.aggregate import compare_candidates

        comparisons = compare_candidates(
            scores, plan.tasks, [c.name for c in s.candidates], s.thresholds
        )
        return_freed_memory()

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

        # 6. the run folder, written next to its place and renamed into it: complete or absent
        with atomic_folder(run_dir) as tmp_dir:
            _write_run_folder(
                tmp_dir,
                s,
                exchanges,
                plan,
                replays,
                baseline_rows,
                scores,
                traffic,
                results,
                staged=_staged(staged),
            )
            for label, log in server_logs:  # the servers' logs, as servers/<candidate>.log
                if log.is_file():
                    (tmp_dir / "servers").mkdir(exist_ok=True)
                    shutil.copyfile(log, tmp_dir / "servers" / f"{label}.log")
        return_freed_memory()
        if history is not False:
            _append_run_history(results, scores, replays, plan.assignment, history, notify)
        if s.adapt is not None:  # `adapt:` in the suite; the run's gate outcome stays as it is
            try:
                adapt(
                    run_dir,
                    optimiser=s.adapt.optimiser,
                    budget=s.adapt.budget,
                    proposals=s.adapt.proposals,
                    rounds=s.adapt.rounds,
                    cache=cache_path,
                    offline=offline,
                    notify=notify,
                )
            except (UserError, InfrastructureError) as e:  # the run folder is complete
                if notify is not None:
                    notify(f"adaptation not done: {e}")
        return RunOutcome(results=results, run_dir=run_dir, exit_code=code)


@contextlib.contextmanager
def _beside_the_replay(tasks: Sequence[Callable[[], Any]]) -> Iterator[list[Future[Any]]]:
    """Run ``tasks`` in order on one thread beside the replay (their futures, in order). On an
    error the task running ends first, so that none writes into a folder removed under it,
    and the rest are cancelled; otherwise the block does not wait for them. (While requests
    are in flight the replay keeps the switch interval short: ``replay._runtime``.)"""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="migrate-eval beside the replay")
    try:
        yield [pool.submit(task) for task in tasks]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=False)


def _chance_levels(
    exchanges: Sequence[Exchange],
    tasks: Sequence[TaskInfo],
    assignment: Mapping[str, str],
    seed: int,
) -> dict[str, float]:
    """:func:`~migrate_eval.verdict.noise.chance_levels`, imported where it runs (pandas)."""
    from migrate_eval.verdict.noise import chance_levels

    return chance_levels(exchanges, tasks, assignment, seed=seed)


#: What a run imports once its answers are in: scoring and the verdict (pandas), the run
#: folder's Parquet writer, the report (jinja2). Imported while the replay waits on the vendors.
_LATER_STAGES = (
    "migrate_eval.score.scoring",
    "migrate_eval.verdict.aggregate",
    "migrate_eval.verdict.costs",
    "migrate_eval.verdict.history",
    "pyarrow.parquet",
    "migrate_eval.report",
)


def _import_later_stages() -> None:
    """Import what the stages after the replay use, so that the time it takes is spent while
    the replay waits on the vendors, not after it. Nothing here is needed for correctness: a
    module that fails to import is imported again, and fails with its real error, where it is
    used."""
    import importlib

    for name in _LATER_STAGES:
        try:
            importlib.import_module(name)
        except Exception:  # reported where the module is used
            continue


def _scoring_on(executor: str, address: str | None) -> contextlib.AbstractContextManager[None]:
    """Where scoring computes what its caches miss: this process, or the Ray cluster."""
    if executor != "ray":
        return contextlib.nullcontext()
    from migrate_eval.score.cluster import ray_scoring

    return ray_scoring(address)


def _ray_group_writer(address: str | None) -> Any:
    """Log files read in parallel Ray tasks (``--executor ray``)."""
    from migrate_eval.ingest.parallel import ray_group_writer

    return ray_group_writer(address)


def _append_run_history(
    results: Results,
    scores: pd.DataFrame,
    replays: Sequence[ReplayResult],
    assignment: Mapping[str, str],
    history: str | Path | bool | None,
    notify: Callable[[str], None] | None,
) -> None:
    """A run's record in the history; a history that cannot be written costs a warning, not
    the paid-for run (the run folder is already complete)."""
    from migrate_eval.verdict.history import (
        append_history,
        default_history_dir,
        history_records,
        new_run_id,
    )

    folder = Path(history) if isinstance(history, str | Path) else default_history_dir()
    records = history_records(results, scores, replays, run_id=new_run_id(), assignment=assignment)
    try:
        append_history(folder, records)
    except OSError as e:
        msg = f"warning: the run history in {folder} was not written: {e}"
        if notify is not None:
            notify(msg)
        else:
            import warnings

            warnings.warn(msg, stacklevel=3)


def _stage_exchanges(folder: Path, exchanges: Sequence[Exchange]) -> Path:
    """The run folder's ``exchanges/`` dataset, written into ``folder`` while the replay waits
    on the vendors (it depends on the sample alone); :func:`_write_run_folder` moves it in."""
    from migrate_eval.core.run_folder import write_records

    return write_records(folder, "exchanges", exchanges)


def _staged(future: Future[Path] | None) -> Path | None:
    """The dataset :func:`_stage_exchanges` wrote, or None where it did not (not asked for,
    or it failed: the run folder then writes it itself, and reports its own error if any)."""
    if future is None:
        return None
    try:
        return future.result()
    except Exception:
        return None


def _write_run_folder(
    run_dir: Path,
    s: Suite,
    exchanges: Sequence[Exchange],
    plan: Any,
    replays: Sequence[ReplayResult],
    baseline_rows: Any,
    scores: pd.DataFrame,
    traffic: Any,
    results: Results,
    *,
    staged: Path | None = None,
) -> None:
    """Write the run folder's files into ``run_dir``; ``staged``: its ``exchanges/`` dataset,
    already written elsewhere (moved in)."""
    (run_dir / "suite.json").write_text(
        json.dumps(s.dump(), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    from migrate_eval.core.run_folder import write_records, write_scores, write_tasks
    from migrate_eval.core.store import record_ids

    if staged is not None:
        shutil.move(staged, run_dir / "exchanges")  # a rename on the same file system
    else:
        write_records(run_dir, "exchanges", exchanges)
    write_tasks(run_dir / "tasks.json", plan.tasks, record_ids(exchanges), plan.assignment)
    write_records(run_dir, "responses", replays)
    if baseline_rows is not None:
        from migrate_eval.replay.baseline import BASELINE_FILE, write_baseline

        write_baseline(run_dir / BASELINE_FILE, baseline_rows)
    write_scores(scores, run_dir / "scores.parquet")
    if traffic.skipped:
        with (run_dir / "skipped.jsonl").open("w", encoding="utf-8") as f:
            for issue in traffic.skipped:
                f.write(json.dumps(issue.__dict__, ensure_ascii=False) + "\n")
    from migrate_eval.core.memory import return_freed_memory

    return_freed_memory()  # before the report, the run's largest texts
    _render(results, scores, exchanges, replays, run_dir)


#: Requests per free-text task the automatic noise-floor re-run sends (``run(baseline=None)``).
AUTO_BASELINE_SAMPLE = 20


def _plan_baseline(
    s: Suite,
    plan: Any,
    exchanges: Sequence[Exchange],
    pairs: dict[str, list[tuple[str, str]]],
    baseline: int | bool | None,
    offline: bool,
    notify: Callable[[str], None] | None,
) -> tuple[BaselineSpec, Sequence[Exchange]] | None:
    """The baseline re-run to make, if any (see :func:`run`): its settings and the exchanges."""
    import random

    from migrate_eval.core.prices import logged_cost
    from migrate_eval.verdict.aggregate import similarity_only

    if baseline is False:
        return None
    if s.baseline is not None and (baseline is None or baseline is True):
        return s.baseline, exchanges
    explicit = baseline if not isinstance(baseline, bool) and isinstance(baseline, int) else None
    needy = [
        t.name
        for t in plan.tasks
        if similarity_only(t) and len(pairs.get(t.name, ())) < s.thresholds.min_samples
    ]
    if not needy or (explicit is None and (offline or not os.environ.get("OPENAI_API_KEY"))):
        return None
    per_task = explicit if explicit is not None else AUTO_BASELINE_SAMPLE
    from migrate_eval.core.store import pick, record_ids

    ids = record_ids(exchanges)
    numbers: list[int] = []
    for name in needy:  # numbers, not exchanges: a large run's are on disk
        group = [i for i, ex_id in enumerate(ids) if plan.assignment.get(ex_id) == name]
        rng = random.Random(f"baseline:{s.sampling.seed}:{name}")
        numbers += rng.sample(group, min(per_task, len(group)))
    picked = pick(exchanges, numbers)
    chosen = [picked[i] for i in numbers]
    cost = sum(c for ex in chosen if (c := logged_cost(ex)) is not None)
    if notify is not None:
        notify(
            f"noise floor: re-running {len(chosen)} logged requests of {', '.join(needy)} "
            f"against the logged model, about ${cost:.4f} at list prices "
            "(--no-baseline skips it; --baseline N sets the requests per task)"
        )
    return BaselineSpec(sample=len(chosen), repeats=1), chosen


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
    by_id: Mapping[str, Exchange]
    by_pair: Mapping[tuple[str, str], ReplayResult]
    if isinstance(exchanges, list):
        by_id = {e.id: e for e in exchanges}
        by_pair = {(r.exchange_id, r.candidate): r for r in replays}
    else:  # a large run's, on disk: read as the report shows them (in order)
        from migrate_eval.core.store import ById, ByPair, record_ids

        by_id = ById(exchanges, record_ids(exchanges))
        by_pair = ByPair(replays, by_id, [c.name for c in results.candidates])
    render_html(results, scores, by_id, by_pair, run_dir / "report.html")
    if (run_dir / WATCH_MARKER).is_file():
        _rerender_watch_sections(run_dir)


#: A watch's run folder names its history here, so a re-render keeps the watch's sections.
WATCH_MARKER = "watch.json"


def _rerender_watch_sections(run_dir: Path) -> None:
    """A watch's drift lines (summary.md) and "Over time" section (report.html), as of that
    watch: the history up to its own record. A history gone since is a warning, not an error."""
    import warnings

    from migrate_eval.report.over_time import add_drift_lines, add_over_time
    from migrate_eval.verdict.history import read_history

    try:
        marker = json.loads((run_dir / WATCH_MARKER).read_text(encoding="utf-8"))
        folder, run_id = Path(marker["history"]), str(marker["run_id"])
        history = read_history(folder, suite=marker.get("suite"))
    except (OSError, ValueError, KeyError, TypeError, MigrateEvalError) as e:
        warnings.warn(
            f"{run_dir / WATCH_MARKER}: the watch's history cannot be read ({e}); the report "
            "is re-rendered without its Over time section",
            stacklevel=3,
        )
        return
    if len(history):
        history = history[history["run_id"].astype(str) <= run_id]
    if marker.get("previous_run_id") is not None and len(history):
        add_drift_lines(run_dir / "summary.md", history[history["run_id"] == run_id])
    add_over_time(run_dir / "report.html", history)


def rerender(run_dir: str | Path) -> Results:
    """Re-render a run folder's reports from its stored outputs, without any network."""
    loaded = load_run(run_dir)
    _render(loaded.results, loaded.scores, loaded.exchanges, loaded.responses, loaded.path)
    return loaded.results


def profile(
    paths: Sequence[str | Path],
    *,
    format: str = "auto",
    strict: bool = False,
    on_read: Callable[[int], None] | None = None,
    skipped_out: str | Path | None = None,
) -> Profile:
    """Read logs, discover their tasks and profile them (``migrate-eval profile``).

    ``on_read`` hears the number of exchanges read so far, every
    :data:`~migrate_eval.plan.traffic.READ_PROGRESS_EVERY`. The first five skipped lines are
    listed in the profile (``skipped_examples``); ``skipped_out`` writes every skipped line there as JSONL (``file``, ``line``,
    ``field``, ``reason``: the shape of a run's ``skipped.jsonl``).

    The logs are streamed: each exchange is counted (:class:`~migrate_eval.plan.profile.TrafficTally`,
    :class:`TaskDiscovery`) and dropped, so memory does not grow with the number of exchanges
    beyond a few bytes each (and the first user message of exchanges with neither a tag nor a
    system prompt, kept for clustering).
    """
    import gc

    from migrate_eval.core.errors import UserError
    from migrate_eval.ingest import stream_logs
    from migrate_eval.plan.profile import TrafficTally
    from migrate_eval.plan.traffic import READ_PROGRESS_EVERY

    stream = stream_logs(list(paths), format=format, strict=strict)
    tally = TrafficTally()
    discovery = TaskDiscovery(keep_ids=False)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived acyclic objects: nothing for the collector to free
    try:
        for ex in stream:
            tally.add(ex)
            discovery.add(ex)
            if on_read is not None and not tally.total % READ_PROGRESS_EVERY:
                on_read(tally.total)
    finally:
        if gc_was_enabled:
            gc.enable()
    if not tally.total:
        from migrate_eval.ingest import explain_nothing_read

        raise UserError(explain_nothing_read(stream.files, stream.skipped, sniffed=stream.sniffed))
    if skipped_out is not None and stream.skipped:
        with Path(skipped_out).open("w", encoding="utf-8") as f:
            for issue in stream.skipped:
                f.write(json.dumps(issue.__dict__, ensure_ascii=False) + "\n")
    return tally.profile(discovery.plan(), stream.summary())


def init(
    paths: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    name: str | None = None,
    candidates: Sequence[str | CandidateSpec] = (),
    format: str = "auto",
    strict: bool = False,
    force: bool = False,
) -> Path:
    """Write a suite file for the logs (``migrate-eval init``); return its path."""
    import os

    from migrate_eval.core.errors import ConfigError
    from migrate_eval.core.suite import parse_candidate_spec

    specs = [c if isinstance(c, CandidateSpec) else parse_candidate_spec(c) for c in candidates]
    suite_name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(paths[0])).stem).strip("-")
    suite_name = suite_name or "traffic"
    target = Path(out) if out else Path("suites") / suite_name / "suite.yaml"
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; use --force to overwrite it")
    from migrate_eval.core.errors import UserError
    from migrate_eval.core.paths import default_cache_path
    from migrate_eval.plan.traffic import read_traffic, work_folder

    with work_folder(default_cache_path().parent, "init-") as work:
        # streamed, as a run reads them: the discovery, then a second pass to check the rules
        traffic = read_traffic([(format, None, list(paths))], work, strict=strict, dedupe=True)
        if not traffic.exchanges:
            from migrate_eval.ingest import explain_nothing_read

            raise UserError(
                explain_nothing_read(traffic.summary.files, traffic.skipped, format=format)
            )
        plan = traffic.plan
        rules = rule_specs(plan)
        check = TaskDiscovery(rules)
        for ex in traffic.scorable():
            check.add(ex)
        assert traffic.fingerprints is not None
        dups = len(traffic.order) - len(set(traffic.fingerprints.values()))
    target.parent.mkdir(parents=True, exist_ok=True)
    base = target.parent.resolve()
    logs = []
    for p in paths:
        text = str(p)
        absolute = Path(text).expanduser()
        if not absolute.is_absolute():
            absolute = Path.cwd() / absolute
        logs.append(os.path.relpath(absolute, base))
    entries: list[Any] = [p if format == "auto" else {"path": p, "format": format} for p in logs]
    yaml_text = suite_text(
        plan,
        rules,
        check.plan().assignment,
        traffic.order,
        dups,
        name=suite_name,
        logs=entries,
        candidates=specs,
    )
    target.write_text(yaml_text, encoding="utf-8")
    return target


def write_gate_outputs(report: GateReport, out_dir: str | os.PathLike[str]) -> None:
    """Write the re-gated ``results.json``, ``summary.md`` and ``junit.xml`` into ``out_dir``."""
    from migrate_eval.report import write_junit_xml, write_results_json, write_summary_md

    d = Path(out_dir)
    write_results_json(report.results, d / "results.json")
    write_summary_md(report.results, d / "summary.md")
    write_junit_xml(report.results, d / "junit.xml")


def changes_text(changes: Sequence[VerdictChange]) -> str:
    """One line per verdict that the new gate changed (empty when none did)."""
    from migrate_eval.report import verdict_label

    lines = []
    for ch in changes:
        where = ch.candidate if ch.task is None else f"{ch.candidate} / {ch.task}"
        lines.append(f"{where}: {verdict_label(ch.before)} -> {verdict_label(ch.after)}")
    return "\n".join(lines)


# --- a finished run, loaded back ----------------------------------------------------------------


@dataclass
class Run:
    """A finished run folder, loaded back without calling any vendor (:func:`load_run`).

    ``results`` is the typed ``results.json``; the ``*_df`` accessors give pandas frames.
    """

    path: Path
    results: Results
    scores: pd.DataFrame
    exchanges: list[Exchange]
    responses: list[ReplayResult]

    def scores_df(self) -> pd.DataFrame:
        """One row per (exchange, candidate): status, parity, latency, tokens, one column per
        metric (the run folder's ``scores.parquet``)."""
        return self.scores.copy()

    def tasks_df(self) -> pd.DataFrame:
        """One row per (candidate, task): verdict, parity and its interval, pass rate, counts."""
        rows = [
            {
                "candidate": c.name,
                "task": t.task,
                "verdict": t.verdict,
                "parity": t.parity.mean,
                "ci_low": t.parity.ci_low,
                "ci_high": t.parity.ci_high,
                "pass_rate": t.pass_rate,
                "n": t.n,
                "n_total": t.n_total,
                "reasons": "; ".join(r.message for r in t.reasons),
            }
            for c in self.results.candidates
            for t in c.tasks
        ]
        import pandas as pd

        return pd.DataFrame(rows)

    def exchanges_df(self) -> pd.DataFrame:
        """One row per exchange of the run: id, task, source, model, timestamp, logged answer."""
        assignment = {ex_id: task for ex_id, task in self._assignment().items()}
        rows = [
            {
                "exchange_id": e.id,
                "task": assignment.get(e.id),
                "file": e.source.file,
                "line": e.source.line,
                "format": e.source.format,
                "model": e.model,
                "timestamp": e.timestamp,
                "logged_text": e.response.text if e.response is not None else None,
                "logged_tool_calls": len(e.response.tool_calls) if e.response is not None else 0,
            }
            for e in self.exchanges
        ]
        import pandas as pd

        return pd.DataFrame(rows)

    def _assignment(self) -> dict[str, str]:
        if "task" in self.scores.columns and len(self.scores):
            pairs = self.scores[["exchange_id", "task"]].drop_duplicates()
            return dict(zip(pairs["exchange_id"], pairs["task"], strict=True))
        return {}


def load_run(run_dir: str | Path) -> Run:
    """Read a finished run folder back as a typed :class:`Run` (no vendor is called)."""
    folder = RunFolder(Path(run_dir))
    return Run(
        path=folder.path,
        results=folder.results(),
        scores=folder.scores(),
        exchanges=folder.exchanges(),
        responses=folder.responses(),
    )


# --- the other commands, as functions -------------------------------------------------------------


def adapt(
    run_dir: str | Path,
    *,
    tasks: Sequence[str] | None = None,
    candidates: Sequence[str] | None = None,
    optimiser: str | CandidateSpec | None = None,
    budget: int | None = None,
    proposals: int = 3,
    rounds: int | None = None,
    held_out_fraction: float = 0.5,
    seed: int | None = None,
    cache: str | Path | None = None,
    offline: bool = False,
    notify: Callable[[str], None] | None = None,
    write: bool = True,
) -> Adaptation:
    """Adapt the requests (system prompt, tool descriptions, ``response_format``,
    ``tool_choice``) of a run's not-ready tasks to each candidate, in up to ``rounds`` rounds
    (default :data:`~migrate_eval.adapt.DEFAULT_ROUNDS`), and prove it on held-out exchanges
    (:mod:`migrate_eval.adapt`). Unless ``write`` is False, writes ``adaptation.json`` and
    re-renders ``results.json`` (its ``adaptation``), ``summary.md`` and ``report.html`` in the
    run folder, each file atomically. ``optimiser``: a ``[NAME=]PROVIDER:MODEL[@BASE_URL]`` spec
    or a :class:`CandidateSpec` (default: each candidate itself). ``notify`` hears the plan
    (requests, money) before anything is sent.
    """
    from migrate_eval.adapt import DEFAULT_ROUNDS, adapt_run, write_adaptation

    opt = parse_candidate_spec(optimiser) if isinstance(optimiser, str) else optimiser
    result = adapt_run(
        run_dir,
        cache_path=Path(cache) if cache else default_cache_path(),
        tasks=tasks,
        candidates=candidates,
        optimiser=opt,
        budget=budget,
        proposals=proposals,
        rounds=DEFAULT_ROUNDS if rounds is None else rounds,
        held_out_fraction=held_out_fraction,
        seed=seed,
        offline=offline,
        notify=notify,
    )
    if write:
        write_adaptation(result, run_dir)
        loaded = load_run(run_dir)
        # the file now holds a 1.2 field: an older run's results.json is labelled as such
        results = loaded.results.model_copy(
            update={"adaptation": result.summary(), "schema_version": SCHEMA_VERSION}
        )
        _render(results, loaded.scores, loaded.exchanges, loaded.responses, loaded.path)
    return result


def gate(
    run_dir: str | Path,
    *,
    min_parity: float | None = None,
    max_error_rate: float | None = None,
    allow_caveats: bool | None = None,
    tasks: Sequence[str] | None = None,
    out: str | Path | None = None,
    command: str | None = None,
) -> GateReport:
    """Re-apply a gate to a finished run (``migrate-eval gate``); with ``out``, write the
    re-gated ``results.json``, ``summary.md`` and ``junit.xml`` there."""
    from migrate_eval.verdict.gate import GateOverrides, regate

    overrides = GateOverrides(
        min_parity=min_parity,
        max_error_rate=max_error_rate,
        allow_caveats=allow_caveats,
        tasks=list(tasks) if tasks is not None else None,
    )
    report = regate(run_dir, overrides, command=command)
    if out is not None:
        write_gate_outputs(report, out)
    return report


def compare(run_a: str | Path, run_b: str | Path) -> Comparison:
    """What changed between two finished runs (``migrate-eval compare``)."""
    from migrate_eval.report.compare import compare_runs

    return compare_runs(run_a, run_b)


def export_lm_eval(
    suite: str | Path, out_dir: str | Path, *, limit: int | None = None
) -> list[ExportedTask]:
    """Write an lm-evaluation-harness task folder per suite task (``migrate-eval export lm-eval``)."""
    from migrate_eval.export import export_lm_eval as export

    return export(suite, out_dir, limit=limit)


def provider_matrix(providers: Sequence[str] | None = None) -> dict[str, Any]:
    """The feature-support matrix of the providers (``migrate-eval providers --json``)."""
    from migrate_eval.replay.providers.matrix import matrix_json

    return matrix_json(list(providers) if providers is not None else None)


def _open_cache(cache: str | Path | None, *, must_exist: bool) -> ResponseCache:
    from migrate_eval.replay.cache import ResponseCache

    path = Path(cache) if cache else default_cache_path()
    if must_exist and not path.exists():
        raise UserError(f"{path}: no response cache here (run `migrate-eval run` first)")
    return ResponseCache(path)


def cache_stats(cache: str | Path | None = None) -> dict[str, Any]:
    """What the response cache holds, per endpoint and model (``migrate-eval cache stats``)."""
    with _open_cache(cache, must_exist=True) as rc:
        path, stats = rc.path, rc.stats()

    def when(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

    rows = [
        {
            **st.identity,
            "answers": st.answers,
            "mean_latency_ms": round(st.mean_latency_ms, 1) if st.mean_latency_ms else None,
            "oldest": when(st.oldest),
            "newest": when(st.newest),
        }
        for st in stats
    ]
    size = path.stat().st_size if path.exists() else 0
    return {"cache": str(path), "bytes": size, "identities": rows}


def cache_export(
    path: str | Path,
    *,
    candidate: str | None = None,
    suite: str | Path | None = None,
    cache: str | Path | None = None,
) -> int:
    """Write cached answers to a JSONL recordings file (``migrate-eval cache export``): all, or
    one candidate's (a candidate of ``suite``, else a model name). Returns how many."""
    flt: Any = None
    if candidate is not None:
        if suite is not None:
            from migrate_eval.replay.providers import get_provider

            specs = {c.name: c for c in load_suite(suite).candidates}
            if candidate not in specs:
                raise ConfigError(
                    f"--candidate {candidate!r}: not a candidate of {suite} "
                    f"({', '.join(specs) or 'none'})"
                )
            flt = get_provider(specs[candidate]).identity()
        else:
            flt = {"model": candidate}
    with _open_cache(cache, must_exist=True) as rc:
        count: int = rc.export_recordings(Path(path), flt)
    return count


def cache_import(path: str | Path, *, cache: str | Path | None = None) -> int:
    """Store the answers of a JSONL recordings file in the cache, all or nothing
    (``migrate-eval cache import``). Returns how many."""
    with _open_cache(cache, must_exist=False) as rc:
        count: int = rc.import_recordings(Path(path))
    return count


# --- the run history and the drift watch ----------------------------------------------------------


def history(
    folder: str | Path | None = None, *, suite: str | None = None, strict: bool = False
) -> pd.DataFrame:
    """Every record of the run history, oldest first (``migrate-eval history``): one row per
    (run, candidate, task). A corrupt or foreign file is skipped with a warning naming it
    (``strict``: :class:`~migrate_eval.core.errors.HistoryError`)."""
    from migrate_eval.verdict.history import default_history_dir, read_history

    return read_history(folder or default_history_dir(), strict=strict, suite=suite)


@dataclass
class WatchOutcome:
    """What a watch found (:func:`watch`)."""

    results: Results
    run_dir: Path
    run_id: str
    previous_run_id: str | None
    drifts: list[Any]  # verdict.drift.TaskDrift, one per (candidate, task)
    min_detectable: dict[tuple[str, str], float | None]
    exit_code: int

    @property
    def drifted(self) -> list[Any]:
        return [d for d in self.drifts if d.drift]

    @property
    def fingerprint_changes(self) -> list[Any]:
        return [d for d in self.drifts if d.fingerprint_changed]


def watch(
    suite: Suite | str | Path | None = None,
    *,
    probe: int = 20,
    logs: Sequence[str | Path] = (),
    candidates: Sequence[str | CandidateSpec] = (),
    out: str | Path | None = None,
    cache: str | Path | None = None,
    history: str | Path | None = None,
    alpha: float | None = None,
    fail_on_fingerprint: bool = False,
    concurrency: int | None = None,
    progress: ProgressFn | None = None,
    command: str | None = None,
    salt: str | None = None,
) -> WatchOutcome:
    """Re-ask a fixed probe of the suite's traffic and compare it with the previous watch
    (``migrate-eval watch``, docs/watch.md).

    The probe is the run's seeded sample with at most ``probe`` requests per task (the suite's
    ``sampling.seed``: the same requests every time). Every candidate is asked again (the cache
    is salted with the watch, ``salt``, default: the time and a random part), scored against
    the logged answers like a run, and paired per item with the previous watch of the same
    suite in the history: drift per (candidate, task) where the Holm-adjusted paired test is
    below ``alpha`` (:mod:`migrate_eval.verdict.drift`). Exit code: 0 stable, 1 drift (or a
    changed model fingerprint with ``fail_on_fingerprint``), 3 when the vendor failed too often
    to judge.
    """
    import uuid

    from migrate_eval.verdict.drift import DRIFT_ALPHA, detect_drift, min_detectable_drop
    from migrate_eval.verdict.history import (
        append_history,
        default_history_dir,
        history_records,
        item_records,
        new_run_id,
        read_history,
        read_items,
    )

    if probe < 1:
        raise ConfigError(f"--probe {probe}: the probe needs at least 1 request per task")
    level = DRIFT_ALPHA if alpha is None else alpha
    folder = Path(history) if history is not None else default_history_dir()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    outcome = run(
        suite,
        logs=logs,
        candidates=candidates,
        out=out,
        cache=cache,
        limit=probe,
        baseline=False,
        history=False,
        cache_salt=salt or f"{stamp}-{uuid.uuid4().hex[:8]}",
        concurrency=concurrency,
        progress=progress,
        command=command or "migrate-eval watch " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
    )
    loaded = load_run(outcome.run_dir)
    results = loaded.results
    run_id = new_run_id()
    records = history_records(
        results, loaded.scores, loaded.responses, run_id=run_id, kind="watch", probe=probe
    )
    pass_threshold = float(results.thresholds.get("pass_threshold", 0.5))
    items = item_records(loaded.scores, pass_threshold)

    def prints(df: pd.DataFrame) -> dict[tuple[str, str], tuple[str, str | None]]:
        """Per (candidate, task): ``model|system_fingerprint``, and the version headers (None:
        not recorded, a record from before they were)."""
        return {
            (str(r.candidate), str(r.task)): (
                f"{r.response_models}|{r.system_fingerprints}",
                r.version_headers if isinstance(r.version_headers, str) else None,
            )
            for r in df.itertuples()
        }

    def fingerprints(
        before: dict[tuple[str, str], tuple[str, str | None]],
        after: dict[tuple[str, str], tuple[str, str | None]],
    ) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
        """The compared texts: version headers count only where both watches recorded them."""
        fb: dict[tuple[str, str], str] = {}
        fa: dict[tuple[str, str], str] = {}
        for key, (core, headers) in after.items():
            old_core, old_headers = before.get(key, ("", None))
            both = headers is not None and old_headers is not None
            fa[key] = f"{core}|{headers}" if both else core
            if key in before:
                fb[key] = f"{old_core}|{old_headers}" if both else old_core
        return fb, fa

    past = read_history(folder, suite=results.suite)
    # the last watch that scored something (one the vendor refused outright compares nothing)
    scored = past[(past["kind"] == "watch") & (past["n"].fillna(0) > 0)]
    past = past[past["run_id"].isin(set(scored["run_id"]))]
    previous_run_id = str(past["run_id"].iloc[-1]) if len(past) else None
    drifts: list[Any] = []
    if previous_run_id is not None:
        before = read_items(folder, previous_run_id)
        prints_before, prints_after = fingerprints(
            prints(past[past["run_id"] == previous_run_id]), prints(records)
        )
        drifts = detect_drift(
            before,
            items,
            fingerprints_before=prints_before,
            fingerprints_after=prints_after,
            alpha=level,
        )
        by_key = {(d.candidate, d.task): d for d in drifts}
        for i, r in enumerate(records.itertuples()):
            d = by_key.get((str(r.candidate), str(r.task)))
            if d is not None:
                records.loc[i, "drift"] = d.drift
                records.loc[i, "drift_p"] = d.p_adjusted
                records.loc[i, "fingerprint_changed"] = d.fingerprint_changed
    n_keys = max(1, len(records))
    mdd: dict[tuple[str, str], float | None] = {}
    for c in results.candidates:
        for t in c.tasks:
            mdd[(c.name, t.task)] = min_detectable_drop(
                t.n,
                t.pass_rate if t.pass_rate is not None else 1.0,
                alpha=level,
                tasks=n_keys,
            )
    append_history(folder, records, items)
    # the watch's own report: its drift lines (summary.md) and the "Over time" section
    from migrate_eval.report.over_time import add_drift_lines, add_over_time

    if previous_run_id is not None:
        add_drift_lines(outcome.run_dir / "summary.md", records)
    add_over_time(outcome.run_dir / "report.html", read_history(folder, suite=results.suite))
    # what a later re-render (rerender, adapt) needs to add the watch's own sections again
    marker = {
        "history": str(folder),
        "run_id": run_id,
        "previous_run_id": previous_run_id,
        "suite": results.suite,
    }
    from migrate_eval.core.outputs import write_text_atomic

    write_text_atomic(outcome.run_dir / WATCH_MARKER, json.dumps(marker, indent=2))
    if results.gate == "error":
        code = int(ExitCode.INFRASTRUCTURE)
    elif any(d.drift for d in drifts) or (
        fail_on_fingerprint and any(d.fingerprint_changed for d in drifts)
    ):
        code = int(ExitCode.NOT_READY)
    else:
        code = int(ExitCode.READY)
    return WatchOutcome(
        results=results,
        run_dir=outcome.run_dir,
        run_id=run_id,
        previous_run_id=previous_run_id,
        drifts=drifts,
        min_detectable=mdd,
        exit_code=code,
    )
