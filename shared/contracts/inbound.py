"""Inbound events that helpdesk front-ends publish on `helpdesk.inbound.{email,chat,voice}`.

The CloudEvents `type` names the model; the `id` is the front-end's own event id and the root of
every id Switchboard derives from the event. Which topic carries which types is each channel's
own (`shared/channels/`, `registry.inbound_topics()`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Base64Bytes, Field

from shared.channels.registry import ChannelName
from shared.contracts.base import Contract

# A registered channel's name (shared/channels/): "email", "chat", "voice", …
Channel = ChannelName

MAX_TEXT = 100_000


class CustomerIdentity(Contract):
    """What the front-end knows of the customer; any field may be missing."""

    name: str | None = Field(default=None, max_length=256)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    external_id: str | None = Field(default=None, max_length=256)
    verified: bool = False
    # Service tier from the customer directory (e.g. "gold"), when intake found the customer.
    tier: str | None = Field(default=None, max_length=64)


# --- email -----------------------------------------------------------------------------------
class EmailReceived(Contract):
    """An RFC 5322 message as received by the support mailbox, base64 in JSON."""

    mailbox: str = Field(min_length=1, max_length=320)
    raw_mime: Base64Bytes
    received_at: datetime | None = None
    # Set only by a front-end that authenticated the sender itself (a signed-in user of a portal
    # or web form relayed as email) and checked that they may write to the case the message
    # names: the sender is then verified and the message joins its thread without intake's
    # participant check. Never derived from anything in the message.
    vouched: bool = False


# --- chat ------------------------------------------------------------------------------------
class ChatStarted(Contract):
    session_id: str = Field(min_length=1, max_length=256)
    customer: CustomerIdentity = CustomerIdentity()
    started_at: datetime
    language: str | None = Field(default=None, max_length=35)
    widget: str | None = Field(default=None, max_length=256)


class ChatMessage(Contract):
    session_id: str = Field(min_length=1, max_length=256)
    message_id: str = Field(min_length=1, max_length=256)
    customer: CustomerIdentity = CustomerIdentity()
    text: str = Field(max_length=MAX_TEXT)
    sent_at: datetime


class ChatEnded(Contract):
    session_id: str = Field(min_length=1, max_length=256)
    ended_at: datetime
    ended_by: Literal["customer", "agent", "system"] = "customer"


class ChatAbandoned(Contract):
    session_id: str = Field(min_length=1, max_length=256)
    abandoned_at: datetime


# --- voice -----------------------------------------------------------------------------------
class CallStarted(Contract):
    call_id: str = Field(min_length=1, max_length=256)
    from_number: str = Field(min_length=1, max_length=64)
    to_number: str = Field(min_length=1, max_length=64)
    started_at: datetime
    customer: CustomerIdentity = CustomerIdentity()


class CallIvrSelection(Contract):
    call_id: str = Field(min_length=1, max_length=256)
    menu: str = Field(max_length=256)
    selection: str = Field(max_length=64)
    label: str | None = Field(default=None, max_length=256)
    selected_at: datetime


class TranscriptSegment(Contract):
    speaker: Literal["customer", "agent", "ivr"]
    text: str = Field(max_length=MAX_TEXT)
    start_seconds: float = Field(ge=0, allow_inf_nan=False)
    end_seconds: float = Field(ge=0, allow_inf_nan=False)


class CallTranscript(Contract):
    call_id: str = Field(min_length=1, max_length=256)
    segments: list[TranscriptSegment] = Field(max_length=10_000)


class CallEnded(Contract):
    call_id: str = Field(min_length=1, max_length=256)
    ended_at: datetime
    duration_seconds: float = Field(ge=0, allow_inf_nan=False)


class CallAbandoned(Contract):
    call_id: str = Field(min_length=1, max_length=256)
    abandoned_at: datetime
    wait_seconds: float = Field(ge=0, allow_inf_nan=False)
    # Lets intake open a callback case for a caller it has not seen start the call.
    from_number: str | None = Field(default=None, max_length=64)


class VoicemailReceived(Contract):
    call_id: str = Field(min_length=1, max_length=256)
    from_number: str = Field(min_length=1, max_length=64)
    received_at: datetime
    duration_seconds: float = Field(ge=0, allow_inf_nan=False)
    transcript: str | None = Field(default=None, max_length=MAX_TEXT)


# --- front-end platforms' own payloads, forwarded as received (see docs/intake.md) ---------------
# The platform's body is kept whole in one field, because those bodies carry dozens of fields that
# change with the platform's version; intake's adapters map them to the events above.
class TwilioCallStatus(Contract):
    """A Twilio Voice status callback: its form parameters (CallSid, From, To, CallStatus …)."""

    params: dict[str, str] = Field(max_length=200)


class ConnectContactEvent(Contract):
    """An Amazon Connect contact event (EventBridge) or contact record, as JSON."""

    event: dict[str, Any]


class ChatwootWebhook(Contract):
    """A Chatwoot webhook body (`conversation_created`, `message_created`, …)."""

    body: dict[str, Any]

