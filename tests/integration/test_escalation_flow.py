"""Escalation end to end: real broker, real database, the four services as processes.

The escalation service runs with a test policy: voice breaches go to a supervisor group whose
sink is a signed webhook served by this test on 127.0.0.1 (level 1 waits an hour for an ack).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest

from services.escalation import sinks
from shared.caselog.store import read_case
from shared.contracts.topics import INBOUND_VOICE
from shared.infra.local import Endpoints
from tests.integration.test_skeleton_flow import case_of, notifications_for, wait_types
from tests.support import contacts
from tests.support.escalation_fixtures import Inbox, smtp_server
from tests.support.infra import TEST_STATE_DIR
from tests.support.kafka import cloudevent_headers, publish, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration
SECRET = "escalation-flow-secret"


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def escalating(endpoints: Endpoints, hook: str,
               smtp: tuple[Inbox, int]) -> Iterator[ServiceProcesses]:
    path = TEST_STATE_DIR / "escalation-policy.json"
    path.write_text(json.dumps({
        "version": "flow-test",
        "targets": {"leads": {"kind": "supervisor_group", "sinks": ["hook", "mail"]}},
        # The receiver is this test, on loopback: allow-listed like an internal receiver.
        "sinks": {"hook": {"type": "webhook", "url": hook, "secret_env": "ESC_HOOK_SECRET",
                           "allow_networks": ["127.0.0.1/32"]},
                  "mail": {"type": "email", "to": ["leads@example.com"],
                           "sender": "switchboard@example.com", "host": "127.0.0.1",
                           "port": smtp[1]}},
        "rules": [{"name": "breach", "trigger": "sla.breached",
                   "levels": [{"targets": ["leads"], "ack_timeout": "1h"}]}]}))
    procs = ServiceProcesses(endpoints, TEST_STATE_DIR / "logs", {
        "ESCALATION_POLICY_FILE": str(Path(path)), "ESC_HOOK_SECRET": SECRET})
    procs.start_all()
    yield procs
    procs.stop_all()


async def test_killed_between_escalation_and_delivery_the_webhook_gets_it_once(
    endpoints: Endpoints, escalating: ServiceProcesses, app_db: asyncpg.Connection,
    smtp: tuple[Inbox, int],
) -> None:
    bootstrap, call = endpoints.kafka_bootstrap_servers, f"esc-{uuid.uuid4().hex[:10]}"
    await publish(bootstrap, INBOUND_VOICE, contacts.call_started(call),
                  cloudevent_headers("call.started"), key=call)
    case_id = await case_of(app_db, f"call:{call}")

    async def escalated() -> bool:
        return await app_db.fetchval(
            "SELECT count(*) FROM escalation WHERE case_id = $1", case_id) == 1
    await wait_for(escalated, timeout=90, what="the escalation to be recorded")
    escalating.kill("escalation")  # the delivery may or may not have gone out
    escalating.start("escalation")
    await wait_types(app_db, case_id, {"case.escalated", "escalation.notified"})

    async def delivered() -> bool:
        states = await app_db.fetch(
            "SELECT state FROM escalation_delivery WHERE case_id = $1", case_id)
        return [r["state"] for r in states] == ["delivered", "delivered"]
    await wait_for(delivered, timeout=60, what="the webhook and e-mail deliveries")
    mine = [(h, b) for h, b in Hook.received if json.loads(b)["case_id"] == case_id]
    ids = {h[sinks.ID_HEADER] for h, _ in mine}
    assert len(ids) == 1  # retried or not, one notification id: the receiver keeps one
    for headers, body in mine:
        assert sinks.verify(SECRET.encode(), headers, body, now=float(
            headers[sinks.TIMESTAMP_HEADER]))
    rows = await read_case(app_db, case_id)
    counts = Counter((r.type, r.payload.get("sink")) for r in rows)
    assert counts[("case.escalated", None)] == 1
    assert counts[("escalation.notified", "kafka")] == 1
    assert counts[("escalation.notified", "hook")] == 1
    assert counts[("escalation.notified", "mail")] == 1
    mails = [message_from_bytes(raw) for to, raw in smtp[0].messages
             if case_id in (message_from_bytes(raw)["Subject"] or "")]
    assert mails and {m["Message-ID"] for m in mails} == {f"<{ids.pop()}@switchboard>"}
    notes = await wait_for(lambda: notifications_for(bootstrap, case_id), what="notification")
    # A kill between the relay's publish and its bookkeeping republishes the same record: Kafka
    # delivery is at-least-once, with one stable notification id for receivers to keep once.
    assert len({n["notification_id"] for n in notes}) == 1, notes
    assert notes[0]["packet"]["packet_version"] == "2"
