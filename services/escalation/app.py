"""Escalation's FastStream app: case and agent events → core → escalation state, log, outbox.

Handlers lock the case's escalations, read its log, let the core decide, and write the new
escalation state, sink deliveries and digest items in the runtime's transaction (with the log
rows and the outbox). One background loop does the rest, all from PostgreSQL, so a restart
loads nothing: it fires acknowledgement timeouts (claimed with FOR UPDATE SKIP LOCKED, stamped
with the true deadline), delivers pending webhook/e-mail notifications and sends due digests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.escalation import core, sinks
from services.escalation.policy import EmailSink, Policy, WebhookSink, load, secret
from shared.caselog.store import read_case
from shared.contracts import agents as ag
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.topics import AGENT_ACTIVITY, CASE_EVENTS
from shared.events import NOTHING, CaseEvent, Decision
from shared.outbox import enqueue, record_for_outbound
from shared.runtime import Route, ServiceRuntime

log = logging.getLogger(__name__)
CASE_TYPES = ("sla.breached", "sla.warning", "sla.met", "case.classified", "case.assigned",
              "case.solved")
ACTIVITY_TYPES = ("agent.escalation_requested", "agent.escalation_acknowledged")
_COLUMNS = ("escalation_id, case_id, reason, rule, episode, state, level, repeat, notifications,"
            " opened_at, next_fire_at, assigned_agent, requeue_tier")
BATCH = 100


def _esc(row: asyncpg.Record) -> core.Escalation:
    return core.Escalation(**{k: row[k] for k in _COLUMNS.split(", ")})


async def save(conn: asyncpg.Connection, outcome: core.Outcome, now: datetime) -> None:
    """The outcome's state, in the caller's transaction (the runtime persists the decision)."""
    names = _COLUMNS.split(", ")
    if outcome.escalations:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names[1:])
        await conn.executemany(
            f"INSERT INTO escalation ({_COLUMNS}) VALUES"
            f" ({', '.join(f'${i}' for i in range(1, len(names) + 1))})"
            f" ON CONFLICT (escalation_id) DO UPDATE SET {updates}",
            [tuple(getattr(e, k) for k in names) for e in outcome.escalations])
    if outcome.deliveries:
        await conn.executemany(
            "INSERT INTO escalation_delivery (notification_id, sink, case_id, body,"
            " next_attempt_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            # the service's clock, not the database's: the delivery worker compares with it
            [(d.notification_id, d.sink, d.case_id, sinks.body_of(d.body).decode(), now)
             for d in outcome.deliveries])
    if outcome.digest:
        await conn.executemany(
            "INSERT INTO escalation_digest_item (target, case_id, reason, at, summary)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target, case_id, reason)"
            " WHERE digest_id IS NULL DO NOTHING",
            [(d.target, d.case_id, d.reason, d.at, d.summary) for d in outcome.digest])


async def history_of(conn: asyncpg.Connection, case_id: str) -> core.History:
    return [(row.type, row.payload) for row in await read_case(conn, case_id)]


def handlers(runtime: ServiceRuntime, policy: Policy) -> dict[str, Any]:
    async def handle(conn: asyncpg.Connection, env: Envelope, payload: Any,
                     now: datetime) -> Decision:
        if await conn.fetchval("INSERT INTO escalation_input (event_id) VALUES ($1)"
                               " ON CONFLICT DO NOTHING RETURNING 1", env.id) is None:
            return NOTHING  # a redelivery: its effects are committed
        case_id: str = payload.case_id
        # One decision per case at a time: the case's escalations are read, then written.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('esc:' || $1, 0))",
                           case_id)
        existing = [_esc(r) for r in await conn.fetch(
            # FOR UPDATE: a timer that claimed one of these rows finishes first, and we read
            # what it wrote instead of overwriting it with a stale copy.
            f"SELECT {_COLUMNS} FROM escalation WHERE case_id = $1 ORDER BY opened_at"
            " FOR UPDATE", case_id)]
        history = await history_of(conn, case_id)
        case = core.view(history)
        tier = case.assigned_tier  # as the router logged it on case.assigned
        outcome = core.NONE
        for esc in existing:
            if env.type == "case.assigned":
                outcome += core.acknowledge(esc, payload.agent_id, "case.assigned", now, tier)
            elif env.type == "agent.escalation_acknowledged" and \
                    esc.escalation_id == payload.escalation_id:
                outcome += core.acknowledge(esc, payload.agent_id,
                                            "agent.escalation_acknowledged", now)
            elif env.type == "case.solved":
                outcome += core.resolve(esc, "case_solved", now)
            elif env.type == "sla.met" and esc.reason == f"sla.warning:{payload.metric}":
                outcome += core.resolve(esc, "condition_cleared", now)
        changed = {e.escalation_id: e for e in outcome.escalations}
        current = [changed.get(e.escalation_id, e) for e in existing]
        for hit in core.triggers(policy, env.type, payload, case, tier):
            opened = core.open_escalation(policy, hit, current + list(outcome.escalations),
                                          history, env.id, now, tier, case_id=case_id)
            outcome += opened
        await save(conn, outcome, now)
        return outcome.decision

    return dict.fromkeys((*CASE_TYPES, *ACTIVITY_TYPES), handle)


# --- the background loop ---------------------------------------------------------------------
async def fire_due(runtime: ServiceRuntime, policy: Policy) -> int:
    """Acknowledgement timeouts that passed: repeat, next level or exhausted, each exactly once."""
    now = runtime.clock.now()
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM escalation WHERE state = 'open' AND next_fire_at <= $1"
            " ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED", now, BATCH)
        for row in rows:
            esc = _esc(row)
            history = await history_of(conn, esc.case_id)
            tier = core.view(history).assigned_tier
            outcome = core.fire(policy, esc, history, now, tier)
            await save(conn, outcome, now)
            await runtime.persist(conn, outcome.decision)
    if rows:
        runtime.wake_relay()
    return len(rows)


async def deliver_due(runtime: ServiceRuntime, policy: Policy) -> int:
    """Send pending deliveries; success is recorded in the same transaction that claimed them.

    A crash after the send and before the commit sends that one again: receivers drop it by its
    notification id. Once committed as delivered, nothing sends it again.
    """
    now = runtime.clock.now()
    base = runtime.settings.escalation_retry_base_seconds
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT notification_id, sink, case_id, body, attempts FROM escalation_delivery"
            " WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at"
            " LIMIT 20 FOR UPDATE SKIP LOCKED", now)
        for row in rows:
            body = json.loads(row["body"])
            message: Any = (ce.SupervisorDigest if "digest_id" in body
                            else ce.SupervisorNotification).model_validate(body)
            spec = policy.spec.sinks.get(row["sink"])
            if spec is None:
                sent = sinks.Sent(False, False, f"sink {row['sink']!r} is not in the policy")
            elif isinstance(spec, WebhookSink):
                sent = await sinks.send_webhook(spec, secret(spec), message, now)
            else:
                assert isinstance(spec, EmailSink)
                sent = await sinks.send_email(spec, message)
            attempts = row["attempts"] + 1
            max_attempts = spec.max_attempts if spec else 1
            if sent.ok:
                await conn.execute(
                    "UPDATE escalation_delivery SET state = 'delivered', attempts = $3,"
                    " delivered_at = $4, last_error = NULL"
                    " WHERE notification_id = $1 AND sink = $2",
                    row["notification_id"], row["sink"], attempts, now)
                if isinstance(message, ce.SupervisorNotification):
                    await runtime.persist(conn, Decision(events=(_notified(message, row["sink"],
                                                                           now),)))
            else:
                failed = not sent.retry or attempts >= max_attempts
                log.warning("escalation: delivery %s to %s failed (%d): %s",
                            row["notification_id"], row["sink"], attempts, sent.error)
                await conn.execute(
                    "UPDATE escalation_delivery SET state = $3, attempts = $4,"
                    " next_attempt_at = $5, last_error = $6"
                    " WHERE notification_id = $1 AND sink = $2",
                    row["notification_id"], row["sink"], "failed" if failed else "pending",
                    attempts, now + timedelta(seconds=sinks.backoff_seconds(attempts, base)),
                    sent.error)
    if rows:
        runtime.wake_relay()
    return len(rows)


def _notified(note: ce.SupervisorNotification, sink: str, now: datetime) -> CaseEvent:
    return CaseEvent.derived(note.notification_id, f"delivered/{sink}", note.case_id,
                             "escalation.notified", now, ce.EscalationNotified(
                                 case_id=note.case_id, escalation_id=note.escalation_id,
                                 notification_id=note.notification_id, target=note.target,
                                 sink=sink, level=note.level, repeat=note.repeat))


async def send_digests(runtime: ServiceRuntime, policy: Policy) -> int:
    """Due digests: one record on supervisor.notifications and one delivery per target sink."""
    now, sent = runtime.clock.now(), 0
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT target, case_id, reason, at, summary FROM escalation_digest_item"
            " WHERE digest_id IS NULL ORDER BY target, at FOR UPDATE SKIP LOCKED")
        by_target: dict[str, list[core.DigestEntry]] = {}
        for r in rows:
            by_target.setdefault(r["target"], []).append(core.DigestEntry(**dict(r)))
        for target, entries in by_target.items():
            due = core.digest_due(policy, target, entries, now)
            if due is None:
                continue
            digest, message = due
            # Only the items this digest carries: items committed since the SELECT wait for
            # the next one instead of being marked sent unseen.
            await conn.executemany(
                "UPDATE escalation_digest_item SET digest_id = $1 WHERE target = $2"
                " AND case_id = $3 AND reason = $4 AND digest_id IS NULL",
                [(digest.digest_id, target, e.case_id, e.reason) for e in entries])
            await enqueue(conn, runtime.name, [record_for_outbound(message, runtime.source)])
            await save(conn, core.Outcome(deliveries=tuple(
                core.Delivery(digest.digest_id, s, None, digest)
                for s in policy.spec.targets[target].sinks)), now)
            sent += 1
    if sent:
        runtime.wake_relay()
    return sent


def background(policy: Policy) -> Callable[[ServiceRuntime], Coroutine[Any, Any, None]]:
    async def run(runtime: ServiceRuntime) -> None:
        while True:
            try:
                busy = await fire_due(runtime, policy) >= BATCH
                busy |= await deliver_due(runtime, policy) >= 20
                await send_digests(runtime, policy)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be restarting: the timers wait in it
                log.exception("escalation timers failed; retrying")
                busy = False
            if not busy:
                await asyncio.sleep(runtime.settings.timer_tick_seconds)
    return run


def load_policy(runtime: ServiceRuntime) -> Policy:
    return load(runtime.settings.escalation_policy_file or None)


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    policy = load_policy(runtime)
    log.info("escalation policy %s: %d rules", policy.version, len(policy.spec.rules))
    runtime.subscribe(Route(CASE_EVENTS, ce.CASE_EVENT_TYPES, handlers(runtime, policy),
                            reject_unknown_types=False))
    activity = handlers(runtime, policy)
    runtime.subscribe(Route(AGENT_ACTIVITY, ag.AGENT_ACTIVITY_TYPES,
                            {t: activity[t] for t in ACTIVITY_TYPES},
                            reject_unknown_types=False))
    runtime.background.append(background(policy))
    return runtime

