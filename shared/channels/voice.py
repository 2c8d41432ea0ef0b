"""Voice: calls from telephony and IVR platforms (and Twilio or Amazon Connect, mapped by
intake's adapters).

Threading: the call id, the front-end's own. A call is one contact, whose id the call fixes, so
IVR selections and transcripts add to it without a lookup. The caller waits on the line.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from shared.channels.contact import MAX_TEXT, IncomingContact, Tools, contact_id_for
from shared.channels.registry import ChannelSpec, Threading, TopicText
from shared.contracts import inbound as ib
from shared.contracts.inbound import CustomerIdentity
from shared.contracts.topics import INBOUND_VOICE


def call_contact_id(call_id: str) -> str:
    """One contact per call."""
    return contact_id_for(f"call:{call_id}")


def extract(p: Any, now: datetime, tools: Tools) -> IncomingContact:
    key = (f"call:{p.call_id}",)
    dedup = f"voice:{p.call_id}/{hashlib.sha256(p.model_dump_json().encode()).hexdigest()}"
    base: dict[str, Any] = {"channel": "voice", "lookup_keys": key, "own_keys": key,
                            "dedup_key": dedup}
    contact_id = call_contact_id(p.call_id)
    if isinstance(p, ib.CallStarted):
        customer = p.customer if p.customer.phone else p.customer.model_copy(
            update={"phone": p.from_number})
        return IncomingContact(**base, source_type="call.started", at=p.started_at,
                               customer=customer, text=f"Inbound call from {p.from_number}",
                               details={"to": p.to_number}, contact_id=contact_id)
    if isinstance(p, ib.VoicemailReceived):
        return IncomingContact(**base, source_type="voicemail.received", at=p.received_at,
                               customer=CustomerIdentity(phone=p.from_number),
                               text=p.transcript or "(voicemail without transcript)",
                               details={"callback": "requested"})
    if isinstance(p, ib.CallAbandoned):
        text = (f"Abandoned call from {p.from_number} after {p.wait_seconds:.0f} s waiting: "
                "call back" if p.from_number else None)
        return IncomingContact(**base, source_type="call.abandoned", at=p.abandoned_at,
                               customer=CustomerIdentity(phone=p.from_number), text=text,
                               details={"callback": "requested",
                                        "wait_seconds": f"{p.wait_seconds:.0f}"})
    if isinstance(p, ib.CallTranscript):
        said = " ".join(s.text for s in p.segments if s.speaker == "customer").strip()
        return IncomingContact(**base, source_type="call.transcript", at=now,
                               text=said[:MAX_TEXT] or None, may_open_case=False,
                               adds_to_contact=contact_id, details={"transcript": "customer"})
    if isinstance(p, ib.CallIvrSelection):
        label = p.label or p.selection
        return IncomingContact(**base, source_type="call.ivr_selection", at=p.selected_at,
                               text=f"IVR {p.menu}: {label}", may_open_case=False,
                               adds_to_contact=contact_id,
                               details={"hint.ivr_menu": p.menu, "hint.ivr_selection": p.selection,
                                        "hint.ivr_label": p.label or ""})
    return IncomingContact(**base, source_type="call.ended", at=p.ended_at,
                           details={"duration_seconds": f"{p.duration_seconds:.0f}"},
                           may_open_case=False)


CHANNEL = ChannelSpec(
    name="voice", topic=INBOUND_VOICE,
    contracts={
        "call.started": ib.CallStarted,
        "call.ivr_selection": ib.CallIvrSelection,
        "call.transcript": ib.CallTranscript,
        "call.ended": ib.CallEnded,
        "call.abandoned": ib.CallAbandoned,
        "voicemail.received": ib.VoicemailReceived,
        "twilio.call_status": ib.TwilioCallStatus,
        "connect.contact_event": ib.ConnectContactEvent,
    },
    extract=extract, threading=Threading(), live=True,
    default_capacity=1, default_weight=60, first_response_seconds=60,
    topic_text=TopicText(
        key="the call id, so that a call's events stay in order",
        senders="telephony and IVR platforms",
        description="Call events: started, IVR selections, transcripts, ended, abandoned, "
                    "voicemail."),
)
