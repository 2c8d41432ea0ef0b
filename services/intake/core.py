"""Intake's pure core: what an inbound event says, and which case events it produces.

No Kafka, no SQL. `understand` turns one inbound event into an IncomingContact (its channel's
extractor, shared/channels/, does the channel's part); `thread_lookups` says where its case may
be, by its channel's threading; the app looks there and hands back a Thread, having kept only
the cases `may_join` allows; `decide` returns the case events. Every event body is redacted as a
whole just before it leaves (`_redacted`), so no field is forgotten.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from services.intake import identity
from services.intake.adapters import AdapterError, adapt
from services.intake.authres import sender_authentication
from services.intake.email_parsing import EmailLimits, EmailRejected, ParsedEmail, parse_email
from services.intake.safe_text import storable_tree
from services.intake.subjects import case_reference, normalise_subject, reference_in
from shared.channels import registry
from shared.channels.contact import IncomingContact, Unprocessable
from shared.contracts.base import Contract, derive_event_id
from shared.contracts.case_events import (
    CaseOpened,
    CaseReopened,
    ContactActivityRecorded,
    ContactReceived,
    ContactTextAdded,
)
from shared.contracts.inbound import CustomerIdentity
from shared.events import CaseEvent, Decision
from shared.keys import Keyring, keyring
from shared.redaction import redact, redact_tree

# Ids Switchboard derives itself: never customer text, and redaction must not alter them.
_OUR_IDS = frozenset({"case_id", "contact_id", "reference", "sha256", "channel", "source_type",
                      "related_case_id"})


__all__ = ["IncomingContact", "Unprocessable"]  # a channel's contact, and its refusal


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

    # --- the tools a channel's extractor may use (shared.channels.contact.Tools) -------------
    def parse_email(self, raw: bytes) -> ParsedEmail:
        try:
            return parse_email(raw, self.email_limits)
        except EmailRejected as exc:
            raise Unprocessable(str(exc)) from exc

    def sender_authentication(self, results: list[str], from_address: str | None) -> str | None:
        return sender_authentication(results, self.trusted_authserv_ids, from_address)

    def case_reference_in(self, subject: str | None) -> str | None:
        return reference_in(subject)

    def subject_key(self, subject: str | None) -> str:
        return normalise_subject(redact(subject or "", self.redaction_patterns))


DEFAULT_CONFIG = IntakeConfig()


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

    - A channel whose thread keys anyone can write (email: headers, a subject; its
      `Threading.sender_must_be_participant`) joins only a case whose participants include its
      sender, and not when a trusted MTA found the From address forged (DMARC fail), unless the
      front-end vouches for it (`EmailReceived.vouched`).
    - Other channels' thread keys (chat session and call ids) are the front-end's own: their
      events join their case. A conversation joins the customer's *other* open case
      (`Threading.joins_open_case`, INTAKE_CHAT_JOINS_OPEN_CASE) only for a customer the
      front-end signed in (`customer.verified`): an address typed into a form is not evidence.
    - Automated mail never reopens a case and carries no customer text: it is recorded as
      activity on the case it names, whoever sent it.
    Otherwise the contact opens a new case linked to the one it named.
    """
    if contact.automated:
        return True
    if not registry.get(contact.channel).threading.sender_must_be_participant:
        return candidate.how != "customer" or contact.customer.verified
    if contact.vouched:
        return True
    return candidate.participant and contact.sender_auth != "fail"


@dataclass(frozen=True)
class Lookup:
    """One place the app looks for a contact's case, in the order `thread_lookups` gives.

    `keys` are thread keys (plain, keyed by the app); an `open_case` lookup asks for the
    customer's most recent case that is not solved instead, with one of `keys` as its subject
    key when given, and last heard from `since` when given.
    """

    how: str  # thread | reference | subject-window | customer
    keys: tuple[str, ...] = ()
    open_case: bool = False
    since: datetime | None = None
    # The candidates' participants are looked up: `may_join` needs them.
    participants: bool = False


@dataclass(frozen=True)
class ThreadRules:
    """The settings threading depends on."""

    window: timedelta = timedelta(hours=72)  # INTAKE_THREAD_WINDOW_HOURS
    joins_open_case: bool = False  # INTAKE_CHAT_JOINS_OPEN_CASE


def thread_lookups(contact: IncomingContact, rules: ThreadRules,
                   knows_customer: bool) -> tuple[Lookup, ...]:
    """Where to look for the contact's case, first to last, by its channel's threading: its own
    thread keys, a case token, the same customer's same subject lately, the customer's open
    case. `knows_customer`: the contact has customer keys to look up by."""
    threading = registry.get(contact.channel).threading
    checked = threading.sender_must_be_participant
    steps = [Lookup("thread", contact.lookup_keys, participants=checked)]
    if contact.reference:
        steps.append(Lookup("reference", (f"ref:{contact.reference}",), participants=checked))
    if threading.subject_window and contact.subject_key and knows_customer:
        steps.append(Lookup("subject-window", (f"subject:{contact.subject_key}",),
                            open_case=True, since=contact.at - rules.window))
    if threading.joins_open_case and rules.joins_open_case and knows_customer:
        steps.append(Lookup("customer", open_case=True))
    return tuple(steps)


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
    contact = registry.of_event_type(event_type).extract(payload, received_at, config)
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


# --- decisions ---------------------------------------------------------------------------------
# The steps `decide` derives event ids for (each event's id is derive_event_id(cause, step)).
STEPS = ("case.opened", "case.reopened", "contact.received", "contact.text_added",
         "contact.activity_recorded")


def legacy_event_ids(ce_id: str) -> list[uuid.UUID]:
    """The ids this inbound event's case events had when ids derived from its `ce_id` alone
    (before `inbound_cause`): one of them in the log means the event was processed then."""
    return [derive_event_id(ce_id, step) for step in STEPS]


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
    contact_id = contact.contact_id or new_contact_id(cause_id)
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
