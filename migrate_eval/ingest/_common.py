"""Helpers every log-format reader shares: the per-line error, the line context, field checks.

A reader turns one parsed JSON record into one :class:`~migrate_eval.core.records.Exchange`, or
raises :class:`RecordError` naming the field that is wrong. Reasons start with one of the
short categories below (``"<category>: <detail>"``), which is what
:meth:`IngestResult.summary <migrate_eval.ingest.reader.IngestResult.summary>` groups by.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from migrate_eval.core.errors import LineIssue
from migrate_eval.core.json import canonical_json, stable_id
from migrate_eval.core.records import Response, Source

# Reason categories (the part of a reason before the first ": ").
INVALID_JSON = "invalid JSON"
NOT_UTF8 = "not valid UTF-8"
NOT_OBJECT = "not a JSON object"
MISSING_FIELD = "missing field"
WRONG_TYPE = "wrong type"
INVALID_VALUE = "invalid value"
NO_ASSISTANT_TURN = "no final assistant turn"
NO_USER_MESSAGE = "no user message"
UNSUPPORTED = "cannot convert to Chat Completions"
UNSUPPORTED_ENDPOINT = "unsupported endpoint"
BAD_RESPONSE = "malformed logged response"
NO_BATCH_INPUT = "no matching batch input line"
DUPLICATE_CUSTOM_ID = "duplicate custom_id"
TRUNCATED_FILE = "truncated file"
LINE_TOO_LONG = "line too long"
WRONG_FORMAT = "not this log format"

#: At most this many distinct system prompts are kept for sharing (then the cache restarts).
SHARED_TEXTS_MAX = 10_000

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class RecordError(ValueError):
    """A log record cannot be turned into an exchange.

    ``field`` is the path of the offending field inside the record (``"response.choices[0]"``),
    ``category`` one of the short reason categories of this module and ``detail`` the specifics.
    """

    def __init__(self, field: str, category: str, detail: str = "") -> None:
        self.field = field
        self.category = category
        self.detail = detail
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        return f"{self.category}: {self.detail}" if self.detail else self.category

    def issue(self, file: str, line: int) -> LineIssue:
        return LineIssue(file=file, line=line, field=self.field, reason=self.reason)


def reason_category(reason: str) -> str:
    """The short category of a reason: the text before the first ``": "`` (at most 60 chars)."""
    head, sep, _ = reason.partition(": ")
    return (head if sep else reason)[:60]


class LineContext:
    """Where the record being read comes from. One instance is reused for a whole file:
    readers must not keep a reference to it."""

    __slots__ = ("default_model", "file", "format", "joined", "line", "name", "options", "shared")

    def __init__(
        self,
        file: str,
        format: str,
        default_model: str | None = None,
        shared: dict[str, str] | None = None,
    ) -> None:
        self.file = file
        self.name = PurePath(file).name
        self.format = format
        self.line = 0
        self.default_model = default_model
        #: Repeated system prompts, shared by every exchange of a run (see :func:`share`).
        self.shared: dict[str, str] = {} if shared is None else shared
        #: Reader options given to ``read_logs`` (e.g. ``columns`` for CSV/Parquet).
        self.options: dict[str, Any] = {}
        #: Side-file records joined by key (e.g. stored completions' ``/messages``): readers
        #: ``pop`` what they use.
        self.joined: dict[str, Any] = {}

    def share(self, text: str) -> str:
        """One copy of a text that repeats across lines (a system prompt): real traffic sends
        the same long prompts millions of times, and each parsed line would hold its own copy."""
        shared = self.shared
        kept = shared.get(text)
        if kept is not None:
            return kept
        if len(shared) >= SHARED_TEXTS_MAX:
            shared.clear()
        shared[text] = text
        return text

    def source(self) -> Source:
        return Source(file=self.file, line=self.line, format=self.format)

    def default_id(self) -> str:
        """Stable id of the current line when the log carries none: file name and line."""
        return stable_id(self.name, self.line)

    @property
    def model_fallback(self) -> str:
        return self.default_model or "unknown"


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def as_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (for optional sub-objects)."""
    return value if isinstance(value, dict) else {}


def wrong_type(field: str, expected: str, value: Any) -> RecordError:
    return RecordError(field, WRONG_TYPE, f"expected {expected}, got {type_name(value)}")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """Epoch seconds (or milliseconds when > 1e11) or an ISO 8601 string; naive times are UTC."""
    kind = type(value)
    if (kind is int or kind is float) and 0 < value < 1e11:  # the common case first
        return datetime.fromtimestamp(value, tz=UTC)
    if value is None:
        return None
    if isinstance(value, bool):
        raise wrong_type(field, "epoch seconds or an ISO 8601 string", value)
    if isinstance(value, int | float):
        ts = float(value)
        if ts > 1e11:  # milliseconds
            ts /= 1000.0
        try:
            return datetime.fromtimestamp(ts, tz=UTC)
        except (OverflowError, OSError, ValueError) as e:
            raise RecordError(field, INVALID_VALUE, f"timestamp {value!r} out of range") from e
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError as e:
            raise RecordError(
                field, INVALID_VALUE, f"{value[:40]!r} is not an ISO 8601 time"
            ) from e
        return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    raise wrong_type(field, "epoch seconds or an ISO 8601 string", value)


def number_or_none(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(field, "a number", value)
    return float(value)


def gold_text(value: Any) -> str | None:
    """A gold label/answer as text: strings as they are, anything else as canonical JSON."""
    if value is None or isinstance(value, str):
        return value
    return canonical_json(value)


def record_id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise wrong_type(field, "a string", value)


def check_messages(
    messages: Any, path: str, ctx: LineContext, *, require_content: bool = False
) -> list[Any]:
    """Check a Chat Completions ``messages`` list: objects with a known ``role`` and content of
    the right type. With ``require_content``, every message needs a ``content`` key (except an
    assistant message that carries tool calls). System and developer prompts are shared
    between lines (:meth:`LineContext.share`)."""
    if messages is None:
        raise RecordError(path, MISSING_FIELD, "a 'messages' list is required")
    if not isinstance(messages, list):
        raise wrong_type(path, "an array of messages", messages)
    if not messages:
        raise RecordError(path, INVALID_VALUE, "the messages list is empty")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise wrong_type(f"{path}[{i}]", "a message object", m)
        role = m.get("role")
        if not isinstance(role, str):
            if role is None:
                raise RecordError(f"{path}[{i}].role", MISSING_FIELD, "a message needs a 'role'")
            raise wrong_type(f"{path}[{i}].role", "a string", role)
        if role not in CHAT_ROLES:
            raise RecordError(
                f"{path}[{i}].role",
                INVALID_VALUE,
                f"unknown role {role[:40]!r} (expected one of {', '.join(sorted(CHAT_ROLES))})",
            )
        content = m.get("content")
        if content is None:
            if require_content and not (
                role == "assistant" and (m.get("tool_calls") or m.get("function_call"))
            ):
                if "content" not in m:
                    raise RecordError(
                        f"{path}[{i}].content",
                        MISSING_FIELD,
                        f"the {role} message has no 'content'",
                    )
                raise wrong_type(
                    f"{path}[{i}].content", "a string or an array of content parts", None
                )
        elif type(content) is str:
            if role == "system" or role == "developer":
                m["content"] = ctx.share(content)
        elif not isinstance(content, str | list):
            raise wrong_type(
                f"{path}[{i}].content", "a string or an array of content parts", content
            )
        tool_calls = m.get("tool_calls")
        if tool_calls is not None and not isinstance(tool_calls, list):
            raise wrong_type(f"{path}[{i}].tool_calls", "an array", tool_calls)
    return messages


def check_chat_request(request: Any, path: str, ctx: LineContext) -> dict[str, Any]:
    """Check a Chat Completions request body in place; a missing ``model`` is filled in with
    the default model (or ``"unknown"``)."""
    if not isinstance(request, dict):
        raise wrong_type(path, "a request object", request)
    check_messages(request.get("messages"), join(path, "messages"), ctx)
    model = request.get("model")
    if model is None:
        request["model"] = ctx.model_fallback
    elif not isinstance(model, str):
        raise wrong_type(join(path, "model"), "a string", model)
    tools = request.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise wrong_type(join(path, "tools"), "an array", tools)
    return request


def merge_metadata(*sources: tuple[Any, str]) -> dict[str, Any]:
    """Merge metadata objects (later ones win). Each source is ``(value, field path)``; ``None``
    is skipped, anything but an object is a wrong-type error."""
    out: dict[str, Any] = {}
    for value, field in sources:
        if value is None:
            continue
        if not isinstance(value, dict):
            raise wrong_type(field, "an object", value)
        out.update(value)
    return out


def tags_value(value: Any, field: str) -> list[Any] | dict[str, Any] | None:
    """``tags`` as logged: a list of tags or an object of tag -> value (a string becomes [tag])."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | dict):
        return value
    raise wrong_type(field, "an array or an object", value)


class SideRecord(NamedTuple):
    """A side-file value waiting in ``ctx.joined`` for the record it belongs to."""

    file: str
    line: int
    value: Any


class Logged(NamedTuple):
    """What the log says a call returned: a response, or the error the call ended with."""

    response: Response | None
    error: str | None = None
    created: Any = None  # the body's ``created``/``created_at`` as logged (epoch seconds)
    other_choices: list[dict[str, Any]] | None = None


NOTHING = Logged(None)


def error_text(err: Any, status: int | None = None) -> str:
    """A one-line description of a logged error: ``HTTP 404: model_not_found: The model...``."""
    parts: list[str] = []
    if status is not None:
        parts.append(f"HTTP {status}")
    if isinstance(err, dict):
        code = err.get("code") or err.get("type")
        if code:
            parts.append(str(code))
        message = err.get("message")
        if message:
            parts.append(str(message))
    elif isinstance(err, str) and err:
        parts.append(err)
    return ": ".join(parts) or "error"


def validation_field(path: str, e: ValidationError, mapping: dict[str, str]) -> str:
    """The record field behind a pydantic error raised while building a Response."""
    errors = e.errors()
    loc = [str(p) for p in errors[0]["loc"]] if errors else []
    if e.title == "Usage":
        return join(path, ".".join(["usage", *loc]))
    if loc and loc[0] in mapping:
        return join(path, ".".join([mapping[loc[0]], *loc[1:]]))
    return join(path, ".".join(loc)) if loc else path


def validation_reason(e: ValidationError) -> str:
    errors = e.errors()
    return str(errors[0]["msg"]) if errors else str(e)


#: ``metadata`` key listing the request parameters a reader left out because the logging tool
#: or the server filled them in (name -> the logged value), so a report can show them.
DROPPED_PARAMS = "dropped_params"
#: ``metadata`` key saying why (which tool's defaults or which server echo).
DROPPED_PARAMS_WHY = "dropped_params_reason"


def _same_value(logged: Any, default: Any) -> bool:
    if isinstance(logged, bool) or isinstance(default, bool):
        return logged is default
    if isinstance(logged, int | float) and isinstance(default, int | float):
        return float(logged) == float(default)
    return bool(logged == default)


def drop_filled_params(
    request: dict[str, Any],
    metadata: dict[str, Any],
    defaults: dict[str, tuple[Any, ...]],
    why: str,
) -> dict[str, Any]:
    """Remove from ``request`` the parameters whose logged value is one the logging tool (or
    the server) fills in for calls that never set it, and record them in ``metadata``
    (:data:`DROPPED_PARAMS`, :data:`DROPPED_PARAMS_WHY`). ``defaults`` maps a parameter to the
    values that mean "not sent" for this log format. Non-finite numbers (``Infinity``, a
    ``NaN``) can never have been sent and are always dropped. Returns what was dropped."""
    dropped: dict[str, Any] = {}
    for key in list(request):
        value = request[key]
        if isinstance(value, float) and (value != value or value in (INF, -INF)):
            dropped[key] = str(value)
        elif key in defaults and any(_same_value(value, d) for d in defaults[key]):
            dropped[key] = value
        else:
            continue
        del request[key]
    if dropped:
        prior = metadata.get(DROPPED_PARAMS)
        metadata[DROPPED_PARAMS] = {**(prior if isinstance(prior, dict) else {}), **dropped}
        prior_why = metadata.get(DROPPED_PARAMS_WHY)
        if why and isinstance(prior_why, str) and prior_why and why not in prior_why:
            why = f"{prior_why}; {why}"
        metadata[DROPPED_PARAMS_WHY] = why or prior_why or ""
    return dropped


INF = float("inf")


def maybe_json(value: Any, path: str) -> Any:
    """A value a log holds as JSON text (an object or array in a string) parsed; anything
    else as it is. Text that starts like JSON but is not: an ``invalid JSON`` error."""
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            return orjson.loads(value.encode())
        except ValueError as e:
            raise RecordError(path, INVALID_JSON, f"not JSON: {e}") from e
    return value


def int_or_none(value: Any) -> int | None:
    """An integer logged as a number or as text (CSV cells); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


def float_or_none(value: Any) -> float | None:
    """A number logged as a number or as text (CSV cells); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
