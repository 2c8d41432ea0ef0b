"""The SLA service's handlers and timer against a real PostgreSQL, without Kafka.

`SlaHarness` stands in for the ServiceRuntime with the few attributes the SLA app uses (pool,
clock, settings, persist); `persist` *is* ServiceRuntime.persist, so case-log and outbox writes
are the production code. Time is a FrozenClock: a test moves it past due instants at will.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

import asyncpg

from services.sla import app
from services.sla.policy import Policy
from shared.clock import FrozenClock
from shared.contracts.base import Contract
from shared.contracts.envelope import Envelope
from shared.runtime import ServiceRuntime
from shared.settings import Settings


class SlaHarness:
    name = "sla"
    source = "switchboard/sla"
    tracer_provider = None
    persist = ServiceRuntime.persist
    persist_traced = ServiceRuntime.persist_traced

    def __init__(self, pool: asyncpg.Pool, clock: FrozenClock, policy: Policy) -> None:
        self.pool, self.clock, self.policy = pool, clock, policy
        self.settings = Settings(sla_timer_max_idle_seconds=0.2)
        self.timer = app.Timer()
        self.batch = app.SlaBatch(policy, self.timer, clock)

    @property
    def runtime(self) -> ServiceRuntime:
        return cast(ServiceRuntime, self)

    def wake_relay(self) -> None:
        """No relay here: what the runtime would publish stays in the outbox table."""

    async def feed(self, type_: str, payload: Contract, event_id: str | None = None,
                   time: datetime | None = None) -> None:
        """One case event through the SLA handler, committed like the runtime does."""
        env = Envelope(id=event_id or str(uuid.uuid4()), source="test", type=type_,
                       time=time or self.clock.now(), subject=payload.case_id)  # type: ignore[attr-defined]
        async with self.pool.acquire() as conn, conn.transaction():
            await self.batch.begin(conn, [(env, payload)])
            decision = await self.batch.handle(conn, env, payload, self.clock.now())
            await self.runtime.persist(conn, decision)
            await self.batch.before_commit(conn)
        self.batch.committed()

    async def fire(self) -> int:
        """One pass of the timer at the harness clock's now."""
        return await app.fire_due_clocks(self.runtime, self.policy)
