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
    # The case token customers keep in the subject ("[#SB-1A2B3C4D5E6F]", keyed: only
    # Switchboard can derive it); replies from the case's participants find the case by it.
    reference: str | None = None
    # The case the contact named (reply headers, token) without being allowed to join it: its
    # sender is not a participant of that case. Agents see the link; nothing of that case leaks.
    related_case_id: str | None = None


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
    # For email, `text` is the new text only; the full body with quoted history is kept here.
    full_text: str | None = None


class ContactTextAdded(Contract):
    """More text for a contact already received: a chat burst, an IVR selection, a transcript.

    Routing has already seen the contact, so this is not a new contact; `details` carries hints
    for classification (IVR menu and selection).
    """

    case_id: str
    contact_id: str
    channel: Channel
    source_type: str
    text: str
    at: datetime
    details: dict[str, str] = Field(default_factory=dict)


class CaseReopened(Contract):
    """A solved case that the customer wrote to again."""

    case_id: str
    contact_id: str
    reopened_at: datetime
    reason: str


class ContactActivityRecorded(Contract):
    """Channel activity without new customer text (chat ended, call ended, IVR selection…)."""

    case_id: str
    channel: Channel
    source_type: str
    at: datetime
    details: dict[str, str] = Field(default_factory=dict)


class CaseClassified(Contract):
    """What the router read in a contact. `evidence` lines start with the field they support."""

    case_id: str
    skill: str
    queue: str
    priority: Priority
    language: str
    confidence: float = Field(ge=0, le=1)
    evidence: list[str] = Field(default_factory=list)
    intent: str = "unknown"
    classifier: str = "rules"
    # below the confidence threshold the case goes to the general queue for a human to triage
    needs_triage: bool = False
    min_proficiency: int = Field(default=1, ge=0, le=5)
    preferred_skills: list[str] = Field(default_factory=list)
    urgent: bool = False
    sentiment: float = Field(default=0.0, ge=-1, le=1)
    frustrated: bool = False
    language_confidence: float = Field(default=1.0, ge=0, le=1)
    min_authority_tier: int = Field(default=1, ge=1, le=9)
    refund_amount: float | None = None
    account_action: str | None = None
    repeat_contact: bool = False
    repeat_count: int = Field(default=0, ge=0)
    supervisor_requested: bool = False


class RoutingCandidate(Contract):
    agent_id: str
    proficiency: int
    idle_since: datetime
    previous_agent: bool = False


class RoutingExclusion(Contract):
    agent_id: str
    reason: str


class RoutingDecided(Contract):
    """Why a case went to an agent, or waits: who was considered, who was excluded and why."""

    case_id: str
    decision_id: str
    trigger: str
    queue: str
    step: int
    step_name: str
    requirements: dict[str, str | int | list[str]]
    candidates: list[RoutingCandidate] = Field(default_factory=list)
    excluded: list[RoutingExclusion] = Field(default_factory=list)
    # exclusions by reason, over all agents (the lists above are capped)
    excluded_counts: dict[str, int] = Field(default_factory=dict)
    winner: str | None = None
    outcome: Literal["offered", "waiting", "held_for_previous_agent"]


class CaseQueued(Contract):
    case_id: str
    queue: str
    priority: Priority


class AssignmentOffered(Contract):
    """`assignment.offered`, on `cases.events` and to the agent's desktop on `routing.offers`.

    Delivery is at least once: after a crash the outbox may publish an offer again, with the
    same `offer_id` (and the same CloudEvents id). Desktops de-duplicate on `offer_id`."""

    case_id: str
    offer_id: str = Field(description="Stable across redeliveries: desktops show an offer once "
                                      "per offer_id and answer it by this id.")
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


class AssignmentExpired(Contract):
    """An offer nobody answered in time; `agent_set_away` after N misses in a row."""

    case_id: str
    offer_id: str
    agent_id: str
    missed_in_a_row: int = Field(ge=1)
    agent_set_away: bool = False


class AssignmentWithdrawn(Contract):
    """An open offer or assignment taken back: the agent logged out or the case was re-routed."""

    case_id: str
    offer_id: str
    agent_id: str
    reason: str


class CaseAssigned(Contract):
    case_id: str
    agent_id: str
    # The agent's authority tier when assigned, so the log says what they may approve.
    authority_tier: int | None = Field(default=None, ge=1, le=9)


class ReplySent(Contract):
    case_id: str
    agent_id: str
    text: str
    at: datetime


class CaseSolvedEvent(Contract):
    case_id: str
    agent_id: str
    at: datetime


class CaseStatusChanged(Contract):
    """An agent set the case's status (relayed by the router from the agent desktop).

    `pending_customer` waits on the customer and pauses the clocks the SLA policy says it pauses;
    `open` after `solved` reopens the case.
    """

    case_id: str
    status: Literal["open", "pending_customer", "on_hold", "solved"]
    agent_id: str | None = None
    at: datetime


SlaMetric = Literal["first_response", "next_response", "periodic_update", "resolution"]
SlaTimeBasis = Literal["business", "calendar"]


class SlaClockEvent(Contract):
    """What every SLA event names: the case, the clock and the metric it measures."""

    case_id: str
    clock_id: str
    metric: SlaMetric


class SlaStarted(SlaClockEvent):
    # The policy version the clock started under (`switchboard sla replay` compares against it).
    policy: str
    target_seconds: float
    started_at: datetime
    due_at: datetime
    rule: str | None = None
    calendar: str | None = None
    time_basis: SlaTimeBasis = "calendar"
    cycle: int = 1
    # Business time still left when the clock (re)starts: below target when a cycle continues.
    business_remaining_seconds: float | None = None


class SlaMet(SlaClockEvent):
    due_at: datetime
    met_at: datetime
    remaining_seconds: float
    policy: str | None = None
    business_remaining_seconds: float | None = None


class SlaBreached(SlaClockEvent):
    due_at: datetime
    breached_at: datetime
    overdue_seconds: float
    policy: str | None = None
    # Business time overdue when the breach was recorded (0 when fired on time).
    business_overdue_seconds: float | None = None


class SlaWarning(SlaClockEvent):
    """A running clock crossed a warning threshold; `warned_at` is the true threshold instant."""

    policy: str
    threshold: str  # as configured: "75%" or "10m" before the due instant
    due_at: datetime
    warned_at: datetime
    business_remaining_seconds: float


class SlaPaused(SlaClockEvent):
    policy: str
    reason: str
    paused_at: datetime
    # The due instant as it stood; while paused no business time is consumed.
    due_at: datetime
    business_remaining_seconds: float


class SlaResumed(SlaClockEvent):
    policy: str
    reason: str
    resumed_at: datetime
    due_at: datetime
    business_remaining_seconds: float


class SlaCancelled(SlaClockEvent):
    """The clock no longer applies (case solved before a reply, the policy rule changed…)."""

    policy: str
    reason: str
    cancelled_at: datetime
    due_at: datetime | None = None
    business_remaining_seconds: float | None = None


class PacketContact(Contract):
    channel: Channel
    at: datetime
    # The text the customer sees or said, as logged (intake redacted it before anything was stored).
    text: str
    contact_id: str | None = None
    source_type: str | None = None


class PacketSlaState(Contract):
    metric: SlaMetric
    due_at: datetime
    state: Literal["running", "paused", "met", "breached"]


class PacketSentiment(Contract):
    """One classification's reading of the customer's mood: the trajectory across contacts."""

    at: datetime | None = None  # of the contact the classification read
    sentiment: float = Field(ge=-1, le=1)
    frustrated: bool = False


class PacketAction(Contract):
    """Something already tried on the case: an agent reply, an assignment, a transfer, a status."""

    at: datetime | None = None
    kind: str
    agent_id: str | None = None
    text: str


class PacketAuthority(Contract):
    """The authority tier the case needs and why (the classifier's evidence)."""

    min_authority_tier: int = Field(ge=1, le=9)
    assigned_agent_tier: int | None = Field(default=None, ge=1, le=9)
    refund_amount: float | None = None
    account_action: str | None = None
    why: list[str] = Field(default_factory=list)


class WarmTransferPacket(Contract):
    """Everything the next person needs so the customer never has to repeat themselves.

    Version 2 adds the contract, the sentiment trajectory, what was tried and the authority
    needed; every field it added has a default, so a version 1 packet in the log still reads.
    """

    packet_version: Literal["1", "2"] = "2"
    case_id: str
    customer: CustomerIdentity
    contract: str | None = None
    problem: str
    contacts: list[PacketContact]
    classification: CaseClassified | None = None
    sentiment: list[PacketSentiment] = Field(default_factory=list)
    tried: list[PacketAction] = Field(default_factory=list)
    sla: list[PacketSlaState] = Field(default_factory=list)
    assigned_agent: str | None = None
    authority: PacketAuthority | None = None
    reason: str
    level: int
    suggested_next_step: str


class EscalationRequeue(Contract):
    """Where the router should queue the escalated case: a higher tier (and maybe a skill)."""

    min_authority_tier: int = Field(ge=1, le=9)
    skill: str | None = None
    queue: str | None = None


class CaseEscalated(Contract):
    case_id: str
    escalation_id: str
    reason: str
    level: int
    target: str
    packet: WarmTransferPacket
    # Set when the level's target is a queue: the receiving agent's acceptance acknowledges it.
    requeue: EscalationRequeue | None = None
    acknowledge_by: datetime | None = None


class EscalationNotified(Contract):
    case_id: str
    escalation_id: str
    notification_id: str
    target: str
    sink: str
    level: int = 1
    repeat: int = 0


class EscalationAcknowledged(Contract):
    """Someone took the escalation: the agent who accepted the re-queued case, or a supervisor."""

    case_id: str
    escalation_id: str
    reason: str
    level: int
    by: str
    via: Literal["case.assigned", "agent.escalation_acknowledged"]
    acknowledged_at: datetime


class EscalationReescalated(Contract):
    """Nobody acknowledged within the level's timeout and its repeats: the next level."""

    case_id: str
    escalation_id: str
    reason: str
    from_level: int
    level: int
    target: str
    timed_out_at: datetime
    requeue: EscalationRequeue | None = None
    acknowledge_by: datetime | None = None


class EscalationExhausted(Contract):
    """The final level's repeats ran out unacknowledged: the escalation stays open, reported."""

    case_id: str
    escalation_id: str
    reason: str
    level: int
    notifications: int
    exhausted_at: datetime


class EscalationResolved(Contract):
    case_id: str
    escalation_id: str
    reason: str
    resolution: Literal["case_solved", "condition_cleared"]
    resolved_at: datetime


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
    kind: Literal["escalation", "repeat", "reescalation", "exhausted"] = "escalation"
    repeat: int = 0
    # The packet rendered as Markdown, for sinks and front-ends that show it as is.
    markdown: str | None = None


class DigestItem(Contract):
    case_id: str
    reason: str
    at: datetime
    summary: str


class SupervisorDigest(Contract):
    """Low-priority triggers batched per target; `digest_id` is stable for dedup."""

    digest_id: str
    target: str
    window_start: datetime
    window_end: datetime
    items: list[DigestItem]


CASE_EVENT_TYPES: dict[str, type[Contract]] = {
    "case.opened": CaseOpened,
    "contact.received": ContactReceived,
    "contact.activity_recorded": ContactActivityRecorded,
    "contact.text_added": ContactTextAdded,
    "case.reopened": CaseReopened,
    "case.classified": CaseClassified,
    "case.queued": CaseQueued,
    "assignment.offered": AssignmentOffered,
    "assignment.accepted": AssignmentAccepted,
    "assignment.declined": AssignmentDeclined,
    "case.assigned": CaseAssigned,
    "assignment.expired": AssignmentExpired,
    "assignment.withdrawn": AssignmentWithdrawn,
    "routing.decided": RoutingDecided,
    "reply.sent": ReplySent,
    "case.solved": CaseSolvedEvent,
    "case.status_changed": CaseStatusChanged,
    "sla.started": SlaStarted,
    "sla.met": SlaMet,
    "sla.breached": SlaBreached,
    "sla.warning": SlaWarning,
    "sla.paused": SlaPaused,
    "sla.resumed": SlaResumed,
    "sla.cancelled": SlaCancelled,
    "case.escalated": CaseEscalated,
    "escalation.notified": EscalationNotified,
    "escalation.acknowledged": EscalationAcknowledged,
    "escalation.reescalated": EscalationReescalated,
    "escalation.exhausted": EscalationExhausted,
    "escalation.resolved": EscalationResolved,
}

# Messages Switchboard publishes outside `cases.events`, by CloudEvents type.
ROUTING_OFFER_TYPES: dict[str, type[Contract]] = {"assignment.offered": AssignmentOffered}
SUPERVISOR_NOTIFICATION_TYPES: dict[str, type[Contract]] = {
    "supervisor.notification": SupervisorNotification,
    "supervisor.digest": SupervisorDigest,
}
