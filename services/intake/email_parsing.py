"""RFC 5322 parsing with the standard library (pure: bytes in, a plain value out).

Real mail is broken in every way a parser can imagine (see the corpus test): wrong or unknown
charsets, bare message ids, missing boundaries, headers that fail RFC 2047 decoding. Parsing
therefore never raises for bad content; it records the defects and falls back to something a
person can read. It raises `EmailRejected` only for mail that exceeds the configured limits.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses

from services.intake.automated import automated_reason
from services.intake.html_text import html_to_text, html_visible_text
from services.intake.reply_text import split_reply
from shared.contracts.case_events import AttachmentMeta


class EmailRejected(ValueError):
    """The email can never be processed (it exceeds a limit); the reason is precise."""


@dataclass(frozen=True)
class EmailLimits:
    max_bytes: int = 10_000_000
    max_headers: int = 500
    max_attachments: int = 50
    max_parts: int = 200


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    from_name: str | None
    from_address: str | None
    subject: str | None
    text: str  # the full body text, quoted history included
    visible_text: str = ""  # what the customer wrote in this message
    attachments: list[AttachmentMeta] = field(default_factory=list)
    automated: bool = False
    automated_reason: str | None = None
    defects: list[str] = field(default_factory=list)


def parse_email(raw: bytes, limits: EmailLimits | None = None) -> ParsedEmail:
    limits = limits or EmailLimits()
    if len(raw) > limits.max_bytes:
        raise EmailRejected(f"email of {len(raw)} bytes exceeds the limit of {limits.max_bytes}")
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    defects = [type(d).__name__ for d in message.defects]
    if len(message.keys()) > limits.max_headers:
        raise EmailRejected(
            f"email has {len(message.keys())} headers, more than the limit of {limits.max_headers}")
    parts = list(message.walk())
    if len(parts) > limits.max_parts:
        raise EmailRejected(
            f"email has {len(parts)} MIME parts, more than the limit of {limits.max_parts}")
    for part in parts[1:]:
        defects += [type(d).__name__ for d in part.defects]
    attachments = _attachments(message)
    if len(attachments) > limits.max_attachments:
        raise EmailRejected(f"email has {len(attachments)} attachments, more than the limit of "
                            f"{limits.max_attachments}")
    name, address = _sender(message, defects)
    text, visible = _body_text(message, defects)
    reason = automated_reason(message, address)
    return ParsedEmail(
        message_id=next(iter(_ids(_header(message, "Message-ID", defects))), None),
        in_reply_to=_ids(_header(message, "In-Reply-To", defects)),
        references=_ids(_header(message, "References", defects)),
        from_name=name, from_address=address,
        subject=_header(message, "Subject", defects).strip() or None,
        text=text, visible_text=visible, attachments=attachments,
        automated=reason is not None, automated_reason=reason, defects=sorted(set(defects)),
    )


def _header(message: Message, name: str, defects: list[str]) -> str:
    """A header's decoded value; a header the policy cannot parse is read as raw text."""
    try:
        value = message.get(name)
    except Exception:  # the header parser chokes on some malformed values: keep the raw text
        defects.append(f"Unparsable{name.replace('-', '')}Header")
        raw = message._headers  # type: ignore[attr-defined]
        value = next((v for k, v in raw if k.lower() == name.lower()), None)
    return " ".join(str(value or "").split()) if name != "Subject" else str(value or "")


def _sender(message: Message, defects: list[str]) -> tuple[str | None, str | None]:
    raw = _header(message, "From", defects) or _header(message, "Sender", defects)
    found = [(n, a) for n, a in getaddresses([raw]) if a and "@" in a]
    if not found:
        return None, None
    name, address = found[0]
    return (" ".join(name.split()) or None), address.strip().lower()


def _ids(text: str) -> list[str]:
    found = re.findall(r"<[^<>\s]+>", text)
    if not found and re.fullmatch(r"\s*[^<>\s]+@[^<>\s]+\s*", text):
        # Some mailers write a bare `id@host` without the angle brackets RFC 5322 asks for.
        found = [f"<{text.strip()}>"]
    return found


def _body_text(message: EmailMessage, defects: list[str]) -> tuple[str, str]:
    """(full text, visible new text) of the body: text/plain preferred, else HTML as text."""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except Exception:  # get_body walks the tree; a malformed tree must not stop the contact
        defects.append("UnwalkableMimeTree")
        part = None
    if part is None:
        # No declared body, but a lone non-multipart text part (some bounces) is still text.
        if message.is_multipart() or message.get_content_maintype() != "text":
            return "", ""
        part = message
    text = decode_text(part, defects)
    if part.get_content_subtype() == "html":
        return html_to_text(text), html_visible_text(text)
    text = text.replace("\r\n", "\n").strip()
    return text, split_reply(text).visible


def decode_text(part: Message, defects: list[str]) -> str:
    """A text part's content in its declared charset, with fallbacks for wrong declarations.

    The declared charset is tried strictly first, then UTF-8 and Windows-1252 (what most
    mislabelled mail really is); Latin-1 cannot fail and is the last resort.
    """
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    declared = str(part.get_content_charset() or "us-ascii")
    for charset in (declared, "utf-8", "cp1252"):
        try:
            return payload.decode(charset)
        except LookupError:
            defects.append("UnknownCharset")
        except UnicodeDecodeError:
            if charset == declared:
                defects.append("CharsetMismatch")
    return payload.decode("latin-1")


def _attachments(message: EmailMessage) -> list[AttachmentMeta]:
    """Metadata of every attachment (never content), nested messages' attachments included."""
    found = []
    try:
        body = message.get_body(preferencelist=("plain", "html"))
    except Exception:  # recorded as a defect by _body_text
        body = None
    for part in message.walk():
        if part.is_multipart() or part is body or part is message:
            continue
        disposition = part.get_content_disposition()
        filename = _filename(part)
        if disposition != "attachment" and not filename:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        found.append(AttachmentMeta(
            filename=filename, content_type=part.get_content_type(), size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        ))
    return found


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return str(name)[:512] if name else None
