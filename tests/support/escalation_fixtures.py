"""The escalation service's handlers, timers, digests and delivery worker on a real PostgreSQL,
without Kafka.

`EscalationHarness` stands in for the ServiceRuntime with the few attributes the escalation app
uses (pool, clock, settings, persist, tracer provider); `persist` *is* ServiceRuntime.persist,
so case-log and outbox writes are the production code. Time is a FrozenClock. Case events are
first appended to the log, as the service that emits them would, then handed to the handler,
in whatever order a test wants.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, cast

import asyncpg
from aiosmtpd.controller import Controller
from opentelemetry.sdk.trace import TracerProvider

from services.escalation import app, sinks
from services.escalation.policy import Policy
from shared.caselog.store import append_events
from shared.clock import FrozenClock
from shared.contracts.base import Contract
from shared.contracts.envelope import Envelope
from shared.events import CaseEvent
from shared.infra.local import Endpoints
from shared.runtime import ServiceRuntime
from shared.settings import Settings


class EscalationHarness:
    name = "escalation"
    source = "switchboard/escalation"
    instance_id = "test-escalation-harness"
    persist = ServiceRuntime.persist
    persist_traced = ServiceRuntime.persist_traced

    def __init__(self, pool: asyncpg.Pool, clock: FrozenClock, policy: Policy,
                 tracer_provider: TracerProvider | None = None,
                 resolver: sinks.Resolver = sinks.system_resolver, **settings: Any) -> None:
        self.pool, self.clock, self.policy = pool, clock, policy
        self.tracer_provider = tracer_provider
        self.settings = Settings(**{"escalation_retry_base_seconds": 1.0, **settings})
        self._handlers: dict[str, Any] = app.handlers(self.runtime, policy)
        self.deliveries = app.Deliveries(self.runtime, policy, resolver)

    @property
    def runtime(self) -> ServiceRuntime:
        return cast(ServiceRuntime, self)

    def wake_relay(self) -> None:
        """No relay here: what the runtime would publish stays in the outbox table."""

    async def log(self, case_id: str, type_: str, payload: Contract,
                  source: str = "switchboard/router") -> str:
        """Append one event to the case log (as its emitter would); its event id."""
        event = CaseEvent(uuid.uuid4(), case_id, type_, self.clock.now(), payload)
        async with self.pool.acquire() as conn, conn.transaction():
            await append_events(conn, [event], source=source, trace_id=None)
        return str(event.event_id)

    async def feed(self, type_: str, payload: Contract, event_id: str | None = None,
                   time: datetime | None = None) -> None:
        """One event through the handler, committed like the runtime does."""
        env = Envelope(id=event_id or str(uuid.uuid4()), source="test", type=type_,
                       time=time or self.clock.now(), subject=payload.case_id)  # type: ignore[attr-defined]
        async with self.pool.acquire() as conn, conn.transaction():
            decision = await self._handlers[type_](conn, env, payload, self.clock.now())
            await self.runtime.persist(conn, decision)

    async def fire(self) -> int:
        return await app.fire_due(self.runtime, self.policy)

    async def digests(self) -> int:
        return await app.send_digests(self.runtime, self.policy)

    async def deliver(self) -> list[sinks.Sent | None]:
        """One delivery pass at the harness clock's now, waiting for every send it started."""
        await self.deliveries.start_due()
        return await self.deliveries.settle()


class Inbox:
    """aiosmtpd's handler: what each accepted message was, and to whom (the envelope)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) and its port."""
    inbox = Inbox()
    with socket.socket() as probe:  # a free port: aiosmtpd's readiness check needs a real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@asynccontextmanager
async def app_pool(endpoints: Endpoints) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the services' role."""
    created = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=6)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()
