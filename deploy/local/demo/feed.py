"""The demo's front-ends: an email gateway, a chat widget and a telephony platform.

One new contact every 1–2 s, channels interleaved; each contact is a small script that publishes
its events over time (a chat has several messages, a call is answered by the IVR and hangs up
later). A few deliberate faults show the guarantees: one event delivered twice with the same
`ce_id`, one malformed event, a card number typed into a chat, and bounces in the mailbox.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bus import Bus
from sample import Mail, Utterance, header_value, rewrite

from shared.contracts import inbound as ib
from shared.contracts.base import Contract
from shared.contracts.topics import INBOUND_CHAT, INBOUND_EMAIL, INBOUND_VOICE

MAILBOX = "support@shop.example"
SUPPORT_LINE = "+18005550100"
# The slot pattern of one round: every channel shows up within the first three contacts.
ROUND = ("voice", "chat", "email", "chat", "voicemail", "email", "chat", "voice", "email", "chat",
         "voice", "email")
# Written for the demo, not from a data set: a Luhn-valid test card number (Visa's 4111…) that
# intake must mask before anything is logged.
CARD_MESSAGE = ("I was charged twice for the same order. My card is 4111 1111 1111 1111, "
                "exp 12/27 - please refund one of the payments")
CARD_DIGITS = "4111 1111 1111 1111"
CUSTOMERS = (
    "Maya Patel", "Jonas Berg", "Amara Nwosu", "Lucas Moreau", "Sofia Rossi", "Kenji Sato",
    "Fatima Khan", "Oliver Brown", "Ines Garcia", "Noah Fischer", "Leila Haddad", "Tomasz Nowak",
)
IVR_MENU = (  # (digit, label, what the caller's words are about)
    ("1", "Orders and delivery", re.compile(r"order|deliver|ship", re.I)),
    ("2", "Billing and payments", re.compile(r"refund|charge|pay|invoice|card|transfer|cash",
                                              re.I)),
    ("3", "Account and sign-in", re.compile(r"password|pin|passcode|account|regist|identity",
                                             re.I)),
)


@dataclass
class FeedStats:
    contacts: Counter[str] = field(default_factory=Counter)
    chat_messages: int = 0
    events: int = 0
    follow_ups: list[tuple[str, str]] = field(default_factory=list)  # (original, reply) ids
    automated: list[str] = field(default_factory=list)  # Message-IDs of bounces/auto-replies
    duplicate_of: str | None = None  # ce_id delivered twice
    duplicate_session: str | None = None
    duplicate_session_messages: int = 0  # distinct messages the customer sent in that session
    malformed: int = 0
    card_session: str | None = None


class Feed:
    def __init__(self, bus: Bus, run_id: str, mailbox: list[Mail], utterances: list[Utterance],
                 rng: random.Random) -> None:
        self.bus, self.run_id, self.rng = bus, run_id, rng
        self.mailbox = {m.key: m for m in mailbox}
        self._mails = _laps(mailbox)
        self._utterances = _shuffled_forever(utterances, rng)
        self._by_intent: dict[str, list[Utterance]] = {}
        for u in utterances:
            self._by_intent.setdefault(u.intent, []).append(u)
        self._sent_ids: dict[tuple[int, str], str] = {}  # (lap, mail key) → Message-ID
        self.stats = FeedStats()

    async def run(self) -> None:
        """Start a contact every 1–2 s until cancelled (which cancels the contacts in flight)."""
        async with asyncio.TaskGroup() as tg:
            for n, channel in enumerate(itertools.cycle(ROUND), start=1):
                script = {"voice": self._call, "voicemail": self._voicemail,
                          "chat": self._chat, "email": self._email}[channel]
                tg.create_task(script(n))
                if n == 8:
                    tg.create_task(self._malformed(n))
                await asyncio.sleep(self.rng.uniform(1.0, 2.0))

    # --- channels --------------------------------------------------------------------------
    async def _email(self, n: int) -> None:
        lap, mail = next(self._mails)
        message_id = f"<demo-{self.run_id}-{lap}-{n}@mail.switchboard.demo>"
        headers = {"Message-ID": message_id.encode()}
        if mail.reply_to is not None:
            original = self.mailbox[mail.reply_to]
            original_id = self._sent_ids[(lap, mail.reply_to)]
            subject = header_value(original.raw, "Subject") or b""
            headers |= {
                "From": header_value(original.raw, "From") or b"customer@example.com",
                "Subject": b"Re: " + re.sub(rb"^(re|aw|sv):\s*", b"", subject, flags=re.I),
                "In-Reply-To": original_id.encode(), "References": original_id.encode(),
            }
            self.stats.follow_ups.append((original_id, message_id))
        if mail.automated:
            self.stats.automated.append(message_id)
        self._sent_ids[(lap, mail.key)] = message_id
        raw = rewrite(mail.raw, headers, drop=("from", "subject") if mail.reply_to else ())
        event = ib.EmailReceived(mailbox=MAILBOX, raw_mime=base64.b64encode(raw),
                                 received_at=_now())
        await self._send(INBOUND_EMAIL, message_id, "email.received", event)
        self.stats.contacts["email"] += 1

    async def _chat(self, n: int) -> None:
        session = f"chat-{self.run_id}-{n}"
        name = CUSTOMERS[n % len(CUSTOMERS)]
        verified = n % 3 == 0  # a signed-in shopper: the widget knows who they are
        customer = ib.CustomerIdentity(
            name=name, email=f"{name.lower().replace(' ', '.')}@example.org", verified=verified,
            external_id=f"cust-{zlib.crc32(name.encode()) % 100000:05d}" if verified else None)
        self.stats.contacts["chat"] += 1
        await self._send(INBOUND_CHAT, session, "chat.started", ib.ChatStarted(
            session_id=session, customer=customer, started_at=_now(), language="en",
            widget="shop.example/help"))
        texts = self._chat_texts()
        if self.stats.card_session is None and self.stats.contacts["chat"] == 2:
            texts, self.stats.card_session = [CARD_MESSAGE], session
        for i, text in enumerate(texts, start=1):
            if i > 1:
                await asyncio.sleep(self.rng.uniform(3.0, 8.0))
            message = ib.ChatMessage(session_id=session, message_id=f"{session}-m{i}",
                                     customer=customer, text=text, sent_at=_now())
            headers, body = await self._send(INBOUND_CHAT, session, "chat.message", message)
            self.stats.chat_messages += 1
            if session == self.stats.duplicate_session:
                self.stats.duplicate_session_messages += 1
            if self.stats.duplicate_of is None and self.stats.contacts["chat"] >= 3:
                # At-least-once delivery: the widget retries a send it thinks timed out.
                self.stats.duplicate_of = headers["ce_id"]
                self.stats.duplicate_session = session
                self.stats.duplicate_session_messages = 1
                await asyncio.sleep(2.0)
                await self.bus.publish_raw(INBOUND_CHAT, session, headers, body)
        await asyncio.sleep(self.rng.uniform(15.0, 30.0))
        await self._send(INBOUND_CHAT, session, "chat.ended", ib.ChatEnded(
            session_id=session, ended_at=_now(), ended_by=self.rng.choice(["customer", "agent"])))

    async def _call(self, n: int) -> None:
        call_id = f"call-{self.run_id}-{n}"
        caller = _phone(n)
        utterance = next(self._utterances)
        self.stats.contacts["voice"] += 1
        began = _now()
        await self._send(INBOUND_VOICE, call_id, "call.started", ib.CallStarted(
            call_id=call_id, from_number=caller, to_number=SUPPORT_LINE, started_at=began))
        await asyncio.sleep(self.rng.uniform(1.0, 2.5))
        digit, label = _ivr_choice(utterance.text)
        await self._send(INBOUND_VOICE, call_id, "call.ivr_selection", ib.CallIvrSelection(
            call_id=call_id, menu="main", selection=digit, label=label, selected_at=_now()))
        await asyncio.sleep(self.rng.uniform(3.0, 6.0))
        segments = [
            ib.TranscriptSegment(speaker="ivr", text="Please tell us briefly why you are calling.",
                                 start_seconds=0.0, end_seconds=2.5),
            ib.TranscriptSegment(speaker="customer", text=utterance.text, start_seconds=3.0,
                                 end_seconds=3.0 + len(utterance.text) / 14),
        ]
        await self._send(INBOUND_VOICE, call_id, "call.transcript",
                         ib.CallTranscript(call_id=call_id, segments=segments))
        await asyncio.sleep(self.rng.uniform(6.0, 14.0))
        ended = _now()
        await self._send(INBOUND_VOICE, call_id, "call.ended", ib.CallEnded(
            call_id=call_id, ended_at=ended, duration_seconds=(ended - began).total_seconds()))

    async def _voicemail(self, n: int) -> None:
        call_id = f"vm-{self.run_id}-{n}"
        self.stats.contacts["voicemail"] += 1
        await self._send(INBOUND_VOICE, call_id, "voicemail.received", ib.VoicemailReceived(
            call_id=call_id, from_number=_phone(n), received_at=_now(),
            duration_seconds=round(self.rng.uniform(8.0, 40.0), 1),
            transcript=next(self._utterances).text))

    async def _malformed(self, n: int) -> None:
        """A widget that crashed mid-write: valid CloudEvents headers, truncated JSON."""
        session = f"chat-{self.run_id}-{n}-broken"
        body = b'{"session_id": "' + session.encode() + b'", "message_id": "m1", "text": "my ord'
        headers = {"ce_specversion": "1.0", "ce_id": f"broken-{self.run_id}-{n}",
                   "ce_source": "demo/chat-widget", "ce_type": "chat.message",
                   "ce_time": _now().isoformat(), "content-type": "application/json"}
        await self.bus.publish_raw(INBOUND_CHAT, session, headers, body)
        self.stats.malformed += 1

    # --- helpers ---------------------------------------------------------------------------
    async def _send(self, topic: str, key: str, type_: str,
                    data: Contract) -> tuple[dict[str, str], bytes]:
        source = {INBOUND_EMAIL: "demo/email-gateway", INBOUND_CHAT: "demo/chat-widget",
                  INBOUND_VOICE: "demo/telephony"}[topic]
        sent = await self.bus.publish(topic, key, type_, data, source=source)
        self.stats.events += 1
        return sent

    def _chat_texts(self) -> list[str]:
        """One to three messages: customers rephrase, then ask for a human, while they wait."""
        first = next(self._utterances)
        texts = [first.text]
        if self.rng.random() < 0.4:
            same = [u for u in self._by_intent[first.intent] if u.text != first.text]
            if same:
                texts.append(self.rng.choice(same).text)
        if self.rng.random() < 0.25:
            texts.append(self.rng.choice(self._by_intent["contact_human_agent"]).text)
        return texts


def _laps(mailbox: list[Mail]) -> Iterator[tuple[int, Mail]]:
    """The mailbox in order, lap after lap (an endless run replays it with fresh ids)."""
    for lap in itertools.count():
        for mail in mailbox:
            yield lap, mail


def _shuffled_forever(items: list[Utterance], rng: random.Random) -> Iterator[Utterance]:
    while True:
        batch = list(items)
        rng.shuffle(batch)
        yield from batch


def _ivr_choice(text: str) -> tuple[str, str]:
    for digit, label, pattern in IVR_MENU:
        if pattern.search(text):
            return digit, label
    return "0", "Speak to an agent"


def _phone(n: int) -> str:
    # 555-0100…0199: numbers reserved for fiction, so the demo never dials anyone real.
    return f"+1415555{100 + n % 100:04d}"


def _now() -> datetime:
    return datetime.now(UTC)
