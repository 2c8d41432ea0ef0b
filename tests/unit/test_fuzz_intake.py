"""A fuzzer over intake's whole pure path, from a raw Kafka record to the outbox's JSON.

Every case is a raw record (headers + bytes) on an inbound topic, in CloudEvents binary or
structured mode, for every event type and every platform adapter (Twilio, Amazon Connect,
Chatwoot): valid events from templates and real samples (tests/fixtures/intake/webhooks, also
other platforms' payloads handed to the adapters as if they were theirs), mutated (fields
dropped, replaced by any JSON, strings that attack parsers, lone surrogate escapes, huge and
non-finite numbers, deep nesting, broken bytes and headers), and real emails (the seeds in
tests/fixtures/intake/fuzz-seeds and the public corpus in tests/fixtures/intake/corpus, every
clone alike) mutated at the byte, header and MIME-structure level. Each goes through
`tests/support/intake_pipeline.py` (the runtime's decoding, schema validation,
`core.understand`, `core.decide` for several threads, `record_for_event`) and must end as a
contact or a clean rejection whose reason quotes no customer text, leaving only valid Unicode
and indexable keys (`intake_pipeline.check`).

`make test` runs 10,000 cases with a fixed derandomised sequence (repeatable, no database of
examples); `make fuzz` sets SWITCHBOARD_FUZZ_SCALE=10 (100,000 cases) and random seeds
(SWITCHBOARD_FUZZ_RANDOM=1): hypothesis prints how to reproduce any failure it finds.
"""

from __future__ import annotations

import base64
import collections
import copy
import json
import os
import random
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake import core
from services.intake.identity import DirectoryEntry
from tests.support.adversarial import STRUCTURED, WHEN, binary_headers, kafka_record
from tests.support.intake_fixtures import CORPUS, FIXTURES, load_jsonish
from tests.support.intake_pipeline import check, run_record, strings_of

SCALE = max(1, int(os.environ.get("SWITCHBOARD_FUZZ_SCALE", "1")))
RANDOM = os.environ.get("SWITCHBOARD_FUZZ_RANDOM") == "1"
# Count crashes by kind and go on, instead of stopping at the first (to survey old code).
TALLY = os.environ.get("SWITCHBOARD_FUZZ_TALLY") == "1"
RUN: dict[str, int] = {}
CRASHES: collections.Counter[str] = collections.Counter()


def fuzz(name: str, examples: int, strategy: st.SearchStrategy[Any],
         case: Callable[[Any], None]) -> int:
    """Run `case` on `examples` x SCALE drawn values; return how many ran."""
    RUN[name] = 0

    @settings(max_examples=examples * SCALE, deadline=None, derandomize=not RANDOM,
              database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        RUN[name] += 1
        case(value)

    run()
    return RUN[name]


# --- values that attack parsers ------------------------------------------------------------------
# Cases are built by a seeded `random.Random` from one integer hypothesis draws: generating them
# with hypothesis's own strategies cost five times the pipeline itself (the budget is ~60 s).
SURROGATE = "\x00lone-surrogate\x00"  # replaced by a "\udc80" escape in the serialised JSON
NASTY = [
    "", " ", "\x00", "\r\n", "a@" * 300 + ">", "PIN" + " " * 300, "re" + " " * 500 + "x",
    "=?utf-8?q?a?= " * 200, "(" * 600 + ")" * 600, "4111 1111 1111 1111", "9" * 40, "Infinity",
    "NaN", "1e20", "-1", "\u202e\u2028\u0085", "\ufeff", "<" * 50, "x" * 5_000, SURROGATE,
    "Refund please\nBcc: x@evil", "ACCT-12345678", "2026-11-24T10:00:00", "0001-01-01T00:00:00",
    "Tue, 24 Nov 2026 10:00:00 +0000", "99999-01-01T00:00:00Z", "completed", "ringing",
    "no-answer", "busy", "in-progress", "outbound-api", "DISCONNECTED", "VOICE", "CHAT",
    "incoming", "outgoing", "message_created", "conversation_created", "resolved",
    "maya@example.com", "+14155550123", "anonymous", "\U0001f600" * 10, "é" * 300,
    "\U0001f600" * 256,
]
NUMBERS: list[Any] = [10**30, -(10**30), 1e20, 1e308, 2**63, 0, -1, 1.5, 1.7e12,
                      float("nan"), float("inf"), -float("inf"), True, False, 253402300800]


def _string(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(NASTY)
    alphabet = rng.choice(["abc @:<>()=?;,\"\\\n", "0123456789 -+:T", "\u00e9\u4e2d\u0000\x1f"])
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


def _json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice(NUMBERS)
    if kind == 2:
        return rng.randint(-(2**40), 2**40)
    if kind in (3, 4):
        return _string(rng)
    if kind == 5:
        return [_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {_string(rng)[:12]: _json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _customer(**extra: Any) -> dict[str, Any]:
    return {"name": "Maya Patel", "email": "Maya@Example.com", "phone": "(415) 555-0123",
            **extra}


def _fixture_json(*parts: str) -> Any:
    path = FIXTURES.joinpath("webhooks", *parts)
    return load_jsonish(path) if path.suffix == ".jsonish" else json.loads(path.read_text())


# Other platforms' real payloads, handed to the adapters as if they were theirs: shapes they have
# never seen (zulip's Intercom, Freshdesk and Front fixtures; AWS samples of other Connect streams).
FOREIGN = [_fixture_json("foreign", p.name) for p in
           sorted(FIXTURES.joinpath("webhooks", "foreign").glob("*.json"))]
CONNECT_SAMPLES = [_fixture_json("amazon-connect", p.name) for p in
                   sorted(FIXTURES.joinpath("webhooks", "amazon-connect").glob("*.json*"))]

TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "chat.started": [{"session_id": "s-1", "started_at": WHEN, "customer": _customer(),
                      "language": "en", "widget": "web"}],
    "chat.message": [{"session_id": "s-1", "message_id": "m-1", "text": "my parcel is late",
                      "sent_at": WHEN, "customer": _customer(external_id="c-9")}],
    "chat.ended": [{"session_id": "s-1", "ended_at": WHEN, "ended_by": "agent"}],
    "chat.abandoned": [{"session_id": "s-1", "abandoned_at": WHEN}],
    "chatwoot.webhook": [{"body": _fixture_json("chatwoot", name)} for name in
                         ("message_created.docs-sample.jsonish",
                          "conversation_created.constructed.json")]
                        + [{"body": {"event": "conversation_status_changed", "id": 7,
                                     "status": "resolved"}}]
                        + [{"body": body} for body in FOREIGN],
    "call.started": [{"call_id": "c-1", "from_number": "+14155550123",
                      "to_number": "+18005550100", "started_at": WHEN, "customer": _customer()}],
    "call.ivr_selection": [{"call_id": "c-1", "menu": "main", "selection": "2",
                            "label": "Billing", "selected_at": WHEN}],
    "call.transcript": [{"call_id": "c-1", "segments": [
        {"speaker": "customer", "text": "I was charged twice", "start_seconds": 0,
         "end_seconds": 2.5},
        {"speaker": "agent", "text": "Let me check", "start_seconds": 3, "end_seconds": 4}]}],
    "call.ended": [{"call_id": "c-1", "ended_at": WHEN, "duration_seconds": 125}],
    "call.abandoned": [{"call_id": "c-1", "abandoned_at": WHEN, "wait_seconds": 40,
                        "from_number": "+14155550123"}],
    "voicemail.received": [{"call_id": "c-1", "from_number": "+14155550123", "received_at": WHEN,
                            "duration_seconds": 30, "transcript": "please call me back"}],
    "twilio.call_status": [{"params": _fixture_json("twilio", name)} for name in
                           ("call-status-ringing.json", "call-status-no-answer.json")]
                          + [{"params": {"CallSid": "CA3", "CallStatus": "completed",
                                         "CallDuration": "61", "From": "+14155550123"}}],
    "connect.contact_event": [{"event": event} for event in CONNECT_SAMPLES + FOREIGN],
}
EMAIL_TEMPLATE = (b"From: Maya Patel <maya@example.com>\r\nTo: support@shop.example\r\n"
                  b"Subject: Re: my order\r\nMessage-ID: <m1@example.com>\r\n"
                  b"In-Reply-To: <m0@shop.example>\r\n\r\nWhere is my parcel?\r\n\r\n"
                  b"On Mon, Nov 23, 2026 at 9:00 AM Support <s@shop.example> wrote:\r\n> Hi\r\n")
TOPIC = {t: topic for topic, types in {
    "helpdesk.inbound.email": ["email.received"],
    "helpdesk.inbound.chat": ["chat.started", "chat.message", "chat.ended", "chat.abandoned",
                              "chatwoot.webhook"],
    "helpdesk.inbound.voice": ["call.started", "call.ivr_selection", "call.transcript",
                               "call.ended", "call.abandoned", "voicemail.received",
                               "twilio.call_status", "connect.contact_event"],
}.items() for t in types}
EVENT_TYPES = sorted(TOPIC)
THREADS = [
    core.Thread(), core.Thread(case_id="case-1", how="thread"),
    core.Thread(case_id="case-1", solved=True, how="reference"),
    core.Thread(case_id="case-1", burst_contact_id="contact-1"),
    core.Thread(case_id="case-1", duplicate=True),
    core.Thread(directory=DirectoryEntry("cust-1", ("Maya",), ("maya@example.com",), (), "gold",
                                         True)),
]


# --- mutations of JSON documents -----------------------------------------------------------------
def _paths(document: Any) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = [()]
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, node = stack.pop()
        children = (node.items() if isinstance(node, dict)
                    else enumerate(node) if isinstance(node, list) else ())
        for key, child in children:
            found.append((*path, key))
            stack.append(((*path, key), child))
    return found


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


def mutated(rng: random.Random, document: Any) -> Any:
    document = copy.deepcopy(document)
    for _ in range(rng.choice([0, 1, 1, 2, 3, 4])):
        path = rng.choice(_paths(document))
        op = rng.choice(["replace", "replace", "nasty", "drop", "add", "type"])
        if not path:
            if op == "replace" and rng.random() < 0.1:
                document = _json(rng)
            continue
        parent, key = _at(document, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = _json(rng)
        elif op == "nasty":
            parent[key] = rng.choice(NASTY)
        elif op == "drop":
            del parent[key]
        elif op == "type":  # the same value as another JSON type
            value = parent[key]
            parent[key] = (str(value) if not isinstance(value, str)
                           else rng.choice([[value], {"v": value}, 1e20, None]))
        elif op == "add" and isinstance(parent[key], dict):
            parent[key][_string(rng)[:12]] = _json(rng)
    return document


def _dumps(document: Any) -> bytes:
    text = json.dumps(document, allow_nan=True)
    return text.replace(json.dumps(SURROGATE)[1:-1], "\\udc80").encode()


def json_payload(rng: random.Random, event_type: str) -> tuple[bytes, Any, list[str]]:
    """(body, document, customer strings) of one event."""
    if event_type == "email.received":
        raw = email(rng)
        document: Any = {"mailbox": "support@shop.example",
                         "raw_mime": base64.b64encode(raw).decode(), "received_at": WHEN}
        customer = [raw.decode("latin-1")]
    else:
        document, customer = rng.choice(TEMPLATES[event_type]), []
    document = mutated(rng, document)
    body = _dumps(document)
    if rng.random() < 0.05:  # broken bytes
        cut = rng.randint(0, len(body))
        body = body[:cut] + rng.choice([b"\xff\xfe", b"\x00", b"", b'"\\ud800"',
                                        b"[" * 2_000]) + body[cut:]
    return body, document, customer + strings_of(document)


# --- records -------------------------------------------------------------------------------------
HEADER_VALUES = [b"", b"1.0", b"0.3", b"\xff", b"2026-11-24T10:00:00", b"chat.message",
                 b"x" * 300, b"\x00\x01", b"application/cloudevents+json", b"text/plain"]


def binary_record(rng: random.Random, types: list[str]) -> tuple[Any, list[str]]:
    event_type = rng.choice(types)
    body, _, customer = json_payload(rng, event_type)
    headers = list(binary_headers(event_type, rng.choice(["e-1", "e-2", "e\u00e9"])))
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        op = rng.choice(["drop", "set", "type", "extra"])
        index = rng.randrange(len(headers))
        if op == "drop":
            headers.pop(index)
        elif op == "set":
            headers[index] = (headers[index][0], rng.choice(HEADER_VALUES))
        elif op == "type":
            headers[index] = ("ce_type", rng.choice(EVENT_TYPES).encode())
        else:
            headers.append((rng.choice(["ce_extension", "x-trace", "ce_subject"]),
                            rng.choice(HEADER_VALUES)))
        if not headers:
            break
    return kafka_record(TOPIC[event_type], headers, body), customer


def structured_record(rng: random.Random) -> tuple[Any, list[str]]:
    event_type = rng.choice(EVENT_TYPES)
    _, data, customer = json_payload(rng, event_type)
    document: Any = {"specversion": "1.0", "id": "e-1", "source": "fuzz", "type": event_type,
                     "time": WHEN, "data": data}
    if rng.random() < 0.5:
        document = mutated(rng, document)
    value = _dumps(document)
    if rng.random() < 0.1:
        depth = rng.choice([50, 500, 1_500, 5_000])
        value = value.replace(b'"data": ', b'"data": ' + b"[" * depth, 1) + b"]" * depth
    if rng.random() < 0.1:
        value = value.replace(b'"time"', b'"n": ' + b"7" * rng.randint(4_000, 5_000)
                              + b', "time"', 1)
    headers = list(STRUCTURED)
    if rng.random() < 0.5:
        headers.append(("ce_type", event_type.encode()))
    # The envelope's own attributes are the front-end's, not the customer's: a reason may name
    # the event type it could not handle, even when a mutation made it equal to some text.
    attributes = set(strings_of({k: v for k, v in document.items() if k != "data"})
                     if isinstance(document, dict) else [])
    return kafka_record(TOPIC[event_type], headers, value), [
        text for text in customer if text not in attributes]


# --- emails -------------------------------------------------------------------------------------
def _seed_files() -> list[bytes]:
    copied = sorted(p for p in FIXTURES.joinpath("fuzz-seeds").rglob("*")
                    if p.is_file() and not p.name.startswith(("LICENSE", "NOTICE")))
    seeds = [p.read_bytes() for p in copied]
    seeds += [p.read_bytes() for p in sorted(CORPUS.rglob("*"))  # the public corpus
              if p.is_file() and p.stat().st_size < 64_000
              and not p.name.startswith(("LICENSE", "NOTICE", "README", "."))]
    return seeds


SEEDS = _seed_files()
HEADER_NAMES = ["From", "Subject", "Message-ID", "References", "In-Reply-To", "Content-Type",
                "Content-Disposition", "Content-Transfer-Encoding", "Auto-Submitted", "List-Id",
                "Return-Path", "Sender", "Precedence", "X-Failed-Recipients", "MIME-Version"]
HEADER_UNITS = [
    b"=?utf-8?q?ab?= ", b"=?utf-8?b?w6k=?=", b"=?", b"(", b"a@", b"<a@b>", b"x@y.z, ",
    b"; a=b", b'"', b"\\", b"\xc3\xa9", b"\xff", b"re: ", b" ", b"text/plain; ",
    b"multipart/mixed; boundary=b; ", b"bob@example.org <eve@attacker.example>",
    b"=?utf-8?q?x=0Ay?=", b"\r\n ", b"<", b"=?x-unknown?q?a?=", b"=?utf-8?b?????=",
    b"<\xf0\x9f\x98\x80", b"\xf0\x9f\x98\x80",
]


def header_value(rng: random.Random) -> bytes:
    n = rng.choice([1, 2, 10, 100, 1_000, 3_000])
    return rng.choice(HEADER_UNITS) * n + rng.choice([b"", b">", b")" * n, b"x", b"?="])


def _byte_mutation(rng: random.Random, raw: bytes) -> bytes:
    at = rng.randint(0, len(raw))
    kind = rng.randrange(5)
    if kind == 0:
        return raw[:at]
    if kind == 1:
        return raw[:at] + raw[at + rng.randint(0, 50):]
    if kind == 2:
        return raw[:at] + rng.randbytes(rng.randint(0, 30)) + raw[at:]
    if kind == 3:
        return raw[:at] + raw[at:at + 200] * rng.randint(2, 20) + raw[at:]
    return raw.replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\r\n"]))


def email(rng: random.Random) -> bytes:
    raw = rng.choice(SEEDS) if rng.random() < 0.75 else EMAIL_TEMPLATE
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        op = rng.choice(["header", "header", "bytes", "nest", "html", "multipart"])
        if op == "header":
            raw = rng.choice(HEADER_NAMES).encode() + b": " + header_value(rng) + b"\r\n" + raw
        elif op == "bytes":
            raw = _byte_mutation(rng, raw)
        elif op == "nest":
            depth = rng.choice([1, 5, 20, 70, 300])
            multipart = rng.random() < 0.5
            for level in range(depth):
                raw = (b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n'
                       % (level, level) + raw + b"\r\n--n%d--\r\n" % level if multipart
                       else b"Content-Type: message/rfc822\r\n\r\n" + raw)
        elif op == "html":
            rows, cols = rng.choice([(1, 1), (40, 30), (200, 6)])
            cell = rng.choice([b"<td>x", b"<th>", b"<td><blockquote>q", b"<p>a@"])
            raw = (b"From: maya@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                   + (b"<tr>" + cell * cols) * rows + rng.choice(
                       [b"", b"<div class='gmail_quote'>old</div>", b"<div>" * 300]))
        else:
            parts = rng.randint(1, 250)
            boundary = rng.choice([b"b", b"", b"=_x", b"a b", b"--"])
            raw = (b'From: maya@example.com\r\nContent-Type: multipart/mixed; boundary="'
                   + boundary + b'"\r\n\r\n' + (b"--" + boundary + b"\r\n\r\n" + raw[:300]
                                                + b"\r\n") * parts + b"--" + boundary + b"--")
    return raw


# --- the cases -----------------------------------------------------------------------------------
def _case(build: Callable[[random.Random], tuple[Any, list[str]]]) -> Callable[[Any], None]:
    def case(drawn: tuple[int, int]) -> None:
        seed, thread = drawn
        record, customer = build(random.Random(seed))
        if not TALLY:
            check(run_record(record, THREADS[thread]), customer)
            return
        try:
            check(run_record(record, THREADS[thread]), customer)
        except Exception as exc:
            where = next((f"{os.path.basename(f.filename)}:{f.lineno}" for f in reversed(
                traceback.extract_tb(exc.__traceback__)) if "/services/" in f.filename
                or "/shared/" in f.filename), "?")
            CRASHES[f"{type(exc).__name__} at {where}"] += 1
    return case


def _random_record(rng: random.Random) -> tuple[Any, list[str]]:
    headers = [(rng.choice(["ce_id", "ce_type", "ce_time", "ce_source", "ce_specversion",
                            "content-type", "x"]), rng.choice(HEADER_VALUES))
               for _ in range(rng.randint(0, 8))]
    return kafka_record(rng.choice(sorted(set(TOPIC.values()))), headers,
                        rng.randbytes(rng.randint(0, 300))), []


NON_EMAIL = [t for t in EVENT_TYPES if t != "email.received"]
CASES = st.tuples(st.integers(0, 2**64), st.integers(0, len(THREADS) - 1))
PLAN: list[tuple[str, int, Callable[[random.Random], tuple[Any, list[str]]]]] = [
    ("binary mode, chat and voice events and adapters", 4_000,
     lambda rng: binary_record(rng, NON_EMAIL)),
    ("structured mode, every type", 1_500, structured_record),
    ("binary mode, emails from real mail mutated", 3_500,
     lambda rng: binary_record(rng, ["email.received"])),
    ("random bytes and headers", 1_000, _random_record),
]


@pytest.mark.parametrize(("name", "examples", "build"), PLAN, ids=[p[0] for p in PLAN])
def test_the_pure_path_never_crashes(name: str, examples: int,
                                     build: Callable[[random.Random], tuple[Any, list[str]]],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    CRASHES.clear()
    ran = fuzz(name, examples, CASES, _case(build))
    with capsys.disabled():
        print(f"\n[intake fuzz] {name}: {ran:,} cases, {sum(CRASHES.values())} crashes")
        for kind, count in CRASHES.most_common():
            print(f"    {count:6,} x {kind}")
    assert not CRASHES
    assert ran >= examples * SCALE


def test_the_plan_is_at_least_ten_thousand_cases() -> None:
    assert sum(examples for _, examples, _ in PLAN) >= 10_000
