"""Export a suite's tasks as lm-evaluation-harness tasks (``migrate-eval export lm-eval``).

For each task of the suite, ``DIR/<task>/`` gets:

* ``<task>.jsonl``: one document per logged exchange: ``id``, ``messages`` (the full logged
  conversation, Chat Completions shape), ``prompt`` (the conversation rendered as text, see
  :func:`render_prompt`), ``target`` (the logged OpenAI answer: its text, or its tool calls as
  JSON ``[{"name": ..., "arguments": {...}}]``), ``output_kind`` and ``gold`` when the log
  carries one;
* ``<task>.yaml``: an lm-eval task reading that file through ``dataset_path: json`` and
  ``dataset_kwargs.data_files`` (absolute path, so that ``--include_path DIR`` works from any
  folder), ``output_type: generate_until`` with the logged answer as the target.

``DIR/<suite>.yaml`` is a group of all the tasks. Run them with
``lm-eval run --include_path DIR --tasks <group or task> --model ... [--apply_chat_template]``.

The target is named by its column (``doc_to_target: target``), never rendered through a
template: lm-eval passes a rendered target that looks like a list (``[...]``, as every tool-call
target does) through ``ast.literal_eval``, and the list it gets back never equals the model's
string, so a byte-identical tool-call answer scored 0 with ``exact_match``.

Decisions: the prompt is the whole logged conversation (system prompt, earlier turns, tool
calls and tool results), rendered as a role-labelled transcript ending with ``Assistant:``,
because a ``generate_until`` task gives the model one context string; with
``--apply_chat_template`` lm-eval wraps that transcript as a single user turn (``messages``
stays in the documents for tools that want the structured turns). Metrics: ``exact_match``
for every task (the logged answer reproduced exactly), plus corpus ``chrf``, ``bleu`` and
``ter`` (sacrebleu, lm-eval's registry) for free-text tasks. Tool definitions and JSON schemas
are included in the transcript as text; lm-eval has no notion of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from migrate_eval.core.errors import UserError
from migrate_eval.core.records import Exchange, OutputKind, Response
from migrate_eval.core.request import content_text, parse_output_format
from migrate_eval.core.suite import Suite, load_suite

MAX_GEN_TOKS = 1024


@dataclass(frozen=True)
class ExportedTask:
    """One exported lm-eval task: its name, files and number of documents."""

    name: str
    yaml_path: Path
    data_path: Path
    n: int


def render_prompt(request: Mapping[str, Any]) -> str:
    """The logged conversation as a transcript for a completion-style prompt.

    Each message becomes ``<Role>: <text>`` (tool calls as ``[tool call] name(arguments)``,
    tool results as ``Tool (<id>): ...``); the tools offered and the requested JSON schema,
    when present, come first as a system note; the transcript ends with ``Assistant:``.
    """
    parts: list[str] = []
    tools = request.get("tools")
    if tools:
        names = [
            json.dumps(t.get("function", t), ensure_ascii=False, sort_keys=True)
            for t in tools
            if isinstance(t, dict)
        ]
        parts.append("System: Tools you may call:\n" + "\n".join(names))
    fmt = parse_output_format(request.get("response_format"))
    if fmt.wants_json:
        schema = fmt.schema if fmt.kind == "json_schema" else None
        parts.append(
            "System: Answer with a JSON object"
            + (
                f" valid against this schema: {json.dumps(schema, sort_keys=True)}"
                if schema
                else "."
            )
        )
    for m in request.get("messages") or []:
        if not isinstance(m, dict):
            continue
        role = str(m.get("role", "user"))
        text = content_text(m.get("content"), sep="\n")
        if role == "tool":
            parts.append(f"Tool ({m.get('tool_call_id', '')}): {text}")
            continue
        label = {"system": "System", "developer": "System", "user": "User"}.get(role, "Assistant")
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function", {}) if isinstance(tc, dict) else {}
            text += f"\n[tool call] {fn.get('name')}({fn.get('arguments', '')})"
        parts.append(f"{label}: {text.strip()}")
    parts.append("Assistant:")
    return "\n\n".join(parts)


def render_target(response: Response) -> str:
    """The logged answer as the target string (text, or tool calls as JSON)."""
    if response.tool_calls:
        return json.dumps(
            [
                {
                    "name": c.name,
                    "arguments": c.parsed_arguments if c.arguments_valid_json else c.arguments,
                }
                for c in response.tool_calls
            ],
            ensure_ascii=False,
            sort_keys=True,
        )
    return response.text if response.text is not None else (response.refusal or "")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "task"


def _metric_list(kind: OutputKind) -> list[dict[str, Any]]:
    metrics: list[dict[str, Any]] = [
        {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}
    ]
    if kind == "free_text":
        metrics += [
            {"metric": "chrf", "aggregation": "chrf", "higher_is_better": True},
            {"metric": "bleu", "aggregation": "bleu", "higher_is_better": True},
            {"metric": "ter", "aggregation": "ter", "higher_is_better": False},
        ]
    return metrics


def task_config(name: str, data_path: Path, kind: OutputKind, description: str) -> dict[str, Any]:
    """The lm-eval task YAML for one exported task (see the module docstring)."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_path.resolve())}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        # the column's name, not a "{{target}}" template: lm-eval reads a rendered template
        # that starts with "[" and ends with "]" as a Python literal (a list), so a tool-call
        # target reproduced byte for byte scored 0; a column name is returned as is
        "doc_to_target": "target",
        "target_delimiter": " ",
        "generation_kwargs": {"until": [], "max_gen_toks": MAX_GEN_TOKS, "do_sample": False},
        "metric_list": _metric_list(kind),
        "metadata": {"version": 1.0, "source": "migrate-eval", "description": description},
    }


def export_lm_eval(
    suite: Suite | str | Path,
    out_dir: str | Path,
    *,
    limit: int | None = None,
) -> list[ExportedTask]:
    """Write an lm-eval task folder for every task of ``suite`` into ``out_dir``.

    The logs are read and grouped into tasks exactly as ``migrate-eval run`` does (without
    sampling unless ``limit`` caps the documents per task). Returns the exported tasks.
    """
    from migrate_eval.ingest import read_logs
    from migrate_eval.plan.tasks import assign_tasks

    s = suite if isinstance(suite, Suite) else load_suite(suite)
    paths: dict[str, list[Path]] = {}
    for spec in s.logs:
        paths.setdefault(spec.format, []).append(s.resolve(spec.path))
    exchanges: list[Exchange] = []
    for fmt, ps in paths.items():
        exchanges += read_logs(ps, format=fmt).exchanges
    scorable = [e for e in exchanges if e.response is not None and e.error is None]
    if not scorable:
        raise UserError(f"suite {s.name!r}: no logged exchange with an answer to export")
    plan = assign_tasks(scorable, s.tasks, thresholds=s.thresholds, auto=s.auto_tasks)
    by_task: dict[str, list[Exchange]] = {}
    for e in scorable:
        by_task.setdefault(plan.assignment[e.id], []).append(e)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"migrate_eval_{_slug(s.name)}"
    exported: list[ExportedTask] = []
    for task in plan.tasks:
        docs = by_task.get(task.name, [])[: limit or None]
        if not docs:
            continue
        name = f"{prefix}_{_slug(task.name)}"
        folder = out / _slug(task.name)
        folder.mkdir(parents=True, exist_ok=True)
        data_path = folder / f"{name}.jsonl"
        with data_path.open("w", encoding="utf-8") as f:
            for e in docs:
                assert e.response is not None
                doc = {
                    "id": e.id,
                    "messages": e.request.get("messages") or [],
                    "prompt": render_prompt(e.request),
                    "target": render_target(e.response),
                    "output_kind": task.output,
                }
                if e.gold is not None:
                    doc["gold"] = e.gold
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        yaml_path = folder / f"{name}.yaml"
        yaml_path.write_text(
            yaml.safe_dump(
                task_config(name, data_path, task.output, task.description),
                sort_keys=False,
                allow_unicode=True,
            ),
            encoding="utf-8",
        )
        exported.append(
            ExportedTask(name=name, yaml_path=yaml_path, data_path=data_path, n=len(docs))
        )
    if exported:
        (out / f"{prefix}.yaml").write_text(
            yaml.safe_dump(
                {
                    "group": prefix,
                    "task": [t.name for t in exported],
                    "metadata": {"version": 1.0},
                },
                sort_keys=False,
            ),
            encoding="utf-8",
        )
    return exported
