"""Suite files: what to read, how to group it into tasks, which candidates to replay, how to judge.

A suite is YAML (see ``docs/suite.md``). Relative paths in a suite are resolved against the
suite file's folder. Validation errors name the file and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from migrate_eval.core.errors import ConfigError
from migrate_eval.core.records import OutputKind, StrictModel

ENTITIES = (
    "secret",
    "email",
    "iban",
    "card",
    "ssn",
    "nino",
    "passport",
    "dob",
    "ip",
    "phone",
    "address",
    "person",
)

#: What presidio adds with ``names: true`` (``person`` is also found without it, by heuristics).
NAME_ENTITIES = ("person", "location")


class RedactionConfig(StrictModel):
    """The suite's ``redaction`` section."""

    enabled: bool = Field(default=False, description="redact before replay")
    entities: list[str] = Field(
        default_factory=lambda: list(ENTITIES), description="entity types to redact"
    )
    names: bool = Field(
        default=False,
        description="also presidio's person names and places (needs the presidio extra)",
    )

    @field_validator("entities")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [e for e in v if e not in ENTITIES and e not in NAME_ENTITIES]
        if unknown:
            raise ValueError(
                f"unknown entity type(s) {', '.join(unknown)}; "
                f"known: {', '.join(dict.fromkeys(ENTITIES + NAME_ENTITIES))}"
            )
        return v


class LogSpec(StrictModel):
    path: str = Field(description="file, directory or glob")
    format: str = Field(default="auto", description="log format name, or 'auto' to detect")
    columns: dict[str, str] | None = Field(
        default=None,
        description="CSV/Parquet logs: column names for prompt, response, system, id, label, "
        "model (auto-detected when omitted); passed to read_logs(columns=...)",
    )


class Price(StrictModel):
    """Price in US dollars per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None
    per_hour_usd: float | None = Field(
        default=None, ge=0, description="self-hosted: what the GPU server costs per hour"
    )
    throughput_rps: float | None = Field(
        default=None,
        gt=0,
        description="self-hosted: requests per second it sustains (default: measured)",
    )
    scale_to_zero: bool = Field(
        default=False,
        description="self-hosted: bill only the hours with traffic (default: always on)",
    )


class CandidateSpec(StrictModel):
    name: str
    provider: str = "openai-compatible"
    model: str
    base_url: str | None = None
    api_key_env: str | None = Field(
        default=None, description="name of the environment variable that holds the API key"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="request parameter overrides")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="provider settings, never sent in a request (a managed server's launch "
        "options, the GPU it runs on: docs/self-hosting.md)",
    )
    concurrency: int = Field(default=16, ge=1, le=4096)
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)
    price: Price | None = None
    rpm: float | None = Field(default=None, gt=0, description="requests per minute limit")
    tpm: float | None = Field(
        default=None, gt=0, description="tokens per minute limit (estimated, then measured)"
    )
    stream: bool = Field(default=False, description="stream answers to measure time to first token")
    strict_params: bool = Field(
        default=False,
        description="refuse (as unsupported) requests with sampling parameters, seed, penalties... "
        "the candidate's API has no equivalent for, instead of dropping them and counting them",
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 64 characters)")
        return v


DEFAULT_RUBRIC = (
    "Grade how well the answer serves the user: it is correct, helpful, complete and follows "
    "every instruction of the conversation (format, length, language, tone)."
)


class JudgeSpec(CandidateSpec):
    """The suite's ``judge:`` section: the LLM judge's endpoint (any provider) and rubric."""

    name: str = "judge"
    rubric: str | None = Field(default=None, description="rubric for judge_rubric grading")
    temperature: float = Field(default=0.0, ge=0, le=2, description="judge sampling temperature")
    max_tokens: int = Field(default=512, ge=1, description="judge answer length")
    control_items: int = Field(
        default=10, ge=3, description="logged answers planted as judge controls per task"
    )
    min_control_accuracy: float = Field(
        default=0.8, ge=0, le=1, description="below this share of controls right: not trusted"
    )
    max_position_bias: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="above this share of control pairs flipping with the order: not trusted",
    )


class AdaptSpec(StrictModel):
    """The suite's ``adapt:`` section: adapt not-ready tasks' prompts after the run (docs/adapt.md).

    ``adapt: true`` takes the defaults.
    """

    optimiser: CandidateSpec | None = Field(
        default=None, description="the endpoint that proposes edits (default: each candidate)"
    )
    budget: int | None = Field(default=None, ge=1, description="at most this many requests")
    proposals: int = Field(default=3, ge=1, le=20, description="edits asked for per task")
    rounds: int | None = Field(
        default=None, ge=1, le=10, description="rounds of proposals (default 3)"
    )


class TaskMatch(StrictModel):
    """Rules that put an exchange in a task. All given rules must hold."""

    metadata: dict[str, str] = Field(default_factory=dict)
    system_prompt_contains: str | None = None
    system_prompt_regex: str | None = None
    model: str | None = None

    @field_validator("system_prompt_regex")
    @classmethod
    def _regex_ok(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"invalid regular expression: {e}") from e
        return v


class TaskSpec(StrictModel):
    name: str
    description: str | None = None
    match: TaskMatch = Field(default_factory=TaskMatch)
    output: OutputKind | None = Field(default=None, description="output kind; inferred when absent")
    metrics: list[str] | None = Field(
        default=None, description="parity metrics; chosen by kind when absent"
    )
    min_parity: float | None = Field(default=None, ge=0, le=1)
    metric_weights: dict[str, float] | None = Field(
        default=None, description="weight of each metric in the task's parity (default 1 each)"
    )


class Thresholds(StrictModel):
    min_parity: float = Field(
        default=0.85, ge=0, le=1, description="a task is ready when parity is at least this"
    )
    pass_threshold: float = Field(
        default=0.8, ge=0, le=1, description="per-exchange parity that counts as a pass"
    )
    max_error_rate: float = Field(
        default=0.2, ge=0, le=1, description="more vendor errors than this: cannot judge"
    )
    min_samples: int = Field(
        default=30, ge=1, description="fewer scored exchanges than this: a caveat"
    )
    confidence: float = Field(default=0.95, gt=0, lt=1)
    margin: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="non-inferiority margin: parity may sit this far below the noise floor",
    )


class Gate(StrictModel):
    allow_caveats: bool = Field(default=True, description="'ready with caveats' passes the gate")
    tasks: list[str] | None = Field(default=None, description="tasks the gate reads (default: all)")


class BaselineSpec(StrictModel):
    """The baseline re-run: the logged OpenAI model replayed on a sample (noise floor)."""

    candidate: CandidateSpec | None = Field(
        default=None,
        description="how to call the baseline (default: provider openai, the logs' model)",
    )
    repeats: int = Field(default=2, ge=1, le=20, description="fresh answers per exchange")
    sample: int = Field(default=50, ge=1, description="exchanges re-run (seeded sample)")
    seed: int = 0


class Sampling(StrictModel):
    limit: int | None = Field(
        default=None, ge=1, description="at most this many exchanges per task"
    )
    seed: int = 0
    dedupe: bool = Field(
        default=False,
        description="keep one of identical logged requests (the copies are counted, not replayed)",
    )
    ci_width: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="per-task sample size giving a confidence interval this wide (docs/tasks.md)",
    )


class Suite(StrictModel):
    name: str
    description: str | None = None
    simulated: bool = Field(
        default=False, description="the suite's data is simulated (shown in the report)"
    )
    logs: list[LogSpec]
    recordings: list[str] = Field(
        default_factory=list, description="cache recordings imported before replay"
    )
    tasks: list[TaskSpec] = Field(
        default_factory=list, description="explicit tasks; empty: discovered"
    )
    auto_tasks: bool = Field(
        default=True, description="exchanges no task matches get discovered tasks"
    )
    candidates: list[CandidateSpec]
    thresholds: Thresholds = Field(default_factory=Thresholds)
    gate: Gate = Field(default_factory=Gate)
    sampling: Sampling = Field(default_factory=Sampling)
    baseline: BaselineSpec | None = Field(
        default=None, description="re-run the logged OpenAI model to measure its own variation"
    )
    judge: JudgeSpec | None = Field(
        default=None, description="LLM judge for judge_pairwise / judge_rubric metrics"
    )
    strict_params: bool = Field(
        default=False,
        description="every candidate refuses soft request fields it cannot send (docs/providers.md)",
    )
    adapt: AdaptSpec | None = Field(
        default=None, description="after the run, adapt the prompts of not-ready tasks (true)"
    )
    redaction: RedactionConfig = Field(
        default_factory=RedactionConfig,
        description="PII redaction before anything is sent to a candidate (migrate_eval/plan/redact.py)",
    )
    executor: Literal["local", "ray"] = Field(
        default="local",
        description="where replay runs: this process (local) or a Ray cluster (docs/scale.md)",
    )
    base_dir: Path = Field(
        default=Path("."), exclude=True, description="folder relative paths resolve against"
    )

    @field_validator("adapt", mode="before")
    @classmethod
    def _adapt_flag(cls, v: Any) -> Any:
        if v is True:
            return {}
        if v is False:
            return None
        return v

    @field_validator("logs", mode="before")
    @classmethod
    def _logs_strings(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"path": x} if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        for kind, names in (
            ("candidate", [c.name for c in self.candidates]),
            ("task", [t.name for t in self.tasks]),
        ):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {kind} name(s): {', '.join(sorted(dup))}")
        if not self.candidates:
            raise ValueError("at least one candidate is needed")
        if not self.logs:
            raise ValueError("at least one log is needed")
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _format_validation(file: str, err: ValidationError) -> str:
    lines = [f"{file}: invalid suite"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  field '{loc}': {e['msg']}")
    return "\n".join(lines)


def parse_suite(data: Any, *, source: str, base_dir: Path) -> Suite:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a suite must be a YAML mapping, got {type(data).__name__}")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(source, e)) from None
    suite.base_dir = base_dir
    return suite


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(value: Any, *, source: str = "suite") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a parsed suite.

    This is how one suite replays recorded answers offline and live endpoints when the user sets,
    e.g., ``DEMO_LLAMA_BASE_URL``. API keys never go through here: candidates name the variable
    that holds their key (``api_key_env``) and providers read it at call time.
    """
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise ConfigError(
                f"{source}: environment variable {var} is not set (used as ${{{var}}})"
            )

        return _ENV_RE.sub(sub, value)
    if isinstance(value, list):
        return [interpolate_env(v, source=source) for v in value]
    if isinstance(value, dict):
        return {k: interpolate_env(v, source=source) for k, v in value.items()}
    return value


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. A folder means its ``suite.yaml``."""
    p = Path(path)
    if p.is_dir():
        p = p / "suite.yaml"
    if not p.exists():
        raise ConfigError(f"{p}: suite file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_suite(
        interpolate_env(data, source=str(p)), source=str(p), base_dir=p.parent.resolve()
    )


_SPEC_RE = re.compile(
    r"^(?:(?P<name>[^=:@/\s]+)=)?(?P<provider>[a-z][a-z0-9_-]*):(?P<rest>.+)$", re.S
)
#: A base URL: http(s)://host[:port][/path], nothing else.
_URL_RE = re.compile(r"^https?://[^\s/?#@]+(?::\d+)?(?:/[^\s?#]*)?$", re.I)

#: After an ``@`` in the model: a host (``localhost``, an IPv4 address, a dotted name ending in
#: a top-level domain), a port or a path. A model version (``@20240620``, ``@v2``) is none.
_HOST_LIKE = re.compile(
    r"^(?:localhost|\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})"
    r"(?:[:/].*)?$|.*(?::\d|/)",
    re.I | re.S,
)

CANDIDATE_FORMS = """accepted forms:
  PROVIDER:MODEL                   anthropic:claude-sonnet-4-5
  NAME=PROVIDER:MODEL              claude=anthropic:claude-sonnet-4-5
  [NAME=]PROVIDER:MODEL@BASE_URL   llama=openai-compatible:meta-llama/Llama-3.1-8B-Instruct@http://127.0.0.1:8000/v1
BASE_URL starts with http:// or https://; a model may end in a version (MODEL@20240620);
parameters, price and limits: --candidate-param NAME.KEY=VALUE (docs/cli.md)"""


def _spec_error(spec: str, problem: str) -> ConfigError:
    return ConfigError(f"--candidate {spec!r}: {problem}\n{CANDIDATE_FORMS}")


def parse_candidate_spec(spec: str) -> CandidateSpec:
    """Parse ``[NAME=]PROVIDER:MODEL[@BASE_URL]``, strictly.

    The model may contain ``:`` (``llama3.1:8b``) and end in a version
    (``claude-3-5-sonnet@20240620``); the base URL follows the ``@`` that starts
    ``http://`` or ``https://``. A host, port or path after an ``@`` without its scheme
    (``@127.0.0.1:8000/v1``, ``@localhost:8000``, ``@api.example.com``) is refused: it would be read as part of the model name and the traffic
    sent to the provider's public endpoint instead. Every error shows the accepted forms.
    """
    text = spec.strip()
    m = _SPEC_RE.match(text)
    if not m:
        problem = (
            "a URL is not a candidate: name the provider first"
            if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.I)
            else "expected [NAME=]PROVIDER:MODEL[@BASE_URL]"
        )
        raise _spec_error(spec, problem)
    rest = m.group("rest")
    if rest.startswith("//"):
        raise _spec_error(spec, "a URL is not a candidate: name the provider first")
    model, base_url = rest, None
    at = re.search(r"@(?=https?://)", rest, re.I)
    if at is not None:
        model, base_url = rest[: at.start()], rest[at.end() :]
        if not _URL_RE.match(base_url):
            raise _spec_error(
                spec, f"the base URL {base_url!r} is not http(s)://HOST[:PORT][/PATH]"
            )
    if not model:
        raise _spec_error(spec, "the model is empty")
    if re.search(r"\s", model):
        raise _spec_error(spec, f"the model {model!r} contains white space")
    for tail in model.split("@")[1:]:
        if _HOST_LIKE.match(tail):
            raise _spec_error(
                spec,
                f"'@{tail}' looks like a base URL without its scheme: write "
                f"@http://{tail} or @https://{tail} (else the traffic would go to the "
                "provider's public endpoint)",
            )
    if "://" in model:
        raise _spec_error(spec, f"the model {model!r} holds a URL: write MODEL@BASE_URL")
    name = (
        m.group("name")
        or re.sub(r"[^A-Za-z0-9._-]+", "-", model.split("/")[-1]).strip("-")[:64]
        or "candidate"
    )
    try:
        return CandidateSpec(
            name=name, provider=m.group("provider"), model=model, base_url=base_url
        )
    except ValidationError as e:
        raise ConfigError(
            _format_validation(f"--candidate {spec!r}", e) + "\n" + CANDIDATE_FORMS
        ) from None


#: Candidate settings ``--candidate-param`` sets directly (any other key is a request parameter).
_SPEC_SETTINGS = frozenset(CandidateSpec.model_fields) - {"name", "params", "price", "options"}


def apply_candidate_params(
    candidates: list[CandidateSpec], assignments: Sequence[str]
) -> list[CandidateSpec]:
    """The candidates with ``--candidate-param NAME.KEY=VALUE`` assignments applied.

    ``KEY`` is a candidate setting (``concurrency``, ``timeout``, ``max_retries``, ``rpm``,
    ``tpm``, ``stream``, ``api_key_env``, ``base_url``, ``model``, ``provider``,
    ``strict_params``), ``price.FIELD`` (``price.input_per_mtok``...), ``options.KEY`` (a
    provider setting: ``options.gpu=L4``), or else a request
    parameter override (``temperature``; ``params.KEY`` names one explicitly, e.g.
    ``params.stream``). ``VALUE`` is read as YAML (``0.2``, ``true``, ``null`` removes the
    parameter from every request, ``[a, b]``). ``NAME`` is the candidate's name, which may
    itself hold dots (the longest matching name wins). Errors are usage errors that name the
    assignment.
    """
    by_name = {c.name: c.model_dump() for c in candidates}
    for assignment in assignments:
        where = f"--candidate-param {assignment!r}"
        target, eq, raw = assignment.partition("=")
        if not eq:
            raise ConfigError(f"{where}: expected NAME.KEY=VALUE, e.g. claude.temperature=0")
        names = [n for n in by_name if target.startswith(n + ".")]
        if not names:
            raise ConfigError(
                f"{where}: no candidate named {target.split('.', 1)[0]!r} "
                f"(candidates: {', '.join(by_name) or 'none'})"
            )
        name = max(names, key=len)
        key = target[len(name) + 1 :]
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        data = by_name[name]
        if key.startswith("price."):
            price = dict(data.get("price") or {})
            price[key.removeprefix("price.")] = value
            data["price"] = price
        elif key.startswith("params."):
            data["params"] = {**data["params"], key.removeprefix("params."): value}
        elif key.startswith("options."):
            data["options"] = {**data["options"], key.removeprefix("options."): value}
        elif key in _SPEC_SETTINGS:
            data[key] = value
        elif key and not key.startswith(".") and key not in ("name", "price", "params"):
            data["params"] = {**data["params"], key: value}
        else:
            raise ConfigError(
                f"{where}: {key!r} cannot be set (use KEY, price.FIELD, options.KEY or params.KEY)"
            )
        try:
            CandidateSpec.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
            raise ConfigError(f"{where}: {problems}") from None
    return [CandidateSpec.model_validate(by_name[c.name]) for c in candidates]


Mode = Literal["live", "offline"]


_DEFAULTS: dict[str, tuple[str, ...]] = {
    "tool_call": ("tool_call_match",),
    "structured": ("json_valid", "json_schema_valid", "json_match"),
    "classification": ("normalized_match",),
    "free_text": ("semantic_similarity", "token_f1"),
}


def default_metrics(kind: OutputKind) -> list[str]:
    """The parity metrics chosen automatically for a task of output kind ``kind``.

    ==============  =====================================================
    kind            metrics
    ==============  =====================================================
    tool_call       ``tool_call_match``
    structured      ``json_valid``, ``json_schema_valid``, ``json_match``
    classification  ``normalized_match``
    free_text       ``semantic_similarity``, ``token_f1``
    ==============  =====================================================

    The choice never depends on which extras are installed, so the same suite gives the same
    verdict on every machine (a CI gate must not flip because someone installed an extra).
    Free text: the mean of MiniLM cosine and word-overlap F1 ranked real models closest to the
    human-validated leaderboards (AlpacaEval 2.0, MT-bench, Chatbot Arena), chrF worst
    (docs/free-text-parity.md). ``semantic_similarity`` runs without torch
    (:mod:`migrate_eval.core._minilm`) once the model's weights are installed; without them
    each exchange notes the missing model with its install command and ``token_f1`` alone makes
    the parity. Both are similarity metrics: a free-text verdict needs a noise floor or a judge
    (docs/metrics.md, "Verdicts").
    """
    try:
        return list(_DEFAULTS[kind])
    except KeyError:
        raise ConfigError(
            f"unknown output kind {kind!r}: expected one of {', '.join(_DEFAULTS)}"
        ) from None
