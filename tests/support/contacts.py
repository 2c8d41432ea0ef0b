"""Realistic inbound events for tests and the demo."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any


def raw_email(message_id: str, subject: str, body: str,
              sender: str = "Maya Patel <maya@example.com>", in_reply_to: str | None = None,
              headers: dict[str, str] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "Support <support@shop.example>"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(datetime.now(UTC))
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes()


def email_event(raw: bytes) -> dict[str, Any]:
    return {"mailbox": "support@shop.example", "raw_mime": base64.b64encode(raw).decode(),
            "received_at": datetime.now(UTC).isoformat()}


def chat_message(session_id: str, text: str, message_id: str = "m1") -> dict[str, Any]:
    return {"session_id": session_id, "message_id": message_id, "text": text,
            "sent_at": datetime.now(UTC).isoformat(),
            "customer": {"name": "Jonas Berg", "email": "jonas@example.org"}}


def call_started(call_id: str, from_number: str = "+14155550123") -> dict[str, Any]:
    return {"call_id": call_id, "from_number": from_number, "to_number": "+18005550100",
            "started_at": datetime.now(UTC).isoformat()}
