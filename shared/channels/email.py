"""Email: RFC 5322 messages from support mailboxes.

Threading: the message's own ids, In-Reply-To and References, a case token in the subject, and
the same customer's same subject within a window. Headers and subjects are anyone's to write,
so a message joins a case only when its sender is one of the case's participants.
"""

from __future__ import annotations

from datetime import datetime

from shared.channels.contact import MAX_TEXT, IncomingContact, Tools
from shared.channels.registry import ChannelSpec, Threading, TopicText
from shared.contracts import inbound as ib
from shared.contracts.inbound import CustomerIdentity
from shared.contracts.topics import INBOUND_EMAIL


def extract(p: ib.EmailReceived, now: datetime, tools: Tools) -> IncomingContact:
    mail = tools.parse_email(p.raw_mime)
    own = (f"email:{mail.message_id}",) if mail.message_id else ()
    related = tuple(dict.fromkeys(
        f"email:{m}" for m in [*mail.in_reply_to, *reversed(mail.references)]
        if f"email:{m}" not in own))
    details = {"mailbox": p.mailbox}
    auth = tools.sender_authentication(mail.authentication_results, mail.from_address)
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
        dedup_key=own[0] if own else None, reference=tools.case_reference_in(mail.subject),
        vouched=p.vouched, sender_auth=auth,
        # Kept at rest in intake_case: normalised from the redacted subject.
        subject_key=tools.subject_key(mail.subject),
    )


def _short(text: str | None, limit: int) -> str | None:
    return text[:limit] if text else None


CHANNEL = ChannelSpec(
    name="email", topic=INBOUND_EMAIL, contracts={"email.received": ib.EmailReceived},
    extract=extract,
    threading=Threading(sender_must_be_participant=True, subject_window=True),
    default_capacity=5, default_weight=10, first_response_seconds=14_400,
    # An email may take up to the parse deadline: smaller batches keep a batch of them well
    # inside the consumer's poll interval.
    max_batch=50,
    topic_text=TopicText(
        key="the email's Message-ID (Switchboard does not read the key; threading uses the "
            "Message-ID, In-Reply-To and References headers of the message itself)",
        senders="email gateways",
        description="Raw RFC 5322 messages received by a support mailbox, base64 in JSON."),
)
