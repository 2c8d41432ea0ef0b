"""Notification sinks: a signed HTTP webhook and e-mail over SMTP.

A send never raises (short of cancellation): it delivers, or says why not and whether trying
again can help, with the receiver's `Retry-After` if it gave one. The delivery worker (app.py)
records the outcome outside any transaction that claimed the work; receivers deduplicate by the
notification id, which is stable across retries and restarts.

The webhook client is a small HTTP/1.1 client on asyncio streams, written for this one job:
the whole exchange (DNS, connect, TLS, request, status line) has one deadline; the name is
resolved at every send and each address checked against the SSRF guard (`addresses.py`), and the
connection goes to the checked address (no second lookup an attacker's DNS could answer
differently); redirects are never followed; the `*_proxy` environment variables are ignored —
a proxy is used only when ESCALATION_WEBHOOK_PROXY names one (HTTP CONNECT, so the checked
address and TLS to the receiver are kept).

Webhook signature: `X-Switchboard-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
with `X-Switchboard-Timestamp` (Unix seconds). A receiver recomputes it, compares in constant
time, rejects timestamps outside its tolerance (replay), and drops ids it has seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import smtplib
import socket
import ssl
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

from services.escalation import addresses
from services.escalation.policy import EmailSink, WebhookSink
from shared.caselog.chain import canonical_json
from shared.contracts import case_events as ce
from shared.contracts.base import Contract

ID_HEADER = "X-Switchboard-Notification-Id"
TIMESTAMP_HEADER = "X-Switchboard-Timestamp"
SIGNATURE_HEADER = "X-Switchboard-Signature"
DEFAULT_TOLERANCE = 300  # seconds a receiver accepts between the timestamp and its clock
MAX_RESPONSE_HEADERS = 100
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

# (host, port) → the addresses it resolves to now; the loop's getaddrinfo unless a test says.
Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Sent:
    ok: bool
    retry: bool = False  # worth another attempt (5xx, 408, 429, network, timeout)
    error: str | None = None
    retry_after: float | None = None  # seconds the receiver asked us to wait (unbounded here)


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
    return canonical_json(message.model_dump(mode="json")).encode("utf-8", "replace")


def _id_of(message: Contract) -> str:
    if isinstance(message, ce.SupervisorDigest):
        value = message.digest_id
    else:
        value = str(getattr(message, "notification_id", ""))
    return re.sub(r"[^A-Za-z0-9._-]", "", value)[:128] or "unknown"


# --- webhook -------------------------------------------------------------------------------
async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def send_webhook(sink: WebhookSink, secret: bytes, message: Contract, now: datetime, *,
                       allow_networks: Sequence[str] = (), proxy: str | None = None,
                       resolver: Resolver = system_resolver) -> Sent:
    """POST the signed message; the outcome, never an exception."""
    timeout = sink.timeout_seconds
    try:
        target = sink.target
        allowed = addresses.networks([*sink.allow_networks, *allow_networks])
        body = body_of(message)
        timestamp = int(now.timestamp())
        headers = {"Content-Type": "application/json", ID_HEADER: _id_of(message),
                   TIMESTAMP_HEADER: str(timestamp),
                   SIGNATURE_HEADER: sign(secret, timestamp, body)}
    except Exception as exc:  # a policy or message this code cannot send, ever
        return Sent(False, False, f"cannot prepare the request: {exc!r}"[:500])
    try:
        async with asyncio.timeout(timeout):
            try:
                found = await resolver(target.host, target.port)
            except OSError as exc:
                return Sent(False, True, f"cannot resolve {target.host}: {exc}"[:500])
            refused = [why for a in found if (why := addresses.refusal(a, allowed))]
            usable = [a for a in found if addresses.refusal(a, allowed) is None]
            if not usable:
                why = "; ".join(refused) or "no address"
                return Sent(False, False, f"refused {target.host}: {why} (not allow-listed)")
            status, response = await _post(target, usable[0], headers, body, proxy)
    except TimeoutError:
        return Sent(False, True, f"timed out after {timeout:g}s")
    except (OSError, EOFError, ValueError, asyncio.IncompleteReadError,
            asyncio.LimitOverrunError) as exc:  # refused, reset, TLS, a garbled answer
        return Sent(False, True, f"{type(exc).__name__}: {exc}"[:500])
    except Exception as exc:  # a bug here must not stop other deliveries
        return Sent(False, True, f"unexpected {exc!r}"[:500])
    if 200 <= status < 300:
        return Sent(True)
    if 300 <= status < 400:
        where = _printable(response.get("location", "?"))[:200]
        return Sent(False, False, f"HTTP {status}: redirect to {where} not followed")
    wait = retry_after(response.get("retry-after"), now)
    return Sent(False, status in RETRYABLE_STATUS or status >= 500, f"HTTP {status}", wait)


async def _post(target: addresses.Target, address: str, headers: Mapping[str, str],
                body: bytes, proxy: str | None) -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 POST to `address`; the status and the response's headers (lower-case)."""
    context = ssl.create_default_context() if target.scheme == "https" else None
    name = target.host if context is not None else None
    if proxy:
        via = addresses.parse_url(proxy)
        reader, writer = await asyncio.open_connection(via.host, via.port)
        try:
            authority = f"[{address}]:{target.port}" if ":" in address else \
                f"{address}:{target.port}"
            writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            await writer.drain()
            status, _ = await _read_head(reader)
            if not 200 <= status < 300:
                raise ConnectionError(f"proxy answered CONNECT with HTTP {status}")
            if context is not None:
                await writer.start_tls(context, server_hostname=name)
        except BaseException:
            writer.close()
            raise
    else:
        reader, writer = await asyncio.open_connection(address, target.port, ssl=context,
                                                       server_hostname=name)
    try:
        lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}",
                 "User-Agent: switchboard-escalation", "Connection: close",
                 f"Content-Length: {len(body)}",
                 *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body)
        await writer.drain()
        while True:
            status, response = await _read_head(reader)
            if status >= 200 or status == 101:
                return status, response
            # 1xx: an interim answer; the real one follows
    finally:
        writer.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = (await reader.readline()).decode("latin-1")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {_printable(line)[:80]!r}")
    headers: dict[str, str] = {}
    for _ in range(MAX_RESPONSE_HEADERS):
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n"):
            return int(parts[1]), headers
        if not raw:
            raise EOFError("the response ended inside its headers")
        key, _, value = raw.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    raise ValueError(f"more than {MAX_RESPONSE_HEADERS} response headers")


def retry_after(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds from now (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 10**9))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


# --- e-mail ----------------------------------------------------------------------------------
def header_text(value: str, limit: int = 200) -> str:
    """Text safe for a mail header: no CR, LF or other control or format characters."""
    cleaned = "".join(" " if unicodedata.category(c)[0] == "C" else c for c in value)
    return " ".join(cleaned.split())[:limit]


def _printable(value: str) -> str:
    return header_text(value, 10_000)


def _text(value: str) -> str:
    """Body text that any codec takes (a lone surrogate would stop the encoder)."""
    return value.encode("utf-8", "replace").decode("utf-8")


def email_of(sink: EmailSink, message: Contract) -> EmailMessage:
    """The message as e-mail. Customer text reaches headers only through `header_text`."""
    mail = EmailMessage()
    notification_id = _id_of(message)
    # A stable Message-ID lets mail systems and people drop a duplicate.
    mail["Message-ID"] = f"<{notification_id}@switchboard>"
    mail[ID_HEADER] = notification_id
    mail["From"], mail["To"] = sink.sender, ", ".join(sink.to)
    if isinstance(message, ce.SupervisorNotification):
        mail["Subject"] = header_text(
            f"[Switchboard] {message.case_id} escalated (level {message.level}):"
            f" {message.packet.problem}")
        mail.set_content(_text(message.summary))
        if message.markdown:
            mail.add_attachment(_text(message.markdown), subtype="markdown",
                                filename="packet.md")
    elif isinstance(message, ce.SupervisorDigest):
        mail["Subject"] = header_text(
            f"[Switchboard] digest for {message.target}: {len(message.items)} cases")
        mail.set_content(_text("\n\n".join(i.summary for i in message.items)))
    else:
        raise TypeError(f"cannot mail a {type(message).__name__}")
    return mail


async def send_email(sink: EmailSink, message: Contract, *,
                     executor: Executor | None = None) -> Sent:
    """Send over SMTP (smtplib, in `executor`); the outcome, never an exception."""
    timeout = sink.timeout_seconds
    try:
        mail = email_of(sink, message)
        data = mail.as_bytes(policy=mail.policy.clone(linesep="\r\n"))  # SMTP wants CRLF
    except Exception as exc:  # nothing about this message will change on a retry
        return Sent(False, False, f"cannot build the e-mail: {exc!r}"[:500])

    def deliver() -> Sent:
        try:
            with smtplib.SMTP(sink.host, sink.port, timeout=timeout) as smtp:
                smtp.sendmail(sink.sender, sink.to, data)
            return Sent(True)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return Sent(False, any(400 <= c < 500 for c in codes), f"recipients refused: {codes}")
        except smtplib.SMTPResponseException as exc:
            return Sent(False, 400 <= exc.smtp_code < 500,
                        f"SMTP {exc.smtp_code}: {_printable(str(exc.smtp_error))}"[:500])
        except (OSError, smtplib.SMTPException) as exc:
            return Sent(False, True, f"{type(exc).__name__}: {exc}"[:500])
        except Exception as exc:
            return Sent(False, True, f"unexpected {exc!r}"[:500])

    loop = asyncio.get_running_loop()
    try:
        # smtplib's timeout bounds each socket operation; this bounds the conversation (the
        # thread itself ends at its next socket timeout).
        async with asyncio.timeout(timeout * 4):
            return await loop.run_in_executor(executor, deliver)
    except TimeoutError:
        return Sent(False, True, f"timed out after {timeout * 4:g}s")


def backoff_seconds(attempts: int, base: float) -> float:
    """1, 2, 4 … × base, at most five minutes."""
    return float(min(base * 2 ** max(attempts - 1, 0), 300.0))


@dataclass(frozen=True)
class Disposition:
    """What becomes of a delivery after a failed attempt."""

    park: bool  # never tried again
    delay: float  # seconds until the next attempt, if not parked
    reason: str


def disposition(sent: Sent, attempts: int, max_attempts: int, base: float,
                retry_after_max: float) -> Disposition:
    """Parked when retrying cannot help or the attempts are spent; else retried later."""
    park = not sent.retry or attempts >= max_attempts
    reason = (sent.error or "failed")[:1000]
    if park:
        reason = (f"parked after {attempts} attempt(s): {reason}" if sent.retry
                  else f"parked, not retryable: {reason}")
    return Disposition(park, next_attempt_delay(sent, attempts, base, retry_after_max), reason)


def next_attempt_delay(sent: Sent, attempts: int, base: float, retry_after_max: float) -> float:
    """Seconds before the next attempt: the backoff, or the receiver's Retry-After if longer
    (bounded by `retry_after_max`, so a receiver cannot park a delivery for a day)."""
    delay = backoff_seconds(attempts, base)
    if sent.retry_after is not None:
        delay = max(delay, min(sent.retry_after, retry_after_max))
    return delay
