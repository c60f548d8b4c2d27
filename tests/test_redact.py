from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import migrate_eval
from migrate_eval.core.errors import ConfigError, MissingExtraError
from migrate_eval.core.records import Exchange, Response, Source, ToolCall
from migrate_eval.core.suite import RedactionConfig, parse_suite
from migrate_eval.plan.redact import (
    Redactor,
    iban_ok,
    luhn_ok,
    redact_exchanges,
)
from tests.servers import LoopbackServer

# Planted values: every one of them must be redacted everywhere.
EMAIL = "maya.lee@example.com"
EMAIL2 = "ops+billing@northwind.co.uk"
CARD = "4111 1111 1111 1111"
CARD2 = "5500-0000-0000-0004"
IBAN = "GB82 WEST 1234 5698 7654 32"
IBAN2 = "DE89370400440532013000"
PHONE = "+1 (415) 555-2671"
PHONE2 = "+44 20 7946 0958"
SSN = "123-45-6789"
NINO = "AB 12 34 56 C"
IPV4 = "192.168.10.24"
IPV6 = "2001:db8::8a2e:370:7334"
OPENAI_KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB = "ghp_0123456789abcdefghijABCDEFGHIJklmnop"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKl"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
GENERIC_SECRET = "Zq8#Lm2$Rt6vWx9pK3"
IBAN_LOWER = "gb82west12345698765432"
BARE_PHONE = "4155552671"
PERSON = "Maya Lindqvist"
PERSON2 = "Jonathan Okafor"
DOB = "12 March 1985"
PASSPORT = "C01X00T47"
STREET = "221B Baker Street"
POSTCODE = "NW1 6XE"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"

PLANTED = [
    EMAIL, EMAIL2, CARD, CARD2, IBAN, IBAN2, PHONE, PHONE2, SSN, NINO, IPV4, IPV6,
    OPENAI_KEY, AWS_KEY, GITHUB, SLACK, JWT, GENERIC_SECRET, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
    IBAN_LOWER, BARE_PHONE, PERSON, "Lindqvist", PERSON2, "Okafor", DOB, PASSPORT, STREET,
    POSTCODE,
]  # fmt: skip


def variants(value: str) -> set[str]:
    """The value as planted and with its separators removed (so reformatting cannot hide it)."""
    compact = value.replace(" ", "").replace("-", "")
    out = {value}
    if any(c.isdigit() for c in value) and len(compact) >= 8 and "BEGIN" not in value:
        out.add(compact)
    return out


def test_validators() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok(IBAN) and iban_ok(IBAN2)
    assert not iban_ok("GB82 WEST 1234 5698 7654 33")


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        (f"mail {EMAIL} now", "EMAIL"),
        (f"card {CARD}", "CARD"),
        (f"card {CARD2}.", "CARD"),
        (f"pay to {IBAN}", "IBAN"),
        (f"pay to {IBAN2}", "IBAN"),
        (f"call {PHONE}", "PHONE"),
        (f"call {PHONE2}", "PHONE"),
        ("call +4930123456 or", "PHONE"),
        ("call (020) 7946 0958", "PHONE"),
        (f"ssn {SSN}", "SSN"),
        (f"nino {NINO}", "NINO"),
        ("nino AB123456C", "NINO"),
        (f"from {IPV4}", "IP"),
        (f"from {IPV6}", "IP"),
        (f"key {OPENAI_KEY}", "SECRET"),
        (f"aws {AWS_KEY}", "SECRET"),
        (f"gh {GITHUB}", "SECRET"),
        (f"slack {SLACK}", "SECRET"),
        (f"jwt {JWT}", "SECRET"),
        (f"{PEM}\nafter", "SECRET"),
        (f"db_password={GENERIC_SECRET}", "SECRET"),
        (f'"api_key": "{GENERIC_SECRET}"', "SECRET"),
        # issue 15: let through before
        (f"the server is {IPV4}.", "IP"),
        (f"pay to {IBAN_LOWER} please", "IBAN"),
        (f"call me on {BARE_PHONE}", "PHONE"),
        (BARE_PHONE, "PHONE"),
        (f"I paid {BARE_PHONE}", "PHONE"),  # "paid" is not "id"
        ("ring 07911123456 after six", "PHONE"),
        ("Hi Maya, your order shipped", "PERSON"),
        (f"Dear Mr. {PERSON},", "PERSON"),
        (f"Regards,\n{PERSON}", "PERSON"),
        (f"my name is {PERSON}", "PERSON"),
        (f"I spoke to {PERSON2} yesterday", "PERSON"),
        (f"born on {DOB}", "DOB"),
        ("DOB: 1985-03-12", "DOB"),
        ("date of birth 03/12/1985", "DOB"),
        ("birthday is March 12, 1985", "DOB"),
        (f"passport number {PASSPORT}", "PASSPORT"),
        ("passport: 123456789", "PASSPORT"),
        (f"I live at {STREET}, London", "ADDRESS"),
        ("1600 Pennsylvania Ave NW, Washington", "ADDRESS"),
        ("Hauptstraße 5, Berlin", "ADDRESS"),
        ("12 rue de la Paix, Paris", "ADDRESS"),
        (f"London {POSTCODE}", "ADDRESS"),
        ("Washington, DC 20500", "ADDRESS"),
    ],
)
def test_each_entity_is_redacted(text: str, entity: str) -> None:
    out = Redactor().redact_text(text)
    assert f"<{entity}_1>" in out, out


@pytest.mark.parametrize(
    "text",
    [
        "order 12345 shipped on 2026-10-05 at 10:30",
        "card-like digits 1234567890123456 fail the Luhn check",
        "IBAN-like GB82WEST12345698765433 fails mod 97",
        "total 1,299.00 for 3 items, tracking 4155552671",
        "version 1.2.3 and ratio 3.14159; std::vector and 10:30:00",
        "token=aaaaaaaaaaaaaaaa is low entropy",
        "Northwind Outfitters ships tents to Maya in Oslo.",
        "Hello World, I am Happy to help. This is Northwind support.",
        "invoice 4155552671 and order #4155552671 are paid",
        "the release of 2024-05-01 and the 3 Main tasks",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().redact_text(text) == text


def test_ipv4_before_a_full_stop_keeps_the_stop() -> None:
    assert Redactor().redact_text(f"Blocked {IPV4}. Retry.") == "Blocked <IP_1>. Retry."


def test_fields_holding_names_birth_dates_and_passports_are_redacted_whole() -> None:
    args = {"full_name": "Zbigniew Brzęczyszczykiewicz", "dob": "1985-03-12",
            "passport_no": "X1234567", "name": "Tent X2"}  # fmt: skip
    ex = _exchange().model_copy(
        update={"response": Response(tool_calls=[ToolCall.from_raw("book", args)])}
    )
    red, _, _ = Redactor().redact_exchange(ex)
    assert red.response is not None
    assert red.response.tool_calls[0].parsed_arguments == {
        "full_name": "<PERSON_1>", "dob": "<DOB_1>", "passport_no": "<PASSPORT_1>",
        "name": "Tent X2",
    }  # fmt: skip


def test_person_names_without_the_presidio_extra() -> None:
    """Names are looked for from a default install (heuristics), not only with presidio."""
    r = Redactor()
    assert "person" in r.entities and r.name_entities == []
    assert PERSON not in r.redact_text(f"Thanks, {PERSON}")


def test_entities_can_be_chosen() -> None:
    r = Redactor(["email"])
    assert r.redact_text(f"{EMAIL} {CARD}") == f"<EMAIL_1> {CARD}"
    with pytest.raises(ConfigError, match="unknown entity"):
        Redactor(["email", "shoe_size"])
    with pytest.raises(ConfigError, match=r"redaction\.entities"):
        parse_suite(
            {
                "name": "s",
                "logs": ["x.jsonl"],
                "candidates": [{"name": "c", "model": "m"}],
                "redaction": {"enabled": True, "entities": ["nope"]},
            },
            source="s.yaml",
            base_dir=Path("."),
        )


def _exchange() -> Exchange:
    args = json.dumps({"email": EMAIL, "card": CARD, "note": "ship fast"})
    return Exchange(
        id="e1",
        source=Source(file="f", line=1, format="t"),
        request={
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": f"Support agent. Escalations: {EMAIL2}"},
                {"role": "user", "content": f"I am {EMAIL}, card {CARD}. Ship my tent."},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": args},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"phone": PHONE})},
                {"role": "user", "content": [{"type": "text", "text": f"Again: {EMAIL}"}]},
            ],
        },
        response=Response(
            text=f"Thanks, we wrote to {EMAIL} and will call {PHONE}.",
            tool_calls=[ToolCall.from_raw("notify", {"to": EMAIL})],
        ),
    )


def test_placeholders_are_consistent_across_the_exchange() -> None:
    red, distinct, occurrences = Redactor().redact_exchange(_exchange())
    msgs = red.request["messages"]
    assert msgs[0]["content"] == "Support agent. Escalations: <EMAIL_1>"
    assert msgs[1]["content"] == "I am <EMAIL_2>, card <CARD_1>. Ship my tent."
    args = json.loads(msgs[2]["tool_calls"][0]["function"]["arguments"])
    assert args == {"email": "<EMAIL_2>", "card": "<CARD_1>", "note": "ship fast"}
    assert json.loads(msgs[3]["content"]) == {"phone": "<PHONE_1>"}
    assert msgs[4]["content"][0]["text"] == "Again: <EMAIL_2>"
    assert red.response is not None
    assert red.response.text == "Thanks, we wrote to <EMAIL_2> and will call <PHONE_1>."
    assert red.response.tool_calls[0].parsed_arguments == {"to": "<EMAIL_2>"}
    assert distinct == {"email": 2, "card": 1, "phone": 1}
    assert occurrences["email"] == 6
    # the original is untouched
    assert EMAIL in _exchange().request["messages"][1]["content"]


def test_summary_counts_entities_and_exchanges() -> None:
    clean = _exchange().model_copy(
        update={
            "id": "e2",
            "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            "response": Response(text="hello"),
        }
    )
    out, summary = redact_exchanges([_exchange(), clean], RedactionConfig(enabled=True))
    assert summary.exchanges == 2 and summary.exchanges_affected == 1
    assert summary.by_entity == {"email": 2, "card": 1, "phone": 1}
    assert out[1] is clean
    off, s2 = redact_exchanges([_exchange()], RedactionConfig())
    assert not s2.enabled and EMAIL in json.dumps(off[0].request)


@pytest.mark.skipif(
    importlib.util.find_spec("presidio_analyzer") is not None, reason="presidio is installed"
)
def test_names_need_the_presidio_extra() -> None:
    with pytest.raises(MissingExtraError, match=r"migrate-eval\[presidio\]"):
        Redactor(names=True)


def _canary_logs(path: Path) -> None:
    """Logs with PII planted in system prompts, user messages, tool arguments, tool results and
    the logged answers, next to ordinary text that must still reach the candidate."""
    rows: list[dict[str, Any]] = []
    for i in range(6):
        args = json.dumps(
            {
                "customer_email": EMAIL,
                "iban": IBAN,
                "ip": IPV4,
                "order": f"NW-{i}",
                "full_name": PERSON2,
                "dob": "1985-03-12",
                "address": f"{STREET}, London {POSTCODE}",
                "note": f"passport {PASSPORT}, callback {BARE_PHONE}",
            }
        )
        rows.append(
            {
                "request": {
                    "model": "gpt-4o-mini",
                    "messages": [
                        {
                            "role": "system",
                            "content": f"You are the billing helper. Admin key {OPENAI_KEY}; "
                            f"aws {AWS_KEY}; on-call {PHONE2}. Escalate to Dr. {PERSON}, "
                            f"{STREET}, London {POSTCODE}; backup host {IPV4}.",
                        },
                        {
                            "role": "user",
                            "content": f"Hi, I'm {EMAIL2} (SSN {SSN}, NINO {NINO}). Refund card "
                            f"{CARD} and {CARD2}, IBAN {IBAN2}. Canary-text-{i} tent pegs.",
                        },
                        {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": f"call_{i}",
                                    "type": "function",
                                    "function": {"name": "refund", "arguments": args},
                                }
                            ],
                        },
                        {
                            "role": "tool",
                            "tool_call_id": f"call_{i}",
                            "content": json.dumps(
                                {
                                    "status": "ok",
                                    "phone": PHONE,
                                    "ipv6": IPV6,
                                    "token": JWT,
                                    "gh": GITHUB,
                                    "slack": SLACK,
                                    "config": f"db_password={GENERIC_SECRET}",
                                }
                            ),
                        },
                        {"role": "user", "content": f"Also my key:\n{PEM}\nThanks!"},
                        {
                            "role": "user",
                            "content": f"My name is {PERSON2}, born on {DOB}, passport number "
                            f"{PASSPORT}. Call me on {BARE_PHONE} or pay {IBAN_LOWER}. "
                            f"Regards, {PERSON}",
                        },
                    ],
                    "tools": [
                        {
                            "type": "function",
                            "function": {
                                "name": "refund",
                                "parameters": {"type": "object", "properties": {}},
                            },
                        }
                    ],
                },
                "response": {
                    "object": "chat.completion",
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {
                                "role": "assistant",
                                "content": f"Refunded to {IBAN2}; we e-mailed {EMAIL2}.",
                            },
                        }
                    ],
                },
                "metadata": {"feature": "billing"},
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_canary_no_planted_value_reaches_the_candidate(tmp_path: Path) -> None:
    logs = tmp_path / "canary.jsonl"
    _canary_logs(logs)
    with LoopbackServer(record=True) as server:
        outcome = migrate_eval.run(
            logs=[logs],
            candidates=[f"c=openai-compatible:test-model@{server.base_url}"],
            out=tmp_path / "run",
            cache=tmp_path / "cache.sqlite",
            redact=True,
        )
        bodies = server.bodies
    assert len(bodies) == 6
    sent = "\n".join(json.dumps(b, ensure_ascii=False) for b in bodies)
    leaked = [v for value in PLANTED for v in variants(value) if v in sent]
    assert leaked == []
    # ordinary text still goes through, placeholders stand in for the values
    for i in range(6):
        assert f"Canary-text-{i} tent pegs" in sent
    assert "billing helper" in sent and "<EMAIL_1>" in sent and "<IBAN_1>" in sent
    assert "<CARD_2>" in sent and "<SECRET_" in sent and "<SSN_1>" in sent
    # nothing planted reached the run folder's replayed exchanges either
    for f in sorted(outcome.run_dir.rglob("*")):
        if f.is_file():
            stored = f.read_bytes().decode("utf-8", "replace")
            assert [v for v in PLANTED if v in stored] == [], f.name
    # ... nor the cache (every table, every byte of the file)
    for f in tmp_path.glob("cache.sqlite*"):
        cache = f.read_bytes().decode("utf-8", "replace")
        assert [v for v in PLANTED if v in cache] == [], f.name
    red = outcome.results.redaction
    assert red is not None and red.enabled and red.exchanges_affected == 6
    assert {
        "email", "card", "iban", "phone", "ssn", "nino", "ip", "secret",
        "person", "dob", "passport", "address",
    } <= set(red.by_entity)  # fmt: skip


def test_without_redaction_values_are_sent(tmp_path: Path) -> None:
    """The control for the canary: the same logs without --redact do carry the values."""
    logs = tmp_path / "canary.jsonl"
    _canary_logs(logs)
    with LoopbackServer(record=True) as server:
        outcome = migrate_eval.run(
            logs=[logs],
            candidates=[f"c=openai-compatible:test-model@{server.base_url}"],
            out=tmp_path / "run",
            cache=tmp_path / "cache.sqlite",
        )
        sent = json.dumps(server.bodies, ensure_ascii=False)
    assert EMAIL in sent and IBAN2 in sent and PERSON2 in sent
    cache = b"".join(f.read_bytes() for f in tmp_path.glob("cache.sqlite*"))
    assert PERSON2.encode() in cache  # the cache check of the canary can see a leak
    assert outcome.results.redaction is not None and not outcome.results.redaction.enabled
    # the run's profile counts what `migrate-eval profile` counts (a run makes the counts
    # while its replay waits: read_traffic(defer_pii=True))
    pii = outcome.results.profile.pii if outcome.results.profile is not None else None
    assert pii is not None and pii.exchanges_with_pii == 6
    assert pii == migrate_eval.profile([logs]).pii


def test_cli_redact_flag(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from migrate_eval.cli import main

    logs = tmp_path / "canary.jsonl"
    _canary_logs(logs)
    with LoopbackServer(record=True) as server:
        res = CliRunner().invoke(
            main,
            [
                "run", "--logs", str(logs), "--redact", "-q",
                "--candidate", f"c=openai-compatible:test-model@{server.base_url}",
                "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "c.sqlite"),
            ],
        )  # fmt: skip
        sent = json.dumps(server.bodies, ensure_ascii=False)
    assert res.exit_code in (0, 1), res.output
    assert server.total == 6 and EMAIL2 not in sent and "<EMAIL_1>" in sent
    assert "person names were redacted by heuristics only" in res.output


def test_profile_counts_pii_per_kind_without_values(tmp_path: Path) -> None:
    """With redaction off, the profile says how much the logs hold, so the choice is informed."""
    logs = tmp_path / "canary.jsonl"
    _canary_logs(logs)
    prof = migrate_eval.profile([logs])
    assert prof.pii is not None and not prof.pii.sampled
    assert prof.pii.examined == 6 and prof.pii.exchanges_with_pii == 6
    assert {"email", "card", "iban", "phone", "person", "dob", "passport", "address"} <= set(
        prof.pii.by_kind
    )
    dumped = prof.model_dump_json()
    assert [v for v in PLANTED if v in dumped] == []


def test_pii_counter_samples_big_logs() -> None:
    from migrate_eval.plan.redact import PiiCounter

    counter = PiiCounter(full=10, stride=5)
    for i in range(50):
        counter.add(_exchange().model_copy(update={"id": f"e{i}"}))
    counts = counter.counts()
    # 10, then 1 in 5 of the 40 others
    assert counts.sampled and counts.examined == 18 and counts.exchanges_with_pii == 18
    assert counts.by_kind["email"] == 18 * 6


@pytest.mark.parametrize("defer_chars", [10**9, 700, 0])
def test_pii_counts_made_later_are_those_made_as_exchanges_come(defer_chars: int) -> None:
    # a run keeps the texts and counts them while its replay waits; past `defer_chars`
    # characters kept, exchanges are examined as they come (700: a few kept, then the rest)
    from migrate_eval.plan.redact import PiiCounter

    def exchange(i: int) -> Exchange:
        user = f"Mail {EMAIL} about parcel {i}" if i % 3 else f"Where is parcel {i}?"
        return Exchange(
            id=f"e{i}",
            source=Source(file="f", line=i, format="t"),
            request={"model": "m", "messages": [{"role": "user", "content": user}]},
            response=Response(text=f"Call {PERSON2} on +44 20 7946 0{i:03d}." if i % 4 else "ok"),
        )

    now = PiiCounter(full=20, stride=3)
    later = PiiCounter(full=20, stride=3, defer_chars=defer_chars)
    for i in range(60):
        now.add(exchange(i))
        later.add(exchange(i))
    assert later.examined == now.examined
    counted_as_they_came = {10**9: 0, 0: now.with_pii}.get(defer_chars)
    if counted_as_they_came is None:  # some kept, the rest examined as they came
        assert 0 < later.with_pii < now.with_pii
    else:
        assert later.with_pii == counted_as_they_came
    assert later.counts() == now.counts()
    assert now.counts().exchanges_with_pii > 0


def test_pii_counter_scans_a_text_found_clean_once() -> None:
    """Logs repeat their system prompts: a text with nothing found is not scanned again, and
    the counts are those of scanning every text (texts with something found are scanned each
    time: their placeholders are numbered per exchange)."""
    from migrate_eval.plan.redact import PiiCounter

    def exchange(i: int) -> Exchange:
        return Exchange(
            id=f"e{i}",
            source=Source(file="f", line=i, format="t"),
            request={
                "model": "m",
                "messages": [
                    {"role": "system", "content": "You are a support agent. Be brief."},
                    {
                        "role": "user",
                        "content": f"Mail {EMAIL} about parcel {i}"
                        if i % 3
                        else f"Where is parcel {i}?",
                    },
                ],
            },
            response=Response(text="It ships today."),
        )

    counter = PiiCounter()
    scanned: list[str] = []
    walk = counter._redactor._walk

    def counting(value: Any, sc: Any) -> Any:
        scanned.append(value)
        return walk(value, sc)

    counter._redactor._walk = counting  # type: ignore[method-assign]
    for i in range(30):
        counter.add(exchange(i))
    assert scanned.count("You are a support agent. Be brief.") == 1
    assert scanned.count("It ships today.") == 1
    assert scanned.count(f"Mail {EMAIL} about parcel 1") == 1
    assert len(scanned) == 2 + 30  # every user message is new

    # the counts of a counter that forgets: each exchange scanned whole by a fresh one
    fresh = [PiiCounter() for _ in range(30)]
    for i, c in enumerate(fresh):
        c.add(exchange(i))
    counts = counter.counts()
    assert counts.exchanges_with_pii == sum(c.with_pii for c in fresh) == 20
    assert counts.by_kind == {"email": 20}


def _gate_texts() -> list[str]:
    """Each planted value alone, in a sentence, and with digits just short of the rules'
    least (an IPv6 address with none, a NINO-like string with 5), ASCII and not."""
    texts = []
    for value in PLANTED:
        texts += [value, f"Please call {value} today.", f"Ré: {value} ok", f"{value}, {EMAIL}"]
    texts += [
        "fe80::a:b",
        "::",
        "host a:b:c",
        "AB 12 34 5 C",
        "4111 1111 1111",
        "123-45-678",
        "GB82 WEST",
        "Flat 2 is at 9 High Street",
        "No digits here, Dear Anna Kowalski.",
        "Señora María at Calle 9",
        "IP 10.0.0.1 then <EMAIL_1> and <CARD_12>",
        "",
    ]
    return texts


def test_rules_skipped_for_too_few_digits_redact_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rule is not searched in a text with fewer digits than any of its matches holds:
    redaction (and so the profile's PII count) is the same as searching every text."""
    from migrate_eval.plan import redact

    texts = _gate_texts()
    gated = [(Redactor().redact_text(t, sc := redact._Scope()), sc.occurrences) for t in texts]
    monkeypatch.setattr(redact, "_MIN_DIGITS", {})
    searched = [(Redactor().redact_text(t, sc := redact._Scope()), sc.occurrences) for t in texts]
    assert gated == searched
    assert sum(sum(o.values()) for _, o in gated) > len(PLANTED)


def test_a_text_without_digits_is_not_searched_for_numbers() -> None:
    class Counting:
        def __init__(self, pattern: Any) -> None:
            self.pattern, self.calls = pattern, 0
            self.groupindex = pattern.groupindex

        def sub(self, repl: Any, text: str) -> str:
            self.calls += 1
            return str(self.pattern.sub(repl, text))

    redactor = Redactor()
    counting = {entity: Counting(pattern) for entity, pattern, _, _ in redactor._rules}
    redactor._rules = [(e, counting[e], v, n) for e, _, v, n in redactor._rules]  # type: ignore[misc]
    redactor.redact_text("Ship the red tent to Anna by Friday.")
    assert {e: c.calls for e, c in counting.items() if c.calls} == {}
    redactor.redact_text("Ticket 42: ship it.")  # one or two digits: only what needs no more
    assert {e for e, c in counting.items() if c.calls} == {"address", "phone", "iban"}


def test_report_and_summary_say_what_the_logs_hold_when_redaction_is_off(tmp_path: Path) -> None:
    logs = tmp_path / "canary.jsonl"
    _canary_logs(logs)
    with LoopbackServer() as server:
        outcome = migrate_eval.run(
            logs=[logs],
            candidates=[f"c=openai-compatible:test-model@{server.base_url}"],
            out=tmp_path / "run",
            cache=tmp_path / "cache.sqlite",
        )
    results = json.loads((outcome.run_dir / "results.json").read_text(encoding="utf-8"))
    assert results["profile"]["pii"]["exchanges_with_pii"] == 6
    summary = (outcome.run_dir / "summary.md").read_text(encoding="utf-8")
    assert "PII redaction was off" in summary
    assert "personal data or secrets in 6 of 6 exchange(s) examined (" in summary
    html = (outcome.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Found in the logs (not replaced)" in html and "Dates of birth" in html


def test_heuristic_names_are_said_loudly(tmp_path: Path) -> None:
    logs = tmp_path / "canary.jsonl"
    _canary_logs(logs)
    with LoopbackServer() as server:
        outcome = migrate_eval.run(
            logs=[logs],
            candidates=[f"c=openai-compatible:test-model@{server.base_url}"],
            out=tmp_path / "run",
            cache=tmp_path / "cache.sqlite",
            redact=True,
        )
    assert outcome.results.redaction is not None
    assert outcome.results.redaction.names == "heuristic"
    summary = (outcome.run_dir / "summary.md").read_text(encoding="utf-8")
    assert "Person names were looked for by heuristics only" in summary
    html = (outcome.run_dir / "report.html").read_text(encoding="utf-8")
    assert "by heuristics only" in html


def test_cli_profile_prints_pii_counts(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from migrate_eval.cli import main

    logs = tmp_path / "canary.jsonl"
    _canary_logs(logs)
    res = CliRunner().invoke(main, ["profile", str(logs)])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("Personal data and secrets"))
    assert "6 of 6 exchanges (100.0%) hold some: " in line and "email " in line
    assert [v for v in PLANTED if v in res.output] == []
