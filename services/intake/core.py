"""Intake's pure core: what an inbound event says, and which case events it produces.

No Kafka, no SQL. `understand` turns one inbound event into an IncomingContact (parsed, with the
keys that can find its case); the app looks those keys up and hands the result back as a Thread;
`decide` returns the case events. Every event body is redacted as a whole just before it leaves
(`_redacted`), so no field is forgotten.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.intake import identity
from services.intake.adapters import AdapterError, adapt
from services.intake.authres import sender_authentication
from services.intake.email_parsing import EmailLimits, EmailRejected, parse_email
from services.intake.safe_text import storable_tree
from services.intake.subjects import case_reference, normalise_subject, reference_in
from shared.contracts import inbound as ib
from shared.contracts.base import Contract, derive_event_id
from shared.contracts.case_events import (
    AttachmentMeta,
    CaseOpened,
    CaseReopened,
    ContactActivityRecorded,
    ContactReceived,
    ContactTextAdded,
)
from shared.contracts.inbound import Channel, CustomerIdentity
from shared.events import CaseEvent, Decision
from shared.keys import Keyring, keyring
from shared.redaction import redact, redact_tree

MAX_TEXT = ib.MAX_TEXT
# Ids Switchboard derives itself: never customer text, and redaction must not alter them.
_OUR_IDS = frozenset({"case_id", "contact_id", "reference", "sha256", "channel", "source_type",
                      "related_case_id"})


class Unprocessable(ValueError):
    """The inbound event can never be processed; the message is the dead-letter reason."""


@dataclass(frozen=True)
class IntakeConfig:
    email_limits: EmailLimits = field(default_factory=EmailLimits)
    phone_region: str = "US"
    redaction_patterns: tuple[re.Pattern[str], ...] = ()
    # The key of case tokens (and of the identifiers the app stores); None: the process's own.
    keys: Keyring | None = None
    # Authentication-Results are read only from these authserv-ids (authres.py).
    trusted_authserv_ids: tuple[str, ...] = ()

    def ring(self) -> Keyring:
        return self.keys if self.keys is not None else keyring()


DEFAULT_CONFIG = IntakeConfig()


@dataclass(frozen=True)
class IncomingContact:
    """One inbound event, understood, and not yet threaded."""

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
    full_text: str | None = None
    attachments: list[AttachmentMeta] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    automated: bool = False
    may_open_case: bool = True
    # A chat's pre-chat form opens the case before the customer types: the identity and language
    # it carries would be lost if we waited for the first message.
    opens_without_text: bool = False
    # The source's own id of this message: seen before means a duplicate delivery.
    dedup_key: str | None = None
    reference: str | None = None  # a case token found in the subject
    subject_key: str = ""  # the normalised subject, for the same-customer window
    # Text that belongs to a contact already received (IVR selection, transcript) when known.
    adds_to_contact: str | None = None
    # A chat message: may join the session's contact if it is part of a burst.
    may_join_burst: bool = False
    # The front-end vouches that this message belongs to the thread it names (EmailReceived).
    vouched: bool = False
    # What a trusted MTA found about the email's sender: "pass", "fail" or None (authres.py).
    sender_auth: str | None = None


@dataclass(frozen=True)
class Thread:
    """What the app found in the database for a contact."""

    case_id: str | None = None
    how: str = "new"  # message-id | reference | subject-window | session | call | customer
    solved: bool = False
    duplicate: bool = False
    burst_contact_id: str | None = None  # the chat contact this message joins
    directory: identity.DirectoryEntry | None = None
    # A case the contact named (by message id or token) but may not join: the new case it
    # opens is linked to it (`case.opened.related_case_id`).
    related_case_id: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A case the app found for a contact, and whether the sender is one of its participants
    (one of the case's customer keys is the sender's)."""

    case_id: str
    how: str  # thread | reference | subject-window | customer
    participant: bool


def may_join(contact: IncomingContact, candidate: Candidate) -> bool:
    """Whether a contact may join a case it found: the rule that keeps cases from being hijacked.

    - Email names its thread with headers and a subject anyone can write: it joins only a case
      whose participants include its sender, and not when a trusted MTA found the From address
      forged (DMARC fail), unless the front-end vouches for it (`EmailReceived.vouched`).
    - Chat session and call ids are the front-end's own: their events join their case. A chat
      joins the customer's *other* open case (INTAKE_CHAT_JOINS_OPEN_CASE) only for a customer
      the front-end signed in (`customer.verified`): an address typed into a pre-chat form is
      not evidence.
    - Automated mail never reopens a case and carries no customer text: it is recorded as
      activity on the case it names, whoever sent it.
    Otherwise the contact opens a new case linked to the one it named.
    """
    if contact.automated:
        return True
    if contact.channel != "email":
        return candidate.how != "customer" or contact.customer.verified
    if contact.vouched:
        return True
    return candidate.participant and contact.sender_auth != "fail"


def understand(event_type: str, payload: Any, received_at: datetime,
               config: IntakeConfig = DEFAULT_CONFIG) -> IncomingContact | None:
    """The contact an inbound event stands for; None for an adapter payload with nothing in it."""
    try:
        mapped = adapt(event_type, payload, received_at)
    except AdapterError as exc:
        raise Unprocessable(str(exc)) from exc
    if mapped is None:
        return None
    event_type, payload = mapped
    contact = _EXTRACTORS[event_type](payload, received_at, config)
    contact = replace(contact, at=_checked_time(contact.at, event_type))
    return _with_customer(contact, identity.normalise(contact.customer, config.phone_region))


# Times a contact can carry: later arithmetic (thread windows, SLA deadlines) must not overflow.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _checked_time(at: datetime, event_type: str) -> datetime:
    """The contact's time, in UTC when the front-end gave none; Unprocessable when absurd."""
    if at.tzinfo is None or at.utcoffset() is None:
        at = at.replace(tzinfo=UTC)
    try:
        sane = _EARLIEST <= at <= _LATEST
    except OverflowError:
        sane = False
    if not sane:
        raise Unprocessable(f"{event_type}: time outside {_EARLIEST.year}-{_LATEST.year}")
    return at


def _with_customer(contact: IncomingContact, customer: CustomerIdentity) -> IncomingContact:
    return replace(contact, customer=customer)


def customer_keys(contact: IncomingContact) -> tuple[str, ...]:
    return identity.customer_keys(contact.customer)


# --- email -------------------------------------------------------------------------------------
def _email(p: ib.EmailReceived, now: datetime, config: IntakeConfig) -> IncomingContact:
    try:
        mail = parse_email(p.raw_mime, config.email_limits)
    except EmailRejected as exc:
        raise Unprocessable(str(exc)) from exc
    own = (f"email:{mail.message_id}",) if mail.message_id else ()
    related = tuple(dict.fromkeys(
        f"email:{m}" for m in [*mail.in_reply_to, *reversed(mail.references)]
        if f"email:{m}" not in own))
    details = {"mailbox": p.mailbox}
    auth = sender_authentication(mail.authentication_results, config.trusted_authserv_ids,
                                 mail.from_address)
    if auth is not None:
        details["sender_authentication"] = auth
    if mail.defects:
        details["defects"] = ",".join(mail.defects)[:1000]
    if mail.automated_reason:
        details["automated_reason"] = mail.automated_reason
    full = mail.text[:MAX_TEXT]
    visible = (mail.visible_text or mail.text)[:MAX_TEXT]
    return IncomingContact(
        channel="email", source_type="email.received", lookup_keys=related, own_keys=own,
        at=p.received_at or now,
        customer=CustomerIdentity(name=_short(mail.from_name, 256),
                                  email=_short(mail.from_address, 320),
                                  # verified only when a trusted MTA found DMARC (or DKIM of
                                  # the From domain) passing, or the front-end vouches for it
                                  verified=auth == "pass" or p.vouched),
        subject=_short(mail.subject, 998), text=visible,
        full_text=full if full != visible else None, attachments=mail.attachments,
        details=details, automated=mail.automated, may_open_case=not mail.automated,
        dedup_key=own[0] if own else None, reference=reference_in(mail.subject),
        vouched=p.vouched, sender_auth=auth,
        # Kept at rest in intake_case: normalised from the redacted subject.
        subject_key=normalise_subject(redact(mail.subject or "", config.redaction_patterns)),
    )


def _short(text: str | None, limit: int) -> str | None:
    return text[:limit] if text else None


# --- chat --------------------------------------------------------------------------------------
def _chat(p: Any, now: datetime, config: IntakeConfig) -> IncomingContact:
    key = (f"chat:{p.session_id}",)
    base: dict[str, Any] = {"channel": "chat", "lookup_keys": key, "own_keys": key}
    if isinstance(p, ib.ChatMessage):
        return IncomingContact(**base, source_type="chat.message", at=p.sent_at,
                               customer=p.customer, text=p.text,
                               details={"session_id": p.session_id}, may_join_burst=True,
                               dedup_key=f"chatmsg:{p.session_id}/{p.message_id}")
    if isinstance(p, ib.ChatStarted):
        details = {"language": p.language or "", "widget": p.widget or ""}
        return IncomingContact(**base, source_type="chat.started", at=p.started_at,
                               customer=p.customer, details=details, opens_without_text=True)
    at = p.ended_at if isinstance(p, ib.ChatEnded) else p.abandoned_at
    kind = "chat.ended" if isinstance(p, ib.ChatEnded) else "chat.abandoned"
    return IncomingContact(**base, source_type=kind, at=at, may_open_case=False)


# --- voice -------------------------------------------------------------------------------------
def call_contact_id(call_id: str) -> str:
    """One contact per call, so IVR selections and transcripts find it without a lookup."""
    return f"contact-{derive_event_id(f'call:{call_id}', 'contact')}"


def _voice(p: Any, now: datetime, config: IntakeConfig) -> IncomingContact:
    key = (f"call:{p.call_id}",)
    dedup = f"voice:{p.call_id}/{hashlib.sha256(p.model_dump_json().encode()).hexdigest()}"
    base: dict[str, Any] = {"channel": "voice", "lookup_keys": key, "own_keys": key,
                            "dedup_key": dedup}
    if isinstance(p, ib.CallStarted):
        customer = p.customer if p.customer.phone else p.customer.model_copy(
            update={"phone": p.from_number})
        return IncomingContact(**base, source_type="call.started", at=p.started_at,
                               customer=customer, text=f"Inbound call from {p.from_number}",
                               details={"to": p.to_number})
    if isinstance(p, ib.VoicemailReceived):
        return IncomingContact(**base, source_type="voicemail.received", at=p.received_at,
                               customer=CustomerIdentity(phone=p.from_number),
                               text=p.transcript or "(voicemail without transcript)",
                               details={"callback": "requested"})
    if isinstance(p, ib.CallAbandoned):
        text = (f"Abandoned call from {p.from_number} after {p.wait_seconds:.0f} s waiting: "
                "call back" if p.from_number else None)
        return IncomingContact(**base, source_type="call.abandoned", at=p.abandoned_at,
                               customer=CustomerIdentity(phone=p.from_number), text=text,
                               details={"callback": "requested",
                                        "wait_seconds": f"{p.wait_seconds:.0f}"})
    contact_id = call_contact_id(p.call_id)
    if isinstance(p, ib.CallTranscript):
        said = " ".join(s.text for s in p.segments if s.speaker == "customer").strip()
        return IncomingContact(**base, source_type="call.transcript", at=now,
                               text=said[:MAX_TEXT] or None, may_open_case=False,
                               adds_to_contact=contact_id, details={"transcript": "customer"})
    if isinstance(p, ib.CallIvrSelection):
        label = p.label or p.selection
        return IncomingContact(**base, source_type="call.ivr_selection", at=p.selected_at,
                               text=f"IVR {p.menu}: {label}", may_open_case=False,
                               adds_to_contact=contact_id,
                               details={"hint.ivr_menu": p.menu, "hint.ivr_selection": p.selection,
                                        "hint.ivr_label": p.label or ""})
    return IncomingContact(**base, source_type="call.ended", at=p.ended_at,
                           details={"duration_seconds": f"{p.duration_seconds:.0f}"},
                           may_open_case=False)


_EXTRACTORS: dict[str, Callable[[Any, datetime, IntakeConfig], IncomingContact]] = {
    "email.received": _email,
    **dict.fromkeys(("chat.started", "chat.message", "chat.ended", "chat.abandoned"), _chat),
    **dict.fromkeys(("call.started", "call.ivr_selection", "call.transcript", "call.ended",
                     "call.abandoned", "voicemail.received"), _voice),
}


# --- decisions ---------------------------------------------------------------------------------
def new_case_id(cause_id: str) -> str:
    return f"case-{derive_event_id(cause_id, 'case')}"


def new_contact_id(cause_id: str) -> str:
    return f"contact-{derive_event_id(cause_id, 'contact')}"


def decide(
    contact: IncomingContact, thread: Thread | str | None, cause_id: str, now: datetime,
    config: IntakeConfig = DEFAULT_CONFIG,
) -> tuple[Decision, str | None]:
    """The case events for one contact, and the case it belongs to (None: nothing to record).

    A contact of a known thread joins its case (reopening it if it was solved). An unknown
    thread opens a case, unless the event cannot open one (an automated email, a call that
    ended): that is recorded nowhere, because there is no case to record it on.
    """
    if not isinstance(thread, Thread):
        thread = Thread(case_id=thread)
    if thread.duplicate:
        return Decision(), thread.case_id
    customer = identity.with_directory(contact.customer, thread.directory)
    case_id = thread.case_id
    events: list[CaseEvent] = []

    def add(step: str, data: Contract) -> None:
        events.append(CaseEvent.derived(cause_id, step, case_id or "", step, now,
                                        _redacted(data, config)))

    if case_id is None:
        if not contact.may_open_case or (contact.text is None
                                         and not contact.opens_without_text):
            return Decision(), None
        case_id = new_case_id(cause_id)
        add("case.opened", CaseOpened(
            case_id=case_id, channel=contact.channel, customer=customer, subject=contact.subject,
            opened_at=contact.at, reference=case_reference(case_id, config.ring()),
            related_case_id=thread.related_case_id))
    if contact.automated or contact.text is None:
        details = dict(contact.details)
        if contact.automated:
            details["automated"] = "true"
        add("contact.activity_recorded", ContactActivityRecorded(
            case_id=case_id, channel=contact.channel, source_type=contact.source_type,
            at=contact.at, details=details))
        return Decision(events=tuple(events)), case_id
    joins = thread.burst_contact_id if contact.may_join_burst else contact.adds_to_contact
    if joins is not None:
        add("contact.text_added", ContactTextAdded(
            case_id=case_id, contact_id=joins, channel=contact.channel,
            source_type=contact.source_type, text=contact.text, at=contact.at,
            details=contact.details))
        return Decision(events=tuple(events)), case_id
    contact_id = (call_contact_id(contact.lookup_keys[0][len("call:"):])
                  if contact.source_type == "call.started" else new_contact_id(cause_id))
    if thread.solved:
        add("case.reopened", CaseReopened(case_id=case_id, contact_id=contact_id,
                                          reopened_at=contact.at,
                                          reason=f"{contact.source_type} by {thread.how}"))
    add("contact.received", ContactReceived(
        case_id=case_id, contact_id=contact_id, channel=contact.channel,
        source_type=contact.source_type, customer=customer, subject=contact.subject,
        text=contact.text, received_at=contact.at, attachments=contact.attachments,
        details=contact.details, full_text=contact.full_text))
    return Decision(events=tuple(events)), case_id


def _redacted(data: Contract, config: IntakeConfig) -> Contract:
    """The event body fit for PostgreSQL (`storable`: before redaction, so a card number with
    U+0000 between its digits is seen whole) with every string redacted except the ids
    Switchboard derived."""
    clean = redact_tree(storable_tree(data.model_dump()), _OUR_IDS, config.redaction_patterns)
    try:
        return type(data).model_validate(clean)
    except ValidationError as exc:
        # A mask can be longer than what it hides ("[card ****1234]" for 13 digits), past a
        # field's limit (a customer name of 256 characters): such strings are cut to the limit.
        return type(data).model_validate(_fitted(clean, exc))


def _fitted(tree: Any, exc: ValidationError) -> Any:
    for error in exc.errors():
        if error["type"] != "string_too_long":
            raise exc
        *path, last = error["loc"]
        node = tree
        for key in path:
            node = node[key]
        node[last] = node[last][: error["ctx"]["max_length"]]
    return tree
