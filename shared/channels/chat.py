"""Chat: sessions from chat widgets (and Chatwoot, mapped by intake's adapters).

Threading: the session id, the front-end's own; a burst of messages before an agent replies is
one contact; a signed-in customer's new session may join their open case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.channels.contact import IncomingContact, Tools
from shared.channels.registry import ChannelSpec, Threading, TopicText
from shared.contracts import inbound as ib
from shared.contracts.topics import INBOUND_CHAT


def extract(p: Any, now: datetime, tools: Tools) -> IncomingContact:
    key = (f"chat:{p.session_id}",)
    base: dict[str, Any] = {"channel": "chat", "lookup_keys": key, "own_keys": key}
    if isinstance(p, ib.ChatMessage):
        return IncomingContact(**base, source_type="chat.message", at=p.sent_at,
                               customer=p.customer, text=p.text,
                               details={"session_id": p.session_id}, may_join_burst=True,
                               dedup_key=f"chatmsg:{p.session_id}/{p.message_id}")
    if isinstance(p, ib.ChatStarted):
        details = {"language": p.language or "", "widget": p.widget or ""}
        return IncomingContact(**base, source_type="chat.started", at=p.started_at,
                               customer=p.customer, details=details, opens_without_text=True)
    at = p.ended_at if isinstance(p, ib.ChatEnded) else p.abandoned_at
    kind = "chat.ended" if isinstance(p, ib.ChatEnded) else "chat.abandoned"
    return IncomingContact(**base, source_type=kind, at=at, may_open_case=False)


CHANNEL = ChannelSpec(
    name="chat", topic=INBOUND_CHAT,
    contracts={
        "chat.started": ib.ChatStarted,
        "chat.message": ib.ChatMessage,
        "chat.ended": ib.ChatEnded,
        "chat.abandoned": ib.ChatAbandoned,
        "chatwoot.webhook": ib.ChatwootWebhook,
    },
    extract=extract, threading=Threading(joins_open_case=True),
    default_capacity=3, default_weight=30, first_response_seconds=120,
    topic_text=TopicText(
        key="the chat session id, so that a session's events stay in order",
        senders="chat widgets",
        description="Chat session events. A session's events must share a partition: a "
                    "`chat.ended` read before the session's first message finds no case."),
)
