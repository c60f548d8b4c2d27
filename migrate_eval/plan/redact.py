"""PII and secret redaction, applied before anything is sent to a candidate.

Each exchange is redacted as a whole: its request (every message's text, content parts, tool
call arguments (JSON strings included), tool results, system prompts) and its logged baseline
response (text, refusal, tool call arguments), so that parity compares like with like. A value
gets one placeholder per exchange (``<EMAIL_1>`` is the same address everywhere in it; the
next distinct address is ``<EMAIL_2>``).

Entities (``redaction.entities`` in a suite; all of them by default):

===========  ==================================================================================
``email``    e-mail addresses
``phone``    phone numbers: ``+`` international numbers (8-15 digits, any spacing), and
             national numbers with separators or parentheses (10-11 digits, e.g.
             ``(415) 555-2671``, ``020 7946 0958``). Bare digit runs without ``+`` are left
             alone (they are usually order numbers), and so are dates.
``card``     payment card numbers, 13-19 digits (spaces or dashes allowed), Luhn-checked
``iban``     IBANs, mod-97 checked (spaces allowed)
``ssn``      US social security numbers (``123-45-6789`` / ``123 45 6789``, invalid areas
             000/666/9xx excluded)
``nino``     UK national insurance numbers (``QQ 12 34 56 C``, official prefix rules)
``ip``       IPv4 and IPv6 addresses (validated with :mod:`ipaddress`)
``secret``   API keys and secrets: OpenAI/Anthropic ``sk-...``, AWS ``AKIA``/``ASIA`` key ids,
             GitHub ``ghp_``/``gho_``/``ghs_``/``github_pat_`` tokens, Slack ``xox?-`` tokens,
             JWTs, PEM private key blocks, and generic ``key=...`` / ``"token": "..."``
             assignments whose value is long (>= 12 chars) and high-entropy (>= 3 bits/char)
``person``,  person names and street addresses / places: only with ``names: true`` and the
``location`` ``presidio`` extra (presidio-analyzer plus a spaCy English model, which must be
             installed separately: ``python -m spacy download en_core_web_lg``)
===========  ==================================================================================
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from migrate_eval.core.errors import ConfigError, MissingExtraError, UserError
from migrate_eval.core.records import Exchange, Response, ToolCall
from migrate_eval.core.results import RedactionSummary
from migrate_eval.core.suite import ENTITIES, NAME_ENTITIES, RedactionConfig

_LABELS = {
    "secret": "SECRET",
    "email": "EMAIL",
    "iban": "IBAN",
    "card": "CARD",
    "ssn": "SSN",
    "nino": "NINO",
    "ip": "IP",
    "phone": "PHONE",
    "person": "PERSON",
    "location": "LOCATION",
}


# -- validators -----------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN (spaces ignored)."""
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _ip_ok(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _phone_ok(s: str) -> bool:
    digits = re.sub(r"\D", "", s)
    if s.startswith("+") or s.startswith("00"):
        return 8 <= len(digits) <= 15
    if re.fullmatch(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}", s):
        return False  # a date
    has_sep = bool(re.search(r"[\s().-]", s))
    return has_sep and 10 <= len(digits) <= 11


_Rule = tuple[str, re.Pattern[str], Callable[[str], bool] | None, Callable[[str], str]]


def _same(s: str) -> str:
    return s


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _nospace_upper(s: str) -> str:
    return re.sub(r"\s", "", s).upper()


_SECRET_PATTERNS = [
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----",
    r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
    r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api\d+-)?)?[A-Za-z0-9_-]{20,}",
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
    r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\b",
    r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
]

_RULES: list[_Rule] = [
    ("secret", re.compile("|".join(_SECRET_PATTERNS)), None, _same),
    (
        "email",
        re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        None,
        str.lower,
    ),
    (
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        iban_ok,
        _nospace_upper,
    ),
    (
        "card",
        re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
        lambda s: luhn_ok(_digits(s)),
        _digits,
    ),
    (
        "ssn",
        re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])"),
        None,
        _digits,
    ),
    (
        "nino",
        re.compile(
            r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
        ),
        None,
        _nospace_upper,
    ),
    (
        "ip",
        re.compile(
            r"(?<![\w.:])(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w.:])"
        ),
        _ip_ok,
        str.lower,
    ),
    (
        "phone",
        re.compile(
            r"(?<![\w+<])(?:(?:\+|00)\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{1,12}(?:[\s.-]\d{1,12}){0,5}(?!\w)"
        ),
        _phone_ok,
        _digits,
    ),
]

_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<key>["']?[\w.-]*(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|credential|access[_-]?key|auth)[\w.-]*["']?)
    (?P<sep>\s*[:=]\s*["']?)
    (?P<value>[^\s"',;<>]{12,})
    """
)


class _Scope:
    """Placeholders of one exchange: the same value always gets the same placeholder."""

    def __init__(self) -> None:
        self.by_value: dict[tuple[str, str], str] = {}
        self.numbers: Counter[str] = Counter()
        self.occurrences: Counter[str] = Counter()

    def placeholder(self, entity: str, key: str) -> str:
        self.occurrences[entity] += 1
        found = self.by_value.get((entity, key))
        if found is None:
            self.numbers[entity] += 1
            found = f"<{_LABELS[entity]}_{self.numbers[entity]}>"
            self.by_value[(entity, key)] = found
        return found


class Redactor:
    """Redacts exchanges. ``entities`` picks the detectors; ``names`` adds presidio's."""

    def __init__(self, entities: Iterable[str] = ENTITIES, *, names: bool = False) -> None:
        wanted = list(dict.fromkeys(entities))
        unknown = [e for e in wanted if e not in ENTITIES and e not in NAME_ENTITIES]
        if unknown:
            raise ConfigError(
                f"redaction.entities: unknown entity type(s) {', '.join(unknown)}; "
                f"known: {', '.join(ENTITIES + NAME_ENTITIES)}"
            )
        self.entities = [e for e in ENTITIES if e in wanted]
        self.name_entities = [e for e in NAME_ENTITIES if e in wanted or names]
        self._rules = [r for r in _RULES if r[0] in self.entities]
        self._analyzer: Any = _presidio_analyzer() if self.name_entities else None

    @classmethod
    def from_config(cls, config: RedactionConfig) -> Redactor:
        return cls(config.entities, names=config.names)

    # -- text ---------------------------------------------------------------------------

    def redact_text(self, text: str, scope: _Scope | None = None) -> str:
        """Redact one string (a fresh placeholder scope unless one is given)."""
        sc = scope if scope is not None else _Scope()
        if "secret" in self.entities:
            text = _ASSIGNMENT.sub(lambda m: self._assignment(m, sc), text)
        for entity, pattern, valid, norm in self._rules:

            def repl(
                m: re.Match[str],
                entity: str = entity,
                valid: Callable[[str], bool] | None = valid,
                norm: Callable[[str], str] = norm,
            ) -> str:
                value = m.group(0)
                if valid is not None and not valid(value):
                    return value
                return sc.placeholder(entity, norm(value))

            text = pattern.sub(repl, text)
        if self._analyzer is not None:
            text = self._names(text, sc)
        return text

    def _assignment(self, m: re.Match[str], sc: _Scope) -> str:
        value = m.group("value")
        if value.startswith("<") or _entropy(value) < 3.0:
            return m.group(0)
        return m.group("key") + m.group("sep") + sc.placeholder("secret", value)

    def _names(self, text: str, sc: _Scope) -> str:
        kinds = {"person": ["PERSON"], "location": ["LOCATION", "ADDRESS"]}
        wanted = [k for e in self.name_entities for k in kinds[e]]
        found = self._analyzer.analyze(text=text, language="en", entities=wanted)
        for r in sorted(found, key=lambda r: r.start, reverse=True):
            entity = "person" if r.entity_type == "PERSON" else "location"
            value = text[r.start : r.end]
            if value.startswith("<") and value.endswith(">"):
                continue
            text = text[: r.start] + sc.placeholder(entity, value) + text[r.end :]
        return text

    # -- structures ---------------------------------------------------------------------

    def _json_text(self, raw: str, sc: _Scope) -> str:
        """Redact a string that may hold JSON (tool arguments): leaves of the parsed JSON."""
        try:
            parsed = json.loads(raw)
        except (json.JSONDecodeError, ValueError):
            return self.redact_text(raw, sc)
        if not isinstance(parsed, (dict, list)):
            return self.redact_text(raw, sc)
        redacted = self._walk(parsed, sc)
        if redacted == parsed:
            return raw
        return json.dumps(redacted, ensure_ascii=False)

    def _walk(self, value: Any, sc: _Scope) -> Any:
        if isinstance(value, str):
            if value[:1] in "{[" and value[-1:] in "}]":
                return self._json_text(value, sc)
            return self.redact_text(value, sc)
        if isinstance(value, list):
            return [self._walk(v, sc) for v in value]
        if isinstance(value, dict):
            return {k: self._walk(v, sc) for k, v in value.items()}
        return value

    def _message(self, message: Any, sc: _Scope) -> Any:
        if not isinstance(message, dict):
            return message
        out = dict(message)
        content = out.get("content")
        if isinstance(content, str):
            out["content"] = self._walk(content, sc)
        elif isinstance(content, list):
            parts = []
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part = {**part, "text": self._walk(part["text"], sc)}
                parts.append(part)
            out["content"] = parts
        for key in ("refusal",):
            if isinstance(out.get(key), str):
                out[key] = self.redact_text(out[key], sc)
        calls = out.get("tool_calls")
        if isinstance(calls, list):
            out["tool_calls"] = [self._tool_call_dict(tc, sc) for tc in calls]
        fc = out.get("function_call")
        if isinstance(fc, dict) and isinstance(fc.get("arguments"), str):
            out["function_call"] = {**fc, "arguments": self._json_text(fc["arguments"], sc)}
        return out

    def _tool_call_dict(self, tc: Any, sc: _Scope) -> Any:
        if not isinstance(tc, dict):
            return tc
        fn = tc.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            return {**tc, "function": {**fn, "arguments": self._json_text(fn["arguments"], sc)}}
        return tc

    def _response(self, response: Response, sc: _Scope) -> Response:
        calls = []
        for call in response.tool_calls:
            args = self._json_text(call.arguments, sc)
            calls.append(
                call if args == call.arguments else ToolCall.from_raw(call.name, args, call.id)
            )
        return response.model_copy(
            update={
                "text": self._walk(response.text, sc) if response.text is not None else None,
                "refusal": self.redact_text(response.refusal, sc)
                if response.refusal is not None
                else None,
                "tool_calls": calls,
            }
        )

    def redact_exchange(self, exchange: Exchange) -> tuple[Exchange, Counter[str], Counter[str]]:
        """The exchange with its request and logged response redacted; the distinct values
        and the occurrences replaced, by entity."""
        sc = _Scope()
        request = dict(exchange.request)
        messages = request.get("messages")
        if isinstance(messages, list):
            request["messages"] = [self._message(m, sc) for m in messages]
        for key in ("prompt", "input", "instructions"):
            if isinstance(request.get(key), (str, list)):
                request[key] = self._walk(request[key], sc)
        response = self._response(exchange.response, sc) if exchange.response is not None else None
        gold = self.redact_text(exchange.gold, sc) if exchange.gold is not None else None
        distinct = Counter(entity for entity, _ in sc.by_value)
        if not sc.occurrences:
            return exchange, distinct, sc.occurrences
        updated = exchange.model_copy(
            update={"request": request, "response": response, "gold": gold}
        )
        return updated, distinct, sc.occurrences


def _presidio_analyzer() -> Any:
    try:
        from presidio_analyzer import AnalyzerEngine
    except ImportError:
        raise MissingExtraError(
            "presidio-analyzer", "presidio", "redaction of person names and places"
        ) from None
    try:
        return AnalyzerEngine()
    except (OSError, ValueError) as e:
        raise UserError(
            "redaction of names needs a spaCy English model: "
            f"python -m spacy download en_core_web_lg ({e})"
        ) from None


def redact_exchanges(
    exchanges: Sequence[Exchange], config: RedactionConfig
) -> tuple[list[Exchange], RedactionSummary]:
    """Redact every exchange (when ``config.enabled``) and summarise what was replaced."""
    if not config.enabled:
        return list(exchanges), RedactionSummary(
            enabled=False, entities=[], exchanges=len(exchanges), exchanges_affected=0
        )
    redactor = Redactor.from_config(config)
    out: list[Exchange] = []
    distinct: Counter[str] = Counter()
    occurrences: Counter[str] = Counter()
    affected = 0
    for ex in exchanges:
        red, d, o = redactor.redact_exchange(ex)
        out.append(red)
        if o:
            affected += 1
        distinct.update(d)
        occurrences.update(o)
    return out, RedactionSummary(
        enabled=True,
        entities=redactor.entities + redactor.name_entities,
        exchanges=len(exchanges),
        exchanges_affected=affected,
        values=sum(distinct.values()),
        by_entity=dict(distinct.most_common()),
        occurrences_by_entity=dict(occurrences.most_common()),
    )


def redact_task_descriptions(tasks: Sequence[Any], config: RedactionConfig) -> list[Any]:
    """Task descriptions (drawn from logged prompts) with the same detectors applied, so that
    nothing redacted from the exchanges reappears in ``results.json`` or the report."""
    if not config.enabled:
        return list(tasks)
    redactor = Redactor.from_config(config)
    return [
        t.model_copy(update={"description": redactor.redact_text(t.description)}) for t in tasks
    ]
