"""Front-end platforms' own payloads mapped to our inbound events (pure).

Each adapter returns the inbound event type and model it stands for, or None for a payload that
carries nothing intake records (an agent's outgoing chat message, an outbound call, a ringing
callback after the call already started). A payload that lacks what the mapping needs raises
AdapterError with the field's name; the app dead-letters it with that reason.
Samples of each: tests/fixtures/intake/webhooks and docs/intake.md.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from pydantic import ValidationError

from shared.contracts import inbound as ib
from shared.contracts.base import Contract

Mapped = tuple[str, Contract] | None


class AdapterError(ValueError):
    pass


def adapt(event_type: str, payload: Contract, now: datetime) -> Mapped:
    try:
        if isinstance(payload, ib.TwilioCallStatus):
            return _twilio(payload.params, now)
        if isinstance(payload, ib.ConnectContactEvent):
            return _connect(payload.event, now)
        if isinstance(payload, ib.ChatwootWebhook):
            return _chatwoot(payload.body, now)
    except ValidationError as exc:
        raise AdapterError(f"{event_type} maps to an invalid event: {exc.errors()[0]['msg']} at "
                           f"{'.'.join(map(str, exc.errors()[0]['loc']))}") from exc
    return event_type, payload


# --- Twilio Voice status callback --------------------------------------------------------------
_TWILIO_STARTED = {"queued", "ringing", "in-progress"}
_TWILIO_ABANDONED = {"busy", "failed", "no-answer", "canceled"}


def _twilio(p: dict[str, str], now: datetime) -> Mapped:
    call_id = _need(p, "CallSid", "twilio.call_status")
    if p.get("Direction", "inbound").startswith("outbound"):
        return None  # our own calls to customers are not inbound contacts
    status = p.get("CallStatus", "")
    at = _time(p.get("Timestamp"), now)
    if status in _TWILIO_STARTED:
        return "call.started", ib.CallStarted(
            call_id=call_id, from_number=_need(p, "From", "twilio.call_status"),
            to_number=_need(p, "To", "twilio.call_status"), started_at=at,
            customer=ib.CustomerIdentity(name=p.get("CallerName") or None))
    if status == "completed":
        return "call.ended", ib.CallEnded(
            call_id=call_id, ended_at=at,
            duration_seconds=_seconds(p.get("CallDuration"), "twilio.call_status: CallDuration"))
    if status in _TWILIO_ABANDONED:
        return "call.abandoned", ib.CallAbandoned(
            call_id=call_id, abandoned_at=at,
            wait_seconds=_seconds(p.get("CallDuration"), "twilio.call_status: CallDuration"),
            from_number=p.get("From") or None)
    # Name the status only when it looks like one: a reason never carries free customer text.
    shown = f" {status!r}" if _TOKEN.fullmatch(status) else ""
    raise AdapterError(f"twilio.call_status: unknown CallStatus{shown}")


# --- Amazon Connect ----------------------------------------------------------------------------
def _connect(event: dict[str, Any], now: datetime) -> Mapped:
    if isinstance(event.get("Details"), dict):  # a contact flow (Lambda) invocation
        data = _obj(event["Details"].get("ContactData"))
        if str(data.get("Channel", "")).upper() != "VOICE":
            return None
        return "call.started", ib.CallStarted(
            call_id=_need(data, "ContactId", "connect.contact_event"),
            from_number=_endpoint(data, "CustomerEndpoint"),
            to_number=_endpoint(data, "SystemEndpoint"), started_at=now)
    detail: dict[str, Any] = event["detail"] if isinstance(event.get("detail"), dict) else event
    if str(detail.get("channel", "")).upper() != "VOICE":
        return None
    call_id = _need(detail, "contactId", "connect.contact_event")
    kind = detail.get("eventType")
    if kind == "DISCONNECTED":
        at = _time(detail.get("disconnectTimestamp") or event.get("time"), now)
        agent = _obj(detail.get("agentInfo") or detail.get("AgentInfo"))
        if detail.get("queueInfo") and not agent.get("connectedToAgentTimestamp"):
            queued = _time(_obj(detail.get("queueInfo")).get("enqueueTimestamp"), at)
            return "call.abandoned", ib.CallAbandoned(
                call_id=call_id, abandoned_at=at,
                wait_seconds=max(0.0, (at - queued).total_seconds()))
        started = _time(detail.get("initiationTimestamp"), at)
        return "call.ended", ib.CallEnded(call_id=call_id, ended_at=at,
                                          duration_seconds=max(0.0, (at - started).total_seconds()))
    return None  # INITIATED, QUEUED, CONNECTED_TO_AGENT …: the call is already known or routed


def _endpoint(data: dict[str, Any], name: str) -> str:
    address = _obj(data.get(name)).get("Address")
    if not address or not _scalar(address):
        raise AdapterError(f"connect.contact_event: missing {name}.Address")
    return str(address)


# --- Chatwoot webhooks -------------------------------------------------------------------------
def _chatwoot(body: dict[str, Any], now: datetime) -> Mapped:
    kind = body.get("event")
    if kind == "conversation_created":
        session = f"chatwoot-{_need(body, 'id', 'chatwoot.webhook')}"
        sender = _obj(_obj(body.get("meta")).get("sender"))
        return "chat.started", ib.ChatStarted(session_id=session, started_at=_time(
            body.get("created_at"), now), customer=_chatwoot_contact(sender))
    if kind == "message_created":
        if body.get("message_type") != "incoming" or body.get("private"):
            return None  # the agent's own message or a private note
        conversation = _obj(body.get("conversation"))
        conv_id = conversation.get("id") or conversation.get("display_id")
        if conv_id is None or not _scalar(conv_id):
            raise AdapterError("chatwoot.webhook: message_created without conversation.id")
        return "chat.message", ib.ChatMessage(
            session_id=f"chatwoot-{conv_id}",
            message_id=str(_need(body, "id", "chatwoot.webhook")),
            text=_text(body.get("content")) or "", sent_at=_time(body.get("created_at"), now),
            customer=_chatwoot_contact(_obj(body.get("sender") or body.get("contact"))))
    if kind == "conversation_status_changed" and body.get("status") == "resolved":
        return "chat.ended", ib.ChatEnded(session_id=f"chatwoot-{_need(body, 'id', 'chatwoot')}",
                                          ended_at=now, ended_by="agent")
    return None


def _chatwoot_contact(sender: dict[str, Any]) -> ib.CustomerIdentity:
    return ib.CustomerIdentity(
        name=_text(sender.get("name")), email=_text(sender.get("email")),
        phone=_text(sender.get("phone_number")),
        external_id=f"chatwoot:{sender['id']}" if _text(sender.get("id")) else None)


# --- helpers -----------------------------------------------------------------------------------
# Platforms' bodies are JSON of any shape: a field documented as an object may arrive as a string
# or a list, a number as text. Every read below tolerates that; what the mapping cannot do
# without is an AdapterError naming the field, never the value.
_TOKEN = re.compile(r"[a-z][a-z-]{0,15}")
_MAX_TIME_TEXT = 64


def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _text(value: Any) -> str | None:
    """A string or number as text; None for anything else (objects, lists, booleans, "")."""
    if not _scalar(value) or value == "":
        return None
    return str(value)


def _need(data: dict[str, Any], key: str, what: str) -> str:
    value = _text(data.get(key))
    if value is None:
        raise AdapterError(f"{what}: missing {key}")
    return value


def _seconds(value: Any, what: str) -> float:
    """A duration in seconds, given as a number or as text; missing is 0."""
    if value in (None, ""):
        return 0.0
    try:
        seconds = float(value) if _scalar(value) else math.nan
    except (ValueError, OverflowError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise AdapterError(f"{what} is not a number of seconds")
    return seconds


def _time(value: Any, default: datetime) -> datetime:
    """ISO 8601, "2020-03-03 13:05:57 UTC", RFC 2822 (Twilio) or epoch seconds (or milliseconds);
    else `default`, also for numbers no datetime can hold (1e20, NaN)."""
    if value in (None, "") or isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        try:
            seconds = float(value)
            if seconds > 1e11:  # epoch milliseconds, as several platforms send them
                seconds /= 1000
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return default
    if not isinstance(value, str) or len(value) > _MAX_TIME_TEXT:
        return default
    text = value.strip().replace(" UTC", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
