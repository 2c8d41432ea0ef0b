"""Router's app: load the floor, hand each record to the pure core, apply and save what it decided.

The routing state (agents, presence, load, waiting cases, open offers) lives in an indexed
`Floor` in this process, rebuilt from the router's tables at start and changed only by the
`Change`s that `decide.py` returns. Each consumed batch runs in one transaction (one at a time:
`BatchHooks.serial`): the cases and customers it names are loaded in one query each, every
record is decided on the floor, and the changed rows are saved with the log rows and the outbox
before the commit; if the commit fails the floor is rolled back with it.

One router decides at a time — it owns the floor. A second router process is a hot standby: it
waits on the leader's advisory lock, and when the leader's session ends it takes over, bumps the
leadership epoch and loads the floor. Every transaction checks the epoch it holds, so a leader
that lost its lock (a network partition, a paused process) can never write after a successor
started: it exits instead. See docs/architecture.md (scaling).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

from services.router import core, decide
from services.router.classify import customer_key
from services.router.floor import Change, Floor, PutOffer
from services.router.store import load_floor, prefetch, save
from shared.contracts import agents as ag
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.topics import AGENT_ACTIVITY, AGENTS, CASE_EVENTS
from shared.events import Decision
from shared.failures import safe_reason
from shared.runtime import SKIMMED_BATCH, BatchHooks, Route, ServiceRuntime

log = logging.getLogger(__name__)
LEADER_LOCK = 7_007_005


class RouterApp(BatchHooks):
    def __init__(self, runtime: ServiceRuntime, config: core.RouterConfig) -> None:
        self.runtime, self.config = runtime, config
        self.floor = Floor(config.policy)
        self.serial: asyncio.Lock = asyncio.Lock()
        self.epoch: int | None = None
        self._pending: list[Change] = []
        self._leader: asyncpg.Connection | None = None

    # --- the runtime's transactions ----------------------------------------------------------
    async def begin(self, conn: asyncpg.Connection, items: list[tuple[Envelope, Any]]) -> None:
        self.floor.begin()
        self._pending = []
        case_ids = [p.case_id for _, p in items if hasattr(p, "case_id")]
        keys = [k for _, p in items if isinstance(p, ce.ContactReceived)
                for k in (customer_key(p.customer),) if k is not None]
        since = self.runtime.clock.now() - timedelta(hours=self.config.policy.repeat_window_hours)
        await prefetch(conn, self.floor, case_ids, keys, since)

    async def before_commit(self, conn: asyncpg.Connection) -> None:
        self.fence(await save(conn, self._pending, self.runtime.clock.now()))

    def committed(self) -> None:
        self.floor.commit()
        self._pending = []
        self.floor.evict()

    def rolled_back(self) -> None:
        self.floor.rollback()
        self._pending = []

    def fence(self, epoch: int) -> None:
        """Only the leader of the epoch we hold may commit; a successor's epoch stops us. `save`
        reads the epoch (FOR SHARE, so no successor can take it before this commit) in the
        statement that writes the floor's changes: exiting here rolls them back."""
        if epoch != self.epoch:
            log.critical("router: leadership epoch is %s, ours %s: another router leads; "
                         "exiting without committing", epoch, self.epoch)
            os._exit(75)  # never write again: the successor owns the floor

    def handler(self, step: Callable[..., None]) -> Any:
        async def handle(conn: asyncpg.Connection, env: Envelope, payload: Any,
                         now: datetime) -> Decision:
            outcome = decide.decide(self.floor, self.config, now, step, env.id, payload,
                                    keep=True)
            self._pending.extend(outcome.changes)
            self.observe(outcome, now)
            return outcome.decision
        return handle

    def observe(self, outcome: decide.Outcome, now: datetime) -> None:
        """Routing decisions by outcome, and each offer's time since its case was queued."""
        metrics = self.runtime.metrics
        for event in outcome.decision.events:
            if event.type == "routing.decided":
                metrics.decisions.labels(event.data.outcome).inc()  # type: ignore[attr-defined]
        for change in outcome.changes:
            if isinstance(change, PutOffer) and change.offer.state == "offered" and \
                    change.offer.offered_at == now:
                metrics.time_to_offer.observe(
                    max(0.0, (now - change.offer.needs.queued_at).total_seconds()))

    async def floor_gauges(self) -> list[tuple[str, str, dict[str, str], float]]:
        """What the floor holds now: waiting cases by queue, agents by presence, open offers."""
        out = []
        waiting: dict[str, int] = {}
        for case in self.floor.cases.values():
            if case.state == "waiting":
                waiting[case.queue] = waiting.get(case.queue, 0) + 1
        for queue, n in sorted(waiting.items()):
            out.append(("switchboard_router_waiting_cases", "Cases waiting, by queue.",
                        {"queue": queue}, float(n)))
        presence: dict[str, int] = {}
        for agent in self.floor.agents.values():
            presence[agent.profile.presence] = presence.get(agent.profile.presence, 0) + 1
        for state, n in sorted(presence.items()):
            out.append(("switchboard_router_agents", "Agents known, by presence.",
                        {"presence": state}, float(n)))
        out.append(("switchboard_router_open_offers", "Offers open (offered or accepted).", {},
                    float(len(self.floor.offers))))
        return out

    # --- timers ------------------------------------------------------------------------------
    async def tick(self) -> int:
        """Expire unanswered offers and re-check waiting cases whose time has come."""
        now = self.runtime.clock.now()
        async with self.serial:
            # Decided on the floor in a journal of its own, kept if the transaction commits,
            # undone if it does not: the same way as a consumed batch's decisions.
            self.floor.begin()
            try:
                outcome = decide.decide(self.floor, self.config, now, decide.tick, keep=True)
                if not outcome.changes and not outcome.decision.events:
                    self.floor.commit()  # an empty journal
                    return 0
                async with self.runtime.pool.acquire() as conn, conn.transaction():
                    self.fence(await save(conn, outcome.changes, now))
                    await self.runtime.persist(conn, outcome.decision)
            except BaseException:
                self.floor.rollback()
                raise
            self.floor.commit()
        self.runtime.wake_relay()
        return len(outcome.decision.events)

    async def timer_loop(self, runtime: ServiceRuntime) -> None:
        backoff = runtime.settings.timer_tick_seconds
        while True:
            try:
                await self.tick()
                backoff = runtime.settings.timer_tick_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be restarting: the timers wait in it
                log.warning("router timer loop failed; retrying: %s", safe_reason(exc))
                backoff = min(backoff * 2, 5.0)
            await asyncio.sleep(backoff)

    # --- leadership ----------------------------------------------------------------------------
    async def lead(self, runtime: ServiceRuntime) -> None:
        """Wait until this process leads, take the next epoch, and load the floor."""
        self._leader = await _connect(runtime.settings.database_url)
        holder = f"{socket.gethostname()}:{os.getpid()}"
        if not await self._leader.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK):
            log.info("router: another router leads; standing by")
            runtime.status = "standing by: another router leads"
            await self._leader.execute("SELECT pg_advisory_lock($1)", LEADER_LOCK)
        self.epoch = await self._leader.fetchval(
            "INSERT INTO router_leader (id, epoch, holder, since) VALUES (1, 1, $1, now())"
            " ON CONFLICT (id) DO UPDATE SET epoch = router_leader.epoch + 1,"
            " holder = EXCLUDED.holder, since = EXCLUDED.since RETURNING epoch", holder)
        log.info("router: leading (epoch %s)", self.epoch)
        await load_seed_roster(runtime)
        async with runtime.pool.acquire() as conn:
            await load_floor(conn, self.floor)
        log.info("router: floor loaded: %d agents, %d open offers, %d cases",
                 len(self.floor.agents), len(self.floor.offers), len(self.floor.cases))

    async def keep_leading(self, runtime: ServiceRuntime) -> None:
        """The leader's lock lives with its session: if the session ends (a database restart),
        take the lock again, or stop if another router took it (and with it a new epoch). When
        the service stops, the session is closed: the lock goes to a standby at once."""
        try:
            while True:
                await asyncio.sleep(1.0)
                if self._leader is not None and not self._leader.is_closed():
                    continue
                await self._retake(runtime)
        finally:
            if self._leader is not None and not self._leader.is_closed():
                await self._leader.close()

    async def _retake(self, runtime: ServiceRuntime) -> None:
        try:
            conn = await _connect(runtime.settings.database_url)
        except Exception as exc:
            log.warning("router: cannot reach PostgreSQL to keep leading: %s", safe_reason(exc))
            return
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK)
        epoch = await conn.fetchval("SELECT epoch FROM router_leader WHERE id = 1")
        if not got or epoch != self.epoch:
            log.critical("router: leadership lost (epoch %s, ours %s); exiting", epoch,
                         self.epoch)
            os._exit(75)
        self._leader = conn


async def _connect(url: str) -> asyncpg.Connection:
    backoff = 0.5
    while True:
        try:
            # Named apart from the pool's sessions: this one holds the leadership lock.
            conn: asyncpg.Connection = await asyncpg.connect(
                url, server_settings={"application_name": "switchboard-router-leader"})
            return conn
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("router: PostgreSQL not reachable yet: %s", safe_reason(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


async def load_seed_roster(runtime: ServiceRuntime) -> None:
    """Agents of the seed roster, unless the agents topic already told us better.

    A seed agent no profile event ever updated is reset at start (misses forgiven, presence
    from the file): nobody can bring such an agent back from `away` but a restart.
    """
    roster: list[dict[str, Any]] = json.loads(
        (resources.files("services.router") / "seed_roster.json").read_text("utf-8"))
    epoch = datetime(2000, 1, 1).astimezone()
    async with runtime.pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO router_agent (agent_id, profile, updated_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (agent_id) DO UPDATE SET profile = EXCLUDED.profile, missed = 0"
            " WHERE router_agent.updated_at <= EXCLUDED.updated_at",
            [(p.agent_id, p.model_dump_json(), epoch) for p in (
                ag.AgentProfile.model_validate({**entry, "changed_at": epoch})
                for entry in roster)])


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    s = runtime.settings
    config = core.load_config(_path(s.router_policy_path), _path(s.router_taxonomy_path),
                              _path(s.router_model_path))
    app = RouterApp(runtime, config)
    runtime.hooks = app
    # Only the leader consumes, and a successor replaces it: one member name for any of them,
    # so the new leader gets the partitions at once instead of after the session timeout.
    runtime.instance_id = "router-leader"
    runtime.defer_appends = True  # the router's core never reads the case log
    h = app.handler
    # A batch of cases.events is mostly types the router skips undecoded (about one record in
    # ten is a contact it routes), and each batch pays a fixed set of round trips (prefetch,
    # fence, save, append, outbox, commit): at 200 records a batch carried ~15 decisions and
    # the router was the pipeline's limit (bench-e2e saturation 3,000: 93 -> 123 contacts/s).
    runtime.subscribe(Route(CASE_EVENTS, ce.CASE_EVENT_TYPES, {
        "contact.received": h(decide.on_contact), "contact.text_added": h(decide.on_text_added),
        "case.escalated": h(decide.on_escalated)},
        reject_unknown_types=False, max_records=SKIMMED_BATCH))
    runtime.subscribe(Route(AGENTS, ag.AGENT_TOPIC_TYPES,
                            {"agent.profile_changed": h(decide.on_profile)}))
    runtime.subscribe(Route(AGENT_ACTIVITY, ag.AGENT_ACTIVITY_TYPES, {
        "agent.offer_accepted": h(decide.on_accepted),
        "agent.offer_declined": h(decide.on_declined),
        "agent.replied": h(decide.on_replied), "agent.case_solved": h(decide.on_solved),
        "agent.case_transferred": h(decide.on_transferred),
        "agent.status_changed": h(decide.on_status_changed)}))
    runtime.startup.append(app.lead)
    runtime.gauges.append(app.floor_gauges)
    runtime.background += [app.timer_loop, app.keep_leading]
    return runtime
