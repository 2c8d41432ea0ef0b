"""SLA's FastStream app: case events drive clocks; a timer fires warnings and breaches on time.

Handlers read and write the case's SLA state in the runtime's transaction and return a Decision;
the core decides. The timer sleeps until the earliest due instant in `sla_clock` (or until a
handler schedules a nearer one), claims due clocks with `FOR UPDATE SKIP LOCKED` so several
instances never fire one clock twice, and commits each clock's new state with its log rows.
Clocks live only in PostgreSQL, so a restart loads nothing: the first pass fires whatever came
due during the downtime, stamped with the instant it came due.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from opentelemetry import propagate, trace

from services.sla import core, policy
from services.sla.policy import Policy
from shared.caselog.store import lock_cases
from shared.clock import Clock
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.topics import CASE_EVENTS
from shared.events import NOTHING, Decision
from shared.runtime import SKIMMED_BATCH, BatchHooks, Route, ServiceRuntime
from shared.settings import Settings

log = logging.getLogger(__name__)
_COLUMNS = ("clock_id, case_id, metric, cycle, policy, rule, calendar, time_basis,"
            " target_seconds, started_at, due_at, state, elapsed_seconds, running_since,"
            " warnings, warn_at, warnings_fired, closed_at")
_NAMES = _COLUMNS.split(", ")
BATCH = 500  # clocks claimed per timer transaction
# A due clock the last pass did not fire is locked by a handler (which fires it itself) or
# another instance; a hint may wait for its transaction to commit: look again after this long.
RECHECK = 0.05


def load_policy(settings: Settings) -> Policy:
    """SLA_POLICY_FILE, else the skeleton's per-channel first response when only
    SLA_FIRST_RESPONSE_SECONDS is set (deployments and tests written for it keep their
    behaviour), else the packaged default policy."""
    legacy = "sla_first_response_seconds" in settings.model_fields_set
    if settings.sla_policy_file:
        loaded = policy.load(settings.sla_policy_file)
        if legacy:
            loaded = policy.with_channel_first_response(loaded,
                                                        settings.sla_first_response_seconds)
        return loaded
    if legacy:
        return policy.skeleton(settings.sla_first_response_seconds)
    return policy.load()


def clock_from_row(row: asyncpg.Record) -> core.SlaClock:
    values = {k: row[k] for k in _NAMES}
    values["warnings"] = tuple((label, float(r)) for label, r in json.loads(row["warnings"]))
    values["warn_at"] = tuple(row["warn_at"])
    return core.SlaClock(**values)


def clock_row(clock: core.SlaClock) -> tuple[Any, ...]:
    values = [getattr(clock, k) for k in _NAMES]
    values[_NAMES.index("warnings")] = json.dumps([list(w) for w in clock.warnings])
    values[_NAMES.index("warn_at")] = list(clock.warn_at)
    return (*values, clock.next_fire_at)


async def save_clocks(conn: asyncpg.Connection, clocks: Sequence[core.SlaClock],
                      traceparent: str | Sequence[str | None] | None = None) -> None:
    """Upsert clocks, in one statement; `traceparent` is one for all of them, or one per clock.

    One statement over arrays (`unnest`), not an `executemany`: a contact starts two clocks
    and settles both, and each row of an `executemany` is a statement of its own to
    PostgreSQL (24,000 of them in a 6,000-contact saturation run, 10 % of its statement time;
    docs/benchmarks.md). The clocks are distinct (one row each: a statement cannot upsert
    a row twice)."""
    if not clocks:
        return
    traces = [traceparent] * len(clocks) if traceparent is None or isinstance(traceparent, str) \
        else list(traceparent)
    columns = [list(c) for c in zip(*(clock_row(k) for k in clocks), strict=True)]
    warn_at = _NAMES.index("warn_at")
    columns[warn_at] = [_timestamps_literal(w) for w in columns[warn_at]]
    await conn.execute(_SAVE_CLOCKS, *columns, traces)


def _timestamps_literal(instants: Sequence[datetime]) -> str:
    """A timestamptz[] as its text: `unnest` cannot take an array of arrays of varying length.
    asyncpg reads a naive datetime as UTC; so does this."""
    return "{" + ",".join(
        f'"{(i if i.tzinfo is not None else i.replace(tzinfo=UTC)).isoformat()}"'
        for i in instants) + "}"


# Each column's type; warn_at goes as text (`_timestamps_literal`).
_TYPES = {"clock_id": "text", "case_id": "text", "metric": "text", "cycle": "int",
          "policy": "text", "rule": "text", "calendar": "text", "time_basis": "text",
          "target_seconds": "float8", "started_at": "timestamptz", "due_at": "timestamptz",
          "state": "text", "elapsed_seconds": "float8", "running_since": "timestamptz",
          "warnings": "jsonb", "warn_at": "text", "warnings_fired": "int",
          "closed_at": "timestamptz", "next_fire_at": "timestamptz", "traceparent": "text"}
_ALL = [*_NAMES, "next_fire_at", "traceparent"]
_SAVE_CLOCKS = (
    f"INSERT INTO sla_clock ({', '.join(_ALL)})"
    f" SELECT {', '.join(f'{c}::timestamptz[]' if c == 'warn_at' else c for c in _ALL)}"
    " FROM unnest(" + ", ".join(f"${i}::{_TYPES[c]}[]" for i, c in enumerate(_ALL, 1)) + ")"
    f" AS r({', '.join(_ALL)})"
    # traceparent stays the one of the contact that started the clock: its breach joins it
    " ON CONFLICT (clock_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in [*_NAMES[1:], "next_fire_at"]))


class Timer:
    """Sleeps until the next due instant; handlers nudge it when they schedule a nearer one.

    A nudge may arrive before the handler's transaction commits, so its instant is kept as a
    hint and re-checked for a short while after it passes, instead of trusting one query. Only
    instants before the planned wake-up are kept or wake the loop: later ones are found by the
    query the loop runs when it wakes anyway, so the hints stay few whatever the event rate.
    """

    SETTLE = 2.0  # seconds a passed hint is re-checked, for its transaction to commit

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._hints: list[tuple[datetime, float]] = []
        self._wake_at: datetime | None = None  # None: awake, or not sleeping yet

    def nudge(self, instants: Sequence[datetime | None]) -> None:
        due = [i for i in instants if i is not None]
        if not due:
            return
        nearest = min(due)
        if self._wake_at is None or nearest < self._wake_at:
            self._hints.append((nearest, time.monotonic()))
            self._event.set()

    def hint(self, now: datetime) -> datetime | None:
        clock = time.monotonic()
        self._hints = [(i, t) for i, t in self._hints if i > now or clock - t < self.SETTLE]
        return min((i for i, _ in self._hints), default=None)

    async def sleep(self, seconds: float, now: datetime, speed: float = 1.0) -> None:
        if seconds <= 0:
            return
        self._wake_at = now + timedelta(seconds=seconds * speed)
        try:
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
        except TimeoutError:
            pass
        finally:
            self._wake_at = None
        self._event.clear()


@dataclass
class _Batch:
    """One consumed batch's SLA state: loaded in three queries, saved in two."""

    fresh: set[str]  # inputs not applied before (redeliveries are not)
    cases: dict[str, core.CaseState]
    clocks: dict[str, dict[str, core.SlaClock]]  # open (running, paused) clocks by case
    changed_cases: set[str] = field(default_factory=set)
    changed_clocks: dict[str, tuple[core.SlaClock, str | None]] = field(default_factory=dict)


class SlaBatch(BatchHooks):
    """The SLA handlers of one service process, following the runtime's transactions.

    `begin` records the batch's inputs (a redelivered one is skipped) and loads, locked, the
    state and open clocks of every case it names; each record is decided by the core on that
    state; `before_commit` saves what changed, with the log rows. Records of one case see each
    other's effects in order, as they would one transaction at a time.
    """

    def __init__(self, pol: Policy, timer: Timer, clock: Clock) -> None:
        self.pol, self.timer, self.clock = pol, timer, clock
        self.batch: _Batch | None = None

    async def begin(self, conn: asyncpg.Connection, items: list[tuple[Envelope, Any]]) -> None:
        inputs = [(str(env.id), payload.case_id) for env, payload in items]
        fresh = {r["event_id"] for r in await conn.fetch(
            "INSERT INTO sla_input (event_id, case_id)"
            " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING"
            " RETURNING event_id", [e for e, _ in inputs], [c for _, c in inputs])}
        case_ids = sorted({c for _, c in inputs})
        states = {r["case_id"]: json.loads(r["state"]) for r in await conn.fetch(
            "SELECT case_id, state FROM sla_case WHERE case_id = ANY($1::text[])"
            " ORDER BY case_id FOR UPDATE", case_ids)}
        clocks: dict[str, dict[str, core.SlaClock]] = {c: {} for c in case_ids}
        for row in await conn.fetch(
                # An index probe per case (LATERAL, not `case_id = ANY($1)`, which PostgreSQL
                # planned as a sequential scan of every clock for a batch's cases: a cost that
                # grew with the table, 8.7 ms a batch at 13,000 clocks). Rows are locked case
                # by case in the cases' order; their sla_case rows are locked before, likewise.
                f"SELECT k.* FROM unnest($1::text[]) AS u(case_id) CROSS JOIN LATERAL"
                f" (SELECT {_COLUMNS} FROM sla_clock WHERE case_id = u.case_id"
                " AND state IN ('running', 'paused') ORDER BY clock_id FOR UPDATE) AS k",
                case_ids):
            clock = clock_from_row(row)
            clocks[clock.case_id][clock.clock_id] = clock
        self.batch = _Batch(fresh, {c: core.case_from_json(c, states.get(c)) for c in case_ids},
                            clocks)

    async def handle(self, conn: asyncpg.Connection, env: Envelope, payload: Any,
                     now: datetime) -> Decision:
        b = self.batch
        assert b is not None, "SLA handler outside a batch"
        if str(env.id) not in b.fresh:
            return NOTHING  # a redelivery: its effects are already committed
        b.fresh.discard(str(env.id))
        case_id: str = payload.case_id
        open_clocks = b.clocks.setdefault(case_id, {})
        outcome = core.decide(self.pol, b.cases[case_id], list(open_clocks.values()), env.type,
                              payload, str(env.id), env.time, now)
        b.cases[case_id] = outcome.case
        b.changed_cases.add(case_id)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # timers fire in the trace of the event that set them
        for clock in outcome.clocks:
            b.changed_clocks[clock.clock_id] = (clock, carrier.get("traceparent"))
            if clock.state in ("running", "paused"):
                open_clocks[clock.clock_id] = clock
            else:
                open_clocks.pop(clock.clock_id, None)
        return outcome.decision

    async def before_commit(self, conn: asyncpg.Connection) -> None:
        b = self.batch
        if b is None:
            return
        now = self.clock.now()
        if b.changed_cases:
            changed = sorted(b.changed_cases)  # one statement, as save_clocks
            await conn.execute(
                "INSERT INTO sla_case (case_id, state, updated_at)"
                " SELECT c, s, $3 FROM unnest($1::text[], $2::jsonb[]) AS r(c, s)"
                " ON CONFLICT (case_id) DO UPDATE SET state = EXCLUDED.state,"
                " updated_at = EXCLUDED.updated_at",
                changed, [json.dumps(core.case_to_json(b.cases[c])) for c in changed], now)
        saved = list(b.changed_clocks.values())
        await save_clocks(conn, [c for c, _ in saved], [t for _, t in saved])
        self.timer.nudge([c.next_fire_at for c, _ in saved])

    def committed(self) -> None:
        self.batch = None

    def rolled_back(self) -> None:
        self.batch = None


async def fire_due_clocks(runtime: ServiceRuntime, pol: Policy, limit: int = BATCH) -> int:
    """Fire what came due among running clocks; each warning and breach exactly once.

    `FOR UPDATE SKIP LOCKED` lets several instances share the work without firing a clock twice;
    the clocks' state and the log rows commit together.
    """
    tracer = trace.get_tracer("switchboard.sla", tracer_provider=runtime.tracer_provider)
    now = runtime.clock.now()
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"SELECT {_COLUMNS}, traceparent FROM sla_clock WHERE state = 'running'"
            " AND next_fire_at <= $1 ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now, limit)
        # Every case's log lock first, in one sorted statement: the appends below go trace by
        # trace, in due order, and taking the locks in that order deadlocks with batches.
        await lock_cases(conn, [row["case_id"] for row in rows])
        # Clocks sharing a trace (or none) are logged together: one append per trace.
        by_trace: dict[str | None, list[asyncpg.Record]] = {}
        for row in rows:
            by_trace.setdefault(row["traceparent"], []).append(row)
        for traceparent, group in by_trace.items():
            parent = propagate.extract({"traceparent": traceparent or ""})
            with tracer.start_as_current_span("sla.fire", context=parent):
                decision, fired = NOTHING, list[core.SlaClock]()
                for row in group:
                    step, clock = core.fire_due(pol, clock_from_row(row), now)
                    decision, fired = decision + step, [*fired, clock]
                await save_clocks(conn, fired, traceparent)
                await runtime.persist(conn, decision)
    if rows:
        runtime.wake_relay()
    return len(rows)


async def next_due(runtime: ServiceRuntime) -> datetime | None:
    async with runtime.pool.acquire() as conn:
        value: datetime | None = await conn.fetchval(
            "SELECT min(next_fire_at) FROM sla_clock WHERE state = 'running'")
        return value


def timer_loop(
    pol: Policy, timer: Timer
) -> Callable[[ServiceRuntime], Coroutine[Any, Any, None]]:
    async def run(runtime: ServiceRuntime) -> None:
        settings = runtime.settings
        while True:
            try:
                fired = await fire_due_clocks(runtime, pol)
                if fired >= BATCH:
                    continue  # more are due: no sleep
                nearest = await next_due(runtime)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be restarting: the clocks wait in it
                log.exception("sla timer failed; retrying")
                await timer.sleep(1.0, runtime.clock.now())
                continue
            now = runtime.clock.now()
            hint = timer.hint(now)
            wait = settings.sla_timer_max_idle_seconds
            for instant, passed in ((nearest, 0.0 if fired else RECHECK), (hint, RECHECK)):
                if instant is not None:
                    ahead = (instant - now).total_seconds() / settings.clock_speed
                    wait = min(wait, ahead if ahead > 0 else passed)
            await timer.sleep(wait, now, settings.clock_speed)
    return run


def clock_gauges(runtime: ServiceRuntime) -> Callable[[], Coroutine[Any, Any, list[Any]]]:
    async def read() -> list[tuple[str, str, dict[str, str], float]]:
        now = runtime.clock.now()
        rows = await runtime.pool.fetch(
            "SELECT metric, count(*) AS running, count(*) FILTER (WHERE due_at <= $1) AS due"
            " FROM sla_clock WHERE state = 'running' GROUP BY metric",
            now + timedelta(minutes=15))
        breached = await runtime.pool.fetch(
            "SELECT metric, count(*) AS n FROM sla_clock WHERE state = 'breached'"
            " GROUP BY metric")
        out = [("switchboard_sla_clocks_running", "SLA clocks running.", {"metric": r["metric"]},
                float(r["running"])) for r in rows]
        out += [("switchboard_sla_clocks_due_15m", "Running clocks due within 15 minutes.",
                 {"metric": r["metric"]}, float(r["due"])) for r in rows]
        out += [("switchboard_sla_clocks_breached", "Clocks that breached (all time).",
                 {"metric": r["metric"]}, float(r["n"])) for r in breached]
        return out
    return read


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    pol = load_policy(runtime.settings)
    timer = Timer()
    log.info("sla policy %s: %d rules, calendars %s", pol.version, len(pol.spec.rules),
             ", ".join(pol.calendars))
    batch = SlaBatch(pol, timer, runtime.clock)
    runtime.gauges.append(clock_gauges(runtime))
    runtime.hooks = batch
    runtime.defer_appends = True  # the SLA core never reads the case log
    runtime.subscribe(Route(CASE_EVENTS, ce.CASE_EVENT_TYPES,
                            dict.fromkeys(core.INPUT_TYPES, batch.handle),
                            reject_unknown_types=False, max_records=SKIMMED_BATCH))
    runtime.background.append(timer_loop(pol, timer))
    return runtime
