"""SLA's pure core: clocks and cases as values, decisions as functions of (state, signal, now).

Case events become *signals* (first contact, agent reply, pending customer, solved, reopened…);
the policy's metric lifecycles say which signals start, stop, pause, resume or cancel each
metric's clock. A running clock stores its due instant and warning instants, computed from the
business calendar when it starts or resumes, so the timer fires without calendar arithmetic.

Every instant a clock records is the true instant of the case event (reply time, contact time) or
of the threshold, never the moment the service got round to it: a reply recorded after the due
instant (say, while the timer was down) breaches at the due instant, and warnings and breaches
fired late carry the instant they came due.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from services.sla import business_time as bt
from services.sla.business_time import Calendar
from services.sla.policy import METRICS, Policy, Selection, Signal, Target
from shared.contracts import case_events as ce
from shared.contracts.base import Contract, derive_event_id
from shared.events import CaseEvent, Decision

State = Literal["running", "paused", "met", "breached", "cancelled"]
ACTIVE: tuple[State, ...] = ("running", "paused")


@dataclass(frozen=True)
class SlaClock:
    clock_id: str
    case_id: str
    metric: ce.SlaMetric
    cycle: int
    policy: str  # the version it started under
    rule: str
    calendar: str
    time_basis: Literal["business", "calendar"]
    target_seconds: float
    started_at: datetime
    due_at: datetime  # while paused: the due instant as it stood when paused
    state: State = "running"
    # Business seconds consumed before `running_since`; the rest is computed from the calendar.
    elapsed_seconds: float = 0.0
    running_since: datetime | None = None
    # (label, business seconds remaining when it fires), earliest first, and their instants.
    warnings: tuple[tuple[str, float], ...] = ()
    warn_at: tuple[datetime, ...] = ()
    warnings_fired: int = 0
    closed_at: datetime | None = None

    @property
    def next_fire_at(self) -> datetime | None:
        if self.state != "running":
            return None
        if self.warnings_fired < len(self.warn_at):
            return min(self.warn_at[self.warnings_fired], self.due_at)
        return self.due_at


@dataclass(frozen=True)
class CaseState:
    """What the SLA service remembers of a case between events."""

    case_id: str
    facts: Mapping[str, str] = field(default_factory=dict)
    status: str = "new"  # new | open | pending_customer | on_hold | solved
    awaiting: str | None = None  # "agent" after a customer message, "customer" after a reply
    cycles: Mapping[str, int] = field(default_factory=dict)
    carried: Mapping[str, float] = field(default_factory=dict)  # for on_restart = continue


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    case: CaseState
    clocks: tuple[SlaClock, ...]  # every clock created or changed, to persist


def calendar_of(policy: Policy, clock_calendar: str, basis: str) -> Calendar:
    """The calendar a clock counts in; calendar-time clocks count every second."""
    if basis == "calendar":
        return bt.CALENDAR_TIME
    return policy.calendars.get(clock_calendar, bt.CALENDAR_TIME)


# --- signals from case events ----------------------------------------------------------------
def facts_from_contact(policy: Policy, contact: ce.ContactReceived) -> dict[str, str]:
    facts: dict[str, str] = {"channel": contact.channel}
    if contact.details.get("intent"):
        facts["intent"] = contact.details["intent"]
    contract = policy.contract_for(contact.customer.model_dump())
    if contract:
        facts["contract"], facts["customer_tier"] = contract.name, contract.tier
    elif contact.details.get("customer_tier"):
        facts["customer_tier"] = contact.details["customer_tier"]
    return facts


def on_contact(case: CaseState) -> tuple[list[Signal], CaseState]:
    signals: list[Signal]
    if case.status == "new":
        signals = ["first_contact", "contact"]
    elif case.status == "solved":
        signals = ["reopened", "contact"]
    elif case.awaiting == "customer":
        signals = ["contact_after_reply", "contact"]
    else:
        signals = ["contact"]
    return signals, replace(case, status="open", awaiting="agent")


def on_reply(case: CaseState) -> tuple[list[Signal], CaseState]:
    status = "open" if case.status == "new" else case.status
    return ["agent_reply"], replace(case, status=status, awaiting="customer")


def on_status(case: CaseState, status: str) -> tuple[list[Signal], CaseState]:
    signals: list[Signal]
    if status == "open":
        signals = ["reopened", "open"] if case.status == "solved" else ["open"]
    elif status == "pending_customer":
        signals = ["pending_customer"]
    elif status == "on_hold":
        signals = ["on_hold"]
    else:
        signals = ["solved"]
    return signals, replace(case, status=status)


# The case events the SLA service consumes.
INPUT_TYPES = ("contact.received", "reply.sent", "case.solved", "case.status_changed",
               "case.classified")


def decide(policy: Policy, case: CaseState, clocks: Sequence[SlaClock], type_: str,
           payload: Contract, cause_id: str, event_time: datetime, now: datetime) -> Outcome:
    """One consumed case event: its signals (or new facts) applied to the case's clocks."""
    if isinstance(payload, ce.ContactReceived):
        if case.status == "new":
            case = replace(case, facts={**facts_from_contact(policy, payload), **case.facts})
        signals, case = on_contact(case)
        return apply(policy, case, clocks, signals, payload.received_at, cause_id, now)
    if isinstance(payload, ce.ReplySent):
        signals, case = on_reply(case)
        return apply(policy, case, clocks, signals, payload.at, cause_id, now)
    if isinstance(payload, ce.CaseSolvedEvent):
        signals, case = on_status(case, "solved")
        return apply(policy, case, clocks, signals, payload.at, cause_id, now)
    if isinstance(payload, ce.CaseStatusChanged):
        signals, case = on_status(case, payload.status)
        return apply(policy, case, clocks, signals, payload.at, cause_id, now)
    if isinstance(payload, ce.CaseClassified):
        facts = {"priority": payload.priority, "queue": payload.queue, "skill": payload.skill}
        return reselect(policy, case, clocks, facts, event_time, cause_id, now)
    raise ValueError(f"sla does not consume {type_}")


# --- applying signals ------------------------------------------------------------------------
def apply(policy: Policy, case: CaseState, clocks: Sequence[SlaClock], signals: Sequence[Signal],
          at: datetime, cause_id: str, now: datetime) -> Outcome:
    """Apply signals at instant `at` to the case's active clocks, metric by metric.

    Per signal and metric the order is cancel, stop, pause, resume, start, so that a signal that
    both stops and starts a metric (an agent reply for periodic updates) closes one cycle and
    opens the next.
    """
    selection = policy.select(case.facts)
    active = {c.metric: c for c in clocks if c.state in ACTIVE}
    changed: dict[str, SlaClock] = {}
    events: list[CaseEvent] = []
    cycles, carried = dict(case.cycles), dict(case.carried)

    def put(clock: SlaClock) -> None:
        changed[clock.clock_id] = clock
        if clock.state in ACTIVE:
            active[clock.metric] = clock
        else:
            active.pop(clock.metric, None)
            carried[clock.metric] = _elapsed_at(policy, clock, at)

    for signal in signals:
        for metric in METRICS:
            life = policy.spec.metrics.get(metric)
            if life is None:
                continue
            clock = active.get(metric)
            if clock is not None:
                clock, fired = catch_up(policy, clock, at, now)
                events += fired
                put(clock)
            if clock is not None and clock.state in ACTIVE:
                if signal in life.cancel_on:
                    clock, ev = cancel(policy, clock, f"signal:{signal}", at, cause_id, now)
                    events.append(ev)
                elif signal in life.stop_on:
                    clock, evs = stop(policy, clock, at, now)
                    events += evs
                elif signal in life.pause_on and clock.state == "running":
                    clock, ev = pause(policy, clock, signal, at, cause_id, now)
                    events.append(ev)
                elif signal in life.resume_on and clock.state == "paused":
                    clock, ev = resume(policy, clock, signal, at, cause_id, now)
                    events.append(ev)
                put(clock)
            target = selection.targets.get(metric)
            if (signal in life.start_on and metric not in active and target is not None
                    and (life.repeats or cycles.get(metric, 0) == 0)):
                cycles[metric] = cycles.get(metric, 0) + 1
                elapsed = carried.get(metric, 0.0) if life.on_restart == "continue" else 0.0
                new, ev = start(policy, selection, case.case_id, metric, target, cycles[metric],
                                at, elapsed, now)
                events.append(ev)
                put(new)
    case = replace(case, cycles=cycles, carried=carried)
    return Outcome(Decision(events=tuple(events)), case, tuple(changed.values()))


def reselect(policy: Policy, case: CaseState, clocks: Sequence[SlaClock],
             facts: Mapping[str, str], at: datetime, cause_id: str, now: datetime) -> Outcome:
    """New facts (classification) may select another rule: clocks whose target, calendar or
    time basis change are cancelled and replaced by a clock of the new target that keeps the
    business time already consumed (counted in the old calendar) and the original start.
    """
    case = replace(case, facts={**case.facts, **facts})
    selection = policy.select(case.facts)
    cycles = dict(case.cycles)
    events: list[CaseEvent] = []
    changed: list[SlaClock] = []
    for clock in clocks:
        if clock.state not in ACTIVE:
            continue
        target = selection.targets.get(clock.metric)
        if target is not None and _same_target(clock, selection, target):
            continue
        clock, fired = catch_up(policy, clock, at, now)
        events += fired
        if clock.state not in ACTIVE:
            changed.append(clock)
            continue
        elapsed = _elapsed_at(policy, clock, at)
        reason = f"rule:{selection.rule}" if target else f"rule:{selection.rule} has no target"
        old, ev = cancel(policy, clock, reason, at, cause_id, now)
        events.append(ev)
        changed.append(old)
        if target is None:
            continue
        cycles[clock.metric] = cycles.get(clock.metric, 0) + 1
        new, ev = start(policy, selection, case.case_id, clock.metric, target,
                        cycles[clock.metric], at, elapsed, now, started_at=clock.started_at)
        if clock.state == "paused":
            new = replace(new, state="paused", running_since=None)
        events.append(ev)
        changed.append(new)
    return Outcome(Decision(events=tuple(events)), replace(case, cycles=cycles), tuple(changed))


def _same_target(clock: SlaClock, selection: Selection, target: Target) -> bool:
    calendar = selection.calendar.name if target.time == "business" else bt.CALENDAR_TIME.name
    return (clock.target_seconds, clock.time_basis, clock.calendar,
            clock.warnings) == (target.seconds, target.time, calendar, target.warnings())


# --- one clock -------------------------------------------------------------------------------
def clock_id(case_id: str, metric: str, cycle: int) -> str:
    return f"sla-{derive_event_id(case_id, f'{metric}/{cycle}')}"


def start(policy: Policy, selection: Selection, case_id: str, metric: ce.SlaMetric, target: Target,
          cycle: int, at: datetime, elapsed: float, now: datetime,
          started_at: datetime | None = None) -> tuple[SlaClock, CaseEvent]:
    basis = target.time
    calendar = selection.calendar.name if basis == "business" else bt.CALENDAR_TIME.name
    clock = SlaClock(
        clock_id=clock_id(case_id, metric, cycle), case_id=case_id, metric=metric, cycle=cycle,
        policy=policy.version, rule=selection.rule, calendar=calendar, time_basis=basis,
        target_seconds=target.seconds, started_at=started_at or at, due_at=at,
        elapsed_seconds=elapsed, running_since=at, warnings=target.warnings(),
    )
    clock = _schedule(policy, clock, at)
    data = ce.SlaStarted(
        case_id=case_id, clock_id=clock.clock_id, metric=metric,
        policy=clock.policy, target_seconds=clock.target_seconds, started_at=clock.started_at,
        due_at=clock.due_at, rule=clock.rule, calendar=clock.calendar, time_basis=basis,
        cycle=cycle, business_remaining_seconds=clock.target_seconds - elapsed)
    return clock, _event(clock, "started", "sla.started", now, data)


def _schedule(policy: Policy, clock: SlaClock, since: datetime) -> SlaClock:
    """Due and warning instants of a clock (re)starting at `since` with time already consumed."""
    cal = calendar_of(policy, clock.calendar, clock.time_basis)
    left = clock.target_seconds - clock.elapsed_seconds
    due = bt.add(cal, since, left)
    warn_at = tuple(bt.add(cal, since, max(0.0, left - remaining)) if left > remaining else since
                    for _, remaining in clock.warnings)
    return replace(clock, state="running", running_since=since, due_at=due, warn_at=warn_at)


def _elapsed_at(policy: Policy, clock: SlaClock, at: datetime) -> float:
    if clock.state != "running" or clock.running_since is None:
        return clock.elapsed_seconds
    cal = calendar_of(policy, clock.calendar, clock.time_basis)
    return clock.elapsed_seconds + max(0.0, bt.between(cal, clock.running_since, at))


def remaining_at(policy: Policy, clock: SlaClock, at: datetime) -> float:
    """Business seconds left at `at` (negative once overdue)."""
    if clock.state == "running" and at > clock.due_at:
        cal = calendar_of(policy, clock.calendar, clock.time_basis)
        return -bt.between(cal, clock.due_at, at)
    return clock.target_seconds - _elapsed_at(policy, clock, at)


def catch_up(policy: Policy, clock: SlaClock, at: datetime,
             now: datetime) -> tuple[SlaClock, list[CaseEvent]]:
    """Fire the warnings and the breach that came due at or before `at`, with their instants."""
    if clock.state != "running":
        return clock, []
    events: list[CaseEvent] = []
    while clock.warnings_fired < len(clock.warn_at) and \
            clock.warn_at[clock.warnings_fired] <= min(at, clock.due_at):
        i = clock.warnings_fired
        label, remaining = clock.warnings[i]
        # A warning whose instant is the due instant itself is overtaken by the breach.
        if clock.warn_at[i] < clock.due_at:
            data = ce.SlaWarning(
                case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
                policy=clock.policy, threshold=label, due_at=clock.due_at,
                warned_at=clock.warn_at[i],
                business_remaining_seconds=min(remaining, clock.target_seconds))
            events.append(_event(clock, f"warning/{i}", "sla.warning", now, data))
        clock = replace(clock, warnings_fired=i + 1)
    if clock.due_at <= at:
        cal = calendar_of(policy, clock.calendar, clock.time_basis)
        data_b = ce.SlaBreached(
            case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
            due_at=clock.due_at, breached_at=clock.due_at,
            overdue_seconds=max(0.0, (now - clock.due_at).total_seconds()), policy=clock.policy,
            business_overdue_seconds=max(0.0, bt.between(cal, clock.due_at,
                                                         max(now, clock.due_at))))
        events.append(_event(clock, "breached", "sla.breached", now, data_b))
        clock = replace(clock, state="breached", closed_at=clock.due_at,
                        warnings_fired=len(clock.warn_at), elapsed_seconds=clock.target_seconds)
    return clock, events


def fire_due(policy: Policy, clock: SlaClock, now: datetime) -> tuple[Decision, SlaClock]:
    """The timer's step: whatever of this clock came due by `now`."""
    clock, events = catch_up(policy, clock, now, now)
    return Decision(events=tuple(events)), clock


def stop(policy: Policy, clock: SlaClock, at: datetime,
         now: datetime) -> tuple[SlaClock, list[CaseEvent]]:
    """The metric was fulfilled at `at`: met, unless it had breached by then."""
    clock, events = catch_up(policy, clock, at, now)
    if clock.state not in ACTIVE:
        return clock, events
    remaining = remaining_at(policy, clock, at)
    data = ce.SlaMet(case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
                     due_at=clock.due_at, met_at=at,
                     remaining_seconds=max(0.0, (clock.due_at - at).total_seconds()),
                     policy=clock.policy, business_remaining_seconds=remaining)
    stopped = replace(clock, state="met", closed_at=at,
                      elapsed_seconds=clock.target_seconds - remaining)
    return stopped, [*events, _event(clock, "met", "sla.met", now, data)]


def pause(policy: Policy, clock: SlaClock, reason: str, at: datetime, cause_id: str,
          now: datetime) -> tuple[SlaClock, CaseEvent]:
    elapsed = _elapsed_at(policy, clock, at)
    paused = replace(clock, state="paused", elapsed_seconds=elapsed, running_since=None)
    data = ce.SlaPaused(case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
                        policy=clock.policy, reason=reason, paused_at=at, due_at=clock.due_at,
                        business_remaining_seconds=clock.target_seconds - elapsed)
    return paused, _event(clock, f"paused/{cause_id}", "sla.paused", now, data)


def resume(policy: Policy, clock: SlaClock, reason: str, at: datetime, cause_id: str,
           now: datetime) -> tuple[SlaClock, CaseEvent]:
    resumed = _schedule(policy, clock, at)
    data = ce.SlaResumed(case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
                         policy=clock.policy, reason=reason, resumed_at=at, due_at=resumed.due_at,
                         business_remaining_seconds=clock.target_seconds - clock.elapsed_seconds)
    return resumed, _event(clock, f"resumed/{cause_id}", "sla.resumed", now, data)


def cancel(policy: Policy, clock: SlaClock, reason: str, at: datetime, cause_id: str,
           now: datetime) -> tuple[SlaClock, CaseEvent]:
    remaining = remaining_at(policy, clock, at)
    data = ce.SlaCancelled(case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
                           policy=clock.policy, reason=reason, cancelled_at=at,
                           due_at=clock.due_at, business_remaining_seconds=remaining)
    cancelled = replace(clock, state="cancelled", closed_at=at,
                        elapsed_seconds=clock.target_seconds - remaining)
    return cancelled, _event(clock, "cancelled", "sla.cancelled", now, data)


def _event(clock: SlaClock, step: str, type_: str, now: datetime, data: Contract) -> CaseEvent:
    return CaseEvent.derived(clock.clock_id, step, clock.case_id, type_, now, data)


# --- persistence helpers (plain dicts, for the app's jsonb columns) --------------------------
def case_to_json(case: CaseState) -> dict[str, Any]:
    return {"facts": dict(case.facts), "status": case.status, "awaiting": case.awaiting,
            "cycles": dict(case.cycles), "carried": dict(case.carried)}


def case_from_json(case_id: str, data: Mapping[str, Any] | None) -> CaseState:
    if not data:
        return CaseState(case_id)
    return CaseState(case_id, data.get("facts", {}), data.get("status", "new"),
                     data.get("awaiting"), data.get("cycles", {}), data.get("carried", {}))
