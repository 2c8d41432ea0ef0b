"""Escalation's pure core: build the warm-transfer packet from a case's history and escalate.

The packet is a function of the case log's rows (type and payload), so it carries everything the
case knows and nothing that was not recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.contracts import case_events as ce
from shared.contracts.base import derive_event_id
from shared.contracts.inbound import CustomerIdentity
from shared.contracts.topics import SUPERVISOR_NOTIFICATIONS
from shared.events import CaseEvent, Decision, Outbound

History = list[tuple[str, dict[str, Any]]]  # (type, payload) in log order


def build_packet(case_id: str, history: History, reason: str, level: int) -> ce.WarmTransferPacket:
    customer, subject = CustomerIdentity(), None
    # contact id → (channel, first time, texts): chat bursts, IVR choices and transcripts arrive
    # as contact.text_added after the contact itself, and belong in the packet with it.
    contacts: dict[str, tuple[Any, datetime, list[str]]] = {}
    classification, assigned = None, None
    sla: dict[str, ce.PacketSlaState] = {}
    for type_, payload in history:
        if type_ == "case.opened":
            opened = ce.CaseOpened.model_validate(payload)
            customer, subject = opened.customer, opened.subject
        elif type_ == "contact.received":
            contact = ce.ContactReceived.model_validate(payload)
            contacts[contact.contact_id] = (contact.channel, contact.received_at, [contact.text])
        elif type_ == "contact.text_added" and payload["contact_id"] in contacts:
            contacts[payload["contact_id"]][2].append(payload["text"])
        elif type_ == "case.classified":
            classification = ce.CaseClassified.model_validate(payload)
        elif type_ == "case.assigned":
            assigned = payload["agent_id"]
        elif type_ == "sla.cancelled":
            sla.pop(payload["clock_id"], None)
        elif type_ in ("sla.started", "sla.met", "sla.breached", "sla.paused", "sla.resumed"):
            state = {"sla.started": "running", "sla.met": "met", "sla.breached": "breached",
                     "sla.paused": "paused", "sla.resumed": "running"}[type_]
            sla[payload["clock_id"]] = ce.PacketSlaState(metric=payload["metric"],
                                                         due_at=payload["due_at"], state=state)  # type: ignore[arg-type]
    told = [ce.PacketContact(channel=channel, at=at, text="\n".join(t for t in texts if t))
            for channel, at, texts in contacts.values()]
    problem = subject or _first_line(told)
    return ce.WarmTransferPacket(
        case_id=case_id, customer=customer, problem=problem, contacts=told,
        classification=classification, sla=list(sla.values()), assigned_agent=assigned,
        reason=reason, level=level, suggested_next_step=_next_step(assigned, classification),
    )


def _first_line(contacts: list[ce.PacketContact]) -> str:
    """The customer's own first words; a call's placeholder line only if nothing else was said."""
    lines = [line for c in contacts for line in c.text.splitlines() if line.strip()]
    spoken = [line for line in lines if not line.startswith("Inbound call from")]
    return ((spoken or lines or ["(no text)"])[0])[:160]


def _next_step(assigned: str | None, classification: ce.CaseClassified | None) -> str:
    skill = classification.skill if classification else "general"
    if assigned is None:
        return f"Take the case from the {skill} queue and reply to the customer now."
    return f"Reply to the customer now, or reassign from {assigned} to a free {skill} agent."


def escalate_breach(
    breach: ce.SlaBreached, history: History, target: str, cause_id: str, now: datetime
) -> Decision:
    """One escalation per case and breached metric: a second breach of it changes nothing."""
    reason = f"sla.breached:{breach.metric}"
    escalation_id = f"esc-{derive_event_id(breach.case_id, reason)}"
    packet = build_packet(breach.case_id, history, reason, level=1)
    escalated = CaseEvent.derived(escalation_id, "escalated", breach.case_id, "case.escalated",
                                  now, ce.CaseEscalated(case_id=breach.case_id,
                                                        escalation_id=escalation_id, reason=reason,
                                                        level=1, target=target, packet=packet))
    notification_id = f"ntf-{derive_event_id(escalation_id, 'level-1')}"
    notified = CaseEvent.derived(escalation_id, "notified/level-1", breach.case_id,
                                 "escalation.notified", now,
                                 ce.EscalationNotified(case_id=breach.case_id,
                                                       escalation_id=escalation_id,
                                                       notification_id=notification_id,
                                                       target=target, sink="kafka"))
    note = ce.SupervisorNotification(
        notification_id=notification_id, escalation_id=escalation_id, case_id=breach.case_id,
        reason=reason, level=1, target=target, summary=render_summary(packet), packet=packet)
    message = Outbound(topic=SUPERVISOR_NOTIFICATIONS, key=breach.case_id,
                       type="supervisor.notification", event_id=derive_event_id(notification_id,
                                                                                "message"),
                       subject=breach.case_id, time=now, data=note, caused_by=notified.event_id)
    return Decision(events=(escalated, notified), outbound=(message,))


def render_summary(packet: ce.WarmTransferPacket) -> str:
    """The packet as plain text a supervisor reads in ten seconds."""
    who = packet.customer.name or packet.customer.email or packet.customer.phone or "unknown"
    lines = [
        f"Case {packet.case_id} escalated (level {packet.level}): {packet.reason}",
        f"Customer: {who} ({'verified' if packet.customer.verified else 'not verified'})",
        f"Problem: {packet.problem}",
    ]
    if packet.classification:
        c = packet.classification
        lines.append(f"Classified: {c.skill}, {c.priority} priority ({c.confidence:.0%})")
    lines.append(f"Assigned: {packet.assigned_agent or 'nobody'}")
    for contact in packet.contacts:
        lines.append(f"- {contact.at:%Y-%m-%d %H:%M} {contact.channel}: {contact.text[:200]}")
    lines.append(f"Next step: {packet.suggested_next_step}")
    return "\n".join(lines)
