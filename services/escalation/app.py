"""Escalation's app: case and agent events → core → escalation state, log, outbox.

Handlers decide from the case's log *as of the event they handle* (the log up to its seq), so
an event handled late — after a redelivery, a restart, or another service's events overtaking it
on the topic — decides what it would have decided on time. Most case events need no I/O at all:
the core's screen (`could_open`, `could_change`) drops them from the payload alone; the rest
share one probe a batch (`Probes`), and only an event that can open an escalation reads the log.

Three background loops, independent of each other, all state in PostgreSQL so a restart loads
nothing: acknowledgement timers (claimed FOR UPDATE SKIP LOCKED, stamped with the true
deadline), digests, and deliveries to webhook/e-mail sinks. A delivery is claimed with a lease
in a short transaction, sent outside any transaction with bounded concurrency (in total and per
sink), and its outcome recorded in another: delivered, retried later (backoff, or the receiver's
Retry-After, bounded), or parked with the reason after its attempts. A slow or broken sink holds
its own slots and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from opentelemetry import propagate, trace

from services.escalation import core, sinks
from services.escalation.policy import EmailSink, Policy, WebhookSink, load
from shared.caselog.store import lock_cases, read_case
from shared.contracts import agents as ag
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.topics import AGENT_ACTIVITY, CASE_EVENTS
from shared.events import NOTHING, CaseEvent, Decision
from shared.outbox import enqueue, record_for_outbound
from shared.runtime import SKIMMED_BATCH, BatchHooks, Route, ServiceRuntime

log = logging.getLogger(__name__)
CASE_TYPES = ("sla.breached", "sla.warning", "sla.met", "case.classified", "case.assigned",
              "case.solved")
ACTIVITY_TYPES = ("agent.escalation_requested", "agent.escalation_acknowledged")
_NAMES = ["escalation_id", "case_id", "reason", "rule", "episode", "state", "level", "repeat",
          "notifications", "opened_at", "next_fire_at", "assigned_agent", "requeue_tier",
          "opened_seq"]
_COLUMNS = ", ".join(_NAMES)
# Escalations fired per timer transaction. Each fires in a savepoint of its own, and each
# savepoint that writes takes a subtransaction id: a backend caches 64 of them, and while a
# transaction holds more, every other session's snapshot is marked overflowed and checks the
# visibility of recent rows in pg_subtrans (an SLRU) instead of memory, a known cliff for the
# whole database. A full pass goes round again at once (`_loop`), so fewer a pass costs only
# a transaction per 50.
BATCH = 50
DEFER_SECONDS = 300.0  # a timer that failed for a reason of its own is retried this much later
ORPHAN_GRACE = timedelta(minutes=15)  # a delivery for a sink this policy lacks waits this long


def _esc(row: asyncpg.Record) -> core.Escalation:
    return core.Escalation(**{k: row[k] for k in _NAMES})


def _traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


async def save(conn: asyncpg.Connection, outcome: core.Outcome, now: datetime,
               traceparent: str | None = None) -> None:
    """The outcome's state, in the caller's transaction (the runtime persists the decision).

    `traceparent`: the trace the escalation's later (timer-driven) events and its deliveries
    continue; an escalation keeps the one it was opened in.
    """
    if outcome.escalations:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _NAMES[1:])
        await conn.executemany(
            f"INSERT INTO escalation ({_COLUMNS}, traceparent) VALUES"
            f" ({', '.join(f'${i}' for i in range(1, len(_NAMES) + 2))})"
            f" ON CONFLICT (escalation_id) DO UPDATE SET {updates},"
            " traceparent = coalesce(escalation.traceparent, EXCLUDED.traceparent)",
            [(*(getattr(e, k) for k in _NAMES), traceparent) for e in outcome.escalations])
    if outcome.deliveries:
        await conn.executemany(
            "INSERT INTO escalation_delivery (notification_id, sink, case_id, body,"
            " next_attempt_at, created_at, traceparent) VALUES ($1, $2, $3, $4, $5, $5, $6)"
            " ON CONFLICT DO NOTHING",
            # the service's clock, not the database's: the delivery worker compares with it
            [(d.notification_id, d.sink, d.case_id, sinks.body_of(d.body).decode(), now,
              traceparent) for d in outcome.deliveries])
    if outcome.digest:
        await conn.executemany(
            "INSERT INTO escalation_digest_item (target, case_id, reason, at, summary)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target, case_id, reason)"
            " WHERE digest_id IS NULL DO NOTHING",
            [(d.target, d.case_id, d.reason, d.at, d.summary) for d in outcome.digest])


async def history_of(conn: asyncpg.Connection, case_id: str) -> core.History:
    return [(row.type, row.payload) for row in await read_case(conn, case_id)]


def _event_uuid(event_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(event_id)
    except ValueError:
        return None


# --- handlers -------------------------------------------------------------------------------
# One look-up for an event that can only acknowledge or resolve (and, for case.assigned, open
# an authority escalation): its seq in the log, whether an escalation it could touch exists,
# and the tier the case's latest classification before it needs. Taken for a whole batch at
# once (`Probes.begin`), one row per event in the order given.
_PROBES = """
SELECT ev.seq,
       EXISTS (SELECT 1 FROM escalation e WHERE e.case_id = i.case_id
                  AND e.state = ANY(string_to_array(i.states, ','))
                  AND (i.reason IS NULL OR e.reason = i.reason)
                  AND (i.escalation_id IS NULL OR e.escalation_id = i.escalation_id)
                  AND (e.opened_seq IS NULL OR ev.seq IS NULL OR e.opened_seq < ev.seq))
           AS touched,
       CASE WHEN i.authority THEN (
           SELECT (l.payload->>'min_authority_tier')::int FROM case_log l
            WHERE l.case_id = i.case_id AND l.type = 'case.classified'
              AND l.seq < coalesce(ev.seq, 9223372036854775807)
            ORDER BY l.seq DESC LIMIT 1) END AS needed
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bool[], $6::text[])
     WITH ORDINALITY AS i(case_id, event_id, reason, escalation_id, authority, states, n)
CROSS JOIN LATERAL (SELECT (SELECT seq FROM case_log WHERE event_id = i.event_id
                               AND case_id = i.case_id) AS seq) AS ev
ORDER BY i.n
"""


@dataclass(frozen=True)
class ProbeOf:
    """What the probe of one input asks."""

    case_id: str
    event_id: uuid.UUID | None
    reason: str | None  # an sla.met resolves its metric's warning only
    escalation_id: str | None  # an acknowledgement names its escalation
    authority: bool  # a case.assigned that may open an authority escalation
    states: tuple[str, ...]  # the states of the escalations it can change


def probe_of(policy: Policy, env: Envelope, payload: Any) -> ProbeOf | None:
    """The probe an input needs, or None when its payload alone decides (no I/O) or it can only
    open (the log is read then)."""
    if not core.could_change(policy, env.type):
        return None
    return ProbeOf(
        payload.case_id, _event_uuid(env.id),
        f"sla.warning:{payload.metric}" if env.type == "sla.met" else None,
        payload.escalation_id if env.type == "agent.escalation_acknowledged" else None,
        env.type == "case.assigned" and core.could_open(policy, env.type, payload),
        core.TOUCHES[env.type])


async def probe(conn: asyncpg.Connection, probes: list[ProbeOf]) -> list[asyncpg.Record]:
    """Each probe's row (seq, touched, needed), in one round trip."""
    if not probes:
        return []
    return list(await conn.fetch(
        _PROBES, [p.case_id for p in probes], [p.event_id for p in probes],
        [p.reason for p in probes], [p.escalation_id for p in probes],
        [p.authority for p in probes], [",".join(p.states) for p in probes]))


class Probes(BatchHooks):
    """The probes of a batch's inputs, taken in one round trip before its first record.

    A probe taken for the batch is used only while no earlier input of the same transaction
    has changed that case's escalations (`changed`); after that the input probes on its own,
    as it always did before the batch probe, and sees what the earlier input wrote.
    Transactions run concurrently (case events and agent activity), so each connection has
    its own: the batch's probes and the cases changed since. Kept for the last `KEEP`
    transactions (a pool hands out a new connection object each time): one forgotten early only
    costs its inputs a probe each.
    """

    KEEP = 64

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._open: OrderedDict[int, tuple[dict[str, asyncpg.Record], set[str]]] = OrderedDict()

    def _keep(self, conn: asyncpg.Connection,
              state: tuple[dict[str, asyncpg.Record], set[str]]) -> None:
        self._open[id(conn)] = state
        self._open.move_to_end(id(conn))
        while len(self._open) > self.KEEP:
            self._open.popitem(last=False)

    async def begin(self, conn: asyncpg.Connection, items: list[tuple[Envelope, Any]]) -> None:
        wanted = [(env.id, p) for env, payload in items
                  if (p := probe_of(self.policy, env, payload)) is not None]
        known: dict[str, asyncpg.Record] = {}
        if len(wanted) > 1:  # a lone input probes at its turn, as it would here
            rows = await probe(conn, [p for _, p in wanted])
            known = {id_: row for (id_, _), row in zip(wanted, rows, strict=True)}
        self._keep(conn, (known, set()))

    async def of(self, conn: asyncpg.Connection, env: Envelope, asked: ProbeOf) -> asyncpg.Record:
        known, changed = self._open.get(id(conn), ({}, set()))
        row = None if asked.case_id in changed else known.get(env.id)
        return row if row is not None else (await probe(conn, [asked]))[0]

    def changing(self, conn: asyncpg.Connection, case_id: str) -> None:
        """The input being handled may change this case's escalations: later inputs of the
        transaction probe again."""
        state = self._open.get(id(conn))
        if state is None:
            state = ({}, set())
            self._keep(conn, state)
        state[1].add(case_id)


def handlers(runtime: ServiceRuntime, policy: Policy,
             probes: Probes | None = None) -> dict[str, Any]:
    """The handler of each input type. `probes`: the service's batch probes (its runtime
    hooks); without them each input probes on its own."""
    batch = probes if probes is not None else Probes(policy)

    async def handle(conn: asyncpg.Connection, env: Envelope, payload: Any,
                     now: datetime) -> Decision:
        opens = core.could_open(policy, env.type, payload)
        asked = probe_of(policy, env, payload)
        if not opens and asked is None:
            return NOTHING  # decided from the payload: no I/O
        found = None if asked is None else await batch.of(conn, env, asked)
        if asked is not None and found is not None:
            needed = found["needed"]
            opens = asked.authority and needed is not None and needed > payload.authority_tier
            if not found["touched"] and not opens:
                return NOTHING
        batch.changing(conn, payload.case_id)
        if found is not None and not opens:  # acknowledgements or resolutions: no log to read
            return await decide(conn, policy, env, payload, now,
                                at=core.AsOf.position(found["seq"]))
        return await decide(conn, policy, env, payload, now, asked is not None)

    return dict.fromkeys((*CASE_TYPES, *ACTIVITY_TYPES), handle)


async def decide(conn: asyncpg.Connection, policy: Policy, env: Envelope, payload: Any,
                 now: datetime, changes: bool = True, *,
                 at: core.AsOf | None = None) -> Decision:
    """The full decision for one input, from the case's log as of that input.

    The log up to the input never changes, so it is read before any lock; an input that turns
    out to trigger nothing a rule acts on (and can change nothing) stops there. An input that
    cannot open anything comes with `at`, its position from the probe, and the log is not read.
    """
    case_id: str = payload.case_id
    hits: list[core.Hit] = []
    if at is None:
        rows = await read_case(conn, case_id)
        at = core.as_of(list(rows), str(_event_uuid(env.id) or env.id))
        hits = core.hits_as_of(policy, at, env.type, payload)
    if not hits and not changes:
        return NOTHING
    # One decision per case at a time: the case's escalations are read, then written.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('esc:' || $1, 0))",
                       case_id)
    existing = [_esc(r) for r in await conn.fetch(
        # FOR UPDATE: a timer that claimed one of these rows finishes first, and we read what
        # it wrote instead of overwriting it with a stale copy.
        f"SELECT {_COLUMNS} FROM escalation WHERE case_id = $1 ORDER BY opened_at"
        " FOR UPDATE", case_id)]
    # An input applied before (a redelivery) opens nothing again.
    if hits and await conn.fetchval(
            "INSERT INTO escalation_input (event_id) VALUES ($1) ON CONFLICT DO NOTHING"
            " RETURNING 1", env.id) is None:
        hits = []
    outcome = core.decide_input(policy, existing, at, env.type, payload, env.id, now, hits)
    await save(conn, outcome, now, _traceparent())
    return outcome.decision


# --- timers ---------------------------------------------------------------------------------
async def fire_due(runtime: ServiceRuntime, policy: Policy) -> int:
    """Acknowledgement timeouts that passed: repeat, next level or exhausted, each exactly once.

    Each escalation fires in the trace of the event that opened it; one that fails for a reason
    of its own is put back DEFER_SECONDS later (logged) instead of failing the others.
    """
    tracer = trace.get_tracer("switchboard.escalation", tracer_provider=runtime.tracer_provider)
    now = runtime.clock.now()
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"SELECT {_COLUMNS}, traceparent FROM escalation WHERE state = 'open'"
            " AND next_fire_at <= $1 ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now, BATCH)
        # Every case's log lock first, in one sorted statement (the appends below go row by
        # row in due order; in that order they deadlock with batches: lock_cases).
        await lock_cases(conn, [row["case_id"] for row in rows])
        for row in rows:
            esc, traceparent = _esc(row), row["traceparent"]
            parent = propagate.extract({"traceparent": traceparent or ""})
            try:
                async with conn.transaction():  # a savepoint: one failure stays its own
                    with tracer.start_as_current_span("escalation.fire", context=parent):
                        history = await history_of(conn, esc.case_id)
                        outcome = core.fire(policy, esc, history, now,
                                            core.view(history).assigned_tier)
                        await save(conn, outcome, now, traceparent)
                        await runtime.persist(conn, outcome.decision)
            except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
                raise  # the database went away: the whole pass is retried
            except Exception:
                log.exception("escalation: timer of %s failed; retried in %.0fs",
                              esc.escalation_id, DEFER_SECONDS)
                await conn.execute("UPDATE escalation SET next_fire_at = $2"
                                   " WHERE escalation_id = $1", esc.escalation_id,
                                   now + timedelta(seconds=DEFER_SECONDS))
    if rows:
        runtime.wake_relay()
    return len(rows)


# --- digests --------------------------------------------------------------------------------
async def send_digests(runtime: ServiceRuntime, policy: Policy) -> int:
    """Due digests: one record on supervisor.notifications and one delivery per target sink."""
    now, sent = runtime.clock.now(), 0
    async with runtime.pool.acquire() as conn, conn.transaction():
        # The targets with a digest due first, from each one's oldest pending item: only their
        # items are read and locked. Reading and locking every pending item each second cost
        # ~3,000 rows a pass while a digest window filled under load (24 ms a pass, the items'
        # new entries waiting on the locks).
        ready = [r["target"] for r in await conn.fetch(
            "SELECT target, min(at) AS oldest FROM escalation_digest_item"
            " WHERE digest_id IS NULL GROUP BY target")
            if core.digest_ready(policy, r["oldest"], now)]
        if not ready:
            return 0
        rows = await conn.fetch(
            "SELECT target, case_id, reason, at, summary FROM escalation_digest_item"
            " WHERE digest_id IS NULL AND target = ANY($1::text[])"
            " ORDER BY target, at FOR UPDATE SKIP LOCKED", ready)
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
            spec = policy.spec.targets.get(target)  # a target the policy no longer has: Kafka
            await save(conn, core.Outcome(deliveries=tuple(
                core.Delivery(digest.digest_id, s, None, digest)
                for s in (spec.sinks if spec else []))), now)
            sent += 1
    if sent:
        runtime.wake_relay()
    return sent


# --- deliveries -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds until its lease runs out; `attempts` counts this one."""

    notification_id: str
    sink: str
    case_id: str | None
    body: str
    attempts: int
    traceparent: str | None


_CLAIM = """
WITH due AS (
    SELECT d.notification_id, d.sink FROM unnest($2::text[], $3::int[]) AS s(sink, slots)
    CROSS JOIN LATERAL (
        SELECT notification_id, sink FROM escalation_delivery
         WHERE state = 'pending' AND sink = s.sink AND next_attempt_at <= $1
         ORDER BY next_attempt_at LIMIT s.slots FOR UPDATE SKIP LOCKED) AS d
)
UPDATE escalation_delivery AS e
   SET attempts = e.attempts + 1, next_attempt_at = $4, leased_by = $5
  FROM due WHERE e.notification_id = due.notification_id AND e.sink = due.sink
RETURNING e.notification_id, e.sink, e.case_id, e.body::text AS body, e.attempts,
          e.traceparent
"""


class Deliveries:
    """The delivery worker: claims due deliveries with a lease (and an attempt counted at the
    claim, so even a worker that dies mid-send cannot retry a delivery forever), sends them
    outside any transaction, at most `concurrency` at once and `per_sink` per sink, and records
    each outcome on its own. Records are fenced by the attempt number: a worker whose lease ran
    out cannot overwrite the outcome of the one that claimed the delivery after it."""

    def __init__(self, runtime: ServiceRuntime, policy: Policy,
                 resolver: sinks.Resolver = sinks.system_resolver) -> None:
        settings = runtime.settings
        self.runtime, self.policy, self.resolver = runtime, policy, resolver
        self.concurrency = max(1, settings.escalation_delivery_concurrency)
        self.per_sink = max(1, min(settings.escalation_delivery_per_sink, self.concurrency))
        self.lease = timedelta(seconds=settings.escalation_delivery_lease_seconds)
        self.in_flight: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[sinks.Sent | None]] = set()
        self.freed = asyncio.Event()
        self.executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="esc-smtp")
        self.tracer = trace.get_tracer("switchboard.escalation",
                                       tracer_provider=runtime.tracer_provider)
        self.delivered = self.retried = self.parked = 0

    # one pass
    async def start_due(self) -> int:
        """Park what no sink of the policy can send, claim what is due, start sending it."""
        now = self.runtime.clock.now()
        slots = {name: self.per_sink - self.in_flight[name] for name in self.policy.spec.sinks}
        room = self.concurrency - sum(self.in_flight.values())
        async with self.runtime.pool.acquire() as conn:
            # Another instance may run a newer policy with that sink (a rolling deploy): only
            # what no instance claimed for ORPHAN_GRACE is given up.
            orphans = await conn.fetch(
                "UPDATE escalation_delivery SET state = 'parked', parked_at = $2,"
                " last_error = 'sink ' || sink || ' is not in the policy'"
                " WHERE state = 'pending' AND NOT (sink = ANY($1::text[]))"
                " AND next_attempt_at <= $3 RETURNING notification_id, sink",
                list(self.policy.spec.sinks), now, now - ORPHAN_GRACE)
            for o in orphans:
                self.parked += 1
                log.error("escalation: delivery %s to %s parked: its sink is not in the policy",
                          o["notification_id"], o["sink"])
            wanted = {name: n for name, n in slots.items() if n > 0}
            if room <= 0 or not wanted:
                return 0
            async with conn.transaction():
                rows = await conn.fetch(_CLAIM, now, list(wanted), list(wanted.values()),
                                        now + self.lease, self.runtime.instance_id)
        claims = [Claim(**dict(r)) for r in rows]
        claims.sort(key=lambda c: c.attempts)  # first attempts first if room is short
        for claim in claims[room:]:  # over the total: give the lease back at once
            await self._release(claim, now)
        for claim in claims[:room]:
            self.in_flight[claim.sink] += 1
            task = asyncio.create_task(self._attempt(claim), name=f"deliver-{claim.sink}")
            self.tasks.add(task)
            task.add_done_callback(self._done)
        return min(len(claims), room)

    def _done(self, task: asyncio.Task[sinks.Sent | None]) -> None:
        self.tasks.discard(task)
        self.freed.set()

    async def _release(self, claim: Claim, now: datetime) -> None:
        async with self.runtime.pool.acquire() as conn:
            await conn.execute(
                "UPDATE escalation_delivery SET attempts = attempts - 1, next_attempt_at = $4"
                " WHERE notification_id = $1 AND sink = $2 AND attempts = $3"
                " AND state = 'pending'", claim.notification_id, claim.sink, claim.attempts, now)

    async def _attempt(self, claim: Claim) -> sinks.Sent | None:
        try:
            parent = propagate.extract({"traceparent": claim.traceparent or ""})
            with self.tracer.start_as_current_span(f"escalation.deliver {claim.sink}",
                                                   context=parent):
                sent = await self.send(claim)
                await self.record(claim, sent)
                return sent
        except asyncio.CancelledError:
            raise  # the lease runs out and the delivery is claimed again
        except Exception:  # recording failed (database down): the lease brings it back
            log.exception("escalation: delivery %s to %s: outcome not recorded",
                          claim.notification_id, claim.sink)
            return None
        finally:
            self.in_flight[claim.sink] -= 1

    async def send(self, claim: Claim) -> sinks.Sent:
        """One attempt; whatever goes wrong is the outcome of this delivery alone."""
        try:
            body = json.loads(claim.body)
            model: Any = ce.SupervisorDigest if "digest_id" in body else ce.SupervisorNotification
            message = model.model_validate(body)
        except Exception as exc:
            return sinks.Sent(False, False, f"stored body unreadable: {exc!r}"[:500])
        spec = self.policy.spec.sinks.get(claim.sink)
        settings = self.runtime.settings
        try:
            if isinstance(spec, WebhookSink):
                return await sinks.send_webhook(
                    spec, self.policy.secrets[claim.sink], message, self.runtime.clock.now(),
                    allow_networks=settings.escalation_webhook_allow_networks,
                    proxy=settings.escalation_webhook_proxy or None, resolver=self.resolver)
            if isinstance(spec, EmailSink):
                return await sinks.send_email(spec, message, executor=self.executor)
            return sinks.Sent(False, False, f"sink {claim.sink!r} is not in the policy")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the sinks return outcomes; this is a bug, kept to itself
            log.exception("escalation: sink %s raised", claim.sink)
            return sinks.Sent(False, True, f"unexpected {exc!r}"[:500])

    async def record(self, claim: Claim, sent: sinks.Sent) -> None:
        """The attempt's outcome, unless the lease ran out and a later attempt owns the row."""
        if sent.ok:
            await self._delivered(claim)
        else:
            await self._failed(claim, sent)

    _FENCE = "WHERE notification_id = $1 AND sink = $2 AND attempts = $3 AND state = 'pending'"

    async def _delivered(self, claim: Claim) -> None:
        now = self.runtime.clock.now()
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            body = await conn.fetchval(
                "UPDATE escalation_delivery SET state = 'delivered', delivered_at = $4,"
                f" last_error = NULL {self._FENCE} RETURNING body::text",
                claim.notification_id, claim.sink, claim.attempts, now)
            if body is None:
                return
            message = json.loads(body)
            if "digest_id" not in message:
                note = ce.SupervisorNotification.model_validate(message)
                await self.runtime.persist(conn, Decision(events=(
                    _notified(note, claim.sink, now),)))
        self.delivered += 1
        self.runtime.wake_relay()  # committed: the relay finds escalation.notified

    async def _failed(self, claim: Claim, sent: sinks.Sent) -> None:
        now, settings = self.runtime.clock.now(), self.runtime.settings
        spec = self.policy.spec.sinks.get(claim.sink)
        limit = spec.max_attempts if spec is not None else 1
        then = sinks.disposition(sent, claim.attempts, limit,
                                 settings.escalation_retry_base_seconds,
                                 settings.escalation_retry_after_max_seconds)
        async with self.runtime.pool.acquire() as conn:
            done = await conn.fetchval(
                "UPDATE escalation_delivery SET state = $4, next_attempt_at = $5,"
                f" last_error = $6, parked_at = $7 {self._FENCE} RETURNING 1",
                claim.notification_id, claim.sink, claim.attempts,
                "parked" if then.park else "pending", now + timedelta(seconds=then.delay),
                then.reason, now if then.park else None)
        if done is None:
            return
        if then.park:
            self.parked += 1
            log.error("escalation: delivery %s to %s %s", claim.notification_id, claim.sink,
                      then.reason)
        else:
            self.retried += 1
            log.warning("escalation: delivery %s to %s failed (attempt %d of %d), next in"
                        " %.0fs: %s", claim.notification_id, claim.sink, claim.attempts,
                        limit, then.delay, then.reason)

    async def settle(self) -> list[sinks.Sent | None]:
        """Wait for every send in flight (tests, shutdown)."""
        results: list[sinks.Sent | None] = []
        while self.tasks:
            results += await asyncio.gather(*list(self.tasks))
        return results

    async def reclaim_own(self) -> int:
        """Leases this instance's previous process held when it died: its successor (the same
        static member name) takes them back now instead of waiting for them to run out. The
        attempts were counted at the claim, so a delivery still cannot be retried for ever."""
        async with self.runtime.pool.acquire() as conn:
            rows = await conn.fetch(
                "UPDATE escalation_delivery SET next_attempt_at = $2 WHERE state = 'pending'"
                " AND leased_by = $1 AND next_attempt_at > $2 RETURNING notification_id",
                self.runtime.instance_id, self.runtime.clock.now())
        if rows:
            log.info("escalation: took back %d deliveries this instance held before a restart",
                     len(rows))
        return len(rows)

    async def run(self) -> None:
        tick = self.runtime.settings.timer_tick_seconds
        try:
            await self.reclaim_own()
            while True:
                try:
                    await self.start_due()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the database may be restarting: deliveries wait in it
                    log.exception("escalation deliveries failed; retrying")
                self.freed.clear()
                with contextlib.suppress(TimeoutError):  # a slot freed, or the next tick
                    await asyncio.wait_for(self.freed.wait(), timeout=tick)
        finally:
            for task in list(self.tasks):
                task.cancel()  # their leases bring them back
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.executor.shutdown(wait=False, cancel_futures=True)


def _notified(note: ce.SupervisorNotification, sink: str, now: datetime) -> CaseEvent:
    return CaseEvent.derived(note.notification_id, f"delivered/{sink}", note.case_id,
                             "escalation.notified", now, ce.EscalationNotified(
                                 case_id=note.case_id, escalation_id=note.escalation_id,
                                 notification_id=note.notification_id, target=note.target,
                                 sink=sink, level=note.level, repeat=note.repeat))


# --- wiring ---------------------------------------------------------------------------------
Job = Callable[[ServiceRuntime], Coroutine[Any, Any, None]]


def _loop(name: str, step: Callable[[ServiceRuntime, Policy], Coroutine[Any, Any, int]],
          policy: Policy, busy_at: int) -> Job:
    async def run(runtime: ServiceRuntime) -> None:
        while True:
            try:
                busy = await step(runtime, policy) >= busy_at
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be restarting: the work waits in it
                log.exception("escalation %s failed; retrying", name)
                busy = False
            if not busy:
                await asyncio.sleep(runtime.settings.timer_tick_seconds)
    return run


def background(policy: Policy) -> list[Job]:
    """Timers, digests and deliveries: three loops, so none waits for another."""
    async def deliveries(runtime: ServiceRuntime) -> None:
        await Deliveries(runtime, policy).run()
    return [_loop("timers", fire_due, policy, BATCH), _loop("digests", send_digests, policy, 1),
            deliveries]


def load_policy(runtime: ServiceRuntime) -> Policy:
    return load(runtime.settings.escalation_policy_file or None,
                allow_networks=runtime.settings.escalation_webhook_allow_networks)


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    policy = load_policy(runtime)
    log.info("escalation policy %s: %d rules", policy.version, len(policy.spec.rules))
    # A batch's events are appended once, at its end. The handlers read the log only as of
    # their input, which is in the log before it is consumed and before anything this service
    # appends for it, and read their own state from the escalation tables, written at once:
    # nothing they read waits on the deferred rows. Each case's log lock is then held from
    # that one append to the commit, not from the record to the end of the batch.
    runtime.defer_appends = True
    # Each batch's probes in one round trip before its records (Probes).
    probes = Probes(policy)
    runtime.hooks = probes
    runtime.subscribe(Route(CASE_EVENTS, ce.CASE_EVENT_TYPES, handlers(runtime, policy, probes),
                            reject_unknown_types=False, max_records=SKIMMED_BATCH))
    activity = handlers(runtime, policy, probes)
    runtime.subscribe(Route(AGENT_ACTIVITY, ag.AGENT_ACTIVITY_TYPES,
                            {t: activity[t] for t in ACTIVITY_TYPES},
                            reject_unknown_types=False))
    runtime.background.extend(background(policy))
    runtime.gauges.append(escalation_gauges(runtime))
    return runtime


def escalation_gauges(runtime: ServiceRuntime) -> Callable[[], Coroutine[Any, Any, list[Any]]]:
    async def read() -> list[tuple[str, str, dict[str, str], float]]:
        open_ = await runtime.pool.fetch(
            "SELECT level, count(*) AS n FROM escalation WHERE state = 'open' GROUP BY level")
        deliveries = await runtime.pool.fetch(
            "SELECT sink, state, count(*) AS n FROM escalation_delivery"
            " WHERE state IN ('pending', 'parked') GROUP BY sink, state")
        out = [("switchboard_escalations_open", "Escalations open, by level.",
                {"level": str(r["level"])}, float(r["n"])) for r in open_]
        out += [("switchboard_escalation_deliveries", "Deliveries pending or parked.",
                 {"sink": r["sink"], "state": r["state"]}, float(r["n"])) for r in deliveries]
        return out
    return read
