"""Group exchanges into the tasks the product really performs, and sample them.

Each exchange gets exactly one task, found in this order:

1. the suite's explicit tasks (first whose ``match`` rules all hold);
2. an explicit tag in the exchange's metadata (see :func:`metadata_tag`): ``task``,
   ``feature``, ``feature_name``, ``use_case``, ``prompt_name``, ``prompt_id`` (OpenAI
   ``metadata``, OpenPipe tags), the Langfuse trace name (``trace_name``), a Helicone property
   (``helicone-property-feature`` / ``-task`` / ``-use-case`` / ``-prompt``..., or the same
   names inside a ``properties`` object), or those names inside a ``tags`` object;
3. its system-prompt template: the system prompt with variable parts (numbers, dates, e-mail
   addresses, URLs, quoted strings, ids) normalised away; exchanges sharing a template share a task;
4. exchanges with none of these are clustered by the meaning of their first user message
   (local embedding model, ``embedding`` extra; at least :data:`CLUSTER_MIN` of them);
5. ``untitled`` for what remains.

See ``docs/tasks.md``.

Each task gets an output kind that drives metric choice (see :func:`infer_output_kind`).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrate_eval.records import Exchange, OutputKind
from migrate_eval.results import TaskInfo
from migrate_eval.suite import CandidateSpec, TaskMatch, TaskSpec, Thresholds

if TYPE_CHECKING:
    from migrate_eval.profile import Profile

METADATA_TASK_KEYS = ("task", "feature", "feature_name", "use_case", "prompt_name")
#: Further metadata keys read after :data:`METADATA_TASK_KEYS`, in order (log tools' names).
TOOL_TASK_KEYS = (
    "prompt_id",  # OpenPipe
    "trace_name",  # Langfuse trace name
    "langfuse_trace_name",
    "trace.name",
)
#: Helicone custom properties (``Helicone-Property-<Name>`` headers) that name a task.
HELICONE_TASK_PROPERTIES = (
    "task",
    "feature",
    "use-case",
    "use_case",
    "usecase",
    "prompt",
    "prompt-name",
    "prompt_name",
    "workflow",
)
#: Fewest untagged, prompt-less exchanges worth clustering (fewer stay ``untitled``).
CLUSTER_MIN = 20
#: Cosine distance under which agglomerative clustering (average linkage) merges groups.
CLUSTER_DISTANCE = 0.6
#: Clusters smaller than this stay ``untitled``.
CLUSTER_MIN_SIZE = 3


def _meta_value(metadata: dict[str, Any], key: str) -> Any:
    """``metadata[key]``, or the dotted path ``a.b`` through nested objects."""
    if key in metadata:
        return metadata[key]
    node: Any = metadata
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def metadata_tag(metadata: dict[str, Any]) -> tuple[str, str] | None:
    """The metadata key (a dotted path for nested objects) and value that name the task."""

    def ok(v: Any) -> bool:
        return isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip() != ""

    for key in METADATA_TASK_KEYS + TOOL_TASK_KEYS:
        v = _meta_value(metadata, key)
        if ok(v):
            return key, str(v)
    lowered = {k.lower(): k for k in metadata if isinstance(k, str)}
    for prop in HELICONE_TASK_PROPERTIES:
        k = lowered.get(f"helicone-property-{prop}")
        if k is not None and ok(metadata[k]):
            return k, str(metadata[k])
    for container in ("properties", "tags"):
        inner = metadata.get(container)
        if isinstance(inner, dict):
            inner_lower = {k.lower(): k for k in inner if isinstance(k, str)}
            for prop in METADATA_TASK_KEYS + HELICONE_TASK_PROPERTIES:
                k = inner_lower.get(prop)
                if k is not None and ok(inner[k]) and "." not in k:
                    return f"{container}.{k}", str(inner[k])
    return None


_VARIABLE_PATTERNS = [
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+Z?)?\b"), "<date>"),
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"(?<!\w)(?:\"[^\"\n]{0,200}\"|'[^'\n]{0,200}')(?!\w)"), "<quoted>"),
    (re.compile(r"\b[A-Z]{2,}-?\d+\b"), "<id>"),
    (re.compile(r"\d+(?:[.,]\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def prompt_template(system_prompt: str) -> str:
    """The system prompt with its variable parts replaced by placeholders."""
    t = system_prompt
    for pattern, repl in _VARIABLE_PATTERNS:
        t = pattern.sub(repl, t)
    return t.strip()


class _TemplateMerger:
    """Merges templates that differ in a few single words (names and other free values).

    Two normalised prompts with the same number of words that differ in at most
    ``max(2, 10%)`` of their positions are one template; the differing words become ``<var>``.
    :meth:`key` gives each template a stable representative number; :meth:`text` its final form.
    """

    def __init__(self) -> None:
        self._reps: list[list[str]] = []
        self._by_len: dict[int, list[int]] = defaultdict(list)
        self._seen: dict[str, int] = {}

    def key(self, template: str) -> int:
        if template in self._seen:
            return self._seen[template]
        words = template.split(" ")
        budget = max(2, len(words) // 10)
        for idx in self._by_len[len(words)]:
            rep = self._reps[idx]
            diff = [i for i, (a, b) in enumerate(zip(rep, words, strict=True)) if a != b]
            if len(diff) <= budget:
                for i in diff:
                    rep[i] = "<var>"
                break
        else:
            idx = len(self._reps)
            self._reps.append(list(words))
            self._by_len[len(words)].append(idx)
        self._seen[template] = idx
        return idx

    def text(self, idx: int) -> str:
        return " ".join(self._reps[idx])


def _slug(text: str, max_words: int = 5) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    stop = {
        "you",
        "are",
        "a",
        "an",
        "the",
        "of",
        "and",
        "to",
        "for",
        "your",
        "is",
        "in",
        "as",
        "that",
        "who",
        "n",
    }
    kept = [w for w in words if w not in stop][:max_words]
    return "-".join(kept) or "untitled"


def _matches(ex: Exchange, m: TaskMatch) -> bool:
    for key, value in m.metadata.items():
        if str(_meta_value(ex.metadata, key)) != value:
            return False
    if m.model is not None and ex.model != m.model:
        return False
    sp = ex.system_prompt
    if m.system_prompt_contains is not None and m.system_prompt_contains not in sp:
        return False
    return not (m.system_prompt_regex is not None and not re.search(m.system_prompt_regex, sp))


def infer_output_kind(exchanges: Sequence[Exchange]) -> OutputKind:
    """Decide what kind of output a task produces, from its requests and logged answers.

    * ``tool_call`` when at least a third of the logged answers call a tool;
    * ``structured`` when most requests ask for JSON (``response_format`` json_schema/json_object);
    * ``classification`` when the answers are short (at most 4 words on average) and few distinct
      values cover them (at most 25 labels, each used twice on average);
    * ``free_text`` otherwise.
    """
    if not exchanges:
        return "free_text"
    responses = [e.response for e in exchanges if e.response is not None]
    n = max(len(responses), 1)
    if sum(1 for r in responses if r.tool_calls) * 3 >= n and responses:
        return "tool_call"
    json_requests = sum(
        1
        for e in exchanges
        if isinstance(e.request.get("response_format"), dict)
        and e.request["response_format"].get("type") in ("json_schema", "json_object")
    )
    if json_requests * 2 > len(exchanges):
        return "structured"
    texts = [(r.text or "").strip() for r in responses if r.text]
    if texts:
        avg_words = sum(len(t.split()) for t in texts) / len(texts)
        distinct = len({t.casefold().rstrip(".") for t in texts})
        if avg_words <= 4 and distinct <= 25 and distinct * 2 <= len(texts):
            return "classification"
    return "free_text"


_PLACEHOLDER_RE = re.compile(r"(<email>|<url>|<date>|<uuid>|<quoted>|<id>|<n>|<var>| )")
_PLACEHOLDER_REGEX = {
    "<email>": r"\S+?",
    "<url>": r"\S+?",
    "<uuid>": r"\S+?",
    "<id>": r"\S+?",
    "<n>": r"\S+?",
    "<date>": r"[\s\S]*?",
    "<quoted>": r"[\s\S]*?",
    "<var>": r"[\s\S]*?",
    " ": r"\s+",
}


def template_regex(template: str) -> str:
    """A regular expression matching every system prompt whose template is ``template``."""
    parts = [
        _PLACEHOLDER_REGEX.get(tok, re.escape(tok))
        for tok in _PLACEHOLDER_RE.split(template)
        if tok
    ]
    return r"\A\s*" + "".join(parts) + r"\s*\Z"


def first_user_text(ex: Exchange) -> str:
    """The text of the exchange's first user message ("" when there is none)."""
    for m in ex.request.get("messages") or []:
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    p["text"]
                    for p in content
                    if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
    return ""


def _cluster(members: Sequence[Exchange], seed: int = 0) -> dict[str, tuple[str, str]]:
    """Cluster exchanges by the meaning of their first user message.

    Returns ``{exchange id: (task name, description)}`` for exchanges in a cluster of at least
    :data:`CLUSTER_MIN_SIZE`; the others are left out. Agglomerative clustering (cosine
    distance, average linkage, threshold :data:`CLUSTER_DISTANCE`) on at most 2,000 exchanges
    (a seeded sample); the rest join the nearest cluster centre within the threshold.
    """
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering

    from migrate_eval.embeddings import embed

    texts = [first_user_text(e).strip()[:2000] for e in members]
    idx = [i for i, t in enumerate(texts) if t]
    if len(idx) < CLUSTER_MIN:
        return {}
    vectors = embed([texts[i] for i in idx])
    cap = 2000
    core = list(range(len(idx)))
    if len(core) > cap:
        core = sorted(random.Random(seed).sample(core, cap))
    labels = AgglomerativeClustering(
        n_clusters=None,
        distance_threshold=CLUSTER_DISTANCE,
        metric="cosine",
        linkage="average",
    ).fit_predict(vectors[core])
    label_of = dict(zip(core, (int(x) for x in labels), strict=True))
    groups: dict[int, list[int]] = defaultdict(list)
    for i, lab in label_of.items():
        groups[lab].append(i)
    centres = {}
    for lab, rows in groups.items():
        c = vectors[rows].mean(axis=0)
        centres[lab] = c / max(float(np.linalg.norm(c)), 1e-12)
    if len(core) < len(idx) and centres:
        labs = list(centres)
        matrix = np.stack([centres[lab] for lab in labs])
        for pos in range(len(idx)):
            if pos in label_of:
                continue
            sims = matrix @ vectors[pos]
            best = int(np.argmax(sims))
            if 1 - float(sims[best]) <= CLUSTER_DISTANCE:
                label_of[pos] = labs[best]
                groups[labs[best]].append(pos)
    out: dict[str, tuple[str, str]] = {}
    for lab, rows in groups.items():
        if len(rows) < CLUSTER_MIN_SIZE:
            continue
        sims = vectors[rows] @ centres[lab]
        medoid = texts[idx[rows[int(np.argmax(sims))]]]
        head = " ".join(medoid.split())
        name = f"{_slug(head)}-{hashlib.sha256(head.encode()).hexdigest()[:6]}"
        desc = f"Clustered by the meaning of the first user message, e.g.: {head[:160]}"
        for r in rows:
            out[members[idx[r]].id] = (name, desc)
    return out


@dataclass
class TaskPlan:
    """Tasks found and the task of every exchange.

    ``rules`` gives, for discovered tasks, the suite ``match`` rules that reproduce the
    discovery (used by ``migrate-eval init``); clustered and untitled tasks have none.
    """

    tasks: list[TaskInfo]
    assignment: dict[str, str] = field(default_factory=dict)
    rules: dict[str, TaskMatch] = field(default_factory=dict)

    def exchanges_of(self, task: str, exchanges: Sequence[Exchange]) -> list[Exchange]:
        return [e for e in exchanges if self.assignment.get(e.id) == task]


def assign_tasks(
    exchanges: Sequence[Exchange],
    specs: Sequence[TaskSpec] = (),
    *,
    thresholds: Thresholds | None = None,
    auto: bool = True,
) -> TaskPlan:
    """Assign every exchange to one task; describe each task.

    Exchanges that no explicit task matches are discovered automatically when ``auto`` is
    true, and otherwise left out of the plan (they are not replayed).
    """
    from migrate_eval.metrics import default_metrics

    th = thresholds or Thresholds()
    groups: dict[str, list[Exchange]] = defaultdict(list)
    source: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    rules: dict[str, TaskMatch] = {}
    merger = _TemplateMerger()
    for ex in exchanges:
        name = next((s.name for s in specs if _matches(ex, s.match)), None)
        if name is not None:
            source[name] = "suite"
        elif not auto:
            continue
        else:
            tag = metadata_tag(ex.metadata)
            if tag:
                key, name = tag
                source.setdefault(name, "metadata")
                rules.setdefault(name, TaskMatch(metadata={key: name}))
                descriptions.setdefault(
                    name,
                    f"Tagged '{name}' in the logs ({key})"
                    + (
                        f"; system prompt: {ex.system_prompt.strip().splitlines()[0][:160]}"
                        if ex.system_prompt.strip()
                        else ""
                    ),
                )
            elif ex.system_prompt.strip():
                rep = merger.key(prompt_template(ex.system_prompt))
                name = f"\0tpl{rep}"  # named once every template is known
                source.setdefault(name, "system_prompt")
                descriptions.setdefault(name, ex.system_prompt.strip().splitlines()[0][:200])
            else:
                name = "untitled"
                source.setdefault(name, "fallback")
        groups[name].append(ex)

    for tmp in [n for n in groups if n.startswith("\0tpl")]:
        text = merger.text(int(tmp[4:]))
        final = f"{_slug(text)}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
        groups[final] = groups.pop(tmp)
        source[final] = source.pop(tmp)
        descriptions.pop(tmp)
        descriptions[final] = text[:200]
        rules[final] = TaskMatch(system_prompt_regex=template_regex(text))

    untitled = groups.get("untitled")
    if untitled and source.get("untitled") == "fallback":
        from migrate_eval import embeddings

        note = "Exchanges without a tag or system prompt"
        if len(untitled) < CLUSTER_MIN:
            descriptions["untitled"] = f"{note} (too few to cluster by meaning)"
        elif not embeddings.available():
            descriptions["untitled"] = (
                f"{note}; not clustered by meaning: "
                "pip install 'migrate-eval[embedding]' to split them into tasks"
            )
        else:
            clusters = _cluster(untitled)
            rest = [e for e in untitled if e.id not in clusters]
            for e in untitled:
                if e.id in clusters:
                    cname, cdesc = clusters[e.id]
                    groups[cname].append(e)
                    source.setdefault(cname, "cluster")
                    descriptions.setdefault(cname, cdesc)
            if rest:
                groups["untitled"] = rest
                descriptions["untitled"] = f"{note}, in no cluster of similar requests"
            else:
                del groups["untitled"]

    spec_by_name = {s.name: s for s in specs}
    tasks: list[TaskInfo] = []
    assignment: dict[str, str] = {}
    ordered = [s.name for s in specs if s.name in groups] + sorted(
        n for n in groups if n not in spec_by_name
    )
    for name in ordered:
        members = groups[name]
        spec = spec_by_name.get(name)
        kind = (spec.output if spec and spec.output else None) or infer_output_kind(members)
        metrics = (spec.metrics if spec and spec.metrics else None) or default_metrics(kind)
        desc = (
            (spec.description if spec and spec.description else None)
            or descriptions.get(name)
            or ""
        )
        if not desc:
            first = members[0].system_prompt.strip()
            desc = first.splitlines()[0][:200] if first else ""
        tasks.append(
            TaskInfo(
                name=name,
                description=desc,
                output=kind,
                metrics=list(metrics),
                min_parity=spec.min_parity
                if spec and spec.min_parity is not None
                else th.min_parity,
                n=len(members),
                source=source[name],  # type: ignore[arg-type]
            )
        )
        for ex in members:
            assignment[ex.id] = name
    return TaskPlan(
        tasks=tasks,
        assignment=assignment,
        rules={n: r for n, r in rules.items() if n in groups and n not in spec_by_name},
    )


def sample(
    exchanges: Sequence[Exchange], plan: TaskPlan, *, limit: int | None, seed: int = 0
) -> tuple[list[Exchange], TaskPlan]:
    """Keep at most ``limit`` exchanges per task (seeded, order preserved).

    Kept for compatibility: :func:`migrate_eval.sampling.sample_plan` also deduplicates and
    sizes samples from a confidence-interval width.
    """
    from migrate_eval.sampling import sample_plan

    kept, new_plan, _ = sample_plan(exchanges, plan, limit=limit, seed=seed)
    return kept, new_plan


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
    "free_text": "free text: similarity of meaning (or chrF without the embedding extra)",
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
    from migrate_eval.sampling import request_fingerprint

    plan = assign_tasks(exchanges)
    dups = len(exchanges) - len({request_fingerprint(e) for e in exchanges})
    specs: list[TaskSpec] = []
    for t in plan.tasks:
        rule = plan.rules.get(t.name)
        if rule is not None:
            specs.append(TaskSpec(name=t.name, match=rule))
    # metadata tags come before templates, as in discovery
    specs.sort(key=lambda sp: 0 if sp.match.metadata else 1)
    check = assign_tasks(exchanges, specs)
    mismatched = Counter(
        plan.assignment[e.id]
        for e in exchanges
        if check.assignment.get(e.id) != plan.assignment.get(e.id)
    )
    info = {t.name: t for t in plan.tasks}
    lines = [
        f"# Suite written by `migrate-eval init` from {len(exchanges)} logged exchanges",
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


def _read(paths: Sequence[str | Path], format: str, strict: bool) -> Any:
    from migrate_eval.errors import UserError
    from migrate_eval.ingest import read_logs

    result = read_logs(list(paths), format=format, strict=strict)
    if not result.exchanges:
        raise UserError(
            f"no exchanges could be read from {', '.join(map(str, result.files)) or 'the logs'}"
        )
    return result


def profile_logs(
    paths: Sequence[str | Path], *, format: str = "auto", strict: bool = False
) -> Profile:
    """Read logs, discover their tasks and profile them (``migrate-eval profile``)."""
    from migrate_eval.profile import profile

    result = _read(paths, format, strict)
    return profile(result.exchanges, assign_tasks(result.exchanges), result.summary())


def init_suite(
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

    from migrate_eval.errors import ConfigError
    from migrate_eval.suite import parse_candidate_spec

    specs = [c if isinstance(c, CandidateSpec) else parse_candidate_spec(c) for c in candidates]
    suite_name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(paths[0])).stem).strip("-")
    suite_name = suite_name or "traffic"
    target = Path(out) if out else Path("suites") / suite_name / "suite.yaml"
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; use --force to overwrite it")
    result = _read(paths, format, strict)
    scorable = [e for e in result.exchanges if e.response is not None and e.error is None]
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
    yaml_text = suite_yaml(scorable, name=suite_name, logs=entries, candidates=specs)
    target.write_text(yaml_text, encoding="utf-8")
    return target
