"""SLA's core on a frozen clock: a case walked through days in milliseconds.

The policy below is small and written for the tests: a Berlin split-shift calendar with a
holiday, chat in calendar time, email in business time with warnings, a platinum contract.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.sla import policy
from services.sla.replay import Simulation
from shared.clock import FrozenClock
from shared.contracts import case_events as ce
from shared.contracts.base import Contract
from shared.contracts.inbound import CustomerIdentity
from shared.events import CaseEvent

BERLIN = ZoneInfo("Europe/Berlin")
POLICY: dict[str, Any] = {
    "version": "test-1",
    "calendars": {
        "berlin": {"time_zone": "Europe/Berlin",
                   "hours": {d: ["09:00-12:00", "13:00-17:00"]
                             for d in ("mon", "tue", "wed", "thu", "fri")},
                   "holidays": {"dates": ["2026-11-25"]}},
        "always": {"time_zone": "UTC", "hours": {d: ["00:00-24:00"] for d in
                                                 ("mon", "tue", "wed", "thu", "fri", "sat",
                                                  "sun")}},
    },
    "metrics": {
        "first_response": {"start_on": ["first_contact"], "stop_on": ["agent_reply"],
                           "cancel_on": ["solved"]},
        "next_response": {"start_on": ["contact_after_reply"], "stop_on": ["agent_reply"],
                          "cancel_on": ["solved"], "repeats": True},
        "periodic_update": {"start_on": ["agent_reply"], "stop_on": ["agent_reply"],
                            "pause_on": ["pending_customer"], "resume_on": ["open", "contact"],
                            "cancel_on": ["solved"], "repeats": True},
        "resolution": {"start_on": ["first_contact", "reopened"], "stop_on": ["solved"],
                       "pause_on": ["pending_customer"], "resume_on": ["open", "contact"],
                       "repeats": True, "on_restart": "reset"},
    },
    "rules": [
        {"name": "urgent", "when": {"priority": ["urgent"]}, "calendar": "always",
         "targets": {"first_response": {"target": "30m", "time": "calendar"}}},
        {"name": "chat", "when": {"channel": ["chat"]}, "calendar": "always",
         "targets": {"first_response": {"target": "2m", "time": "calendar", "warn": ["75%"]}}},
        {"name": "email", "calendar": "berlin",
         "targets": {"first_response": {"target": "4h", "warn": ["75%", "10m"]},
                     "next_response": {"target": "2h"},
                     "periodic_update": {"target": "1d"},
                     "resolution": {"target": "14h", "warn": ["50%"]}}},
    ],
    "contracts": [{"name": "acme-gold", "tier": "gold",
                   "customers": {"email_domains": ["acme.example"]}, "calendar": "always",
                   "targets": {"first_response": {"target": "1h", "time": "calendar"}}}],
}
POL = policy.load_text(json.dumps(POLICY))
MON_9 = datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN)  # Monday; Wednesday 25 is a holiday


class Case:
    """A case fed to the simulated service, with a frozen clock that moves on each step."""

    def __init__(self, pol: policy.Policy = POL, start: datetime = MON_9) -> None:
        self.sim, self.clock, self.n = Simulation(pol), FrozenClock(start), 0

    def feed(self, type_: str, payload: Contract) -> list[CaseEvent]:
        self.n += 1
        return self.sim.feed(type_, payload, f"evt-{self.n}", self.clock.now())

    def at(self, **delta: float) -> datetime:
        self.clock.advance(timedelta(**delta))
        return self.clock.now()

    def contact(self, channel: str = "email", email: str = "maya@example.com",
                **delta: float) -> list[CaseEvent]:
        return self.feed("contact.received", ce.ContactReceived(
            case_id="case-1", contact_id=f"c-{self.n}", channel=channel,  # type: ignore[arg-type]
            source_type="x", customer=CustomerIdentity(email=email), text="help",
            received_at=self.at(**delta)))

    def reply(self, **delta: float) -> list[CaseEvent]:
        return self.feed("reply.sent", ce.ReplySent(case_id="case-1", agent_id="ada", text="hi",
                                                    at=self.at(**delta)))

    def status(self, status: str, **delta: float) -> list[CaseEvent]:
        return self.feed("case.status_changed", ce.CaseStatusChanged(
            case_id="case-1", status=status, at=self.at(**delta)))  # type: ignore[arg-type]

    def tick(self, **delta: float) -> list[CaseEvent]:
        return self.sim.tick(self.at(**delta))

    def of(self, type_: str, metric: str) -> list[Any]:
        return [e.data for e in self.sim.events
                if e.type == type_ and getattr(e.data, "metric", None) == metric]


def test_an_email_starts_first_response_and_resolution_on_the_business_calendar() -> None:
    case = Case()
    events = case.contact(minutes=30)  # Monday 09:30
    assert [(e.type, e.data.metric) for e in events] == [  # type: ignore[attr-defined]
        ("sla.started", "first_response"), ("sla.started", "resolution")]
    first = events[0].data
    assert isinstance(first, ce.SlaStarted)
    # 4 business hours from 09:30: 2.5 h before lunch, 1.5 h after it.
    assert first.due_at == datetime(2026, 11, 23, 14, 30, tzinfo=BERLIN)
    assert (first.policy, first.rule, first.time_basis, first.calendar) == (
        "test-1", "email", "business", "berlin")


def test_a_reply_in_time_meets_first_response() -> None:
    case = Case()
    case.contact()
    events = case.reply(hours=1)
    met = [e.data for e in events if e.type == "sla.met"]
    assert len(met) == 1 and isinstance(met[0], ce.SlaMet)
    assert met[0].met_at == MON_9 + timedelta(hours=1)
    assert met[0].business_remaining_seconds == 3 * 3600


def test_warnings_at_75_percent_and_10_minutes_before_then_the_breach_each_once() -> None:
    case = Case()
    case.contact()  # Monday 09:00, due 14:00 (lunch 12-13)
    assert case.tick(hours=2, minutes=59) == []
    [w75] = case.tick(minutes=1)  # 3 business hours (75 %) end at 12:00, as lunch begins
    assert isinstance(w75.data, ce.SlaWarning)
    assert w75.data.threshold == "75%" and w75.data.business_remaining_seconds == 3600
    assert w75.data.warned_at == datetime(2026, 11, 23, 12, 0, tzinfo=BERLIN)
    fired = [e for e in case.tick(hours=3)  # 15:00, late: the 10-min warning and the breach
             if e.data.metric == "first_response"]  # type: ignore[attr-defined]
    assert [e.type for e in fired] == ["sla.warning", "sla.breached"]
    warning, breach = (e.data for e in fired)
    assert isinstance(warning, ce.SlaWarning) and isinstance(breach, ce.SlaBreached)
    assert warning.warned_at == datetime(2026, 11, 23, 13, 50, tzinfo=BERLIN)
    assert breach.breached_at == breach.due_at == datetime(2026, 11, 23, 14, 0, tzinfo=BERLIN)
    assert breach.overdue_seconds == 3600 and breach.business_overdue_seconds == 3600
    assert not [e for e in case.tick(days=3)  # never twice
                if e.data.metric == "first_response"]  # type: ignore[attr-defined]
    assert Counter((e.type, e.data.metric) for e in case.sim.events)[  # type: ignore[attr-defined]
        ("sla.breached", "first_response")] == 1


def test_a_reply_logged_after_the_due_instant_breaches_at_the_due_instant() -> None:
    case = Case()
    case.contact(channel="chat")
    events = case.reply(minutes=5)  # the timer never ran: the reply still cannot meet it
    types = [e.type for e in events]
    assert types == ["sla.warning", "sla.breached"]
    assert events[1].data.breached_at == MON_9 + timedelta(minutes=2)  # type: ignore[attr-defined]


def test_a_holiday_in_the_middle_is_not_counted() -> None:
    case = Case()
    [first, resolution] = case.contact(days=1, hours=7, minutes=30)  # Tuesday 16:30
    assert isinstance(first.data, ce.SlaStarted) and isinstance(resolution.data, ce.SlaStarted)
    # 30 min on Tuesday; Wednesday is a holiday; Thursday 09-12 and 13:00-13:30.
    assert first.data.due_at == datetime(2026, 11, 26, 13, 30, tzinfo=BERLIN)
    # 14 business hours (two working days): Tue 0.5 + Thu 7 + Fri 6.5 (09-12, 13:00-16:30)
    assert resolution.data.due_at == datetime(2026, 11, 27, 16, 30, tzinfo=BERLIN)


def test_pending_customer_pauses_resolution_and_the_customer_reply_resumes_it() -> None:
    case = Case()
    case.contact()  # Monday 09:00, resolution due in 14 business hours: Tuesday 16:00
    case.reply(hours=1)
    paused = case.status("pending_customer", minutes=1)
    assert {e.data.metric for e in paused if e.type == "sla.paused"} == {  # type: ignore[attr-defined]
        "resolution", "periodic_update"}
    [p] = case.of("sla.paused", "resolution")
    assert p.business_remaining_seconds == 14 * 3600 - 3660
    case.tick(days=2)  # Wednesday: nothing fires while paused
    assert case.of("sla.breached", "resolution") == []
    resumed = case.contact(hours=16)  # Thursday 02:01 (Wed holiday): the customer answers
    assert "sla.resumed" in [e.type for e in resumed]
    [r] = case.of("sla.resumed", "resolution")
    # 12 h 59 min left from Thursday 09:00 (opening): Thu 7 h, Fri 09-12 and 13:00-15:59
    assert r.due_at == datetime(2026, 11, 27, 15, 59, tzinfo=BERLIN)


def test_next_response_runs_a_cycle_per_customer_message_after_an_agent_reply() -> None:
    case = Case()
    case.contact()
    case.contact(minutes=10)  # a second message before any reply: no next-response clock
    assert case.of("sla.started", "next_response") == []
    case.reply(minutes=10)
    case.contact(minutes=10)
    case.contact(minutes=5)  # still waiting for the agent: the same cycle
    case.reply(minutes=10)
    case.contact(minutes=10)
    started = case.of("sla.started", "next_response")
    assert [s.cycle for s in started] == [1, 2]
    assert len({s.clock_id for s in started}) == 2
    assert len(case.of("sla.met", "next_response")) == 1


def test_solved_meets_resolution_cancels_response_clocks_and_reopening_resets() -> None:
    case = Case()
    case.contact()
    events = case.status("solved", hours=2)
    assert {(e.type, e.data.metric) for e in events} == {  # type: ignore[attr-defined]
        ("sla.cancelled", "first_response"), ("sla.met", "resolution")}
    case.contact(hours=1)  # the customer writes again: reopened
    [_, second] = case.of("sla.started", "resolution")
    assert second.cycle == 2 and second.business_remaining_seconds == 14 * 3600


def test_a_contract_overrides_the_rule_targets_and_calendar() -> None:
    case = Case(start=datetime(2026, 11, 28, 22, 0, tzinfo=BERLIN))  # Saturday night
    [first, _] = case.contact(email="ops@acme.example")
    assert isinstance(first.data, ce.SlaStarted)
    assert first.data.due_at == datetime(2026, 11, 28, 23, 0, tzinfo=BERLIN)
    assert first.data.rule == "email+acme-gold" and first.data.time_basis == "calendar"


def test_a_classification_that_changes_the_target_replaces_the_clock() -> None:
    case = Case()
    case.contact(channel="chat")
    events = case.feed("case.classified", ce.CaseClassified(
        case_id="case-1", skill="billing", queue="billing", priority="urgent", language="en",
        confidence=0.9))
    assert [e.type for e in events] == ["sla.cancelled", "sla.started"]
    new = events[1].data
    assert isinstance(new, ce.SlaStarted)
    assert new.started_at == MON_9 and new.due_at == MON_9 + timedelta(minutes=30)
    assert new.business_remaining_seconds == 30 * 60


def test_the_skeleton_setting_overrides_first_response_per_channel() -> None:
    pol = policy.with_channel_first_response(POL, {"voice": 4, "chat": 3600})
    case = Case(pol)
    [first] = [e for e in case.contact(channel="voice") if e.data.metric == "first_response"]  # type: ignore[attr-defined]
    assert first.data.due_at == MON_9 + timedelta(seconds=4)  # type: ignore[attr-defined]


def test_event_ids_are_deterministic() -> None:
    one, two = Case(), Case()
    assert [e.event_id for e in one.contact()] == [e.event_id for e in two.contact()]


@pytest.mark.parametrize(("edit", "where", "on_line"), [
    (lambda p: p["rules"][2]["targets"]["first_response"].update(target="4 hours"),
     "rules.2.targets.first_response.target", "4 hours"),
    (lambda p: p["calendars"]["berlin"].update(time_zone="Europe/Berlim"),
     "calendars.berlin.time_zone", "Berlim"),
    (lambda p: p["calendars"]["berlin"]["hours"].update(mon=["12:00-09:00"]),
     "calendars.berlin.hours", '"hours"'),
    (lambda p: p["rules"][0].update(calendar="mars"), "<root>", "{"),
    (lambda p: p["metrics"]["resolution"].update(pause_on=["lunch"]),
     "metrics.resolution.pause_on.0", "lunch"),
])
def test_policy_errors_name_the_field_and_the_line(edit: Any, where: str, on_line: str) -> None:
    broken = json.loads(json.dumps(POLICY))
    edit(broken)
    text = json.dumps(broken, indent=2)
    with pytest.raises(policy.PolicyError) as info:
        policy.load_text(text, "p.json")
    message = str(info.value)
    assert f": {where}: " in message
    line = int(message.split(":")[1])
    assert on_line in text.splitlines()[line - 1]


def test_the_packaged_policy_validates_and_its_schema_is_committed() -> None:
    loaded = policy.load()
    assert loaded.spec.rules[-1].when.model_dump(exclude_none=True) == {}
    committed = json.loads(
        (policy.resources.files("services.sla") / "policies" / "policy.schema.json")
        .read_text("utf-8"))
    assert committed == policy.json_schema(), "run: python -m services.sla.policy > schema"


def test_clock_rows_round_trip_through_the_app_columns() -> None:
    from services.sla import app
    case = Case()
    case.contact()
    for clock in case.sim.clocks.values():
        row = dict(zip([*app._NAMES, "next_fire_at"], app.clock_row(clock), strict=True))
        assert app.clock_from_row(row) == clock
    assert all(c.next_fire_at is not None for c in case.sim.clocks.values())


def test_the_skeleton_setting_alone_selects_the_first_response_only_policy() -> None:
    from services.sla.app import load_policy
    from shared.settings import Settings
    legacy = load_policy(Settings(sla_first_response_seconds={"voice": 4, "chat": 3600}))
    assert set(legacy.spec.metrics) == {"first_response"}
    case = Case(legacy)
    [started] = case.contact(channel="voice")
    assert started.data.due_at == MON_9 + timedelta(seconds=4)  # type: ignore[attr-defined]
    [warning, breach] = case.tick(seconds=5)
    assert warning.data.warned_at == MON_9 + timedelta(seconds=3)  # type: ignore[attr-defined]
    assert breach.type == "sla.breached"
    assert load_policy(Settings()).version == policy.load().version
