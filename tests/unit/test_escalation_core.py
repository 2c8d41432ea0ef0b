"""Escalation's core: the warm-transfer packet and the escalation of a breach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.escalation import core
from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity
from shared.contracts.topics import SUPERVISOR_NOTIFICATIONS

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
CASE = "case-42"
CUSTOMER = CustomerIdentity(name="Maya Patel", email="maya@example.com", verified=True)


def row(data: ce.Contract) -> dict[str, Any]:
    """A payload as the case log stores it (JSON)."""
    return data.model_dump(mode="json")


def contact(channel: str, minutes: int, text: str, subject: str | None = None) -> dict[str, Any]:
    return row(ce.ContactReceived(
        case_id=CASE, contact_id=f"contact-{channel}", channel=channel,  # type: ignore[arg-type]
        source_type=f"{channel}.x", customer=CUSTOMER, subject=subject, text=text,
        received_at=T0 + timedelta(minutes=minutes)))


CLASSIFIED = ce.CaseClassified(case_id=CASE, skill="billing", queue="billing-email",
                               priority="high", language="en", confidence=0.9,
                               evidence=["keyword 'refund' → billing"])
FIRST_DUE = T0 + timedelta(hours=4)
RESOLUTION_DUE = T0 + timedelta(days=1)
BREACH = ce.SlaBreached(case_id=CASE, clock_id="sla-1", metric="first_response",
                        due_at=FIRST_DUE, breached_at=FIRST_DUE, overdue_seconds=2.0)

HISTORY: core.History = [
    ("case.opened", row(ce.CaseOpened(case_id=CASE, channel="email", customer=CUSTOMER,
                                      subject="Charged twice for order 81234", opened_at=T0))),
    ("contact.received", contact("email", 0, "I was charged twice for order 81234.",
                                 subject="Charged twice for order 81234")),
    ("case.classified", row(CLASSIFIED)),
    ("sla.started", row(ce.SlaStarted(case_id=CASE, clock_id="sla-1", metric="first_response",
                                      policy="p", target_seconds=14400, started_at=T0,
                                      due_at=FIRST_DUE))),
    ("sla.started", row(ce.SlaStarted(case_id=CASE, clock_id="sla-2", metric="resolution",
                                      policy="p", target_seconds=86400, started_at=T0,
                                      due_at=RESOLUTION_DUE))),
    ("contact.received", contact("chat", 30, "Any news? Still waiting for the refund.")),
    ("case.assigned", row(ce.CaseAssigned(case_id=CASE, agent_id="agent-ada"))),
    ("contact.received", contact("voice", 90, "Inbound call from +14155550123")),
    ("sla.breached", row(BREACH)),
]


def test_the_packet_carries_every_contact_and_what_the_case_knows() -> None:
    packet = core.build_packet(CASE, HISTORY, "sla.breached:first_response", level=1)
    assert packet.case_id == CASE and packet.customer == CUSTOMER
    assert packet.problem == "Charged twice for order 81234"
    assert [(c.channel, c.text) for c in packet.contacts] == [
        ("email", "I was charged twice for order 81234."),
        ("chat", "Any news? Still waiting for the refund."),
        ("voice", "Inbound call from +14155550123"),
    ]
    assert [c.at for c in packet.contacts] == [T0, T0 + timedelta(minutes=30),
                                               T0 + timedelta(minutes=90)]
    assert packet.classification == CLASSIFIED
    assert {(s.metric, s.due_at, s.state) for s in packet.sla} == {
        ("first_response", FIRST_DUE, "breached"), ("resolution", RESOLUTION_DUE, "running")}
    assert packet.assigned_agent == "agent-ada"
    assert (packet.reason, packet.level) == ("sla.breached:first_response", 1)
    assert "agent-ada" in packet.suggested_next_step and "billing" in packet.suggested_next_step


def test_without_a_subject_the_problem_is_the_first_line_of_the_first_contact() -> None:
    history: core.History = [("contact.received", contact("chat", 0, "My parcel is lost\nhelp"))]
    packet = core.build_packet(CASE, history, "r", level=1)
    assert packet.problem == "My parcel is lost"
    assert packet.assigned_agent is None and "queue" in packet.suggested_next_step
    assert core.build_packet(CASE, [], "r", level=1).problem == "(no text)"


def test_a_breach_escalates_notifies_and_publishes_one_notification() -> None:
    decision = core.escalate_breach(BREACH, HISTORY, "supervisors-tier2", "evt-breach", T0)
    assert [e.type for e in decision.events] == ["case.escalated", "escalation.notified"]
    escalated, notified = decision.events
    assert isinstance(escalated.data, ce.CaseEscalated)
    assert isinstance(notified.data, ce.EscalationNotified)
    assert escalated.case_id == notified.case_id == CASE
    assert escalated.data.packet == core.build_packet(CASE, HISTORY,
                                                      "sla.breached:first_response", level=1)
    assert notified.data.escalation_id == escalated.data.escalation_id
    [message] = decision.outbound
    assert (message.topic, message.key, message.subject) == (SUPERVISOR_NOTIFICATIONS, CASE, CASE)
    assert message.type in ce.SUPERVISOR_NOTIFICATION_TYPES
    assert message.caused_by == notified.event_id
    note = message.data
    assert isinstance(note, ce.SupervisorNotification)
    assert note.notification_id == notified.data.notification_id
    assert (note.target, note.level, note.reason) == ("supervisors-tier2", 1,
                                                      "sla.breached:first_response")
    assert note.summary == core.render_summary(note.packet)


def test_the_same_breach_twice_gives_identical_ids() -> None:
    first = core.escalate_breach(BREACH, HISTORY, "sup", "evt-breach", T0)
    redelivered = core.escalate_breach(BREACH, HISTORY, "sup", "evt-breach", T0)
    assert first == redelivered
    # Even a second breach event of the same case and metric is the same escalation.
    later = core.escalate_breach(BREACH, HISTORY, "sup", "evt-other", T0 + timedelta(minutes=5))
    assert [e.event_id for e in later.events] == [e.event_id for e in first.events]
    assert later.outbound[0].event_id == first.outbound[0].event_id


def test_another_metric_is_another_escalation() -> None:
    other = BREACH.model_copy(update={"metric": "resolution", "clock_id": "sla-2"})
    first = core.escalate_breach(BREACH, HISTORY, "sup", "e1", T0)
    second = core.escalate_breach(other, HISTORY, "sup", "e2", T0)
    assert not {e.event_id for e in first.events} & {e.event_id for e in second.events}


def test_the_summary_names_the_customer_the_problem_and_each_contact() -> None:
    summary = core.render_summary(core.build_packet(CASE, HISTORY, "sla.breached:x", level=1))
    assert "Maya Patel (verified)" in summary
    assert "Problem: Charged twice for order 81234" in summary
    for text in ("I was charged twice", "Still waiting for the refund",
                 "Inbound call from +14155550123"):
        assert text in summary
    for line in ("2025-03-14 09:00 email:", "2025-03-14 09:30 chat:", "2025-03-14 10:30 voice:"):
        assert line in summary
    assert "Assigned: agent-ada" in summary and "billing, high priority (90%)" in summary


def test_the_summary_of_an_anonymous_caller_uses_the_phone() -> None:
    history: core.History = [("case.opened", row(ce.CaseOpened(
        case_id=CASE, channel="voice", customer=CustomerIdentity(phone="+14155550123"),
        opened_at=T0)))]
    summary = core.render_summary(core.build_packet(CASE, history, "r", level=1))
    assert "Customer: +14155550123 (not verified)" in summary
    assert "Assigned: nobody" in summary


def test_text_added_to_a_contact_later_is_in_the_packet_with_it() -> None:
    from datetime import UTC, datetime

    from services.escalation.core import build_packet

    at = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    received = {"case_id": "case-1", "contact_id": "k1", "channel": "voice",
                "source_type": "call.started", "customer": {}, "text": "Inbound call from +1415",
                "received_at": at.isoformat()}
    added = {"case_id": "case-1", "contact_id": "k1", "channel": "voice",
             "source_type": "call.transcript", "text": "I was charged twice for my plan",
             "at": at.isoformat()}
    packet = build_packet("case-1", [("contact.received", received),
                                     ("contact.text_added", added)], "sla.breached", 1)
    (contact,) = packet.contacts
    assert "charged twice" in contact.text
    assert packet.problem == "I was charged twice for my plan"
