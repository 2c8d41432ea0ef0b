"""What happened, read back from the real stores: the case log in PostgreSQL and Kafka topics.

The database outlives a demo run, so every case figure counts only this run's cases (those opened
since the run began); the log's row total and its hash-chain verification cover the whole log.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from agents import AgentStats
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from bus import partitions_of
from feed import CARD_DIGITS, FeedStats

from shared.caselog.store import verify_all
from shared.contracts.case_events import SupervisorNotification
from shared.contracts.topics import (
    AGENT_ACTIVITY,
    AGENTS,
    CASE_EVENTS,
    ROUTING_OFFERS,
    SUPERVISOR_NOTIFICATIONS,
    all_topics,
    inbound_topics,
)
from shared.keys import keyring

CHANNELS = ("email", "chat", "voice")
DLQ_TOPICS = tuple(t.name for t in all_topics() if t.name.endswith(".dlq"))
ALL_TOPICS = tuple(t.name for t in all_topics())
# What each service's consumer group reads (mirrors the services' wiring), to measure its lag.
GROUP_TOPICS = {
    "switchboard-intake": inbound_topics(),
    "switchboard-router": (CASE_EVENTS, AGENTS, AGENT_ACTIVITY),
    "switchboard-sla": (CASE_EVENTS,),
    "switchboard-escalation": (CASE_EVENTS,),
}

_PER_TYPE = """
WITH run_cases AS (
    SELECT case_id, payload->>'channel' AS channel FROM case_log
    WHERE type = 'case.opened' AND recorded_at >= $1)
SELECT rc.channel, l.type, count(*) AS events, count(DISTINCT l.case_id) AS cases
FROM run_cases rc JOIN case_log l USING (case_id) GROUP BY rc.channel, l.type
"""
# A case whose latest routing step is `case.queued` waits for a free agent with the skill.
_WAITING = """
WITH run_cases AS (
    SELECT case_id, payload->>'channel' AS channel FROM case_log
    WHERE type = 'case.opened' AND recorded_at >= $1),
latest AS (
    SELECT DISTINCT ON (l.case_id) l.case_id, rc.channel, l.type FROM case_log l
    JOIN run_cases rc USING (case_id)
    WHERE l.type IN ('case.queued', 'assignment.offered', 'assignment.declined',
                     'case.assigned', 'case.solved')
    ORDER BY l.case_id, l.seq DESC)
SELECT channel, count(*) AS waiting FROM latest WHERE type = 'case.queued' GROUP BY channel
"""


@dataclass
class Snapshot:
    elapsed: float
    services: dict[str, bool]
    feed: FeedStats
    agents: AgentStats
    services_stopped: bool = False  # stopped on purpose, at the end of the run
    events: dict[str, Counter[str]] = field(default_factory=dict)  # type → channel → events
    cases: dict[str, Counter[str]] = field(default_factory=dict)  # type → channel → cases
    waiting: Counter[str] = field(default_factory=Counter)
    log_rows: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)  # reason → automated mails set aside
    verified: str = "not checked"
    verified_ok: bool = False
    notifications: int = 0
    latest_notification: str | None = None
    example_case: str | None = None  # the latest escalated case: worth a `log show`
    offers_on_kafka: int = 0
    offers_for_earlier_runs: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    latest_dead_letter: str | None = None
    kafka_rate: float = 0.0
    kafka_records: int = 0  # on every topic since the run began
    log_rate: float = 0.0
    checks: dict[str, str] = field(default_factory=dict)

    def n_cases(self, type_: str, channel: str | None = None) -> int:
        counts = self.cases.get(type_, Counter())
        return counts[channel] if channel else sum(counts.values())

    def n_events(self, type_: str) -> int:
        return sum(self.events.get(type_, Counter()).values())


class Collector:
    def __init__(self, database_url: str, bootstrap_servers: str) -> None:
        self._database_url = database_url
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None,
                                          enable_auto_commit=False, client_id="demo-summary")
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                          client_id="demo-summary-admin")
        self._pool: asyncpg.Pool | None = None
        self._partitions: list[TopicPartition] = []
        self._start_offsets: dict[TopicPartition, int] = {}
        self._last: tuple[float, int, int] | None = None  # (when, kafka records, log rows)
        self._notifications: list[SupervisorNotification] = []
        self._dead_letters: Counter[str] = Counter()
        self._latest_dead_letter: str | None = None
        self._offer_cases: list[str] = []
        self.run_started_at: datetime | None = None

    async def prepare(self) -> None:
        """Mark the start of the run: the database's clock, and the end of every topic."""
        self._pool = await asyncpg.create_pool(self._database_url, min_size=1, max_size=2)
        self.run_started_at = await self._pool.fetchval("SELECT now()")
        await self._consumer.start()
        await self._admin.start()
        self._partitions = await partitions_of(self._consumer, list(ALL_TOPICS))
        self._start_offsets = await self._consumer.end_offsets(self._partitions)
        self._last = (time.monotonic(), 0, await self._pool.fetchval(
            "SELECT count(*) FROM case_log"))
        watched = [tp for tp in self._partitions
                   if tp.topic in (SUPERVISOR_NOTIFICATIONS, ROUTING_OFFERS, *DLQ_TOPICS)]
        self._consumer.assign(watched)
        for tp in watched:
            self._consumer.seek(tp, self._start_offsets[tp])

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "prepare() first"
        return self._pool

    async def close(self) -> None:
        await self._consumer.stop()
        await self._admin.close()
        if self._pool is not None:
            await self._pool.close()

    async def snapshot(self, elapsed: float, services: dict[str, bool], feed: FeedStats,
                       agents: AgentStats, services_stopped: bool = False) -> Snapshot:
        snap = Snapshot(elapsed=elapsed, services=services, feed=feed, agents=agents,
                        services_stopped=services_stopped)
        async with self.pool.acquire() as conn:
            await self._read_log(conn, snap)
            await self._checks(conn, snap)
            count, broken = await verify_all(conn)
        snap.verified_ok = broken is None
        snap.verified = (f"ok, {count} case chains intact" if broken is None else
                         f"BROKEN: case {broken.case_id} at seq {broken.seq}: {broken.why}")
        await self._read_kafka(snap)
        return snap

    async def backlog(self) -> int:
        """Records the services have not finished yet: consumer lag plus unpublished outbox rows.

        Zero means everything fed so far is in the log, so the final summary tells the whole story.
        """
        pending = await self.pool.fetchval("SELECT count(*) FROM outbox")
        ends = await self._consumer.end_offsets(self._partitions)
        for group, topics in GROUP_TOPICS.items():
            committed = await self._admin.list_consumer_group_offsets(group)
            for tp in self._partitions:
                if tp.topic in topics:
                    done = committed[tp].offset if tp in committed else 0
                    pending += max(0, ends[tp] - max(done, 0))
        return int(pending)

    async def _read_log(self, conn: asyncpg.Connection, snap: Snapshot) -> None:
        for row in await conn.fetch(_PER_TYPE, self.run_started_at):
            snap.events.setdefault(row["type"], Counter())[row["channel"]] = row["events"]
            snap.cases.setdefault(row["type"], Counter())[row["channel"]] = row["cases"]
        for row in await conn.fetch(_WAITING, self.run_started_at):
            snap.waiting[row["channel"]] = row["waiting"]
        snap.log_rows = await conn.fetchval("SELECT count(*) FROM case_log")
        for row in await conn.fetch(
                "SELECT split_part(split_part(reason, ':', 1), ' (', 1) AS kind, count(*) AS n"
                " FROM intake_suppressed WHERE recorded_at >= $1 GROUP BY 1",
                self.run_started_at):
            snap.suppressed[row["kind"]] = row["n"]

    async def _checks(self, conn: asyncpg.Connection, snap: Snapshot) -> None:
        """The deliberate faults of the feed, checked against what the services recorded."""
        feed = snap.feed
        keys = [f"email:{m}" for pair in feed.follow_ups for m in pair]
        keys += [f"email:{m}" for m in feed.automated]
        sessions = [s for s in (feed.duplicate_session, feed.card_session) if s]
        keys += [f"chat:{s}" for s in sessions]
        ring = keyring()  # intake stores thread keys only as keyed hashes (shared/keys.py)
        plain = {ring.stored(k): k for k in keys}
        case_of = {plain[r["thread_key"]]: r["case_id"] for r in await conn.fetch(
            "SELECT thread_key, case_id FROM intake_thread WHERE thread_key = ANY($1::text[])",
            list(plain))}
        if feed.follow_ups:
            joined = sum(1 for a, b in feed.follow_ups
                         if case_of.get(f"email:{a}") and
                         case_of.get(f"email:{a}") == case_of.get(f"email:{b}"))
            snap.checks["email follow-ups threaded into their case"] = (
                f"{joined}/{len(feed.follow_ups)}")
        if feed.automated:
            opened = sum(1 for m in feed.automated if f"email:{m}" in case_of)
            snap.checks["bounces/auto-replies that opened a case"] = (
                f"{opened} of {len(feed.automated)}")
        if feed.duplicate_of and feed.duplicate_session:
            # Counted by what the customer said, not by derived ids: a doubled delivery would
            # show as one customer text more in the log than messages sent.
            case_id = case_of.get(f"chat:{feed.duplicate_session}")
            logged = await conn.fetchval(
                "SELECT count(*) FROM case_log WHERE case_id = $1 AND type LIKE 'contact.%'"
                " AND payload ? 'text'", case_id)
            snap.checks["chat with one message delivered twice"] = (
                f"{feed.duplicate_session_messages} message(s) sent, {logged} in the log")
        if feed.card_session:
            case_id = case_of.get(f"chat:{feed.card_session}")
            raw, masked = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE strpos(data, $2) > 0),"
                " count(*) FILTER (WHERE strpos(data, '[card ****') > 0)"
                " FROM case_log WHERE case_id = $1", case_id, CARD_DIGITS)
            snap.checks["card number typed in chat"] = (
                f"{raw} raw in the log, masked in {masked} row(s)")

    async def _read_kafka(self, snap: Snapshot) -> None:
        # Up to the end offsets as of now: an empty fetch alone does not mean "caught up".
        watched = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(watched)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            behind = [tp for tp in watched if await self._consumer.position(tp) < ends[tp]]
            if not behind:
                break
            batch = await self._consumer.getmany(*behind, timeout_ms=200, max_records=500)
            for tp, records in batch.items():
                for record in records:
                    self._take(tp, record)
        # Earlier runs' cases can still move (a long email clock breaches, a backlog left by a
        # crash is processed now): count them apart, so the figures add up.
        run_cases = {r["case_id"] for r in await self.pool.fetch(
            "SELECT case_id FROM case_log WHERE type = 'case.opened' AND recorded_at >= $1",
            self.run_started_at)}
        ours = [n for n in self._notifications if n.case_id in run_cases]
        snap.notifications = len(ours)
        snap.latest_notification = ours[-1].summary if ours else None
        snap.example_case = ours[-1].case_id if ours else None
        snap.dead_letters = Counter(self._dead_letters)
        snap.latest_dead_letter = self._latest_dead_letter
        snap.offers_on_kafka = len(self._offer_cases)
        snap.offers_for_earlier_runs = sum(1 for c in self._offer_cases if c not in run_cases)
        ends = await self._consumer.end_offsets(self._partitions)
        records = sum(ends[tp] - self._start_offsets.get(tp, 0) for tp in self._partitions)
        snap.kafka_records = records
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            seconds = now - self._last[0]
            snap.kafka_rate = (records - self._last[1]) / seconds
            snap.log_rate = (snap.log_rows - self._last[2]) / seconds
        self._last = (now, records, snap.log_rows)

    def _take(self, tp: TopicPartition, record: Any) -> None:
        if tp.topic == ROUTING_OFFERS:
            self._offer_cases.append(json.loads(record.value)["case_id"])
        elif tp.topic == SUPERVISOR_NOTIFICATIONS:
            self._notifications.append(SupervisorNotification.model_validate_json(record.value))
        else:
            self._dead_letters[tp.topic] += 1
            headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
            self._latest_dead_letter = f"{tp.topic}: {headers.get('dlq_reason', '?')}"


# --- rendering -------------------------------------------------------------------------------
def compact_line(s: Snapshot) -> str:
    """One line per refresh, for logs and pipes."""
    cases = " ".join(f"{c[0]}{s.n_cases('case.opened', c)}" for c in CHANNELS)
    return (
        f"[{s.elapsed:5.0f}s] cases {cases} | routed {s.n_cases('assignment.offered')} offered"
        f" {s.n_cases('case.assigned')} assigned | sla {s.n_events('sla.started')} started"
        f" {s.n_events('sla.met')} met {s.n_events('sla.breached')} breached"
        f" | escalated {s.n_events('case.escalated')} (notified {s.notifications})"
        f" | suppressed {sum(s.suppressed.values())} | dlq {sum(s.dead_letters.values())}"
        f" | log {s.log_rows} rows"
        f" {'ok' if s.verified_ok else 'BROKEN'} | {s.kafka_rate:.1f} ev/s"
    )


def full_report(s: Snapshot, title: str, final: bool = False) -> str:
    """The whole picture, for a terminal and for the final summary."""
    f, a = s.feed, s.agents
    down = [n for n, alive in s.services.items() if not alive]
    state = ("stopped" if s.services_stopped else f"DOWN: {', '.join(down)}" if down
             else f"all {len(s.services)} running")
    lines = [
        f"{title} ({_clock(s.elapsed)})   services: {state}",
        "",
        (f"Fed            {f.contacts['email']} emails, {f.contacts['chat']} chats"
        f" ({f.chat_messages} messages), {f.contacts['voice']} calls,"
        f" {f.contacts['voicemail']} voicemails: {f.events} events"
        f" (+{1 if f.duplicate_of else 0} duplicate delivery, {f.malformed} malformed)"),
        "",
        f"{'':15}{'email':>7}{'chat':>7}{'voice':>7}{'total':>7}",
    ]
    rows = [
        ("cases opened", "case.opened"), ("offered", "assignment.offered"),
        ("assigned", "case.assigned"), ("replied", "reply.sent"), ("solved", "case.solved"),
        ("SLA started", "sla.started"), ("SLA met", "sla.met"), ("SLA breached", "sla.breached"),
        ("escalated", "case.escalated"),
    ]
    for label, type_ in rows:
        counts = [s.n_cases(type_, c) for c in CHANNELS]
        lines.append(f"{label:<15}" + "".join(f"{n:>7}" for n in counts) + f"{sum(counts):>7}")
    waiting = [s.waiting[c] for c in CHANNELS]
    lines.append(f"{'no free agent':<15}" + "".join(f"{n:>7}" for n in waiting)
                 + f"{sum(waiting):>7}")
    lines += [
        "",
        f"Routing        {s.n_events('assignment.offered')} offers logged,"
        f" {s.n_events('assignment.declined')} declined and re-offered; {s.offers_on_kafka} on"
        f" {ROUTING_OFFERS}" + (f" ({s.offers_for_earlier_runs} for earlier runs' cases)"
                                if s.offers_for_earlier_runs else ""),
        (f"Agents         {a.accepted} accepted, {a.declined} declined, {a.replied} replies"
        f" ({a.late} after the deadline), {a.solved} solved"),
        (f"Escalations    {s.n_events('case.escalated')} escalated,"
        f" {s.n_events('escalation.notified')} notified; {s.notifications} on"
        f" {SUPERVISOR_NOTIFICATIONS}"),
        f"Suppressed     {sum(s.suppressed.values())} automated mails set aside, no case"
        + (f" ({', '.join(f'{k} {v}' for k, v in s.suppressed.most_common(4))})"
           if s.suppressed else "") + "; `switchboard intake suppressed list`",
        f"Dead letters   {sum(s.dead_letters.values())} ({f.malformed} sent malformed on purpose)"
        + (f" - latest {s.latest_dead_letter}" if s.latest_dead_letter else ""),
    ]
    for label, value in s.checks.items():
        lines.append(f"{'Check':<15}{label}: {value}")
    lines += [
        f"Case log       {s.log_rows} rows in all; hash chains {s.verified}",
        f"Throughput     {s.kafka_records / max(s.elapsed, 1.0):.1f} Kafka events/s on average"
        f" ({s.kafka_records} records on all topics)" if final else
        f"Throughput     {s.kafka_rate:.1f} Kafka events/s, {s.log_rate:.1f} log rows/s (last"
        " refresh)",
    ]
    if s.latest_notification:
        lines += ["", "Latest supervisor notification (warm-transfer packet):"]
        lines += [f"  | {line}" for line in _clip(s.latest_notification.splitlines(), 14)]
    return "\n".join(lines)


def _clip(lines: list[str], most: int) -> list[str]:
    lines = [line if len(line) <= 110 else line[:107] + "..." for line in lines]
    return lines if len(lines) <= most else [*lines[: most - 1], (f"... {len(lines) - most + 1}"
                                             " more lines")]


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d} fed"

