"""The suite file ``migrate-eval init`` writes: the discovered tasks as rules, with comments
that say what each setting does, ready for a team to edit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from migrate_eval.core.records import Exchange
from migrate_eval.core.suite import CandidateSpec, TaskSpec
from migrate_eval.plan.tasks import TaskPlan, assign_tasks

#: Suggested ``min_parity`` per output kind in suites written by ``migrate-eval init``.
SUGGESTED_MIN_PARITY: dict[str, float] = {
    "tool_call": 0.9,
    "structured": 0.9,
    "classification": 0.9,
    "free_text": 0.8,
}


_KIND_NOTES = {
    "tool_call": "the answers call tools: same tool, JSON-equal arguments",
    "structured": "the requests ask for JSON: validity, schema validity, field parity",
    "classification": "short answers from a small set of labels: label agreement",
    "free_text": "free text: similarity of meaning and word overlap",
}


def _y(value: Any) -> str:
    """A YAML flow value (JSON is valid YAML)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def suite_yaml(
    exchanges: Sequence[Exchange],
    *,
    name: str,
    logs: Sequence[Any],
    candidates: Sequence[CandidateSpec] = (),
) -> str:
    """A commented suite (YAML text) whose tasks reproduce the discovery on ``exchanges``.

    Metadata-tagged tasks get a ``metadata`` match, template tasks a ``system_prompt_regex``
    built from the template; clustered and untitled exchanges are left to ``auto_tasks``
    (discovery finds them again). The rules are checked: re-assigning ``exchanges`` with them
    must give every exchange the task it was discovered in, and any that does not is named in
    a comment.
    """
    from migrate_eval.core.request import request_fingerprint

    plan = assign_tasks(exchanges)
    specs = rule_specs(plan)
    return suite_text(
        plan,
        specs,
        assign_tasks(exchanges, specs).assignment,
        [e.id for e in exchanges],
        len(exchanges) - len({request_fingerprint(e) for e in exchanges}),
        name=name,
        logs=logs,
        candidates=candidates,
    )


def rule_specs(plan: TaskPlan) -> list[TaskSpec]:
    """Suite tasks whose ``match`` rules reproduce the plan's discovered tasks (metadata tags
    before templates, as in discovery)."""
    specs = [
        TaskSpec(name=t.name, match=rule) for t in plan.tasks if (rule := plan.rules.get(t.name))
    ]
    specs.sort(key=lambda sp: 0 if sp.match.metadata else 1)
    return specs


def suite_text(
    plan: TaskPlan,
    specs: Sequence[TaskSpec],
    check: Mapping[str, str],
    ids: Sequence[str],
    dups: int,
    *,
    name: str,
    logs: Sequence[Any],
    candidates: Sequence[CandidateSpec] = (),
) -> str:
    """:func:`suite_yaml` from its parts: the discovered ``plan``, its ``specs``, the task each
    exchange gets with them (``check``), the exchanges' ids and their duplicate count."""
    mismatched = Counter(
        plan.assignment[ex_id] for ex_id in ids if check.get(ex_id) != plan.assignment.get(ex_id)
    )
    info = {t.name: t for t in plan.tasks}
    lines = [
        f"# Suite written by `migrate-eval init` from {len(ids)} logged exchanges",
        "# with a logged answer. Review the tasks, metrics and thresholds, name your",
        "# candidates, then: migrate-eval run <this file>   (docs/suite.md, docs/tasks.md)",
        f"name: {_y(name)}",
        f"description: {_y(f'Can {name} move off its current model?')}",
        "",
        "logs:                           # files, folders or globs (relative to this file)",
    ]
    lines += [f"  - {_y(p)}" for p in logs]
    lines += [
        "",
        "tasks:                          # first matching task wins; edit names freely",
    ]
    for sp in specs:
        t = info[sp.name]
        lines.append(f"  - name: {_y(t.name)}")
        lines.append(f"    description: {_y(t.description)}")
        lines.append(f"    # {t.n} exchanges; found by {t.source}")
        if sp.name in mismatched:
            lines.append(
                f"    # warning: this rule does not reproduce discovery for "
                f"{mismatched[sp.name]} exchanges; tighten it"
            )
        lines.append("    match:")
        if sp.match.metadata:
            lines.append(f"      metadata: {_y(sp.match.metadata)}")
        if sp.match.system_prompt_regex is not None:
            lines.append("      # the system-prompt template; variable parts are wildcards")
            lines.append(f"      system_prompt_regex: {_y(sp.match.system_prompt_regex)}")
        lines.append(f"    output: {t.output}          # {_KIND_NOTES[t.output]}")
        lines.append(f"    metrics: {_y(t.metrics)}")
        if t.output == "free_text" and "semantic_similarity" not in t.metrics:
            lines.append(
                "    # paraphrases score low on chrF: consider semantic_similarity (embedding extra)"
            )
        lines.append(
            f"    min_parity: {SUGGESTED_MIN_PARITY[t.output]}        # suggested for {t.output}"
        )
    others = [t for t in plan.tasks if t.name not in {sp.name for sp in specs}]
    if not specs:
        lines[-1] = "tasks: []                       # no tagged or templated traffic found"
    lines.append("")
    if others:
        lines.append("# Discovered again on every run (no match rule can express them):")
        for t in others:
            lines.append(f"#   {t.name}: {t.n} exchanges, {t.source}: {t.description[:100]}")
    lines.append("auto_tasks: true                # exchanges no task matches are discovered")
    lines += ["", "candidates:"]
    if candidates:
        for c in candidates:
            lines.append(f"  - name: {_y(c.name)}")
            lines.append(f"    provider: {_y(c.provider)}")
            lines.append(f"    model: {_y(c.model)}")
            if c.base_url:
                lines.append(f"    base_url: {_y(c.base_url)}")
            lines.append("    # api_key_env: MY_API_KEY    # the variable holding its key")
            lines.append("    # price: {input_per_mtok: 0.0, output_per_mtok: 0.0}")
    else:
        lines += [
            "  # replace with your candidate (docs/suite.md lists the providers)",
            '  - name: "candidate"',
            '    provider: "openai-compatible"',
            '    model: "CHANGE-ME"',
            '    base_url: "http://127.0.0.1:8000/v1"',
        ]
    lines += [
        "",
        "thresholds:",
        "  min_parity: 0.85              # default bar for tasks without their own",
        "  min_samples: 30               # fewer scored exchanges: ready with caveats at best",
        "",
        "sampling:",
        f"  dedupe: false                 # true: replay identical requests once "
        f"({dups} copies in these logs)",
        "  # ci_width: 0.1               # per-task sample for a 95% interval this wide",
        "  seed: 0",
        "",
        "redaction:",
        "  enabled: false                # true: PII and secrets replaced before replay",
        "",
    ]
    return "\n".join(lines)
