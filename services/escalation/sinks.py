"""Notification sinks: a signed HTTP webhook and e-mail over SMTP (standard library only).

A send either delivers, or says whether trying again can help. The delivery worker (app.py)
records the outcome; receivers deduplicate by the notification id, which is stable across
retries and restarts.

Webhook signature: `X-Switchboard-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
with `X-Switchboard-Timestamp` (Unix seconds). A receiver recomputes it, compares in constant
time, rejects timestamps outside its tolerance (replay), and drops ids it has seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import smtplib
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from services.escalation.policy import EmailSink, WebhookSink
from shared.caselog.chain import canonical_json
from shared.contracts import case_events as ce
from shared.contracts.base import Contract
from shared.durations import parse_duration

ID_HEADER = "X-Switchboard-Notification-Id"
TIMESTAMP_HEADER = "X-Switchboard-Timestamp"
SIGNATURE_HEADER = "X-Switchboard-Signature"
DEFAULT_TOLERANCE = 300  # seconds a receiver accepts between the timestamp and its clock


@dataclass(frozen=True)
class Sent:
    ok: bool
    retry: bool = False  # worth another attempt (5xx, 408, 429, network)
    error: str | None = None


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, now: float,
           tolerance: int = DEFAULT_TOLERANCE) -> bool:
    """What a receiver does: the signature matches and the timestamp is fresh."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = int(lower[TIMESTAMP_HEADER.lower()])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False  # an old (replayed) or far-future request
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected, lower.get(SIGNATURE_HEADER.lower(), ""))


def body_of(message: Contract) -> bytes:
    return canonical_json(message.model_dump(mode="json")).encode()


def _id_of(message: Contract) -> str:
    if isinstance(message, ce.SupervisorDigest):
        return message.digest_id
    return str(getattr(message, "notification_id", ""))


async def send_webhook(sink: WebhookSink, secret: bytes, message: Contract,
                       now: datetime) -> Sent:
    body = body_of(message)
    timestamp = int(now.timestamp())
    request = urllib.request.Request(sink.url, data=body, method="POST", headers={
        "Content-Type": "application/json", ID_HEADER: _id_of(message),
        TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)})

    def post() -> Sent:
        try:
            with urllib.request.urlopen(request, timeout=parse_duration(sink.timeout)):
                return Sent(True)
        except urllib.error.HTTPError as exc:
            retry = exc.code >= 500 or exc.code in (408, 429)
            return Sent(False, retry, f"HTTP {exc.code}")
        except OSError as exc:  # refused, reset, timed out: the receiver may come back
            return Sent(False, True, repr(exc))
    return await asyncio.to_thread(post)


def email_of(sink: EmailSink, message: Contract) -> EmailMessage:
    mail = EmailMessage()
    notification_id = _id_of(message)
    # A stable Message-ID lets mail systems and people drop a duplicate.
    mail["Message-ID"] = f"<{notification_id}@switchboard>"
    mail[ID_HEADER] = notification_id
    mail["From"], mail["To"] = sink.sender, ", ".join(sink.to)
    if isinstance(message, ce.SupervisorNotification):
        mail["Subject"] = (f"[Switchboard] {message.case_id} escalated (level {message.level}):"
                           f" {message.packet.problem}"[:200])
        mail.set_content(message.summary)
        if message.markdown:
            mail.add_attachment(message.markdown, subtype="markdown", filename="packet.md")
    elif isinstance(message, ce.SupervisorDigest):
        mail["Subject"] = f"[Switchboard] digest for {message.target}: {len(message.items)} cases"
        mail.set_content("\n\n".join(i.summary for i in message.items))
    return mail


async def send_email(sink: EmailSink, message: Contract) -> Sent:
    mail = email_of(sink, message)

    def deliver() -> Sent:
        try:
            with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
                smtp.send_message(mail)
            return Sent(True)
        except smtplib.SMTPResponseException as exc:
            return Sent(False, exc.smtp_code >= 400 and exc.smtp_code < 500, repr(exc))
        except (OSError, smtplib.SMTPException) as exc:
            return Sent(False, True, repr(exc))
    return await asyncio.to_thread(deliver)


def backoff_seconds(attempts: int, base: float) -> float:
    """1, 2, 4 … × base, at most five minutes."""
    return float(min(base * 2 ** max(attempts - 1, 0), 300.0))
