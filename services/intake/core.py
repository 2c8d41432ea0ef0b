"""Intake's pure core: what an inbound event says, and which case events it produces.

No Kafka, no SQL: the app looks up the thread keys and hands over the case they belong to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.intake.email_parsing import parse_email
from shared.contracts import inbound as ib
from shared.contracts.case_events import (
    AttachmentMeta,
    CaseOpened,
    ContactActivityRecorded,
    ContactReceived,
)
from shared.contracts.inbound import Channel, CustomerIdentity
from shared.events import CaseEvent, Decision
from shared.redaction import redact


@dataclass(frozen=True)
class IncomingContact:
    """One inbound event, understood, redacted, and not yet threaded."""

    channel: Channel
    source_type: str
    # Keys that name this contact's thread; the first one that is known gives the case.
    lookup_keys: tuple[str, ...]
    # Keys to remember for this case, so later events of the thread find it.
    own_keys: tuple[str, ...]
    at: datetime
    customer: CustomerIdentity = field(default_factory=CustomerIdentity)
    subject: str | None = None
    text: str | None = None  # None: activity only, no customer text
    attachments: list[AttachmentMeta] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    automated: bool = False
    may_open_case: bool = True


def understand(event_type: str, payload: Any, received_at: datetime) -> IncomingContact:
    return _EXTRACTORS[event_type](payload, received_at)


def _email(p: ib.EmailReceived, now: datetime) -> IncomingContact:
    mail = parse_email(p.raw_mime)
    own = (f"email:{mail.message_id}",) if mail.message_id else ()
    related = tuple(f"email:{m}" for m in [*mail.in_reply_to, *reversed(mail.references)])
    details = {"mailbox": p.mailbox}
    if mail.defects:
        details["defects"] = ",".join(sorted(set(mail.defects)))
    return IncomingContact(
        channel="email", source_type="email.received", lookup_keys=own + related, own_keys=own,
        at=p.received_at or now,
        customer=CustomerIdentity(name=mail.from_name, email=mail.from_address),
        subject=redact(mail.subject) if mail.subject else None, text=redact(mail.text),
        attachments=mail.attachments, details=details, automated=mail.automated,
        may_open_case=not mail.automated,
    )


def _chat(p: Any, now: datetime) -> IncomingContact:
    key = (f"chat:{p.session_id}",)
    base = dict(channel="chat", lookup_keys=key, own_keys=key)
    if isinstance(p, ib.ChatMessage):
        return IncomingContact(**base, source_type="chat.message", at=p.sent_at,  # type: ignore[arg-type]
                               customer=p.customer, text=redact(p.text),
                               details={"session_id": p.session_id})
    if isinstance(p, ib.ChatStarted):
        return IncomingContact(**base, source_type="chat.started", at=p.started_at,  # type: ignore[arg-type]
                               customer=p.customer, details={"language": p.language or ""})
    at = p.ended_at if isinstance(p, ib.ChatEnded) else p.abandoned_at
    kind = "chat.ended" if isinstance(p, ib.ChatEnded) else "chat.abandoned"
    return IncomingContact(**base, source_type=kind, at=at, may_open_case=False)  # type: ignore[arg-type]


def _voice(p: Any, now: datetime) -> IncomingContact:
    key = (f"call:{p.call_id}",)
    base = dict(channel="voice", lookup_keys=key, own_keys=key)
    if isinstance(p, ib.CallStarted):
        customer = p.customer if p.customer.phone else p.customer.model_copy(
            update={"phone": p.from_number})
        return IncomingContact(**base, source_type="call.started", at=p.started_at,  # type: ignore[arg-type]
                               customer=customer, text=f"Inbound call from {p.from_number}",
                               details={"to": p.to_number})
    if isinstance(p, ib.VoicemailReceived):
        text = redact(p.transcript or "(voicemail without transcript)")
        return IncomingContact(**base, source_type="voicemail.received", at=p.received_at,  # type: ignore[arg-type]
                               customer=CustomerIdentity(phone=p.from_number), text=text,
                               details={"callback": "requested"})
    if isinstance(p, ib.CallTranscript):
        said = " ".join(s.text for s in p.segments if s.speaker == "customer")
        return IncomingContact(**base, source_type="call.transcript", at=now,  # type: ignore[arg-type]
                               details={"transcript": redact(said)[:4000]}, may_open_case=False)
    if isinstance(p, ib.CallIvrSelection):
        return IncomingContact(**base, source_type="call.ivr_selection", at=p.selected_at,  # type: ignore[arg-type]
                               details={"menu": p.menu, "selection": p.selection,
                                        "label": p.label or ""}, may_open_case=False)
    at = p.ended_at if isinstance(p, ib.CallEnded) else p.abandoned_at
    kind = "call.ended" if isinstance(p, ib.CallEnded) else "call.abandoned"
    return IncomingContact(**base, source_type=kind, at=at, may_open_case=False)  # type: ignore[arg-type]


_EXTRACTORS: dict[str, Callable[[Any, datetime], IncomingContact]] = {
    "email.received": _email,
    **{t: _chat for t in ib.INBOUND_TOPICS["helpdesk.inbound.chat"]},
    **{t: _voice for t in ib.INBOUND_TOPICS["helpdesk.inbound.voice"]},
}


def new_case_id(cause_id: str) -> str:
    from shared.contracts.base import derive_event_id

    return f"case-{derive_event_id(cause_id, 'case')}"


def decide(
    contact: IncomingContact, known_case_id: str | None, cause_id: str, now: datetime
) -> tuple[Decision, str | None]:
    """The case events for one contact, and the case it belongs to (None: nothing to record).

    A contact of a known thread joins its case. An unknown thread opens a case, unless the event
    cannot open one (an automated email, a call that ended): that is recorded nowhere, because
    there is no case to record it on.
    """
    case_id = known_case_id
    events: list[CaseEvent] = []
    if case_id is None:
        if not contact.may_open_case or contact.text is None:
            return Decision(), None
        case_id = new_case_id(cause_id)
        events.append(CaseEvent.derived(cause_id, "case.opened", case_id, "case.opened", now,
                                        CaseOpened(case_id=case_id, channel=contact.channel,
                                                   customer=contact.customer,
                                                   subject=contact.subject, opened_at=contact.at)))
    if contact.text is not None and not contact.automated:
        data: Any = ContactReceived(
            case_id=case_id, contact_id=f"contact-{cause_id}", channel=contact.channel,
            source_type=contact.source_type, customer=contact.customer, subject=contact.subject,
            text=contact.text, received_at=contact.at, attachments=contact.attachments,
            details=contact.details,
        )
        events.append(CaseEvent.derived(cause_id, "contact.received", case_id,
                                        "contact.received", now, data))
    else:
        details = dict(contact.details)
        if contact.automated:
            details["automated"] = "true"
        data = ContactActivityRecorded(case_id=case_id, channel=contact.channel,
                                       source_type=contact.source_type, at=contact.at,
                                       details=details)
        events.append(CaseEvent.derived(cause_id, "contact.activity_recorded", case_id,
                                        "contact.activity_recorded", now, data))
    return Decision(events=tuple(events)), case_id
