"""Automated mail that belongs to no case is set aside, never dropped in silence.

A bounce, an auto-reply or a newsletter opens no case (RFC 3834: no acknowledgement, no loop).
Because the evidence can still be wrong, each such message leaves a suppression record in
`intake_suppressed`: the reason, the sender, the subject and the text (redacted like every event
body). `switchboard intake suppressed list` shows them with counts by reason, and
`switchboard intake suppressed release ID` marks one released and re-submits it to intake as an
email built from the record; intake then treats that message as a person's and opens a case.

Message ids are kept only as keyed hashes (`shared.keys`), like every identifier intake stores:
the re-submitted email therefore carries a Message-ID of its own (`<suppression-id@switchboard.
invalid>`, remembered as `release_key`), and intake, recognising it, files the case under the
original message's key and looks up the original thread keys from the record.

Pure functions (`record`, `release_email`) and the few SQL statements the app and the command
need.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from services.intake.safe_text import storable
from shared.contracts.base import derive_event_id
from shared.keys import Keyring, keyring
from shared.redaction import redact

if TYPE_CHECKING:
    import asyncpg

    from services.intake.core import IncomingContact, IntakeConfig

RELEASE_HEADER = "X-Switchboard-Released"
MAX_TEXT = 100_000


@dataclass(frozen=True)
class Suppressed:
    suppression_id: str
    message_key: str | None  # keyed hash of "email:<Message-ID>"
    mailbox: str
    sender: str | None
    sender_name: str | None
    subject: str | None
    reason: str
    related_keys: tuple[str, ...]  # keyed hashes of the In-Reply-To / References keys
    text: str
    received_at: datetime
    recorded_at: datetime | None = None
    released_at: datetime | None = None
    released_by: str | None = None


def record_id(cause_id: str) -> str:
    return f"suppressed-{derive_event_id(cause_id, 'suppressed')}"


def record(contact: IncomingContact, cause_id: str, config: IntakeConfig) -> Suppressed:
    """The suppression record of an automated email that belongs to no case: redacted text,
    keyed message ids, nothing PostgreSQL refuses."""
    patterns = config.redaction_patterns
    ring = config.ring()

    def clean(text: str | None) -> str | None:
        return redact(storable(text), patterns) if text else text

    return Suppressed(
        suppression_id=record_id(cause_id),
        message_key=ring.stored(contact.dedup_key) if contact.dedup_key else None,
        mailbox=clean(contact.details.get("mailbox", "")) or "",
        sender=clean(contact.customer.email), sender_name=clean(contact.customer.name),
        subject=clean(contact.subject),
        reason=clean(contact.details.get("automated_reason", "automated")) or "automated",
        related_keys=tuple(ring.stored(k) for k in contact.lookup_keys
                           if k.startswith("email:")),
        text=clean((contact.full_text or contact.text or "")[:MAX_TEXT]) or "",
        received_at=contact.at)


def release_email(s: Suppressed, message_id: str | None = None) -> bytes:
    """The email that re-submits a released record: its sender, subject, thread ids and text,
    without the headers that made it look automated, marked with `X-Switchboard-Released`."""
    mail = EmailMessage()
    if s.sender:
        mail["From"] = f"{s.sender_name} <{s.sender}>" if s.sender_name else s.sender
    mail["To"] = s.mailbox or "support@localhost"
    mail["Subject"] = s.subject or ""
    mail["Date"] = format_datetime(s.received_at)
    mail["Message-ID"] = message_id or release_message_id(s)
    # No In-Reply-To / References: the record keeps only keyed hashes of them, which intake
    # looks up itself when it recognises the re-submission.
    mail[RELEASE_HEADER] = s.suppression_id
    mail.set_content(s.text or "(no text)")
    return bytes(mail)


def release_message_id(s: Suppressed) -> str:
    return f"<{s.suppression_id}@switchboard.invalid>"


@dataclass(frozen=True)
class Released:
    """A released record, as intake needs it when its re-submission arrives."""

    suppression_id: str
    message_key: str | None  # the original message's keyed key: the case is filed under it
    related_keys: tuple[str, ...]  # keyed thread keys, looked up like In-Reply-To


def as_person(contact: IncomingContact, suppression_id: str) -> IncomingContact:
    """A released message: a person's, which may open a case."""
    details = {k: v for k, v in contact.details.items() if k != "automated_reason"}
    details["released_from"] = suppression_id
    return replace(contact, automated=False, may_open_case=True, details=details)


# --- storage ---------------------------------------------------------------------------------
_COLUMNS = ("suppression_id, message_key, mailbox, sender, sender_name, subject, reason,"
            " related_keys, text, received_at, recorded_at, released_at, released_by")



async def store(conn: asyncpg.Connection, s: Suppressed) -> None:
    await conn.execute(
        "INSERT INTO intake_suppressed (suppression_id, message_key, mailbox, sender,"
        " sender_name, subject, reason, related_keys, text, received_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (suppression_id) DO NOTHING",
        s.suppression_id, s.message_key, s.mailbox, s.sender, s.sender_name, s.subject,
        s.reason, list(s.related_keys), s.text, s.received_at)


async def released(conn: asyncpg.Connection, message_key: str | None,
                   ring: Keyring | None = None) -> Released | None:
    """The released suppression this message (its "email:<Message-ID>") re-submits, if any."""
    if not message_key:
        return None
    row = await conn.fetchrow(
        "SELECT suppression_id, message_key, related_keys FROM intake_suppressed"
        " WHERE release_key = ANY($1::text[]) AND released_at IS NOT NULL"
        " ORDER BY released_at DESC LIMIT 1", list((ring or keyring()).forms(message_key)))
    if row is None:
        return None
    return Released(row["suppression_id"], row["message_key"], tuple(row["related_keys"] or ()))


async def listing(conn: asyncpg.Connection, include_released: bool = False,
                  since: datetime | None = None, limit: int = 100) -> list[Suppressed]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM intake_suppressed WHERE ($1 OR released_at IS NULL)"
        " AND ($2::timestamptz IS NULL OR recorded_at >= $2)"
        " ORDER BY recorded_at DESC, suppression_id LIMIT $3", include_released, since, limit)
    return [_row(r) for r in rows]


async def counts(conn: asyncpg.Connection, since: datetime | None = None) -> dict[str, int]:
    """Suppressed messages by reason (the reason's first words), released ones apart."""
    rows = await conn.fetch(
        "SELECT split_part(split_part(reason, ':', 1), ' (', 1) AS kind,"
        " count(*) FILTER (WHERE released_at IS NULL) AS held,"
        " count(*) FILTER (WHERE released_at IS NOT NULL) AS released"
        " FROM intake_suppressed WHERE ($1::timestamptz IS NULL OR recorded_at >= $1)"
        " GROUP BY 1 ORDER BY 2 DESC", since)
    out: dict[str, int] = {}
    for r in rows:
        if r["held"]:
            out[r["kind"]] = int(r["held"])
        if r["released"]:
            out["released"] = out.get("released", 0) + int(r["released"])
    return out


async def get(conn: asyncpg.Connection, suppression_id: str) -> Suppressed | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM intake_suppressed WHERE suppression_id = $1", suppression_id)
    return _row(row) if row is not None else None


async def mark_released(conn: asyncpg.Connection, s: Suppressed, by: str,
                        now: datetime, ring: Keyring | None = None) -> Suppressed:
    """Mark the record released, with the key of the Message-ID its re-submission carries, so
    intake recognises it."""
    key = (ring or keyring()).stored(f"email:{release_message_id(s)}")
    await conn.execute(
        "UPDATE intake_suppressed SET released_at = coalesce(released_at, $2),"
        " released_by = coalesce(released_by, $3), release_key = coalesce(release_key, $4)"
        " WHERE suppression_id = $1", s.suppression_id, now, by, key)
    return replace(s, released_at=s.released_at or now, released_by=s.released_by or by)


def _row(r: Any) -> Suppressed:
    return Suppressed(
        suppression_id=r["suppression_id"], message_key=r["message_key"], mailbox=r["mailbox"],
        sender=r["sender"], sender_name=r["sender_name"], subject=r["subject"],
        reason=r["reason"], related_keys=tuple(r["related_keys"] or ()), text=r["text"],
        received_at=r["received_at"], recorded_at=r["recorded_at"],
        released_at=r["released_at"], released_by=r["released_by"])
