"""Escalation on the real PostgreSQL (no Kafka): deliveries fail alone, timers and digests run on,
decisions are taken as of the event handled. Real local receivers: an HTTP server and aiosmtpd.

Time is a FrozenClock the test moves past backoffs, leases, deadlines and digest intervals.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import asyncpg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.escalation import policy, sinks
from services.escalation.app import Claim
from shared.caselog.store import read_case, verify_case
from shared.clock import FrozenClock
from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity
from shared.infra.local import Endpoints
from tests.support.escalation_fixtures import EscalationHarness, Inbox, app_pool, smtp_server

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
SECRET = "escalation-db-secret"
ENV = {"ESC_DB_SECRET": SECRET}
# What `=?utf-8?q?Refund_please=0ABcc:_x@evil?=` decodes to, and worse.
INJECTED = "Refund please\nBcc: x@evil.example\r\nX-Evil: 1"


class Hooks(BaseHTTPRequestHandler):
    """/good answers 204, /flaky 503 with Retry-After: 2, /slow waits for `release` first."""

    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    release = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append((self.path, body))
        if self.path == "/slow":
            type(self).release.wait(timeout=120)
        self.send_response(503 if self.path == "/flaky" else 204)
        if self.path == "/flaky":
            self.send_header("Retry-After", "2")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
async def pool(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    async with app_pool(endpoints) as created:
        yield created


@pytest.fixture
def hooks() -> Iterator[str]:
    Hooks.calls, Hooks.release = [], threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Hooks.release.set()
    server.shutdown()
    server.server_close()


def hook(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "secret_env": "ESC_DB_SECRET",
            "allow_networks": ["127.0.0.1/32"], **extra}


def load(sinks_: dict[str, Any], per_target: list[str]) -> policy.Policy:
    return policy.load_text(json.dumps({
        "version": "db-test",
        "targets": {"leads": {"kind": "supervisor_group", "sinks": per_target}},
        "sinks": sinks_,
        "rules": [
            {"name": "warn", "trigger": "sla.warning", "digest": True},
            {"name": "breach", "trigger": "sla.breached", "levels": [
                {"targets": ["leads"], "ack_timeout": "10m"},
                {"targets": ["leads"], "ack_timeout": "10m"}]},
            {"name": "angry", "trigger": "frustration", "levels": [
                {"targets": ["leads"], "ack_timeout": "20m"}]},
        ],
        "digest": {"every": "1h", "targets": ["leads"]},
    }), "db-test.json", environ=ENV)


async def open_case(h: EscalationHarness, subject: str = "Charged twice") -> str:
    case_id = f"esc-db-{uuid.uuid4().hex[:12]}"
    await h.log(case_id, "case.opened", ce.CaseOpened(
        case_id=case_id, channel="email", subject=subject, opened_at=h.clock.now(),
        customer=CustomerIdentity(email="maya@example.com")), source="switchboard/intake")
    return case_id


async def breach(h: EscalationHarness, case_id: str) -> None:
    event = ce.SlaBreached(case_id=case_id, clock_id=f"{case_id}-fr", metric="first_response",
                           due_at=h.clock.now(), breached_at=h.clock.now(), overdue_seconds=0)
    await h.feed("sla.breached", event, await h.log(case_id, "sla.breached", event,
                                                    source="switchboard/sla"))


async def deliveries(db: asyncpg.Connection, case_id: str) -> dict[str, tuple[str, int]]:
    """Each sink's (state, attempts) for the case's level-1 notification."""
    rows = await db.fetch(
        "SELECT sink, state, attempts FROM escalation_delivery WHERE case_id = $1"
        " AND body->>'level' = '1' AND body->>'kind' = 'escalation'", case_id)
    return {r["sink"]: (r["state"], r["attempts"]) for r in rows}


async def test_a_failing_sink_is_parked_alone_while_others_deliver_and_digests_go_out(
    pool: asyncpg.Pool, app_db: asyncpg.Connection, hooks: str, smtp: tuple[Inbox, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox, port = smtp
    pol = load({"good": hook(f"{hooks}/good"), "flaky": hook(f"{hooks}/flaky", max_attempts=3),
                "mail": {"type": "email", "to": ["leads@example.com"],
                         "sender": "sb@example.com", "host": "127.0.0.1", "port": port}},
               ["good", "flaky", "mail"])
    clock = FrozenClock(T0)
    h = EscalationHarness(pool, clock, pol)
    poisoned = await open_case(h, subject=INJECTED)
    await breach(h, poisoned)
    quiet = await open_case(h)
    warning = ce.SlaWarning(case_id=quiet, clock_id="w", metric="first_response", policy="p",
                            threshold="75%", due_at=T0, warned_at=T0,
                            business_remaining_seconds=10)
    await h.feed("sla.warning", warning, await h.log(quiet, "sla.warning", warning))
    # A row no sink could ever send (written by a bug, or by hand): parked at once.
    await app_db.execute(
        "INSERT INTO escalation_delivery (notification_id, sink, case_id, body,"
        " next_attempt_at) VALUES ($1, 'good', $2, '{\"notification_id\": 5}', $3)",
        f"ntf-garbage-{poisoned}", poisoned, T0)

    caplog.set_level(logging.WARNING, logger="services.escalation.app")
    await h.deliver()
    assert await deliveries(app_db, poisoned) == {
        "good": ("delivered", 1), "flaky": ("pending", 1), "mail": ("delivered", 1)}
    [garbage] = await app_db.fetch("SELECT state, last_error FROM escalation_delivery"
                                   " WHERE notification_id LIKE 'ntf-garbage-%' AND case_id = $1",
                                   poisoned)
    assert garbage["state"] == "parked" and "stored body unreadable" in garbage["last_error"]

    # The flaky receiver asked for 2 s each time; the third attempt is its last.
    for _ in range(2):
        clock.advance(timedelta(seconds=2))
        await h.deliver()
    [flaky] = await app_db.fetch("SELECT state, attempts, last_error, parked_at FROM"
                                 " escalation_delivery WHERE case_id = $1 AND sink = 'flaky'",
                                 poisoned)
    assert (flaky["state"], flaky["attempts"]) == ("parked", 3)
    assert flaky["last_error"] == "parked after 3 attempt(s): HTTP 503"
    assert flaky["parked_at"] == clock.now()
    assert any("parked after 3 attempt(s)" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)
    assert await h.digests() == 0  # the warning waits for its hour
    clock.advance(timedelta(hours=1))
    await h.deliver()
    assert [p for p, _ in Hooks.calls].count("/flaky") == 3  # parked: never tried again

    # The timer and the digest run on: level 2 and the warning digest go out to the others.
    assert await h.fire() == 1
    assert await h.digests() == 1
    await h.deliver()
    bodies = [b for p, b in Hooks.calls if p == "/good"]
    assert [b["level"] for b in bodies if b.get("case_id") == poisoned] == [1, 2]
    assert [[i["case_id"] for i in b["items"]] for b in bodies if "digest_id" in b] == [[quiet]]
    digests = await app_db.fetch("SELECT sink, state FROM escalation_delivery"
                                 " WHERE notification_id LIKE 'dig-%' AND case_id IS NULL"
                                 " AND body->'items'->0->>'case_id' = $1", quiet)
    assert {r["sink"]: r["state"] for r in digests} == {"good": "delivered", "mail": "delivered",
                                                        "flaky": "pending"}
    assert await app_db.fetchval("SELECT count(*) FROM outbox WHERE service = 'escalation'"
                                 " AND headers->>'ce_type' = 'supervisor.digest'"
                                 " AND convert_from(value, 'UTF8') LIKE '%' || $1 || '%'",
                                 quiet) == 1

    # The customer's subject reached the mail without its line breaks, to the one recipient.
    mails = [(to, message_from_bytes(raw, policy=email.policy.default))
             for to, raw in inbox.messages]
    escalated = [(to, m) for to, m in mails if poisoned in str(m["Subject"])]
    assert len(escalated) == 2
    for to, mail in escalated:
        assert to == ["leads@example.com"] and mail["Bcc"] is None and mail["X-Evil"] is None
        assert "Refund please Bcc: x@evil.example X-Evil: 1" in str(mail["Subject"])
    sinks_logged = Counter(r.payload["sink"] for r in await read_case(app_db, poisoned)
                           if r.type == "escalation.notified")
    assert sinks_logged == {"kafka": 2, "good": 2, "mail": 2}
    assert await verify_case(app_db, poisoned) is None


async def test_a_slow_sink_holds_only_its_own_slots_and_never_delays_a_timer(
    pool: asyncpg.Pool, app_db: asyncpg.Connection, hooks: str,
) -> None:
    pol = load({"good": hook(f"{hooks}/good"), "slow": hook(f"{hooks}/slow", timeout="60s")},
               ["slow", "good"])
    clock = FrozenClock(T0)
    h = EscalationHarness(pool, clock, pol, escalation_delivery_per_sink=1)
    cases = [await open_case(h) for _ in range(2)]
    for case_id in cases:
        await breach(h, case_id)
    assert await h.deliveries.start_due() == 2  # one slow, one good: a slot per sink
    for _ in range(2):  # the good ones go out one after the other, the slow one still hangs
        [good] = [t for t in h.deliveries.tasks if t.get_name() == "deliver-good"]
        assert (await good).ok  # type: ignore[union-attr]
        await h.deliveries.start_due()
    states = Counter((r["sink"], r["state"]) for r in await app_db.fetch(
        "SELECT sink, state FROM escalation_delivery WHERE case_id = ANY($1)", cases))
    assert states == {("good", "delivered"): 2, ("slow", "pending"): 2}
    assert h.deliveries.in_flight["slow"] == 1  # the second slow one was never claimed
    # The acknowledgement deadline passes while the slow send is in flight: the timer fires.
    clock.advance(timedelta(minutes=10))
    assert await h.fire() == 2
    for case_id in cases:
        types = [r.type for r in await read_case(app_db, case_id)]
        assert types.count("escalation.reescalated") == 1
    Hooks.release.set()
    while await h.deliver():
        pass
    left = await app_db.fetchval("SELECT count(*) FROM escalation_delivery WHERE"
                                 " case_id = ANY($1) AND state <> 'delivered'", cases)
    assert left == 0


async def test_a_worker_that_dies_mid_send_is_replaced_after_its_lease_and_fenced_out(
    pool: asyncpg.Pool, app_db: asyncpg.Connection, hooks: str,
) -> None:
    pol = load({"slow": hook(f"{hooks}/slow", timeout="60s")}, ["slow"])
    clock = FrozenClock(T0)
    first = EscalationHarness(pool, clock, pol, escalation_delivery_lease_seconds=120)
    case_id = await open_case(first)
    await breach(first, case_id)
    assert await first.deliveries.start_due() == 1
    [task] = first.deliveries.tasks
    task.cancel()  # the worker died with the request sent and no answer recorded
    await asyncio.gather(task, return_exceptions=True)
    Hooks.release.set()
    second = EscalationHarness(pool, clock, pol)
    assert await second.deliveries.start_due() == 0  # still leased to the first worker
    clock.advance(timedelta(seconds=121))
    assert [s.ok for s in await second.deliver() if s] == [True]
    row = await app_db.fetchrow("SELECT notification_id, state, attempts, body::text AS body"
                                " FROM escalation_delivery WHERE case_id = $1", case_id)
    assert (row["state"], row["attempts"]) == ("delivered", 2)
    # The first worker's late word about its attempt changes nothing, success or failure.
    stale = Claim(row["notification_id"], "slow", case_id, row["body"], 1, None)
    await first.deliveries.record(stale, sinks.Sent(False, False, "late"))
    await first.deliveries.record(stale, sinks.Sent(True))
    again = await app_db.fetchrow("SELECT state, attempts, last_error FROM escalation_delivery"
                                  " WHERE case_id = $1", case_id)
    assert (again["state"], again["attempts"], again["last_error"]) == ("delivered", 2, None)
    notified = [r for r in await read_case(app_db, case_id)
                if r.type == "escalation.notified" and r.payload["sink"] == "slow"]
    assert len(notified) == 1
    ids = {b["notification_id"] for p, b in Hooks.calls if b.get("case_id") == case_id}
    assert len(ids) == 1  # sent twice, under one id: the receiver keeps one


@pytest.mark.parametrize("assigned_first", [False, True])
async def test_an_assignment_acknowledges_whatever_order_the_events_are_handled_in(
    pool: asyncpg.Pool, app_db: asyncpg.Connection, assigned_first: bool,
) -> None:
    pol = load({}, [])
    clock = FrozenClock(T0)
    h = EscalationHarness(pool, clock, pol)
    case_id = await open_case(h)
    angry = ce.CaseClassified(case_id=case_id, skill="billing", queue="billing",
                              priority="high", language="en", confidence=0.9,
                              sentiment=-0.8, frustrated=True)
    assigned = ce.CaseAssigned(case_id=case_id, agent_id="agent-lee", authority_tier=1)
    # The router logged both before the escalation service saw either (a restart, a backlog).
    classified_id = await h.log(case_id, "case.classified", angry)
    assigned_id = await h.log(case_id, "case.assigned", assigned)
    steps = [("case.classified", angry, classified_id), ("case.assigned", assigned, assigned_id)]
    for type_, payload, event_id in (reversed(steps) if assigned_first else steps):
        await h.feed(type_, payload, event_id)
    for type_, payload, event_id in steps:  # redelivered after a restart
        await h.feed(type_, payload, event_id)
    [esc] = await app_db.fetch("SELECT state, assigned_agent, opened_seq FROM escalation"
                               " WHERE case_id = $1", case_id)
    assert (esc["state"], esc["assigned_agent"], esc["opened_seq"]) == ("acknowledged", None, 2)
    counts = Counter(r.type for r in await read_case(app_db, case_id))
    assert counts["case.escalated"] == 1 and counts["escalation.acknowledged"] == 1
    assert counts["escalation.notified"] == 1
    assert await app_db.fetchval("SELECT count(*) FROM outbox WHERE service = 'escalation'"
                                 " AND convert_from(value, 'UTF8') LIKE '%' || $1 || '%'"
                                 " AND headers->>'ce_type' = 'supervisor.notification'",
                                 case_id) == 1
    clock.advance(timedelta(hours=2))
    await h.fire()  # acknowledged: no timer left to re-notify anyone
    assert Counter(r.type for r in await read_case(app_db, case_id)) == counts


async def test_timer_driven_events_and_deliveries_continue_the_contacts_trace(
    pool: asyncpg.Pool, app_db: asyncpg.Connection, hooks: str,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pol = load({"good": hook(f"{hooks}/good")}, ["good"])
    clock = FrozenClock(T0)
    h = EscalationHarness(pool, clock, pol, tracer_provider=provider)
    case_id = await open_case(h)
    tracer = trace.get_tracer("test", tracer_provider=provider)
    with tracer.start_as_current_span("cases.events handle") as span:
        await breach(h, case_id)
        trace_id = format(span.get_span_context().trace_id, "032x")
    clock.advance(timedelta(minutes=10))
    assert await h.fire() == 1
    await h.deliver()
    rows = [r for r in await read_case(app_db, case_id) if r.source == "switchboard/escalation"]
    assert {r.type for r in rows} == {"case.escalated", "escalation.notified",
                                      "escalation.reescalated"}
    assert {r.trace_id for r in rows} == {trace_id}
    delivered = [s for s in exporter.get_finished_spans() if s.name == "escalation.deliver good"]
    assert len(delivered) == 2
    assert {format(s.context.trace_id, "032x") for s in delivered} == {trace_id}


async def test_a_delivery_for_a_sink_the_policy_lacks_waits_then_is_parked(
    pool: asyncpg.Pool, app_db: asyncpg.Connection, hooks: str,
) -> None:
    """During a rolling deploy another instance may have the sink: it gets 15 minutes."""
    clock = FrozenClock(T0)
    h = EscalationHarness(pool, clock, load({"good": hook(f"{hooks}/good")}, ["good"]))
    notification_id = f"ntf-orphan-{uuid.uuid4().hex}"
    await app_db.execute(
        "INSERT INTO escalation_delivery (notification_id, sink, case_id, body,"
        " next_attempt_at) VALUES ($1, 'retired-hook', NULL, '{}', $2)", notification_id, T0)
    clock.advance(timedelta(minutes=14))
    await h.deliver()
    state = "SELECT state, last_error FROM escalation_delivery WHERE notification_id = $1"
    assert (await app_db.fetchrow(state, notification_id))["state"] == "pending"
    clock.advance(timedelta(minutes=2))
    await h.deliver()
    row = await app_db.fetchrow(state, notification_id)
    assert (row["state"], row["last_error"]) == ("parked",
                                                 "sink retired-hook is not in the policy")
