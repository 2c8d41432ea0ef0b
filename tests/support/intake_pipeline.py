"""Intake's pure path from a raw Kafka record to what the outbox would publish, with the checks
that every outcome must pass (shared by the adversarial suite and the fuzzer).

raw record (headers + bytes) → the runtime's own decoding (`ServiceRuntime._decode`: size limit,
CloudEvents envelope in binary or structured mode, `model_validate_json` against the inbound
models) → `core.understand` → `core.decide` for a thread → `record_for_event` (canonical JSON).

The outcome is a contact (with its events and outbox records) or a clean rejection: the
runtime's `Rejected` from decoding, or `core.Unprocessable`. Anything else raised is a crash,
which the fuzzer reports; `check` verifies what a processed record leaves behind (valid Unicode
everywhere, keys the database can index, events that serialise) and that a rejection's reason
quotes no customer text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord

from services.intake import core
from services.intake.app import inbound_models
from shared.clock import FrozenClock
from shared.outbox import OutboxRecord, record_for_event
from shared.runtime import Rejected, Route, ServiceRuntime
from shared.settings import Settings

NOW = datetime(2026, 11, 24, 10, 5, tzinfo=UTC)
SOURCE = "switchboard/intake"
# A PostgreSQL btree entry holds at most 2,704 bytes: longer thread keys would fail the insert.
MAX_KEY_BYTES = 2_600
MAX_REASON = 2_000


def _noop_handler(*_: Any) -> Any:
    raise AssertionError("the pipeline calls the core itself")


_RUNTIME: ServiceRuntime | None = None


def runtime() -> ServiceRuntime:
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = ServiceRuntime(name="intake", settings=Settings(), clock=FrozenClock(NOW))
    return _RUNTIME


ROUTES = {topic: Route(topic, models, dict.fromkeys(models, _noop_handler))
          for topic, models in inbound_models().items()}  # as intake subscribes them


@dataclass
class Outcome:
    kind: str  # contact | nothing | rejected
    reason: str = ""
    contact: core.IncomingContact | None = None
    records: list[OutboxRecord] = field(default_factory=list)


def run_record(record: ConsumerRecord[Any, Any], thread: core.Thread | None = None,
               config: core.IntakeConfig = core.DEFAULT_CONFIG) -> Outcome:
    """The pure path; raises only for a crash (an exception that is not a clean rejection)."""
    try:
        decoded = runtime()._decode(record, ROUTES[record.topic])
    except Rejected as exc:
        return Outcome("rejected", str(exc))
    if decoded is None:
        return Outcome("nothing")
    envelope, payload = decoded
    try:
        contact = core.understand(envelope.type, payload, NOW, config)
    except core.Unprocessable as exc:
        return Outcome("rejected", str(exc))
    if contact is None:
        return Outcome("nothing")
    decision, _ = core.decide(contact, thread or core.Thread(), envelope.id, NOW, config)
    return Outcome("contact", contact=contact,
                   records=[record_for_event(e, SOURCE) for e in decision.events])


def check(outcome: Outcome, customer_text: list[str]) -> None:
    """What every outcome must satisfy; `customer_text`: the input's strings, for reasons."""
    if outcome.kind == "rejected":
        assert len(outcome.reason) <= MAX_REASON, outcome.reason[:200]
        assert not quotes(outcome.reason, customer_text), outcome.reason
        return
    if outcome.contact is None:
        return
    contact = outcome.contact
    for key in (*contact.lookup_keys, *contact.own_keys, contact.dedup_key or "",
                *core.customer_keys(contact), contact.reference or ""):  # the indexed ones
        assert len(key.encode("utf-8")) <= MAX_KEY_BYTES, key[:100]  # also: valid Unicode
    for text in (contact.subject, contact.subject_key, contact.text, contact.full_text,
                 *contact.details.values()):
        if text is not None:
            text.encode("utf-8")
    if contact.channel == "email":
        for text in (contact.subject or "", contact.text or "", contact.full_text or ""):
            assert not any(ord(c) < 0x20 and c not in "\t\n\r" for c in text)
        assert "\n" not in (contact.subject or "") and "\r" not in (contact.subject or "")
    for record in outcome.records:
        json.loads(record.value)  # canonical JSON that parses back
        for value in record.headers.values():
            value.encode("utf-8")
        record.key.encode("utf-8")


def quotes(reason: str, customer_text: list[str], window: int = 20) -> bool:
    """Does `reason` repeat any `window` characters of the customer's input?"""
    if len(reason) < window:
        return False
    pieces = {reason[i:i + window] for i in range(len(reason) - window + 1)}
    return any(piece in text for text in customer_text if len(text) >= window for piece in pieces)


def strings_of(value: Any) -> list[str]:
    """Every string value in a JSON document, for `quotes` (keys are its structure: a schema
    violation's reason names where it is, e.g. `params.CallSid`)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
