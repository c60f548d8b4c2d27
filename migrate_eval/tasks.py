"""Group exchanges into the tasks the product really performs, and sample them.

Each exchange gets exactly one task, found in this order:

1. the suite's explicit tasks (first whose ``match`` rules all hold);
2. an explicit tag in the exchange's metadata (``task``, ``feature``, ``feature_name``,
   ``use_case``, ``prompt_name``);
3. its system-prompt template: the system prompt with variable parts (numbers, dates, e-mail
   addresses, URLs, quoted strings, ids) normalised away; exchanges sharing a template share a task;
4. ``untitled`` for exchanges with none of these.

Each task gets an output kind that drives metric choice (see :func:`infer_output_kind`).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from migrate_eval.records import Exchange, OutputKind
from migrate_eval.results import TaskInfo
from migrate_eval.suite import TaskMatch, TaskSpec, Thresholds

METADATA_TASK_KEYS = ("task", "feature", "feature_name", "use_case", "prompt_name")

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
        if str(ex.metadata.get(key)) != value:
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


@dataclass
class TaskPlan:
    """Tasks found and the task of every exchange."""

    tasks: list[TaskInfo]
    assignment: dict[str, str] = field(default_factory=dict)

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
    merger = _TemplateMerger()
    for ex in exchanges:
        name = next((s.name for s in specs if _matches(ex, s.match)), None)
        if name is not None:
            source[name] = "suite"
        elif not auto:
            continue
        else:
            tag = next(
                (str(ex.metadata[k]) for k in METADATA_TASK_KEYS if ex.metadata.get(k)), None
            )
            if tag:
                name = tag
                source.setdefault(name, "metadata")
            elif ex.system_prompt.strip():
                rep = merger.key(prompt_template(ex.system_prompt))
                name = f"\0tpl{rep}"  # named once every template is known
                source.setdefault(name, "system_prompt")
                descriptions.setdefault(name, ex.system_prompt.strip().splitlines()[0][:200])
            else:
                name = "untitled"
                source.setdefault(name, "fallback")
                descriptions.setdefault(name, "Exchanges without a tag or system prompt")
        groups[name].append(ex)

    for tmp in [n for n in groups if n.startswith("\0tpl")]:
        text = merger.text(int(tmp[4:]))
        final = f"{_slug(text)}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
        groups[final] = groups.pop(tmp)
        source[final] = source.pop(tmp)
        descriptions.pop(tmp)
        descriptions[final] = text[:200]

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
    return TaskPlan(tasks=tasks, assignment=assignment)


def sample(
    exchanges: Sequence[Exchange], plan: TaskPlan, *, limit: int | None, seed: int = 0
) -> tuple[list[Exchange], TaskPlan]:
    """Keep at most ``limit`` exchanges per task (seeded, order preserved)."""
    keep: set[str] = set()
    by_task: dict[str, list[Exchange]] = defaultdict(list)
    for ex in exchanges:
        t = plan.assignment.get(ex.id)
        if t is not None:
            by_task[t].append(ex)
    for t, members in by_task.items():
        if limit is None or len(members) <= limit:
            keep.update(e.id for e in members)
        else:
            rng = random.Random(f"{seed}:{t}")
            keep.update(e.id for e in rng.sample(members, limit))
    kept = [e for e in exchanges if e.id in keep]
    counts = Counter(plan.assignment[e.id] for e in kept)
    tasks = [
        t.model_copy(update={"n": counts.get(t.name, 0)}) for t in plan.tasks if counts.get(t.name)
    ]
    return kept, TaskPlan(tasks=tasks, assignment={e.id: plan.assignment[e.id] for e in kept})
