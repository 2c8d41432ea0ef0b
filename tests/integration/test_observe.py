"""Metrics and health of the running services, scraped over HTTP (issue 13).

Each service process serves `/metrics`, `/healthz` and `/readyz`. After a contact goes through,
the scrapes show what the runtime counted (records consumed by topic, handler latency, routing
decisions and time to offer) and what each service reads when scraped (consumer lag, outbox
backlog, SLA clocks, escalations, the router's floor); a standby router is alive but not ready.
"""

from __future__ import annotations

import asyncio
import re
import uuid

import asyncpg
import pytest

from shared.contracts.topics import INBOUND_CHAT
from shared.infra.local import Endpoints
from tests.support import contacts
from tests.support.cases import case_of, wait_types
from tests.support.kafka import cloudevent_headers, publish, wait_for
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration


async def get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_services_serve_metrics_health_and_readiness(
    endpoints: Endpoints, services: ServiceProcesses, app_db: asyncpg.Connection
) -> None:
    ports = services.ports
    for label in ("intake", "router", "sla", "escalation"):
        async def ready(label: str = label) -> bool:
            try:
                return (await get(ports[label], "/readyz"))[0] == 200
            except OSError:
                return False
        await wait_for(ready, what=f"{label} ready")
        assert await get(ports[label], "/healthz") == (200, "ok\n")

    session = f"obs-{uuid.uuid4().hex[:10]}"
    await publish(endpoints.kafka_bootstrap_servers, INBOUND_CHAT,
                  contacts.chat_message(session, "My order 5512 never arrived"),
                  cloudevent_headers("chat.message"), key=session)
    case_id = await case_of(app_db, f"chat:{session}")
    await wait_types(app_db, case_id, ["routing.decided", "sla.started"])

    async def scraped(label: str, name: str, **labels: str) -> float:
        async def value() -> float | None:
            found = sample((await get(ports[label], "/metrics"))[1], name, **labels)
            return found or None
        result: float = await wait_for(value, what=f"{name} {labels} from {label}")
        return result

    assert await scraped("intake", "switchboard_records_consumed_total", service="intake",
                         topic=INBOUND_CHAT) >= 1
    assert await scraped("intake", "switchboard_handler_seconds_count", service="intake",
                         topic=INBOUND_CHAT) >= 1
    assert await scraped("router", "switchboard_routing_decisions_total") >= 1
    assert await scraped("sla", "switchboard_sla_clocks_running") >= 1
    body = (await get(ports["router"], "/metrics"))[1]
    assert re.search(r'switchboard_consumer_lag\{partition="\d+",service="router",'
                     r'topic="cases.events"\} \d', body), body[:2000]
    assert sample(body, "switchboard_outbox_backlog", service="router") is not None
    assert sample(body, "switchboard_ready", service="router") == 1.0
    escalation = (await get(ports["escalation"], "/metrics"))[1]
    assert "switchboard_outbox_oldest_seconds" in escalation

    # a second router is alive but stands by: not ready, and says why
    label = services.start("router", instance=2)
    try:
        async def standing_by() -> str | None:
            try:
                status, text = await get(services.ports[label], "/readyz")
            except OSError:
                return None
            return text if status == 503 and "standing by" in text else None
        await wait_for(standing_by, what="the standby router's readiness")
        assert (await get(services.ports[label], "/healthz"))[0] == 200
    finally:
        services.kill(label)
