"""Automated mail is set aside with its reason, never dropped in silence, and an operator can
list and release it with the `switchboard` command (real broker, database and services)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.caselog.store import read_case
from shared.contracts.topics import INBOUND_EMAIL
from shared.infra.local import Endpoints
from tests.support import contacts
from tests.support.cases import case_of, stored_key
from tests.support.kafka import cloudevent_headers, publish, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration
SWITCHBOARD = Path(sys.executable).with_name("switchboard")


async def switchboard(endpoints: Endpoints, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": endpoints.database_url,
           "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka_bootstrap_servers}
    done = await asyncio.to_thread(subprocess.run, [str(SWITCHBOARD), *args], env=env,
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_suppressed_bounce_is_listed_and_released_into_a_case(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    tag = uuid.uuid4().hex[:10]
    message_id = f"<{tag}.daemon@mail.example>"
    raw = contacts.raw_email(message_id, f"Order {tag}: my parcel never came",
                             "Card 4111 1111 1111 1111 was charged, where is my parcel?",
                             sender="Mail Delivery System <mailer-daemon@mail.example>")
    body: dict[str, Any] = contacts.email_event(raw)
    await publish(endpoints.kafka_bootstrap_servers, INBOUND_EMAIL, body,
                  cloudevent_headers("email.received"), key=tag)

    async def recorded() -> str | None:
        value: str | None = await app_db.fetchval(
            "SELECT suppression_id FROM intake_suppressed WHERE message_key = $1",
            stored_key(f"email:{message_id}"))
        return value

    suppression_id = await wait_for(recorded, what="a suppression record")
    row = await app_db.fetchrow("SELECT reason, text FROM intake_suppressed"
                                " WHERE suppression_id = $1", suppression_id)
    assert row["reason"] == "mailer daemon sender (mailer-daemon@)"
    assert "4111 1111 1111 1111" not in row["text"] and "[card ****1111]" in row["text"]
    assert await app_db.fetchval("SELECT count(*) FROM intake_thread WHERE thread_key = $1",
                                 stored_key(f"email:{message_id}")) == 0

    listed = await switchboard(endpoints, "intake", "suppressed", "list", "--limit", "500")
    assert suppression_id in listed and "mailer daemon sender" in listed
    released = await switchboard(endpoints, "intake", "suppressed", "release", suppression_id)
    assert f"released {suppression_id}" in released

    case_id = await case_of(app_db, f"email:{message_id}")
    rows = [r for r in await read_case(app_db, case_id) if r.source == "switchboard/intake"]
    assert [r.type for r in rows] == ["case.opened", "contact.received"]
    assert rows[1].payload["details"]["released_from"] == suppression_id
    assert "[card ****1111]" in rows[1].payload["text"]
    assert await app_db.fetchval("SELECT released_at IS NOT NULL FROM intake_suppressed"
                                 " WHERE suppression_id = $1", suppression_id)
