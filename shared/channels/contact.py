"""What a channel's extractor returns: one inbound event understood as a contact, not yet
threaded; and the tools intake lends extractors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.contracts.base import derive_event_id
from shared.contracts.case_events import AttachmentMeta
from shared.contracts.inbound import MAX_TEXT, CustomerIdentity

__all__ = ["MAX_TEXT", "IncomingContact", "Tools", "Unprocessable", "contact_id_for"]


class Unprocessable(ValueError):
    """The inbound event can never be processed; the message is the dead-letter reason."""


@dataclass(frozen=True)
class IncomingContact:
    """One inbound event, understood, and not yet threaded."""

    channel: str
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
    # The contact's id when the channel fixes it (one contact per call, so that IVR selections
    # and transcripts find it without a lookup); None: derived from the inbound event.
    contact_id: str | None = None
    # A chat message: may join the session's contact if it is part of a burst.
    may_join_burst: bool = False
    # The front-end vouches that this message belongs to the thread it names (EmailReceived).
    vouched: bool = False
    # What a trusted MTA found about the email's sender: "pass", "fail" or None (authres.py).
    sender_auth: str | None = None


class Tools(Protocol):
    """What intake lends a channel's extractor (intake's `IntakeConfig` is one).

    Parsers that belong to intake stay there (shared/ may not import services): an extractor
    that needs one is handed it.
    """

    def parse_email(self, raw: bytes) -> Any:
        """`services.intake.email_parsing.parse_email` under intake's limits; raises
        `Unprocessable` for a message it refuses."""

    def sender_authentication(self, results: list[str], from_address: str | None) -> str | None:
        """What a trusted MTA found about the sender (`services/intake/authres.py`)."""

    def case_reference_in(self, subject: str | None) -> str | None:
        """A case token in a subject line."""

    def subject_key(self, subject: str | None) -> str:
        """The subject, redacted and normalised, for the same-customer window."""


def contact_id_for(thread_key: str) -> str:
    """A contact id fixed by a thread key (one contact per call)."""
    return f"contact-{derive_event_id(thread_key, 'contact')}"
