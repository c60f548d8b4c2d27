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

import functools
import hashlib
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migrate_eval.core.records import Exchange, LoggedExchange, OutputKind
from migrate_eval.core.results import TaskInfo
from migrate_eval.core.suite import TaskMatch, TaskSpec, Thresholds

if TYPE_CHECKING:
    pass

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


def _ok(v: Any) -> bool:
    """A metadata value that names a task: a non-blank string or an integer."""
    return isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip() != ""


_TAG_KEYS = METADATA_TASK_KEYS + TOOL_TASK_KEYS


def metadata_tag(metadata: dict[str, Any]) -> tuple[str, str] | None:
    """The metadata key (a dotted path for nested objects) and value that name the task."""
    for key in _TAG_KEYS:
        if key in metadata:
            v = metadata[key]
        elif "." in key:
            v = _meta_value(metadata, key)
        else:
            continue
        if _ok(v):
            return key, str(v)
    lowered = {k.lower(): k for k in metadata if isinstance(k, str)}
    for prop in HELICONE_TASK_PROPERTIES:
        k = lowered.get(f"helicone-property-{prop}")
        if k is not None and _ok(metadata[k]):
            return k, str(metadata[k])
    for container in ("properties", "tags"):
        inner = metadata.get(container)
        if isinstance(inner, dict):
            inner_lower = {k.lower(): k for k in inner if isinstance(k, str)}
            for prop in METADATA_TASK_KEYS + HELICONE_TASK_PROPERTIES:
                k = inner_lower.get(prop)
                if k is not None and _ok(inner[k]) and "." not in k:
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


@functools.lru_cache(maxsize=4096)
def prompt_template(system_prompt: str) -> str:
    """The system prompt with its variable parts replaced by placeholders (remembered for the
    last 4,096 prompts: logs repeat their prompts)."""
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


def _matches(ex: LoggedExchange, m: TaskMatch) -> bool:
    for key, value in m.metadata.items():
        if str(_meta_value(ex.metadata, key)) != value:
            return False
    if m.model is not None and ex.model != m.model:
        return False
    if m.system_prompt_contains is None and m.system_prompt_regex is None:
        return True  # the system prompt is not asked for (finding it reads every message)
    sp = ex.system_prompt
    if m.system_prompt_contains is not None and m.system_prompt_contains not in sp:
        return False
    return not (m.system_prompt_regex is not None and not re.search(m.system_prompt_regex, sp))


#: Most distinct answers a classification-like task has (see :func:`infer_output_kind`).
MAX_LABELS = 25


@dataclass
class OutputStats:
    """What :func:`infer_output_kind` reads of a task's exchanges, gathered one exchange at a
    time (:meth:`add`) in bounded memory: counts, and the distinct answers up to one more than
    a classification task may have."""

    exchanges: int = 0
    responses: int = 0
    tool_answers: int = 0
    json_requests: int = 0
    texts: int = 0
    words: int = 0
    labels: set[str] | None = field(default_factory=set)  # None: more than MAX_LABELS

    def add(self, ex: LoggedExchange) -> None:
        self.exchanges += 1
        if ex.request.output_format.wants_json:
            self.json_requests += 1
        r = ex.response
        if r is None:
            return
        self.responses += 1
        if r.tool_calls:
            self.tool_answers += 1
        if r.text:
            text = r.text.strip()
            self.texts += 1
            self.words += len(text.split())
            if self.labels is not None:
                self.labels.add(text.casefold().rstrip("."))
                if len(self.labels) > MAX_LABELS:
                    self.labels = None

    def merge(self, other: OutputStats) -> None:
        for name in ("exchanges", "responses", "tool_answers", "json_requests", "texts", "words"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if self.labels is not None and other.labels is not None:
            self.labels |= other.labels
            if len(self.labels) > MAX_LABELS:
                self.labels = None
        else:
            self.labels = None

    def kind(self) -> OutputKind:
        """The output kind (the rules of :func:`infer_output_kind`)."""
        if not self.exchanges:
            return "free_text"
        if self.responses and self.tool_answers * 3 >= self.responses:
            return "tool_call"
        if self.json_requests * 2 > self.exchanges:
            return "structured"
        if self.texts and self.labels is not None:
            distinct = len(self.labels)
            if self.words / self.texts <= 4 and distinct * 2 <= self.texts:
                return "classification"
        return "free_text"


def infer_output_kind(exchanges: Sequence[Exchange]) -> OutputKind:
    """Decide what kind of output a task produces, from its requests and logged answers.

    * ``tool_call`` when at least a third of the logged answers call a tool;
    * ``structured`` when most requests ask for JSON (``response_format`` json_schema/json_object);
    * ``classification`` when the answers are short (at most 4 words on average) and few distinct
      values cover them (at most 25 labels, each used twice on average);
    * ``free_text`` otherwise.
    """
    stats = OutputStats()
    for ex in exchanges:
        stats.add(ex)
    return stats.kind()


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


def first_user_text(ex: LoggedExchange) -> str:
    """The text of the exchange's first user message ("" when there is none)."""
    return ex.request.first_user_text


#: Characters of the first user message that clustering reads.
CLUSTER_TEXT_CHARS = 2000


def _cluster_text(ex: LoggedExchange) -> str:
    return first_user_text(ex).strip()[:CLUSTER_TEXT_CHARS]


def _cluster(texts: Sequence[str], seed: int = 0) -> dict[int, tuple[str, str]]:
    """Cluster exchanges by the meaning of their first user message (``texts``, see
    :func:`_cluster_text`).

    Returns ``{position in texts: (task name, description)}`` for exchanges in a cluster of at
    least :data:`CLUSTER_MIN_SIZE`; the others are left out. Agglomerative clustering (cosine
    distance, average linkage, threshold :data:`CLUSTER_DISTANCE`) on at most 2,000 exchanges
    (a seeded sample); the rest join the nearest cluster centre within the threshold.
    """
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering

    from migrate_eval.core.embeddings import embed

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
    out: dict[int, tuple[str, str]] = {}
    for lab, rows in groups.items():
        if len(rows) < CLUSTER_MIN_SIZE:
            continue
        sims = vectors[rows] @ centres[lab]
        medoid = texts[idx[rows[int(np.argmax(sims))]]]
        head = " ".join(medoid.split())
        name = f"{_slug(head)}-{hashlib.sha256(head.encode()).hexdigest()[:6]}"
        desc = f"Clustered by the meaning of the first user message, e.g.: {head[:160]}"
        for r in rows:
            out[idx[r]] = (name, desc)
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


_UNTITLED = "untitled"


class TaskDiscovery:
    """Task discovery one exchange at a time (:meth:`add`), then :meth:`plan`.

    What it keeps: counts and :class:`OutputStats` per task, the templates seen, and for each
    exchange with neither a tag nor a system prompt (candidates for clustering by meaning) its
    first user message (up to :data:`CLUSTER_TEXT_CHARS` characters); with ``keep_ids`` also
    every exchange's id, for :attr:`TaskPlan.assignment`. :func:`assign_tasks` is this over a
    list; ``migrate-eval profile`` runs it over a stream of any length.
    """

    def __init__(
        self,
        specs: Sequence[TaskSpec] = (),
        *,
        thresholds: Thresholds | None = None,
        auto: bool = True,
        keep_ids: bool = True,
    ) -> None:
        self._specs = list(specs)
        self._thresholds = thresholds or Thresholds()
        self._auto = auto
        self._keep_ids = keep_ids
        self._counts: Counter[str] = Counter()
        self._stats: dict[str, OutputStats] = {}
        self._source: dict[str, str] = {}
        self._descriptions: dict[str, str] = {}
        self._first_prompt: dict[str, str] = {}
        self._rules: dict[str, TaskMatch] = {}
        self._merger = _TemplateMerger()
        self._ids: dict[str, list[str]] = defaultdict(list)
        # exchanges with no tag and no system prompt: (id, first user text, output stats)
        self._untitled: list[tuple[str, str, OutputStats]] = []

    def add(self, ex: LoggedExchange) -> None:
        """Count one exchange in its task (exchanges no suite task matches are left out when
        ``auto`` is false)."""
        specs = self._specs
        name = next((s.name for s in specs if _matches(ex, s.match)), None) if specs else None
        if name is not None:
            self._source[name] = "suite"
        elif not self._auto:
            return
        else:
            tag = metadata_tag(ex.metadata)
            if tag:
                key, name = tag
                self._source.setdefault(name, "metadata")
                if name not in self._rules:  # not a model validated per exchange
                    self._rules[name] = TaskMatch(metadata={key: name})
                if name not in self._descriptions:
                    system_prompt = ex.system_prompt
                    self._descriptions[name] = f"Tagged '{name}' in the logs ({key})" + (
                        f"; system prompt: {system_prompt.strip().splitlines()[0][:160]}"
                        if system_prompt.strip()
                        else ""
                    )
            elif (system_prompt := ex.system_prompt).strip():
                rep = self._merger.key(prompt_template(system_prompt))
                name = f"\0tpl{rep}"  # named once every template is known
                if name not in self._source:
                    self._source[name] = "system_prompt"
                    self._descriptions[name] = system_prompt.strip().splitlines()[0][:200]
            else:
                self._source.setdefault(_UNTITLED, "fallback")
                stats = OutputStats()
                stats.add(ex)
                self._untitled.append((ex.id, _cluster_text(ex), stats))
                self._counts[_UNTITLED] += 1
                self._first_prompt.setdefault(_UNTITLED, "")
                return
        self._counts[name] += 1
        task_stats = self._stats.get(name)
        if task_stats is None:
            task_stats = self._stats[name] = OutputStats()
        task_stats.add(ex)
        if name not in self._first_prompt:
            self._first_prompt[name] = ex.system_prompt
        if self._keep_ids:
            self._ids[name].append(ex.id)

    def plan(self) -> TaskPlan:
        """The tasks found (in the suite's order, then by name) and, with ``keep_ids``, the
        task of every exchange added."""
        from migrate_eval.core.suite import default_metrics

        counts, stats, ids = self._counts, self._stats, self._ids
        source, descriptions, rules = self._source, self._descriptions, self._rules
        first_prompt = self._first_prompt
        for tmp in [n for n in counts if n.startswith("\0tpl")]:
            text = self._merger.text(int(tmp[4:]))
            final = f"{_slug(text)}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
            # two templates may end as the same text once their free words are <var>s
            counts[final] += counts.pop(tmp)
            stats.setdefault(final, OutputStats()).merge(stats.pop(tmp))
            ids[final].extend(ids.pop(tmp, ()))
            source[final] = source.pop(tmp)
            first_prompt.setdefault(final, first_prompt.pop(tmp))
            descriptions.pop(tmp)
            descriptions[final] = text[:200]
            rules[final] = TaskMatch(system_prompt_regex=template_regex(text))
        self._cluster_untitled()

        spec_by_name = {s.name: s for s in self._specs}
        th = self._thresholds
        tasks: list[TaskInfo] = []
        assignment: dict[str, str] = {}
        ordered = [s.name for s in self._specs if s.name in counts] + sorted(
            n for n in counts if n not in spec_by_name
        )
        for name in ordered:
            spec = spec_by_name.get(name)
            kind = (spec.output if spec and spec.output else None) or stats[name].kind()
            metrics = (spec.metrics if spec and spec.metrics else None) or default_metrics(kind)
            desc = (
                (spec.description if spec and spec.description else None)
                or descriptions.get(name)
                or ""
            )
            if not desc:
                first = first_prompt.get(name, "").strip()
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
                    n=counts[name],
                    source=source[name],
                )
            )
            for ex_id in ids.get(name, ()):
                assignment[ex_id] = name
        return TaskPlan(
            tasks=tasks,
            assignment=assignment,
            rules={n: r for n, r in rules.items() if n in counts and n not in spec_by_name},
        )

    def _cluster_untitled(self) -> None:
        """The exchanges with no tag and no system prompt: clustered by meaning where there
        are enough of them and the embedding extra is installed; the rest stay untitled."""
        untitled, self._untitled = self._untitled, []
        if not untitled:
            return
        clusters: dict[int, tuple[str, str]] = {}
        if self._source.get(_UNTITLED) == "fallback":  # not a task of that name
            from migrate_eval.core import embeddings

            note = "Exchanges without a tag or system prompt"
            if len(untitled) < CLUSTER_MIN:
                self._descriptions[_UNTITLED] = f"{note} (too few to cluster by meaning)"
            elif not embeddings.available():
                self._descriptions[_UNTITLED] = (
                    f"{note}; not clustered by meaning: "
                    "pip install 'migrate-eval[embedding]' to split them into tasks"
                )
            else:
                clusters = _cluster([text for _, text, _ in untitled])
                self._descriptions[_UNTITLED] = f"{note}, in no cluster of similar requests"
        for pos, (ex_id, _, one) in enumerate(untitled):
            name = _UNTITLED
            if pos in clusters:
                name, desc = clusters[pos]
                self._source.setdefault(name, "cluster")
                self._descriptions.setdefault(name, desc)
                self._counts[_UNTITLED] -= 1
                self._counts[name] += 1
            self._stats.setdefault(name, OutputStats()).merge(one)
            if self._keep_ids:
                self._ids[name].append(ex_id)
        if self._counts[_UNTITLED] <= 0:
            del self._counts[_UNTITLED]


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
    discovery = TaskDiscovery(specs, thresholds=thresholds, auto=auto)
    for ex in exchanges:
        discovery.add(ex)
    return discovery.plan()
