"""Case events: the canonical stream on `cases.events` (keyed by case id) and rows of the case log.

Events are named in the past tense. Every case event's CloudEvents `subject` is its case id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.contracts.base import Contract
from shared.contracts.inbound import Channel, CustomerIdentity

Priority = Literal["low", "normal", "high", "urgent"]


class AttachmentMeta(Contract):
    """Attachments travel as metadata only: never their content."""

    filename: str | None = None
    content_type: str
    size: int
    sha256: str


class CaseOpened(Contract):
    case_id: str
    channel: Channel
    customer: CustomerIdentity
    subject: str | None = None
    opened_at: datetime


class ContactReceived(Contract):
    """A customer contact with text: an email, a chat message burst, a call."""

    case_id: str
    contact_id: str
    channel: Channel
    source_type: str
    customer: CustomerIdentity
    subject: str | None = None
    text: str
    received_at: datetime
    attachments: list[AttachmentMeta] = Field(default_factory=list)
    details: dict[str, str] = Field(default_factory=dict)


class ContactActivityRecorded(Contract):
    """Channel activity without new customer text (chat ended, call ended, IVR selection…)."""

    case_id: str
    channel: Channel
    source_type: str
    at: datetime
    details: dict[str, str] = Field(default_factory=dict)


class CaseClassified(Contract):
    case_id: str
    skill: str
    queue: str
    priority: Priority
    language: str
    confidence: float = Field(ge=0, le=1)
    evidence: list[str] = Field(default_factory=list)


class CaseQueued(Contract):
    case_id: str
    queue: str
    priority: Priority


class AssignmentOffered(Contract):
    case_id: str
    offer_id: str
    agent_id: str
    queue: str
    channel: Channel
    expires_at: datetime


class AssignmentAccepted(Contract):
    case_id: str
    offer_id: str
    agent_id: str


class AssignmentDeclined(Contract):
    case_id: str
    offer_id: str
    agent_id: str
    reason: str | None = None


class CaseAssigned(Contract):
    case_id: str
    agent_id: str


class ReplySent(Contract):
    case_id: str
    agent_id: str
    text: str
    at: datetime


class CaseSolvedEvent(Contract):
    case_id: str
    agent_id: str
    at: datetime


SlaMetric = Literal["first_response", "next_response", "resolution"]


class SlaStarted(Contract):
    case_id: str
    clock_id: str
    metric: SlaMetric
    policy: str
    target_seconds: float
    started_at: datetime
    due_at: datetime


class SlaMet(Contract):
    case_id: str
    clock_id: str
    metric: SlaMetric
    due_at: datetime
    met_at: datetime
    remaining_seconds: float


class SlaBreached(Contract):
    case_id: str
    clock_id: str
    metric: SlaMetric
    due_at: datetime
    breached_at: datetime
    overdue_seconds: float


class PacketContact(Contract):
    channel: Channel
    at: datetime
    text: str


class PacketSlaState(Contract):
    metric: SlaMetric
    due_at: datetime
    state: Literal["running", "met", "breached"]


class WarmTransferPacket(Contract):
    """Everything the next person needs so the customer never has to repeat themselves."""

    packet_version: Literal["1"] = "1"
    case_id: str
    customer: CustomerIdentity
    problem: str
    contacts: list[PacketContact]
    classification: CaseClassified | None = None
    sla: list[PacketSlaState] = Field(default_factory=list)
    assigned_agent: str | None = None
    reason: str
    level: int
    suggested_next_step: str


class CaseEscalated(Contract):
    case_id: str
    escalation_id: str
    reason: str
    level: int
    target: str
    packet: WarmTransferPacket


class EscalationNotified(Contract):
    case_id: str
    escalation_id: str
    notification_id: str
    target: str
    sink: str


class SupervisorNotification(Contract):
    """The body of a `supervisor.notifications` record; `notification_id` is stable for dedup."""

    notification_id: str
    escalation_id: str
    case_id: str
    reason: str
    level: int
    target: str
    summary: str
    packet: WarmTransferPacket


CASE_EVENT_TYPES: dict[str, type[Contract]] = {
    "case.opened": CaseOpened,
    "contact.received": ContactReceived,
    "contact.activity_recorded": ContactActivityRecorded,
    "case.classified": CaseClassified,
    "case.queued": CaseQueued,
    "assignment.offered": AssignmentOffered,
    "assignment.accepted": AssignmentAccepted,
    "assignment.declined": AssignmentDeclined,
    "case.assigned": CaseAssigned,
    "reply.sent": ReplySent,
    "case.solved": CaseSolvedEvent,
    "sla.started": SlaStarted,
    "sla.met": SlaMet,
    "sla.breached": SlaBreached,
    "case.escalated": CaseEscalated,
    "escalation.notified": EscalationNotified,
}

# Messages Switchboard publishes outside `cases.events`, by CloudEvents type.
ROUTING_OFFER_TYPES: dict[str, type[Contract]] = {"assignment.offered": AssignmentOffered}
SUPERVISOR_NOTIFICATION_TYPES: dict[str, type[Contract]] = {
    "supervisor.notification": SupervisorNotification,
}
