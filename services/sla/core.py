"""SLA's pure core: clocks as values, decisions as functions of (clock, event, now).

The walking skeleton keeps one metric, first response, in calendar time, with a target per channel.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from shared.contracts.base import derive_event_id
from shared.contracts.case_events import ContactReceived, SlaBreached, SlaMet, SlaStarted
from shared.events import CaseEvent, Decision

POLICY = "skeleton-v1"


@dataclass(frozen=True)
class SlaClock:
    clock_id: str
    case_id: str
    metric: Literal["first_response"]
    policy: str
    started_at: datetime
    due_at: datetime
    state: Literal["running", "met", "breached"] = "running"


def start_first_response(
    contact: ContactReceived, targets: dict[str, float], cause_id: str, now: datetime
) -> tuple[Decision, SlaClock]:
    """Start the first-response clock of a case at its first contact."""
    target = targets.get(contact.channel, targets.get("default", 3600.0))
    clock = SlaClock(
        clock_id=f"sla-{derive_event_id(contact.case_id, 'first_response')}",
        case_id=contact.case_id, metric="first_response", policy=POLICY,
        started_at=contact.received_at, due_at=contact.received_at + timedelta(seconds=target),
    )
    data = SlaStarted(case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
                      policy=clock.policy, target_seconds=target, started_at=clock.started_at,
                      due_at=clock.due_at)
    event = CaseEvent.derived(clock.clock_id, "started", clock.case_id, "sla.started", now, data)
    return Decision(events=(event,)), clock


def stop_on_reply(
    clock: SlaClock, replied_at: datetime, now: datetime
) -> tuple[Decision, SlaClock]:
    """An agent's reply meets a running first-response clock, if it came before the due instant.

    A reply after the due instant (say, while the timer was down) does not meet the target: the
    clock breached at its due instant, and that is what is recorded.
    """
    if clock.state != "running":
        return Decision(), clock
    if replied_at >= clock.due_at:
        return fire_if_due(clock, max(now, clock.due_at))
    data = SlaMet(case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
                  due_at=clock.due_at, met_at=replied_at,
                  remaining_seconds=(clock.due_at - replied_at).total_seconds())
    event = CaseEvent.derived(clock.clock_id, "met", clock.case_id, "sla.met", now, data)
    return Decision(events=(event,)), replace(clock, state="met")


def fire_if_due(clock: SlaClock, now: datetime) -> tuple[Decision, SlaClock]:
    """A running clock whose due instant has passed breaches, stamped with its true due instant."""
    if clock.state != "running" or now < clock.due_at:
        return Decision(), clock
    data = SlaBreached(case_id=clock.case_id, clock_id=clock.clock_id, metric=clock.metric,
                       due_at=clock.due_at, breached_at=clock.due_at,
                       overdue_seconds=(now - clock.due_at).total_seconds())
    event = CaseEvent.derived(clock.clock_id, "breached", clock.case_id, "sla.breached", now, data)
    return Decision(events=(event,)), replace(clock, state="breached")
