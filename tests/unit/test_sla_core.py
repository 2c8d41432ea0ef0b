"""SLA's core on a frozen clock: start, meet, breach, and never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.sla import core
from shared.clock import FrozenClock
from shared.contracts.case_events import ContactReceived, SlaBreached, SlaMet, SlaStarted
from shared.contracts.inbound import CustomerIdentity
from shared.events import Decision

START = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
TARGETS = {"email": 14_400.0, "chat": 120.0, "voice": 60.0}


def first_contact(channel: str, at: datetime) -> ContactReceived:
    return ContactReceived(case_id="case-1", contact_id="contact-1", channel=channel,  # type: ignore[arg-type]
                           source_type="x", customer=CustomerIdentity(), text="help",
                           received_at=at)


def started(channel: str = "chat", clock: FrozenClock | None = None,
            targets: dict[str, float] | None = None) -> tuple[Decision, core.SlaClock]:
    clock = clock or FrozenClock(START)
    return core.start_first_response(first_contact(channel, clock.now()), targets or TARGETS,
                                     "evt-1", clock.now())


@pytest.mark.parametrize("channel", ["email", "chat", "voice"])
def test_start_sets_due_from_the_channel_target(channel: str) -> None:
    clock = FrozenClock(START)
    decision, sla = started(channel, clock)
    assert sla.due_at == START + timedelta(seconds=TARGETS[channel])
    assert (sla.state, sla.metric, sla.started_at) == ("running", "first_response", START)
    [event] = decision.events
    assert event.type == "sla.started" and event.case_id == "case-1"
    assert event.data == SlaStarted(case_id="case-1", clock_id=sla.clock_id,
                                    metric="first_response", policy=core.POLICY,
                                    target_seconds=TARGETS[channel], started_at=START,
                                    due_at=sla.due_at)


def test_a_channel_without_a_target_takes_the_default() -> None:
    assert started("voice", targets={"default": 900.0})[1].due_at == START + timedelta(minutes=15)
    assert started("voice", targets={"email": 1.0})[1].due_at == START + timedelta(hours=1)


def test_the_clock_is_the_case_s_and_the_start_is_deterministic() -> None:
    assert started() == started()


def test_a_reply_before_due_meets_the_clock() -> None:
    clock = FrozenClock(START)
    _, sla = started("chat", clock)
    clock.advance(timedelta(seconds=45))
    decision, met = core.stop_on_reply(sla, clock.now(), clock.now())
    assert met.state == "met"
    [event] = decision.events
    assert event.type == "sla.met"
    assert event.data == SlaMet(case_id="case-1", clock_id=sla.clock_id, metric="first_response",
                                due_at=sla.due_at, met_at=START + timedelta(seconds=45),
                                remaining_seconds=75.0)


def test_fire_before_due_does_nothing() -> None:
    clock = FrozenClock(START)
    _, sla = started("chat", clock)
    clock.advance(timedelta(seconds=119, microseconds=999_999))
    assert core.fire_if_due(sla, clock.now()) == (Decision(), sla)


@pytest.mark.parametrize("late", [timedelta(0), timedelta(seconds=1), timedelta(days=3)])
def test_fire_at_or_after_due_breaches_at_the_true_due_instant(late: timedelta) -> None:
    clock = FrozenClock(START)
    _, sla = started("chat", clock)
    clock.set(sla.due_at + late)
    decision, breached = core.fire_if_due(sla, clock.now())
    assert breached.state == "breached"
    [event] = decision.events
    assert event.type == "sla.breached" and event.time == clock.now()
    assert event.data == SlaBreached(case_id="case-1", clock_id=sla.clock_id,
                                     metric="first_response", due_at=sla.due_at,
                                     breached_at=sla.due_at,
                                     overdue_seconds=late.total_seconds())


def test_a_met_clock_never_fires_or_meets_again() -> None:
    clock = FrozenClock(START)
    _, sla = started("chat", clock)
    clock.advance(timedelta(seconds=10))
    _, met = core.stop_on_reply(sla, clock.now(), clock.now())
    for days in (0, 1, 30):
        clock.advance(timedelta(days=days))
        assert core.fire_if_due(met, clock.now()) == (Decision(), met)
    assert core.stop_on_reply(met, clock.now(), clock.now()) == (Decision(), met)


def test_a_breached_clock_never_fires_again_nor_is_met() -> None:
    clock = FrozenClock(START)
    _, sla = started("voice", clock)
    clock.advance(timedelta(minutes=5))
    first, breached = core.fire_if_due(sla, clock.now())
    assert len(first.events) == 1
    clock.advance(timedelta(hours=1))
    assert core.fire_if_due(breached, clock.now()) == (Decision(), breached)
    assert core.stop_on_reply(breached, clock.now(), clock.now()) == (Decision(), breached)


def test_a_redelivered_breach_has_the_same_id() -> None:
    _, sla = started("chat")
    late = sla.due_at + timedelta(seconds=3)
    assert core.fire_if_due(sla, late) == core.fire_if_due(sla, late)


def test_a_reply_after_the_due_instant_records_the_breach_not_a_met() -> None:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    clock = core.SlaClock("sla-1", "case-1", "first_response", "p", start,
                          start + timedelta(minutes=5))
    late = start + timedelta(minutes=7)
    decision, after = core.stop_on_reply(clock, late, late)
    assert [e.type for e in decision.events] == ["sla.breached"]
    assert decision.events[0].data.breached_at == clock.due_at  # type: ignore[attr-defined]
    assert after.state == "breached"
