"""RFC 5322 parsing with the standard library (pure: bytes in, a plain value out)."""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr

from shared.contracts.case_events import AttachmentMeta

AUTO_HEADERS = ("x-autoreply", "x-autorespond")


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    from_name: str | None
    from_address: str | None
    subject: str | None
    text: str
    attachments: list[AttachmentMeta] = field(default_factory=list)
    automated: bool = False
    defects: list[str] = field(default_factory=list)


def parse_email(raw: bytes) -> ParsedEmail:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    name, address = parseaddr(str(message.get("From", "")))
    return ParsedEmail(
        message_id=next(iter(_ids(message.get("Message-ID"))), None),
        in_reply_to=_ids(message.get("In-Reply-To")),
        references=_ids(message.get("References")),
        from_name=name or None,
        from_address=address.lower() or None,
        subject=str(message.get("Subject", "")).strip() or None,
        text=_body_text(message),
        attachments=_attachments(message),
        automated=_is_automated(message),
        defects=[type(d).__name__ for d in message.defects],
    )


def _ids(header: object) -> list[str]:
    text = str(header or "")
    found = re.findall(r"<[^<>\s]+>", text)
    if not found and re.fullmatch(r"\s*[^<>\s]+@[^<>\s]+\s*", text):
        # Some mailers write a bare `id@host` without the angle brackets RFC 5322 asks for.
        found = [f"<{text.strip()}>"]
    return found


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    text = str(content)
    if part.get_content_subtype() == "html":
        text = _html_to_text(text)
    return text.strip()


def _html_to_text(markup: str) -> str:
    without_blocks = re.sub(r"(?is)<(script|style).*?</\1>", " ", markup)
    with_breaks = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", without_blocks)
    return html.unescape(re.sub(r"<[^>]+>", "", with_breaks))


def _attachments(message: EmailMessage) -> list[AttachmentMeta]:
    found = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        found.append(AttachmentMeta(
            filename=part.get_filename(), content_type=part.get_content_type(), size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        ))
    return found


def _is_automated(message: EmailMessage) -> bool:
    """RFC 3834 and the common vendor headers: never open a case for these."""
    auto_submitted = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return (
        auto_submitted not in ("", "no")
        or any(message.get(h) for h in AUTO_HEADERS)
        or precedence in ("bulk", "junk", "auto_reply", "list")
        or message.get_content_type() == "multipart/report"
        or str(message.get("Return-Path", "")).strip() == "<>"
    )

