"""PII and secret redaction, applied before anything is sent to a candidate.

Each exchange is redacted as a whole: its request (every message's text, content parts, tool
call arguments (JSON strings included), tool results, system prompts) and its logged baseline
response (text, refusal, tool call arguments), so that parity compares like with like. A value
gets one placeholder per exchange (``<EMAIL_1>`` is the same address everywhere in it; the
next distinct address is ``<EMAIL_2>``).

Entities (``redaction.entities`` in a suite; all of them by default):

===========  ==================================================================================
``email``    e-mail addresses
``phone``    phone numbers: ``+`` international numbers (8-15 digits, any spacing), national
             numbers with separators or parentheses (10-11 digits, e.g. ``(415) 555-2671``,
             ``020 7946 0958``), and bare digit runs that have a phone's shape (10 digits of
             the North American plan, ``[2-9]XX[2-9]XXXXXX``, optionally after a ``1``; 11
             digits starting ``0``, as UK and most European national numbers), unless a word
             just before says it is an order, tracking, invoice, ticket or reference number.
             Dates are left alone.
``card``     payment card numbers, 13-19 digits (spaces or dashes allowed), Luhn-checked
``iban``     IBANs in any letter case, mod-97 checked (spaces allowed)
``ssn``      US social security numbers (``123-45-6789`` / ``123 45 6789``, invalid areas
             000/666/9xx excluded)
``nino``     UK national insurance numbers (``QQ 12 34 56 C``, official prefix rules)
``passport`` passport numbers: a 6-9 character letter/digit token with at least one digit,
             within a few words after "passport" (or in a ``passport...`` JSON field). That
             covers the US and UK (9 digits), Germany (``C01X00T47``), France (``12AB34567``),
             India (``A1234567``), Canada and Australia (2 letters / 1 letter + 7 digits)
``dob``      dates of birth: a date (``1985-03-12``, ``12/03/1985``, ``12.03.1985``,
             ``12 March 1985``, ``March 12, 1985``) after "born", "date of birth", "DOB",
             "birthday" or "birthdate" (or in a ``dob``/``birth...`` JSON field). A date
             without such a word is not a birth date and is left alone
``ip``       IPv4 and IPv6 addresses (validated with :mod:`ipaddress`), a full stop after
             them included
``address``  postal addresses, as far as a pattern can: English-style street lines
             (``221B Baker Street``, ``1600 Pennsylvania Ave NW``, ``Flat 2, 10 High St``:
             a house number, up to four capitalised words and a street word such as Street,
             Road, Avenue, Lane, Drive, Way, Court, Close, Boulevard...), German/Dutch/
             Scandinavian-style ``Hauptstraße 5`` / ``Keizersgracht 123`` (a word ending in
             straße, strasse, str., weg, gasse, platz, allee, gracht, gade, vej, gatan, vägen
             + number), UK postcodes (``SW1A 1AA``) and US state + ZIP (``CA 94103``).
             Addresses written otherwise (French ``12 rue de la Paix`` is covered; Japanese,
             Chinese or free-form ones are not) pass through
``person``   person names, by heuristics (no model): a capitalised name after a title
             (Mr, Mrs, Ms, Dr, Prof...), a greeting or sign-off (Hi, Dear, Thanks, Regards...),
             "my name is" / "I am"; a first name from a built-in list of about 270 common
             English and European first names followed by a capitalised surname; and the
             value of name fields in JSON (``full_name``, ``customer_name``, ``first_name``...).
             Its recall is modest: a lone first name in running text, names outside the list
             and lower-case names pass through. ``names: true`` with the ``presidio`` extra
             adds a statistical model (see below)
``person``,  with ``names: true`` and the ``presidio`` extra (presidio-analyzer plus a spaCy
``location`` English model, which must be installed separately:
             ``python -m spacy download en_core_web_lg``): presidio's person names and places
             as well
===========  ==================================================================================
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from typing import Any

from migrate_eval.core.errors import ConfigError, MissingExtraError, UserError
from migrate_eval.core.records import Exchange, LoggedExchange, Response, ToolCall
from migrate_eval.core.results import PiiCounts, RedactionSummary
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
    "passport": "PASSPORT",
    "dob": "DOB",
    "address": "ADDRESS",
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


_BARE_PHONE = re.compile(r"1?[2-9]\d\d[2-9]\d{6}|0[1-9]\d{9}")
_NOT_PHONE_BEFORE = re.compile(
    r"(?i)(?:\b(?:order|tracking|invoice|ticket|case|ref(?:erence)?|sku|part|serial|account|"
    r"acct|id|no\.?)|#)\s*(?:number|no\.?|#|:)?\s*[:#]?\s*$"
)


def _phone_ok(s: str, before: str = "") -> bool:
    """Whether ``s`` is a phone number (``before``: the text just before it)."""
    digits = re.sub(r"\D", "", s)
    if s.startswith("+") or s.startswith("00"):
        return 8 <= len(digits) <= 15
    if re.fullmatch(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}", s):
        return False  # a date
    if _NOT_PHONE_BEFORE.search(before):
        return False
    has_sep = bool(re.search(r"[\s().-]", s))
    if has_sep:
        return 10 <= len(digits) <= 11
    return _BARE_PHONE.fullmatch(digits) is not None


#: (entity, pattern, validator of (value, the 40 characters before it), normaliser). A
#: pattern with a group named ``v`` redacts only that group (the context around it stays).
_Rule = tuple[str, re.Pattern[str], Callable[[str, str], bool] | None, Callable[[str], str]]


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

_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE = (
    r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
    r"|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTHS + r",?\s+\d{4}"
    r"|" + _MONTHS + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})"
)
_STREET_WORDS = (
    r"(?:Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|"
    r"Way|Terrace|Close|Crescent|Square|Sq|Highway|Hwy|Parkway|Pkwy|Circle|Cir|Row|Mews|"
    r"Gardens|Grove|Hill|Walk|Parade|Esplanade|Quay|Wharf)\.?"
)
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
)
_ADDRESS = (
    # English-style street line: number, capitalised words, street word, optional direction
    r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][a-z'.-]+\s+){1,4}"
    + _STREET_WORDS
    + r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    # French-style: 12 rue de la Paix, 5 avenue Foch
    + r"|\b\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|place|chemin|allée|quai|impasse)"
    r"\s+(?:(?:de|du|des|la|le|l')\s*)*[A-ZÉ][\w'-]+"
    # German/Dutch/Nordic-style: Hauptstraße 5, Musterweg 12a, Keizersgracht 123
     + r"|\b[A-ZÄÖÜÅ][\wäöüßåø-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|gracht|gade|vej|"
    r"gatan|vägen|laan|straat)\s+\d{1,4}[a-z]?\b"
    # UK postcode, US state + ZIP
    + r"|\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR)\s?\d[ABD-HJLNP-UW-Z]{2}\b"
    + r"|\b(?:"
    + _US_STATES
    + r")\s+\d{5}(?:-\d{4})?\b"
)

#: Substrings one of which a text must hold for a rule to be tried (cheap pre-checks: most
#: text holds none of them); for ``email`` in the text as is, for the others lower-cased.
_HINTS: dict[str, tuple[str, ...]] = {
    "secret": ("-----begin", "eyj", "sk-", "akia", "asia", "agpa", "aida", "aroa", "ghp_",
               "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox"),
    "email": ("@",),
    "dob": ("born", "birth", "dob", "d.o.b"),
    "passport": ("passport",),
}  # fmt: skip
_ASSIGNMENT_HINTS = ("key", "secret", "token", "passw", "pwd", "credential", "auth")
#: Fewest decimal digits a match of the rule holds (read off its pattern): a text
#: with fewer is not searched. ``ip``: an IPv4 address has 4; an IPv6 one needs two colons.
_MIN_DIGITS = {"iban": 2, "card": 13, "ssn": 9, "nino": 6, "ip": 4, "address": 1, "phone": 1}


def _digit_count(text: str) -> int | None:
    """How many decimal digits ``text`` holds, where that is cheap to know (in ASCII text the
    patterns' digits are 0-9); None otherwise."""
    if not text.isascii():
        return None
    return sum(map(text.count, "0123456789"))


def _may_match(entity: str, text: str, digits: int | None) -> bool:
    """False when a rule's pattern cannot match ``text`` (too few digits for it)."""
    need = _MIN_DIGITS.get(entity)
    if need is None or digits is None or digits >= need:
        return True
    return entity == "ip" and text.count(":") >= 2


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
        re.compile(r"(?i)\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        lambda s, _: iban_ok(s),
        _nospace_upper,
    ),
    (
        "card",
        re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
        lambda s, _: luhn_ok(_digits(s)),
        _digits,
    ),
    (
        "dob",
        re.compile(
            r"(?i)\b(?:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date|birthday)"
            r"\W{0,4}(?:is\s+|was\s+|on\s+|:\s*)?(?P<v>" + _DATE + r")"
        ),
        None,
        _same,
    ),
    (
        "passport",
        re.compile(
            r"(?i)\bpassport(?:\s*(?:number|no\.?|num|#|id))?\W{0,4}(?:is\s+|:\s*)?"
            r"(?P<v>(?=[A-Z]{0,3}\d)[A-Z0-9]{6,9})\b"
        ),
        None,
        str.upper,
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
            r"(?<![\w.:])(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w:]|\.\w)"
        ),
        lambda s, _: _ip_ok(s),
        str.lower,
    ),
    ("address", re.compile(_ADDRESS), None, _same),
    (
        "phone",
        re.compile(
            r"(?<![\w+<])(?:(?:\+|00)\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{1,12}(?:[\s.-]\d{1,12}){0,5}(?!\w)"
        ),
        _phone_ok,
        _digits,
    ),
]
# -- person names, without a model --------------------------------------------------------

#: Common first names (English-speaking and European), for "First Last" in running text.
_FIRST_NAMES = frozenset(
    """
    Aaron Adam Adrian Ahmed Aisha Alan Albert Alejandro Alex Alexander Alexandra Alice Alicia
    Ali Allison Amanda Amelia Amy Ana Andrea Andreas Andrew Angela Anita Ann Anna Anne Anthony
    Antonio Arjun Arthur Ashley Barbara Ben Benjamin Bernard Beth Betty  Bob Brandon Brian
    Bruce Bruno Carl Carla Carlos Carmen Carol Caroline Catherine Charles Charlie Charlotte
    Chen Chloe Chris Christian Christina Christine Christopher Claire Clara Daniel Daniela
    David Deborah Dennis Diana Diego Dimitri Donald Donna Dorothy Douglas Edward Elena Eli
    Elizabeth Ella Ellen Emily Emma Eric Erik Eva Evelyn Fatima Felix Fernando Fiona Florian
    Frances Francesca Francis Francisco Frank Franz Gabriel Gabriela Gary George Gerald
    Giovanni Giulia  Greg Gregory Hannah Hans Harold Harry Heather Helen Henry Hugo Ian
    Ingrid Isabel Isabella Ivan Jack Jacob Jake James  Jane Janet Jason Javier Jean Jeffrey
    Jennifer Jens Jeremy Jerry Jessica Jim Joan Joe John Jonathan Jorge Jose Joseph Joshua
    Juan Judith Julia Julian Julie Justin Karen Karl Katherine Kathleen Kelly Kenneth Kevin
    Kim Klaus Kyle Lars Laura Lauren Laurent Leo Liam Linda Lisa Lucas Lucia Luis Luke Lukas
    Madison Magnus Marco Margaret Maria Marie Mario Martha Martin Mary Matteo Matthew
    Maya Megan Mehmet Melissa Mia Michael Michelle Miguel Mohammed Muhammad Nancy Natalie
    Nathan Nicholas Nicole Nikolai Noah Nora Olga Olivia Omar Oscar Pablo Pamela Patricia
    Patrick Paul Paula Pedro Peter Philip Pierre Priya Rachel Rahul Raj Ralph Randy Raymond
    Rebecca Richard Rita Robert Roberto Roger Ronald Rosa Ruth Ryan Samantha Samuel Sandra
    Sara Sarah Scott Sean Sebastian Sergei Sharon Shirley Simon Sofia Sophia Sophie Stefan
    Stephanie Stephen Steve Steven Susan Sven Tanya Teresa Thomas Tim Timothy Tom Tyler
    Valentina Victoria Vincent Virginia Walter Wei William Yuki Yusuf Zoe
    """.split()  # noqa: SIM905 - a word list reads better as text
)
#: Capitalised words that follow a greeting without being a name.
_NOT_NAMES = frozenset(
    """
    All Everyone Everybody Team Folks There World Again Sir Madam Support Guys Friends
    Customer Customers Colleagues Partner Partners Both You The This That And Assistant
    Bot Agent Admin Good Morning Afternoon Evening Hello Hi Thanks Thank Please
    Mr Mrs Ms Mx Miss Dr Prof Dame Mme Mlle Herr Frau
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_NAME_WORD = r"[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?"
_TITLE = r"(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Madam|Mme|Mlle|Herr|Frau|Señor|Señora)\.?"
_CUE = (
    # greetings: "Hi Maya", "Dear Anna Kowalski,"; sign-offs need their comma: "Best, Tom"
    r"\b(?:(?:Dear|Hi|Hello|Hey|Thanks|Thank\s+you)[,!]?[ \t]+"
    r"|(?:Regards|Best|Cheers|Sincerely|Yours(?:\s+truly)?|Love|(?:Best|Kind|Warm)\s+regards)"
    r",\s+"
    r"|(?i:my\s+name\s+is|name\s+is|I\s+am|I'm|this\s+is|signed|named|called)\s+)"
)
_PERSON_AFTER_TITLE = re.compile(
    r"\b" + _TITLE + r"\s+(?P<v>" + _NAME_WORD + r"(?:\s+" + _NAME_WORD + r"){0,2})"
)
_PERSON_AFTER_CUE = re.compile(_CUE + r"(?P<v>" + _NAME_WORD + r"(?:\s+" + _NAME_WORD + r"){0,2})")
_PERSON_LISTED = re.compile(
    r"\b(?P<v>(?P<first>" + _NAME_WORD + r")(?:\s+[A-Z]\.)?\s+" + _NAME_WORD + r")\b"
)
#: JSON fields whose string value is a person's name.
_NAME_FIELD = re.compile(
    r"(?i)^(?:full_?name|first_?name|last_?name|given_?name|family_?name|surname|"
    r"(?:customer|client|patient|contact|passenger|employee|recipient|sender|holder|"
    r"cardholder|account_?holder|guest|applicant|person)_?name|fullName)$"
)
_DOB_FIELD = re.compile(r"(?i)^(?:dob|d_o_b|date_?of_?birth|birth_?date|birthday|born)$")
_PASSPORT_FIELD = re.compile(r"(?i)^passport(?:_?(?:number|no|num|id))?$")


_UPPER = re.compile(r"[A-Z]")


def _person_names(text: str, sc: _Scope) -> str:
    """Person names found by :data:`_PERSON_AFTER_TITLE`, :data:`_PERSON_AFTER_CUE` and the
    first-name list (the title or greeting stays, the name becomes ``<PERSON_n>``)."""
    if _UPPER.search(text) is None:
        return text

    def cued(m: re.Match[str]) -> str:
        words = m.group("v").split()
        cues_i = m.group(0)[: m.start("v") - m.start()].strip(" ,!").lower()
        if words[0] in _NOT_NAMES:
            return m.group(0)
        # "I am Happy", "this is Northwind": only a listed first name after these
        if (
            cues_i.split()[0] in ("i", "i'm", "this", "called", "named")
            and words[0] not in _FIRST_NAMES
        ):
            return m.group(0)
        while len(words) > 1 and words[-1] in _NOT_NAMES:
            words.pop()
        name = " ".join(words)
        cut = m.start("v") - m.start()
        rest = m.group("v")[len(name) :]
        return m.group(0)[:cut] + sc.placeholder("person", name) + rest

    def titled(m: re.Match[str]) -> str:
        cut = m.start("v") - m.start()
        return m.group(0)[:cut] + sc.placeholder("person", m.group("v"))

    def listed(m: re.Match[str]) -> str:
        if m.group("first") not in _FIRST_NAMES:
            return m.group(0)
        return sc.placeholder("person", m.group("v"))

    text = _PERSON_AFTER_TITLE.sub(titled, text)
    text = _PERSON_AFTER_CUE.sub(cued, text)
    return _PERSON_LISTED.sub(listed, text)


_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?<![\w.-])(?P<key>["']?[\w.-]*(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|credential|access[_-]?key|auth)[\w.-]*["']?)
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
                f"known: {', '.join(dict.fromkeys(ENTITIES + NAME_ENTITIES))}"
            )
        self.entities = [e for e in ENTITIES if e in wanted]
        # presidio: with names: true (person and places), or when places are asked for
        self.name_entities = [
            e for e in NAME_ENTITIES if names or (e == "location" and e in wanted)
        ]
        self._rules = [r for r in _RULES if r[0] in self.entities]
        self._analyzer: Any = _presidio_analyzer() if self.name_entities else None

    @classmethod
    def from_config(cls, config: RedactionConfig) -> Redactor:
        return cls(config.entities, names=config.names)

    # -- text ---------------------------------------------------------------------------

    def redact_text(self, text: str, scope: _Scope | None = None) -> str:
        """Redact one string (a fresh placeholder scope unless one is given)."""
        sc = scope if scope is not None else _Scope()
        low = text.lower()
        if "secret" in self.entities and any(h in low for h in _ASSIGNMENT_HINTS):
            text = _ASSIGNMENT.sub(lambda m: self._assignment(m, sc), text)
        digits = _digit_count(text)  # counted again whenever a rule changes the text
        for entity, pattern, valid, norm in self._rules:
            hints = _HINTS.get(entity)
            if hints is not None and not any(h in low for h in hints):
                continue
            if not _may_match(entity, text, digits):
                continue

            def repl(
                m: re.Match[str],
                entity: str = entity,
                valid: Callable[[str, str], bool] | None = valid,
                norm: Callable[[str], str] = norm,
            ) -> str:
                whole = m.group(0)
                group = "v" if "v" in m.re.groupindex else 0
                value = m.group(group)
                if valid is not None and not valid(
                    value, m.string[max(0, m.start() - 40) : m.start()]
                ):
                    return whole
                start, end = m.span(group)
                base = m.start()
                return (
                    whole[: start - base]
                    + sc.placeholder(entity, norm(value))
                    + whole[end - base :]
                )

            changed = pattern.sub(repl, text)
            if changed is not text:
                text = changed
                digits = _digit_count(text)
        if "person" in self.entities:
            text = _person_names(text, sc)
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
            return {k: self._field(k, v, sc) for k, v in value.items()}
        return value

    def _field(self, key: Any, value: Any, sc: _Scope) -> Any:
        """A JSON field: a name, birth date or passport field is redacted whole."""
        if isinstance(value, str) and isinstance(key, str) and value and not value.startswith("<"):
            for entity, field in (
                ("person", _NAME_FIELD),
                ("dob", _DOB_FIELD),
                ("passport", _PASSPORT_FIELD),
            ):
                if entity in self.entities and field.match(key) and len(value) <= 100:
                    return sc.placeholder(entity, value.strip())
        return self._walk(value, sc)

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


#: Characters of one exchange's text the profile's PII count examines, at most.
PII_TEXT_CHARS = 100_000
#: Texts the profile's PII count found nothing in, remembered by digest (the most recently
#: seen, up to this many): logs repeat their system prompts, and a text is not scanned again.
PII_CLEAN_TEXTS = 4096


class PiiCounter:
    """Counts personal data and secrets in logged exchanges, per kind, without keeping any
    value (the profile's ``pii``). Only text is examined (messages, system prompts, tool
    arguments and results, logged answers), with the regex and heuristic detectors of
    :class:`Redactor` (never presidio). To keep profiling cheap on big logs, every exchange is
    examined up to ``full`` of them, then one in ``stride``; and of an exchange, the first
    :data:`PII_TEXT_CHARS` characters of its text (a 50 MB prompt is not scanned whole)."""

    def __init__(self, full: int = 1_000, stride: int = 100, *, defer_chars: int = 0) -> None:
        self._redactor = Redactor()
        self.full = full
        self.stride = stride
        self.seen = 0
        self.examined = 0
        self.with_pii = 0
        self.by_kind: Counter[str] = Counter()
        # digests of texts with nothing found, oldest first: finding nothing in a text calls
        # no placeholder, so it leaves the exchange's scope as it was and may be skipped
        self._clean: dict[bytes, None] = {}
        #: Characters of text kept to examine later (:meth:`examine_pending`, or
        #: :meth:`counts`) instead of as each exchange is added: a run examines them while its
        #: replay waits on the vendors. Past it, exchanges are examined as they come.
        self.defer_chars = defer_chars
        self._pending: list[list[str]] = []
        self._pending_chars = 0

    def add(self, exchange: LoggedExchange) -> None:
        self.seen += 1
        if self.seen > self.full and self.seen % self.stride:
            return
        self.examined += 1
        texts: list[str] = []
        left = PII_TEXT_CHARS
        for text in _texts(exchange):
            if len(text) > left:
                text = text[:left]
            texts.append(text)
            left -= len(text)
            if left <= 0:
                break
        size = PII_TEXT_CHARS - left
        if self._pending_chars + size <= self.defer_chars:
            self._pending.append(texts)
            self._pending_chars += size
        else:
            self._examine(texts)

    def _examine(self, texts: list[str]) -> None:
        """Count what one exchange's texts hold."""
        sc = _Scope()
        clean = self._clean
        for text in texts:
            key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            if key in clean:
                del clean[key]  # seen again: the most recent
                clean[key] = None
            else:
                before = sc.occurrences.total()
                self._redactor._walk(text, sc)  # JSON text (tool arguments) by field
                if sc.occurrences.total() == before:
                    if len(clean) >= PII_CLEAN_TEXTS:
                        del clean[next(iter(clean))]
                    clean[key] = None
        if sc.occurrences:
            self.with_pii += 1
            self.by_kind.update(sc.occurrences)

    def examine_pending(self) -> None:
        """Examine the exchanges kept for later (``defer_chars``), oldest first."""
        pending, self._pending, self._pending_chars = self._pending, [], 0
        for texts in pending:
            self._examine(texts)

    def counts(self) -> PiiCounts:
        self.examine_pending()
        return PiiCounts(
            examined=self.examined,
            sampled=self.examined < self.seen,
            exchanges_with_pii=self.with_pii,
            by_kind=dict(self.by_kind.most_common()),
        )


def _texts(exchange: LoggedExchange) -> Iterable[str]:
    """The text of an exchange: what redaction would look at (JSON strings as they are)."""
    req = exchange.request
    for key in ("prompt", "input", "instructions"):
        yield from _strings(req.get(key))
    messages = req.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if not isinstance(m, dict):
                continue
            yield from _strings(m.get("content"))
            for call in m.get("tool_calls") or ():
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    yield from _strings(call["function"].get("arguments"))
    response = exchange.response
    if response is not None:
        if response.text:
            yield response.text
        for tc in response.tool_calls:
            yield tc.arguments


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, str):
                yield v
            elif isinstance(v, dict):
                text = v.get("text") or v.get("content")
                yield from _strings(text)


def redact_exchanges(
    exchanges: Sequence[Exchange],
    config: RedactionConfig,
    *,
    out: MutableSequence[Exchange] | None = None,
) -> tuple[Sequence[Exchange], RedactionSummary]:
    """Redact every exchange (when ``config.enabled``) and summarise what was replaced: the
    redacted exchanges are appended to ``out`` (a large run's on disk; a new list by
    default). Not enabled: ``exchanges`` themselves."""
    if not config.enabled:
        return exchanges, RedactionSummary(
            enabled=False, entities=[], exchanges=len(exchanges), exchanges_affected=0
        )
    redactor = Redactor.from_config(config)
    if out is None:
        out = []
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
        names=(
            "presidio"
            if "person" in redactor.name_entities
            else "heuristic"
            if "person" in redactor.entities
            else None
        ),
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
