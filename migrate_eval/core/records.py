"""The canonical records every pipeline stage passes on.

An :class:`Exchange` is one logged call, whatever tool logged it: the request normalised to
the Chat Completions request body (``model``, ``messages``, ``tools``, ``tool_choice``,
``response_format``, sampling parameters...) and the logged response normalised to a
:class:`Response`. The OpenAI API spec is the reference for every field name.

A :class:`Response` is also what a candidate's replay produces, so that scoring compares
like with like.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from migrate_eval.core.request import ChatRequest, content_text

OutputKind = Literal["tool_call", "structured", "classification", "free_text"]


class StrictModel(BaseModel):
    """The base of every record and setting read at a boundary: unknown fields are an error
    (a typo in a suite or a results file is reported, not ignored)."""

    model_config = ConfigDict(extra="forbid")


#: Per record class, the one set of field names every record of the class holds as its
#: ``model_fields_set`` (see :class:`Record`).
_ALL_FIELDS: dict[type[BaseModel], set[str]] = {}


def _all_fields(cls: type[BaseModel]) -> set[str]:
    names = _ALL_FIELDS.get(cls)
    if names is None:
        names = _ALL_FIELDS[cls] = set(cls.model_fields)
    return names


class Record(StrictModel):
    """A record held once per exchange, or per exchange and candidate (a run holds as many as
    it replays): validated like any model, but with no set of its own of the fields given
    explicitly. Every record of a class shares one set that names all its fields (a set of its
    own costs 216 to 728 bytes a record, often more than the values). So ``model_fields_set``
    names every field and ``exclude_unset`` dumps everything: neither is used for records.
    Assigning a field adds its name to the shared set, where it already is."""

    def model_post_init(self, context: Any, /) -> None:
        object.__setattr__(self, "__pydantic_fields_set__", _all_fields(type(self)))

    def __reduce__(self) -> Any:
        # pickled as its class and its values (a large run keeps its records on disk in
        # pickles: a quarter faster to read back than pydantic's own state, and smaller); built
        # again as :func:`trusted` builds a record
        values = self.__dict__
        if tuple(values) != _names(type(self)):  # pragma: no cover - never so
            return _rebuild, (type(self), dict(values))
        return _rebuild, (type(self), tuple(values.values()))


R = TypeVar("R", bound=BaseModel)


#: Per record class, its fields in declaration order (read once: ``model_fields`` is slow).
_FIELDS: dict[type[BaseModel], tuple[tuple[str, Any], ...]] = {}
_NAMES: dict[type[BaseModel], tuple[str, ...]] = {}
_set = object.__setattr__


def trusted(cls: type[R], **values: Any) -> R:
    """A record of ``cls`` built from ``values`` that were validated before, without
    validating them again (nested records already built; a field left out takes its default):
    what the run's own Arrow files hold (:func:`migrate_eval.ingest.dataset.exchange_from_row`).
    Nothing is checked: untrusted data goes through ``cls(...)`` or ``model_validate``."""
    return _built(
        cls,
        {  # in declaration order, as validation makes it (dumps follow it)
            name: values[name] if name in values else make() for name, make in _defaults(cls)
        },
    )


#: Default values that need no copy: a field whose default is one of these takes it as it is
#: (pydantic's ``get_default`` would copy it first).
_CONSTANT_DEFAULTS = (type(None), bool, int, float, str)
#: Per record class: each field's name and what makes its default when it is not given.
_DEFAULTS: dict[type[BaseModel], tuple[tuple[str, Callable[[], Any]], ...]] = {}


def _defaults(cls: type[BaseModel]) -> tuple[tuple[str, Callable[[], Any]], ...]:
    plan = _DEFAULTS.get(cls)
    if plan is None:
        plan = _DEFAULTS[cls] = tuple((name, _default_maker(f)) for name, f in _fields(cls))
    return plan


def _default_maker(f: Any) -> Callable[[], Any]:
    """What makes a field's default, found once: ``FieldInfo.get_default`` inspects the
    factory's signature at every call (~0.1 ms), which a record built a million times cannot
    afford."""
    if f.default_factory is None and type(f.default) in _CONSTANT_DEFAULTS:
        constant = f.default
        return lambda: constant
    if f.default_factory is not None and not f.default_factory_takes_validated_data:
        factory: Callable[[], Any] = f.default_factory
        return factory
    return functools.partial(f.get_default, call_default_factory=True)


def _fields(cls: type[BaseModel]) -> tuple[tuple[str, Any], ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = tuple(cls.model_fields.items())
    return fields


def _names(cls: type[BaseModel]) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(name for name, _ in _fields(cls))
    return names


def _built(cls: type[R], fields: dict[str, Any]) -> R:
    """A record of ``cls`` holding ``fields`` (its ``__dict__``), as validation leaves one."""
    m = cls.__new__(cls)
    _set(m, "__dict__", fields)
    _set(m, "__pydantic_fields_set__", _all_fields(cls))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


def _rebuild(cls: type[R], values: tuple[Any, ...] | dict[str, Any]) -> R:
    """A record of ``cls`` from its values in field order, or by name
    (:meth:`Record.__reduce__`)."""
    if isinstance(values, dict):
        return _built(cls, values)
    return _built(cls, dict(zip(_names(cls), values, strict=True)))


def intern(value: Any) -> Any:
    """``value`` interned when it is a string (model names, roles, finish reasons, file
    names and system prompts repeat across exchanges: one copy is held), else as it is."""
    return sys.intern(value) if type(value) is str else value


class Source(Record):
    """Where an exchange came from."""

    file: str
    line: int = Field(description="1-based line (or record) number in the file")
    format: str = Field(description="log format that read it, e.g. 'chat-jsonl'")


class ToolCall(Record):
    """One function call the model asked for."""

    id: str | None = None
    name: str
    arguments: str = Field(description="arguments exactly as the model produced them")
    parsed_arguments: Any = Field(
        default=None, description="arguments parsed as JSON, or None when they are not valid JSON"
    )
    arguments_valid_json: bool = True

    @classmethod
    def from_raw(cls, name: str, arguments: Any, id: str | None = None) -> ToolCall:
        """Build a tool call from a raw arguments string (or an already-parsed object)."""
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments) if arguments.strip() else {}
                ok = True
            except json.JSONDecodeError:
                parsed, ok = None, False
            return cls(
                id=id,
                name=name,
                arguments=arguments,
                parsed_arguments=parsed,
                arguments_valid_json=ok,
            )
        if arguments is None:
            arguments = {}
        return cls(
            id=id,
            name=name,
            arguments=json.dumps(arguments, ensure_ascii=False),
            parsed_arguments=arguments,
            arguments_valid_json=True,
        )


class Usage(Record):
    """Token usage, including the details OpenAI reports."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class Response(Record):
    """A chat completion's first choice, normalised. Used for logged and replayed answers."""

    text: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    refusal: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = Field(default=None, description="time to first token, if streamed")

    @property
    def is_tool_call(self) -> bool:
        return bool(self.tool_calls)

    @classmethod
    def from_chat_completion(
        cls, body: dict[str, Any], latency_ms: float | None = None
    ) -> Response:
        """Normalise a Chat Completions response body (``object: chat.completion``)."""
        choices = body.get("choices") or []
        if not isinstance(choices, list) or not choices:
            raise ValueError("response has no choices")
        choice = choices[0]
        if not isinstance(choice, dict):
            raise ValueError("choices[0] is not an object")
        message = choice.get("message") or {}
        if not isinstance(message, dict):
            raise ValueError("choices[0].message is not an object")
        return cls(
            text=_content_text(message.get("content")),
            tool_calls=_tool_calls(message.get("tool_calls"), message.get("function_call")),
            refusal=message.get("refusal"),
            finish_reason=intern(choice.get("finish_reason")),
            usage=usage_from_dict(body.get("usage")),
            model=intern(body.get("model")),
            latency_ms=latency_ms,
        )


def _content_text(content: Any) -> str | None:
    """An answer's content as text: None stays None; a type no answer has is an error."""
    if content is None:
        return None
    if not isinstance(content, str | list):
        raise ValueError(f"message content has unexpected type {type(content).__name__}")
    return content_text(content)


def _tool_calls(raw: Any, legacy_function_call: Any = None) -> list[ToolCall]:
    calls: list[ToolCall] = []
    if raw:
        if not isinstance(raw, list):
            raise ValueError("tool_calls is not a list")
        for i, tc in enumerate(raw):
            fn = tc.get("function") if isinstance(tc, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise ValueError(f"tool_calls[{i}].function.name missing")
            calls.append(ToolCall.from_raw(fn["name"], fn.get("arguments", ""), tc.get("id")))
    elif isinstance(legacy_function_call, dict) and legacy_function_call.get("name"):
        calls.append(
            ToolCall.from_raw(
                legacy_function_call["name"], legacy_function_call.get("arguments", "")
            )
        )
    return calls


def usage_from_dict(u: Any) -> Usage | None:
    """Normalise a usage object (Chat Completions or Responses API naming)."""
    if not isinstance(u, dict):
        return None
    prompt = u.get("prompt_tokens", u.get("input_tokens"))
    completion = u.get("completion_tokens", u.get("output_tokens"))
    pd = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
    cd = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=u.get("total_tokens"),
        cached_tokens=pd.get("cached_tokens") if isinstance(pd, dict) else None,
        reasoning_tokens=cd.get("reasoning_tokens") if isinstance(cd, dict) else None,
    )


class Exchange(Record):
    """One logged call: request (Chat Completions shape), logged response, metadata."""

    id: str
    source: Source
    timestamp: datetime | None = None
    request: ChatRequest = Field(description="the request, Chat Completions shape, as logged")
    response: Response | None = None
    error: str | None = Field(
        default=None, description="the logged call failed (e.g. a Batch error line)"
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="tags, feature name, feedback"
    )
    gold: str | None = Field(
        default=None, description="gold label or answer, where the log has one"
    )

    @property
    def model(self) -> str | None:
        return self.request.model

    @property
    def system_prompt(self) -> str:
        return self.request.system_prompt


class LoggedToolCall(Protocol):
    """What the traffic pass reads of a logged tool call (:class:`ToolCall` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def arguments(self) -> str: ...


class LoggedUsage(Protocol):
    """What the traffic pass and cost estimates read of token usage (:class:`Usage` has it)."""

    @property
    def prompt_tokens(self) -> int | None: ...
    @property
    def completion_tokens(self) -> int | None: ...
    @property
    def cached_tokens(self) -> int | None: ...


class LoggedResponse(Protocol):
    """What the traffic pass reads of a logged answer (:class:`Response` has it)."""

    @property
    def text(self) -> str | None: ...
    @property
    def tool_calls(self) -> Sequence[LoggedToolCall]: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def usage(self) -> LoggedUsage | None: ...
    @property
    def model(self) -> str | None: ...


class LoggedExchange(Protocol):
    """What the traffic pass (profile, task discovery, request keys, logged cost) reads of an
    exchange: an :class:`Exchange` has it, and so has the lighter record the pass decodes from
    the run's Arrow copy of the logs (:func:`migrate_eval.ingest.dataset.iter_file_records`),
    which builds no pydantic model."""

    @property
    def id(self) -> str: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def request(self) -> ChatRequest: ...
    @property
    def response(self) -> LoggedResponse | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def model(self) -> str | None: ...
    @property
    def system_prompt(self) -> str: ...


class ReplayResult(Record):
    """What one candidate answered (or failed to answer) for one exchange."""

    exchange_id: str
    candidate: str
    response: Response | None = None
    error: str | None = None
    error_kind: str | None = Field(
        default=None,
        description="http_429, http_500, timeout, connection, malformed, offline_miss, no_request, unsupported...",
    )
    status: int | None = None
    attempts: int = 0
    cached: bool = False
    latency_ms: float | None = None
    dropped: list[str] | None = Field(
        default=None,
        description="soft request fields (sampling, seed, penalties...) the candidate's API has "
        "no equivalent for, removed before sending (absent: none)",
    )
    system_fingerprint: str | None = Field(
        default=None,
        description="the vendor's backend configuration id of a live answer, when it sends one "
        "(OpenAI's system_fingerprint; absent for cached answers)",
    )
    version_headers: dict[str, str] | None = Field(
        default=None,
        description="the response headers by which the vendor names the model or version that "
        "served a live answer (an allow-list per provider: OpenAI's openai-model and "
        "openai-version; Azure's also x-ms-deployment-name and azureml-model-session); absent "
        "for cached answers and for vendors that send none",
    )

    @property
    def ok(self) -> bool:
        return self.response is not None and self.error is None
