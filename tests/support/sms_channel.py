"""A fourth channel, SMS, written as a channel is: this one module (topic, contract, extractor,
threading, defaults). `test_channel_registry.py` registers it, the one entry, and nothing else
in Switchboard changes."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from shared.channels.contact import IncomingContact, Tools
from shared.channels.registry import ChannelSpec, Threading, TopicText
from shared.contracts.base import Contract
from shared.contracts.inbound import MAX_TEXT, CustomerIdentity

TOPIC = "helpdesk.inbound.sms"


class SmsReceived(Contract):
    """A text message to the support number, as the SMS gateway received it."""

    message_sid: str = Field(min_length=1, max_length=256)
    from_number: str = Field(min_length=1, max_length=64)
    to_number: str = Field(min_length=1, max_length=64)
    body: str = Field(max_length=MAX_TEXT)
    received_at: datetime


def extract(p: SmsReceived, now: datetime, tools: Tools) -> IncomingContact:
    # A conversation is the customer's number with ours: their next text joins its case.
    thread = (f"sms:{p.from_number}/{p.to_number}",)
    return IncomingContact(
        channel="sms", source_type="sms.received", lookup_keys=thread, own_keys=thread,
        at=p.received_at, customer=CustomerIdentity(phone=p.from_number), text=p.body,
        details={"to": p.to_number}, dedup_key=f"sms:{p.message_sid}")


CHANNEL = ChannelSpec(
    name="sms", topic=TOPIC, contracts={"sms.received": SmsReceived}, extract=extract,
    threading=Threading(joins_open_case=True),
    default_capacity=4, default_weight=20, first_response_seconds=600,
    topic_text=TopicText(key="the customer's phone number", senders="SMS gateways",
                         description="Text messages to the support numbers."),
)
