"""The logged request, in the Chat Completions shape: its field names, its identity, its parts.

One place knows which request fields are sampling parameters, tool settings or bookkeeping,
how ``response_format`` is read, how message content becomes text, and what makes two requests
"the same request" (duplicates, the noise floor, the cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Protocol

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from migrate_eval.core.json import canonical_json, json_digest


class _Logged(Protocol):
    """What the identity functions read of an exchange: its request."""

    @property
    def request(self) -> ChatRequest: ...


#: Sampling parameters that change how tokens are drawn, not what is asked.
DRAW_FIELDS = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
#: Limits on the answer: its length and its stop sequences.
LIMIT_FIELDS = ("max_tokens", "max_completion_tokens", "stop")
#: Log probabilities of the answer's tokens (nothing migrate-eval scores).
LOGPROB_FIELDS = ("logprobs", "top_logprobs")
#: Request fields that carry sampling behaviour (candidate identity, overrides, vendor support).
SAMPLING_FIELDS = (*DRAW_FIELDS, *LIMIT_FIELDS, "n", *LOGPROB_FIELDS)
#: Request fields that declare tools and the tool choice (legacy ``functions`` too).
TOOL_DECLARATION_FIELDS = ("tools", "functions", "tool_choice", "function_call")
#: Request fields that declare tools and how the model may call them (legacy ``functions`` too).
TOOL_FIELDS = (*TOOL_DECLARATION_FIELDS, "parallel_tool_calls")
#: Request fields a candidate can go without and still give a comparable answer: how tokens
#: are drawn, log probabilities, biases on OpenAI token ids, the parallel-tool-call hint and
#: the reasoning effort. A vendor without one of them replays the request without it (counted
#: per candidate and task) unless the run is ``strict_params``. Everything else a vendor cannot
#: translate (tools, an output format, ``n > 1``, images, audio) is a *hard* gap: the request
#: is refused as ``unsupported``, since the candidate would be doing another job.
SOFT_FIELDS = (
    *DRAW_FIELDS,
    *LOGPROB_FIELDS,
    "logit_bias",
    "parallel_tool_calls",
    "reasoning_effort",
)
#: Request options a logging tool records beside the messages (sampling, tools, output format).
REQUEST_OPTIONS = (
    *SAMPLING_FIELDS,
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "service_tier",
)
#: Content-part types that carry text (Chat Completions and Responses API names).
TEXT_PARTS = ("text", "input_text", "output_text")

OutputKindName = Literal["text", "json_object", "json_schema", "invalid"]


def content_text(content: Any, *, sep: str = "") -> str:
    """The text of a message's content: a string, or its text parts joined with ``sep``
    (images, audio and other parts are left out); "" for anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(
            p["text"]
            for p in content
            if isinstance(p, dict)
            and isinstance(p.get("text"), str)
            and p.get("type", "text") in TEXT_PARTS
        )
    return ""


@dataclass(frozen=True)
class OutputFormat:
    """The request's ``response_format``, read once: ``text``, ``json_object``, ``json_schema``
    (``schema`` holds the schema, a dict, or a bool as JSON Schema allows), or ``invalid``
    (``problem`` says why: a shape no vendor can be asked for)."""

    kind: OutputKindName = "text"
    schema: dict[str, Any] | bool | None = None
    name: str = "response"
    strict: bool = False
    problem: str | None = None

    @property
    def wants_json(self) -> bool:
        return self.kind in ("json_object", "json_schema")


#: The plain-text output format (most requests): one shared value, it is frozen.
_TEXT = OutputFormat()
_JSON_OBJECT = OutputFormat("json_object")


def parse_output_format(value: Any) -> OutputFormat:
    """Read a ``response_format`` value (never raises: an unusable one is ``invalid``)."""
    if value is None:
        return _TEXT
    if not isinstance(value, dict):
        return OutputFormat("invalid", problem="response_format of an unknown shape")
    kind = value.get("type")
    if kind in (None, "text"):
        return _TEXT
    if kind == "json_object":
        return _JSON_OBJECT
    if kind == "json_schema":
        js = value.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        return OutputFormat(
            "json_schema",
            schema=schema if isinstance(schema, dict | bool) else None,
            name=str((js or {}).get("name") or "response") if isinstance(js, dict) else "response",
            strict=bool(js.get("strict")) if isinstance(js, dict) else False,
            problem=None
            if isinstance(schema, dict)
            else "response_format json_schema without a schema",
        )
    return OutputFormat("invalid", problem=f"response_format type {kind!r}")


class ChatRequest(dict[str, Any]):
    """A request in the Chat Completions shape: the body as logged (a dict, sent as is by
    OpenAI-compatible providers) with its parts read once, typed (and read again if the body
    is changed through item assignment, ``pop``, ``update``...).

    Pydantic fields of this type accept a plain dict and serialise back to it.
    """

    @property
    def body(self) -> dict[str, Any]:
        """The request body as a plain dict (what goes on the wire)."""
        return dict(self)

    def _forget(self) -> None:
        """Drop the parts read from the body (it changed): they are read again on next use."""
        self.__dict__.clear()

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._forget()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._forget()

    def pop(self, key: str, *default: Any) -> Any:
        self._forget()
        return super().pop(key, *default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._forget()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._forget()
        return super().setdefault(key, default)

    def __repr__(self) -> str:
        return f"ChatRequest({dict.__repr__(self)})"

    # -- typed parts, each read once
    @property
    def model(self) -> str | None:
        m = self.get("model")
        return m if isinstance(m, str) else None

    @cached_property
    def messages(self) -> list[dict[str, Any]]:
        """The messages that are objects (anything else is left out)."""
        raw = self.get("messages")
        return [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []

    @cached_property
    def system_prompt(self) -> str:
        """The system and developer messages' text, one per line."""
        return "\n".join(
            content_text(m.get("content"))
            for m in self.messages
            if m.get("role") in ("system", "developer")
        )

    def _user_texts(self) -> list[str]:
        return [
            content_text(m.get("content"), sep=" ")
            for m in self.messages
            if m.get("role") == "user"
        ]

    @cached_property
    def first_user_text(self) -> str:
        texts = self._user_texts()
        return texts[0] if texts else ""

    @cached_property
    def last_user_text(self) -> str:
        texts = self._user_texts()
        return texts[-1] if texts else ""

    @cached_property
    def tools(self) -> list[dict[str, Any]]:
        raw = self.get("tools")
        return [t for t in raw if isinstance(t, dict)] if isinstance(raw, list) else []

    @cached_property
    def tool_parameters(self) -> dict[str, Any]:
        """Tool name -> its parameters schema (``{}`` when it declares none)."""
        out: dict[str, Any] = {}
        for tool in self.tools:
            fn = tool.get("function")
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                params = fn.get("parameters")
                out[fn["name"]] = params if isinstance(params, dict | bool) else {}
        return out

    @cached_property
    def output_format(self) -> OutputFormat:
        """``response_format``, read once (:func:`parse_output_format`)."""
        return parse_output_format(self.get("response_format"))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from_dict = core_schema.no_info_after_validator_function(
            cls, core_schema.dict_schema(keys_schema=core_schema.str_schema())
        )
        return core_schema.json_or_python_schema(
            json_schema=from_dict,
            python_schema=core_schema.union_schema(
                [core_schema.is_instance_schema(cls), from_dict]
            ),
            serialization=core_schema.plain_serializer_function_ser_schema(
                dict, return_schema=core_schema.dict_schema()
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "object", "description": "a Chat Completions request body"}


#: Request fields that do not change what the model is asked (left out of the fingerprint).
BOOKKEEPING_FIELDS = frozenset({"metadata", "user", "store", "stream", "stream_options"})


def _fingerprint_body(exchange: _Logged) -> dict[str, object]:
    return {k: v for k, v in exchange.request.items() if k not in BOOKKEEPING_FIELDS}


def request_fingerprint(exchange: _Logged) -> str:
    """Canonical JSON of the request without bookkeeping fields: equal means identical request."""
    return canonical_json(_fingerprint_body(exchange))


def request_digest(exchange: _Logged) -> bytes:
    """:func:`request_fingerprint` as 16 bytes (equal for identical requests), for counting
    duplicates in logs too large to keep every fingerprint's text."""
    return json_digest(_fingerprint_body(exchange))


def request_key(ex: _Logged) -> bytes:
    """16 bytes equal for identical requests (the whole request, metadata included)."""
    return json_digest(ex.request)
