"""Issue 11 on the real PostgreSQL and Kafka: no card data at rest, cases that can't be hijacked,
dead letters sealed, topic retention, keys of earlier versions migrated.

Intake's handler runs here against the real database in the runtime's kind of transaction
(no service processes), so each step's state can be read right after it: what the tables
hold, which case a reply joined. The dead-letter path is the runtime's own `dead_letter`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

from cli.keys import migrate_rows
from services.intake.app import IntakeHandler, inbound_models
from services.intake.subjects import case_reference
from shared import dead_letters
from shared.clock import FrozenClock
from shared.contracts.envelope import Envelope
from shared.contracts.topics import INBOUND_CHAT, TopicSpec, dlq
from shared.events import Decision
from shared.infra.local import Endpoints
from shared.keys import Keyring, keyring, sealer_from
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from shared.topics_admin import provision
from tests.support.contacts import raw_email
from tests.support.kafka import read_all, wait_for
from tests.unit.test_intake_keys import SECRETS, iban_de, leaks, luhn_digit, spaced

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MX = "mx.shop.example"
SWITCHBOARD = Path(sys.executable).with_name("switchboard")


@pytest.fixture
async def db(endpoints: Endpoints) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(endpoints.database_url)
    yield conn
    await conn.close()


def make_handler(**settings: Any) -> IntakeHandler:
    return IntakeHandler(Settings(intake_parse_workers=0, intake_trusted_authserv_ids=[MX],
                                  **settings))


_RUNTIME: list[ServiceRuntime] = []


def runtime() -> ServiceRuntime:
    if not _RUNTIME:
        _RUNTIME.append(ServiceRuntime(name="intake", settings=Settings(),
                                       clock=FrozenClock(NOW)))
    return _RUNTIME[0]


async def handle(db: asyncpg.Connection, handler: IntakeHandler, kind: str, body: dict[str, Any],
                 at: datetime = NOW) -> Decision:
    topic = {"email": "helpdesk.inbound.email", "chat": "helpdesk.inbound.chat"}.get(
        kind.split(".")[0], "helpdesk.inbound.voice")
    payload = inbound_models()[topic][kind].model_validate_json(json.dumps(body))
    envelope = Envelope(id=f"evt-{uuid.uuid4().hex}", source="test/keys", type=kind, time=at)
    async with db.transaction():
        decision = await handler(db, envelope, payload, at)
        await runtime().persist(db, decision)
    return decision


def email(message_id: str, subject: str, sender: str, in_reply_to: str | None = None,
          auth: str | None = None, vouched: bool = False, references: str | None = None,
          automated: bool = False, body: str = "Any news on my refund?") -> dict[str, Any]:
    headers = {"Authentication-Results": auth} if auth else {}
    if automated:
        headers["Auto-Submitted"] = "auto-replied"
    raw = raw_email(message_id, subject, body, sender=sender, in_reply_to=in_reply_to,
                    headers=headers)
    if references:
        raw = raw.replace(f"References: {in_reply_to}".encode(), f"References: {references}"
                          .encode())
    return {"mailbox": "support@shop.example", "raw_mime": base64.b64encode(raw).decode(),
            "received_at": NOW.isoformat(), "vouched": vouched}


def case_of(decision: Decision) -> tuple[str, str | None]:
    """(case id, related case id if the contact opened a linked case)."""
    opened = [e for e in decision.events if e.type == "case.opened"]
    related = opened[0].data.related_case_id if opened else None  # type: ignore[attr-defined]
    return decision.events[0].case_id, related


# --- hijacking ---------------------------------------------------------------------------------
async def test_a_strangers_reply_opens_a_new_linked_case_and_the_customers_joins(
        db: asyncpg.Connection) -> None:
    tag = uuid.uuid4().hex[:10]
    handler = make_handler()
    maya = f"Maya Patel <maya.{tag}@example.com>"
    first = await handle(db, handler, "email.received",
                         email(f"<m1.{tag}@mail.example>", f"Refund {tag}", maya))
    victim, related = case_of(first)
    assert related is None
    token = case_reference(victim)

    async def reply(n: int, sender: str, subject: str = f"Re: Refund {tag}",
                    **kw: Any) -> tuple[str, str | None]:
        kw.setdefault("in_reply_to", f"<m1.{tag}@mail.example>")
        return case_of(await handle(db, handler, "email.received", email(
            f"<r{n}.{tag}@mail.example>", subject, sender, **kw)))

    eve = f"eve.{tag}@attacker.example"
    stranger_case, linked = await reply(1, eve)  # the victim's Message-ID
    assert stranger_case != victim and linked == victim
    # the victim's token, under a subject of eve's own (with the same subject, eve's reply
    # would join her own open case by the subject window: that is the customer's own thread)
    token_case, linked = case_of(await handle(db, handler, "email.received", email(
        f"<r2.{tag}@mail.example>", f"Re: [#{token}] Refund {tag} again", eve)))
    assert token_case not in (victim, stranger_case) and linked == victim
    same_subject, linked = case_of(await handle(db, handler, "email.received", email(
        f"<r2b.{tag}@mail.example>", f"Re: [#{token}] Refund {tag}", eve)))
    assert same_subject == stranger_case and linked is None
    trick, linked = await reply(3, f"maya.{tag}@example.com <{eve}>",  # CVE-2023-27043
                                subject=f"Re: Refund {tag} (3)")
    assert trick != victim and linked == victim
    spoofed, linked = await reply(4, maya, auth=f"{MX}; dmarc=fail header.from=example.com")
    assert spoofed != victim and linked == victim
    # the stranger's next reply (to their own message, the victim's still in References)
    # joins the stranger's own case
    own, linked = await reply(5, eve, in_reply_to=f"<r1.{tag}@mail.example>",
                              references=f"<m1.{tag}@mail.example> <r1.{tag}@mail.example>")
    assert own == stranger_case and linked is None

    joined, linked = await reply(6, maya)  # the customer herself
    assert joined == victim and linked is None
    passed, _ = await reply(7, maya, auth=f"{MX}; dmarc=pass header.from=example.com")
    assert passed == victim
    vouched, linked = await reply(8, eve, vouched=True)  # the front-end vouches for eve
    assert vouched == victim and linked is None
    assert await reply(9, eve) == (victim, None)  # ... who is a participant from now on
    bounce, _ = await reply(10, f"mailer-daemon.{tag}@attacker.example", automated=True)
    assert bounce == victim  # recorded as activity, never a participant
    participants = await db.fetchval("SELECT customer_keys FROM intake_case WHERE case_id = $1",
                                     victim)
    ring = keyring()
    assert ring.stored(f"email:{eve}") in participants
    assert ring.stored(f"email:mailer-daemon.{tag}@attacker.example") not in participants
    rows = await db.fetch("SELECT type, payload FROM case_log WHERE case_id = $1 ORDER BY seq",
                          victim)
    assert [r["type"] for r in rows].count("contact.received") == 5  # m1, r6, r7, r8, r9


# --- nothing as written at rest ----------------------------------------------------------------
def _pan(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    return body + luhn_digit(body)


async def _tables(conn: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table in ("intake_thread", "intake_case", "intake_chat_session", "intake_suppressed",
                  "case_log", "outbox", "outbox_parked", "dead_letter"):
        out[table] = [dict(r) for r in await conn.fetch(f"SELECT * FROM {table}")]
    return out


def _leaks_in(tables: dict[str, list[dict[str, Any]]], pan: str, iban: str) -> list[str]:
    found = []
    for table, rows in tables.items():
        for row in rows:
            for column, value in row.items():
                texts = [value.decode("utf-8", "replace") if isinstance(value, bytes)
                         else json.dumps(value) if isinstance(value, list | dict)
                         else str(value)]
                if any(leaks(t, pan, iban) for t in texts):
                    found.append(f"{table}.{column}")
    return found


async def test_no_card_number_iban_or_token_reaches_a_table_or_a_log_line(
        endpoints: Endpoints, db: asyncpg.Connection, superuser_db: asyncpg.Connection,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rng = random.Random(uuid.uuid4().int)
    pan = _pan(rng)
    iban = iban_de("".join(rng.choice("0123456789") for _ in range(18)))
    card = spaced(pan, " ")
    words = f"card {card}, IBAN {iban}, key {SECRETS[0]} {SECRETS[1]}"
    handler = make_handler()
    customer = {"name": f"Maya {card}", "email": f"{pan}@example.com", "external_id": card}
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("chat.started", {"session_id": f"s-{card}", "started_at": NOW.isoformat(),
                          "customer": customer, "widget": words}),
        ("chat.message", {"session_id": f"s-{card}", "message_id": f"m-{pan}", "text": words,
                          "sent_at": NOW.isoformat(), "customer": customer}),
        ("chat.message", {"session_id": f"s-{card}", "message_id": f"m2-{pan}", "text": "\x00"
                          + words, "sent_at": (NOW + timedelta(seconds=5)).isoformat()}),
        ("call.started", {"call_id": f"c-{pan}", "from_number": "+14155550123",
                          "to_number": "+18005550100", "started_at": NOW.isoformat()}),
        ("call.transcript", {"call_id": f"c-{pan}", "segments": [
            {"speaker": "customer", "text": words, "start_seconds": 0, "end_seconds": 1}]}),
        ("email.received", email(f"<{pan}@mail.example>", f"Card {card}",
                                 f"Maya {card} <maya.{pan}@example.com>", body=words)),
        ("email.received", email(f"<r-{pan}@mail.example>", f"Re: Card {card}",
                                 f"Maya <maya.{pan}@example.com>", body=words,
                                 in_reply_to=f"<{pan}@mail.example>")),
        ("email.received", email(f"<auto-{pan}@mail.example>", f"Out of office {card}",
                                 f"Daemon <{pan}@daemon.example>", body=words, automated=True,
                                 in_reply_to=f"<{pan}.0@mail.example>")),
    ]
    for kind, body in bodies:
        await handle(db, handler, kind, body)
    # the UTF-16 body labelled us-ascii, with U+0000 in its Message-ID, is a case, not a dead letter
    raw = (f"From: Maya <maya.{pan}@example.com>\r\nSubject: Order\r\nMessage-ID: "
           f"<utf16.{pan}\x00@mail.example>\r\nContent-Type: text/plain; charset=us-ascii\r\n"
           "\r\n").encode() + f"Hello, card {card}".encode("utf-16")
    decision = await handle(db, handler, "email.received", {
        "mailbox": "support@shop.example", "raw_mime": base64.b64encode(raw).decode()})
    assert [e.type for e in decision.events] == ["case.opened", "contact.received"]

    record = ConsumerRecord(topic=INBOUND_CHAT, partition=0, offset=10**9 + rng.randrange(10**6),
                            timestamp=0, timestamp_type=0, key=f"s-{card}".encode(),
                            value=('{"session_id": "s-' + card + '", "text": "' + words)
                            .encode(), checksum=None, serialized_key_size=-1,
                            serialized_value_size=-1,
                            headers=(("ce_type", f"chat.{card}".encode()),
                                     ("ce_id", f"dead-{pan}".encode())))
    rt = runtime()
    rt._pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    try:
        await rt.dead_letter(record, f"unknown event type 'chat.{card}'")
    finally:
        await rt._pool.close()
        rt._pool = None

    tables = await _tables(superuser_db)
    assert not _leaks_in(tables, pan, iban)
    for line in caplog.messages:
        assert not leaks(line, pan, iban), line
    # the sealed original is the record itself, for the operator who holds the key
    row = next(r for r in tables["dead_letter"] if r["source_offset"] == record.offset)
    assert row["redacted"] and row["sealed"] is not None
    sealer = sealer_from(Settings())
    assert sealer is not None
    original = dead_letters.parse_original(sealer.open(bytes(row["sealed"]), dead_letters.binding(
        "intake", INBOUND_CHAT, 0, record.offset)))
    assert (original.value, original.key) == (record.value, record.key)
    assert original.headers == list(record.headers)


# --- dead letters: show, decrypt, redrive --------------------------------------------------------
async def _switchboard(endpoints: Endpoints, *args: str,
                       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "DATABASE_URL": endpoints.database_url,
            "DATABASE_ADMIN_URL": endpoints.database_admin_url,
            "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers, **(env or {})}
    return await asyncio.to_thread(subprocess.run, [str(SWITCHBOARD), *args], env=full,
                                   capture_output=True, text=True, timeout=120)


async def test_a_dead_letter_is_read_redacted_decrypted_with_the_key_and_redriven_whole(
        endpoints: Endpoints, db: asyncpg.Connection) -> None:
    # A letter first: a tag starting with digits would run on from the card number's last group
    # and, now and then, form a longer Luhn-valid number overlapping it. Every digit is masked
    # even then (test_redaction.py), but the mask is labelled with that number's last four, not
    # the "****1111" this test looks for.
    tag = "k" + uuid.uuid4().hex[:9]
    topic = f"test.keys.{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1), NewTopic(dlq(topic), 1, 1)])
    finally:
        await admin.close()
    value = f'{{"text": "card 4111 1111 1111 1111 {tag}"'.encode()
    record = ConsumerRecord(topic=topic, partition=0, offset=7, timestamp=0, timestamp_type=0,
                            key=b"4111111111111111", value=value, checksum=None,
                            serialized_key_size=-1, serialized_value_size=-1,
                            headers=(("ce_id", f"id-{tag}".encode()),))
    unsealed = replace_offset(record, 8)
    rt = runtime()
    keyless = ServiceRuntime(name="intake", settings=Settings(switchboard_infra="external",
                             switchboard_key_dlq=None), clock=FrozenClock(NOW))
    pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    rt._pool = keyless._pool = pool
    try:
        await rt.dead_letter(record, "envelope: cut off")
        await keyless.dead_letter(unsealed, "envelope: cut off")
    finally:
        await pool.close()
        rt._pool = keyless._pool = None
    ids = {r["source_offset"]: r["id"] for r in await db.fetch(
        "SELECT id, source_offset FROM dead_letter WHERE source_topic = $1", topic)}

    # the copy queued for <topic>.dlq is the redacted one
    queued = await db.fetch("SELECT key, value FROM outbox WHERE topic = $1", dlq(topic))
    assert len(queued) == 2 and all(b"4111" not in r["value"] and b"4111" not in r["key"]
                                    for r in queued)
    shown = await _switchboard(endpoints, "dlq", "show", str(ids[7]))
    assert shown.returncode == 0, shown.stderr
    assert "[card ****1111]" in shown.stdout and "4111 1111" not in shown.stdout
    assert "original sealed" in shown.stdout
    opened = await _switchboard(endpoints, "dlq", "show", str(ids[7]), "--decrypt")
    assert opened.returncode == 0 and "card 4111 1111 1111 1111" in opened.stdout
    no_key = {"SWITCHBOARD_INFRA": "external", "SWITCHBOARD_KEY_DLQ": ""}
    refused = await _switchboard(endpoints, "dlq", "show", str(ids[7]), "--decrypt", env=no_key)
    assert refused.returncode == 1 and "SWITCHBOARD_KEY_DLQ is not set" in refused.stderr
    wrong = await _switchboard(endpoints, "dlq", "redrive", str(ids[7]),
                               env={"SWITCHBOARD_KEY_DLQ": "w" * 40})
    assert wrong.returncode == 1 and "another key" in wrong.stderr
    both = await _switchboard(endpoints, "dlq", "redrive", str(ids[7]), str(ids[8]))
    assert both.returncode == 1 and "only its redacted copy was kept" in both.stderr
    assert "nothing was sent" in both.stderr
    sent = await _switchboard(endpoints, "dlq", "redrive", str(ids[7]))
    assert sent.returncode == 0, sent.stderr
    assert "1 dead letter(s) redriven" in sent.stdout, sent.stdout

    async def redriven() -> list[Any] | None:
        return await read_all(endpoints.kafka_bootstrap_servers, topic) or None

    back = await wait_for(redriven, what=f"the redriven record on {topic}")
    assert [(r.key, r.value) for r in back] == [(b"4111111111111111", value)]
    assert back[0].headers["ce_id"] == f"id-{tag}" and back[0].headers["dlq_redrive_of"] == \
        str(ids[7])


def replace_offset(record: ConsumerRecord[Any, Any], offset: int) -> ConsumerRecord[Any, Any]:
    return replace(record, offset=offset)


# --- topics ------------------------------------------------------------------------------------
async def test_topics_create_sets_retention_and_keeps_other_settings(
        endpoints: Endpoints) -> None:
    bootstrap = endpoints.kafka_bootstrap_servers
    name = f"test.retention.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs={
            "max.message.bytes": "123456"})])
        done = await provision(bootstrap, 1, [TopicSpec(name, config={"retention.ms": "3600000"})])
        assert done.created == [] and done.updated == {name: {"retention.ms": "3600000"}}
        config = await _config(admin, name)
        assert config["retention.ms"] == "3600000"
        assert config["max.message.bytes"] == "123456"  # incremental: the rest is kept
        for topic, hours in (("helpdesk.inbound.email", 168), (dlq(INBOUND_CHAT), 336),
                             ("cases.events", None)):
            value = (await _config(admin, topic))["retention.ms"]
            assert (value == str(hours * 3_600_000)) if hours else value == "604800000"
    finally:
        await admin.close()


async def _config(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [(_, _, _, _, entries)] = response.resources
    return {e[0]: e[1] for e in entries}


# --- rows of earlier versions, and a key rotation ------------------------------------------------
async def test_earlier_rows_are_keyed_by_migrate_and_a_rotation_still_finds_them(
        endpoints: Endpoints, db: asyncpg.Connection) -> None:
    tag = uuid.uuid4().hex[:10]
    legacy_case = f"case-legacy-{tag}"
    admin = await asyncpg.connect(endpoints.database_admin_url)
    try:
        await admin.execute("INSERT INTO intake_thread (thread_key, case_id) VALUES ($1, $2)",
                            f"email:<old.{tag}@mail.example>", legacy_case)
        await admin.execute(
            "INSERT INTO intake_case (case_id, customer_keys, subject_key, channel, opened_at,"
            " last_contact_at) VALUES ($1, $2, $3, 'email', $4, $4)", legacy_case,
            [f"email:old.{tag}@example.com"], f"legacy {tag}", NOW)
        await admin.execute(
            "INSERT INTO router_contact (contact_id, customer_key, case_id, intent, received_at)"
            " VALUES ($1, $2, $3, 'other', $4)", f"contact-{tag}",
            f"email:old.{tag}@example.com", legacy_case, NOW)
        async with admin.transaction():
            counts = await migrate_rows(admin, keyring())
        assert counts["intake_thread"] >= 1 and counts["router_contact"] >= 1
        async with admin.transaction():
            assert set((await migrate_rows(admin, keyring())).values()) == {0}  # idempotent
    finally:
        await admin.close()
    ring = keyring()
    assert await db.fetchval("SELECT case_id FROM intake_thread WHERE thread_key = $1",
                             ring.stored(f"email:<old.{tag}@mail.example>")) == legacy_case
    assert await db.fetchval("SELECT count(*) FROM intake_thread WHERE thread_key LIKE $1",
                             f"%old.{tag}%") == 0
    assert await db.fetchval("SELECT customer_key FROM router_contact WHERE contact_id = $1",
                             f"contact-{tag}") == ring.stored(f"email:old.{tag}@example.com")

    # the customer replies: a participant of the legacy case, found through the keyed row
    reply = email(f"<new.{tag}@mail.example>", "Re: legacy", f"old.{tag}@example.com",
                  in_reply_to=f"<old.{tag}@mail.example>")
    assert case_of(await handle(db, make_handler(), "email.received", reply)) == (legacy_case,
                                                                                   None)
    # rotation: the old key becomes the previous one; the thread is still found, and is now
    # filed under the new key too
    current = os.environ["SWITCHBOARD_KEY_HMAC"]
    rotated = IntakeHandler(Settings(intake_parse_workers=0), ring=Keyring.from_values(
        "r" * 40, previous=current))
    again = email(f"<newer.{tag}@mail.example>", "Re: legacy", f"old.{tag}@example.com",
                  in_reply_to=f"<old.{tag}@mail.example>")
    assert case_of(await handle(db, rotated, "email.received", again)) == (legacy_case, None)
    assert await db.fetchval("SELECT case_id FROM intake_thread WHERE thread_key = $1",
                             rotated.ring.stored(f"email:<old.{tag}@mail.example>")) == \
        legacy_case
