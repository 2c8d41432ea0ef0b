"""Recompute a case's SLA clocks from its log, in memory, and compare with what was logged.

`Simulation` is the SLA service without Kafka or SQL: it feeds case events to the core in log
order and, before each one, fires whatever came due by that event's instant (as the timer
would have). `switchboard sla replay` runs it under the current or a candidate policy; the unit
tests use it to walk cases through days on a frozen clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.sla import core
from services.sla.policy import Policy
from shared.contracts import case_events as ce
from shared.contracts.base import Contract
from shared.events import CaseEvent

SLA_TYPES = ("sla.started", "sla.warning", "sla.paused", "sla.resumed", "sla.met",
             "sla.breached", "sla.cancelled")
# The instant each SLA event is about (what an auditor compares), by type.
_INSTANT = {"sla.started": "due_at", "sla.warning": "warned_at", "sla.paused": "paused_at",
            "sla.resumed": "due_at", "sla.met": "met_at", "sla.breached": "breached_at",
            "sla.cancelled": "cancelled_at"}


@dataclass
class Simulation:
    policy: Policy
    cases: dict[str, core.CaseState] = field(default_factory=dict)
    clocks: dict[str, core.SlaClock] = field(default_factory=dict)
    events: list[CaseEvent] = field(default_factory=list)

    def feed(self, type_: str, payload: Contract, cause_id: str, event_time: datetime,
             now: datetime | None = None) -> list[CaseEvent]:
        """Apply one case event, after firing what came due before its instant."""
        at = _instant(payload, event_time)
        fired = self.tick(at)
        case_id: str = payload.case_id  # type: ignore[attr-defined]
        case = self.cases.get(case_id, core.CaseState(case_id))
        active = [c for c in self.clocks.values()
                  if c.case_id == case_id and c.state in core.ACTIVE]
        outcome = core.decide(self.policy, case, active, type_, payload, cause_id, event_time,
                              now or at)
        self.cases[case_id] = outcome.case
        self.clocks.update((c.clock_id, c) for c in outcome.clocks)
        self.events += outcome.decision.events
        return fired + list(outcome.decision.events)

    def tick(self, now: datetime) -> list[CaseEvent]:
        """The timer at `now`: fire every running clock that came due."""
        out: list[CaseEvent] = []
        due = sorted((c for c in self.clocks.values()
                      if c.next_fire_at is not None and c.next_fire_at <= now),
                     key=lambda c: c.next_fire_at or now)
        for clock in due:
            decision, fired = core.fire_due(self.policy, clock, now)
            self.clocks[clock.clock_id] = fired
            out += decision.events
        self.events += out
        return out


def _instant(payload: Contract, event_time: datetime) -> datetime:
    for name in ("received_at", "at"):
        value = getattr(payload, name, None)
        if isinstance(value, datetime):
            return value
    return event_time


@dataclass(frozen=True)
class Line:
    """One SLA event reduced to what an audit compares."""

    type: str
    metric: str
    cycle: int
    instant: str
    detail: str

    def render(self) -> str:
        return f"{self.type:<14} {self.metric:<16} #{self.cycle:<2} {self.instant}  {self.detail}"


def summarise(rows: Iterable[tuple[str, dict[str, Any]]],
              cycles: dict[str, tuple[str, int]]) -> list[Line]:
    """SLA events as lines; `cycles` maps clock ids to (metric, cycle) (from sla.started)."""
    out = []
    for type_, payload in rows:
        if type_ not in SLA_TYPES:
            continue
        if type_ == "sla.started":
            cycles[payload["clock_id"]] = (payload["metric"], int(payload.get("cycle", 1)))
        metric, cycle = cycles.get(payload["clock_id"], (payload["metric"], 0))
        detail = {"sla.started": f"target={payload.get('target_seconds')}s"
                                 f" rule={payload.get('rule')} policy={payload.get('policy')}",
                  "sla.warning": f"threshold={payload.get('threshold')}",
                  "sla.cancelled": f"reason={payload.get('reason')}",
                  "sla.paused": f"reason={payload.get('reason')}",
                  "sla.resumed": f"reason={payload.get('reason')}"}.get(type_, "")
        out.append(Line(type_, metric, cycle, str(payload[_INSTANT[type_]]), detail))
    return out


def replay(policy: Policy, log: Sequence[tuple[str, dict[str, Any], datetime, str]],
           until: datetime) -> tuple[list[Line], list[Line]]:
    """(logged, recomputed) SLA lines of a case from its log rows (type, payload, time, id).

    Recomputation stops at `until` (now, for an open case): clocks due later have not fired.
    """
    sim = Simulation(policy)
    for type_, payload, time, event_id in log:
        if type_ in core.INPUT_TYPES:
            model = ce.CASE_EVENT_TYPES[type_].model_validate(payload)
            sim.feed(type_, model, event_id, time)
    sim.tick(until)
    logged = summarise(((t, p) for t, p, _, _ in log), {})
    recomputed = summarise(((e.type, e.data.model_dump(mode="json")) for e in sim.events), {})
    return logged, recomputed


def differences(logged: list[Line], recomputed: list[Line]) -> list[str]:
    """A line-by-line diff keyed by (type, metric, cycle): '-' logged only, '+' recomputed only."""
    def key(line: Line) -> tuple[str, str, int, str]:
        return (line.metric, line.type, line.cycle, line.instant)
    old = {key(x): x for x in logged}
    new = {key(x): x for x in recomputed}
    out = [f"- {old[k].render()}" for k in old if k not in new]
    out += [f"+ {new[k].render()}" for k in new if k not in old]
    return out
