"""The adversarial corpus of issue 10: inputs that once took seconds, hundreds of MB, or crashed.

Each input is a raw Kafka record (headers + bytes) on an inbound topic, exactly as a front-end
would publish it, so the regression tests and `benchmarks/adversarial.py` run the same records
through the same path the service runs. `expect` is the outcome intake must reach:
"contact" (processed), "rejected" (a clean dead-letter reason) or "either".
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.structs import ConsumerRecord

Outcome = Literal["contact", "rejected", "either"]
WHEN = "2026-11-24T10:00:00+00:00"


@dataclass(frozen=True)
class Adversarial:
    name: str
    what: str
    topic: str
    headers: tuple[tuple[str, bytes], ...]
    value: bytes
    expect: Outcome = "either"
    owner: str = "intake"  # where the fix lives when it is not intake's code

    def record(self, offset: int = 0) -> ConsumerRecord[Any, Any]:
        return kafka_record(self.topic, self.headers, self.value, offset)


def kafka_record(topic: str, headers: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]],
                 value: bytes, offset: int = 0) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord(topic=topic, partition=0, offset=offset, timestamp=0,
                          timestamp_type=0, key=None, value=value, checksum=None,
                          serialized_key_size=-1, serialized_value_size=len(value),
                          headers=tuple(headers))


def binary_headers(event_type: str, event_id: str = "adv-1") -> tuple[tuple[str, bytes], ...]:
    return (("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
            ("ce_source", b"adversary/test"), ("ce_type", event_type.encode()),
            ("ce_time", WHEN.encode()), ("content-type", b"application/json"))


STRUCTURED = (("content-type", b"application/cloudevents+json"),)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def email(raw: bytes) -> bytes:
    return _json({"mailbox": "support@shop.example", "raw_mime": base64.b64encode(raw).decode(),
                  "received_at": WHEN})


def chat_message(text: str) -> bytes:
    return _json({"session_id": "s-adv", "message_id": "m-1", "text": text, "sent_at": WHEN})


def mime(headers: bytes, body: bytes = b"Hello, my order is late.\r\n") -> bytes:
    return b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n" + headers + b"\r\n" + body


def _nested_multipart(depth: int) -> bytes:
    head, tail = b"", b""
    for level in range(depth):
        head += (b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n'
                 % (level, level))
        tail = b"\r\n--b%d--\r\n" % level + tail
    return (b"From: maya@example.com\r\nSubject: deep\r\n" + head
            + b"Content-Type: text/plain\r\n\r\nhello" + tail)


def _flat_multipart(parts: int) -> bytes:
    body = b"".join(b"--b\r\n\r\nx\r\n" for _ in range(parts)) + b"--b--\r\n"
    return (b"From: maya@example.com\r\nSubject: flat\r\n"
            b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body)


def _html_table(rows: int, cols: int) -> bytes:
    table = ("<table>" + "".join("<tr>" + "<td>123" * cols for _ in range(rows))
             + "</table>").encode()
    return mime(b"From: maya@example.com\r\nSubject: table\r\n"
                b"Content-Type: text/html; charset=utf-8\r\n", table)


def _structured(data: bytes) -> bytes:
    return (b'{"specversion": "1.0", "id": "adv-s", "source": "adversary/test",'
            b' "type": "chat.message", "time": "' + WHEN.encode() + b'", "data": ' + data + b"}")


def _inputs() -> list[Adversarial]:
    email_topic, chat_topic, voice_topic = ("helpdesk.inbound.email", "helpdesk.inbound.chat",
                                            "helpdesk.inbound.voice")
    mail = binary_headers("email.received")
    frm = b"From: Maya <maya@example.com>\r\n"
    chatwoot = binary_headers("chatwoot.webhook")
    connect = binary_headers("connect.contact_event")
    twilio = binary_headers("twilio.call_status")
    return [
        # --- issue 10, item 2: small inputs that took seconds to minutes ----------------------
        Adversarial("chat-pin-20k-spaces", '"PIN" + 20,000 spaces (shared/redaction.py)',
                    chat_topic, binary_headers("chat.message"),
                    chat_message("PIN" + " " * 20_000), "contact", owner="redaction"),
        Adversarial("email-message-id-a-at-20k", 'Message-ID of "a@" x 20,000 then ">"',
                    email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\nMessage-ID: " + b"a@" * 20_000 + b">\r\n")),
                    "contact"),
        Adversarial("email-subject-re-20k-spaces", 'Subject "re" + 20,000 spaces + "x"',
                    email_topic, mail,
                    email(mime(frm + b"Subject: re" + b" " * 20_000 + b"x\r\n")),
                    "contact"),
        Adversarial("email-html-table-700x200", "HTML table of 700 x 200 cells (0.98 MB)",
                    email_topic, mail, email(_html_table(700, 200)), "contact"),
        Adversarial("email-subject-10k-encoded-words", "Subject of 10,000 RFC 2047 encoded words",
                    email_topic, mail,
                    email(mime(frm + b"Subject: " + b" ".join([b"=?utf-8?q?abc?="] * 10_000)
                               + b"\r\n")), "contact"),
        Adversarial("email-from-10k-addresses", "From header with 10,000 addresses",
                    email_topic, mail,
                    email(mime(b"From: " + b", ".join(b"user%d@example.com" % i
                                                      for i in range(10_000))
                               + b"\r\nSubject: hi\r\n")), "contact"),
        Adversarial("email-body-0.7mb-one-line", "0.7 MB body on one line, with a time",
                    email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\n",
                               b"On 2026-11-24 12:30 " + b"a" * 700_000 + b"\r\n")), "contact"),
        Adversarial("email-body-one-line-at-signs", "one 100 kB line of a@a@… with a time",
                    email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\n",
                               b"12:30 2020 " + b"a@" * 50_000 + b":\r\n")), "contact"),
        Adversarial("chat-100k-words", "100,000-character chat of ordinary words (VADER is the"
                    " router's)", chat_topic, binary_headers("chat.message"),
                    chat_message(("my parcel never arrived and I am upset " * 2_600)[:100_000]),
                    "contact"),
        # --- issue 10, item 6: crashes found by fuzzing --------------------------------------
        Adversarial("chatwoot-conversation-str", '"conversation": "x"', chat_topic, chatwoot,
                    _json({"body": {"event": "message_created", "message_type": "incoming",
                                    "id": 7, "content": "hi", "conversation": "x"}}), "rejected"),
        Adversarial("chatwoot-meta-list", '"meta": ["x"]', chat_topic, chatwoot,
                    _json({"body": {"event": "conversation_created", "id": 8, "meta": ["x"]}}),
                    "contact"),
        Adversarial("connect-disconnect-1e20", "disconnectTimestamp: 1e20", voice_topic, connect,
                    b'{"event": {"channel": "VOICE", "contactId": "c-1", "eventType":'
                    b' "DISCONNECTED", "disconnectTimestamp": 1e20}}', "either"),
        Adversarial("twilio-duration-abc", 'CallDuration "abc"', voice_topic, twilio,
                    _json({"params": {"CallSid": "CA1", "CallStatus": "completed",
                                      "CallDuration": "abc"}}), "rejected"),
        Adversarial("email-message-id-8bit", "Message-ID: <<caf\\xc3\\xa9@x> (raw-header fallback)",
                    email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\nMessage-ID: <<caf\xc3\xa9@x>\r\n")),
                    "contact"),
        Adversarial("email-multipart-1000-deep", "multipart nested 1,000 deep", email_topic,
                    mail, email(_nested_multipart(1_000)), "rejected"),
        Adversarial("email-from-5000-comments", "5,000 nested comments in From", email_topic,
                    mail, email(mime(b"From: maya@example.com " + b"(" * 5_000 + b")" * 5_000
                                     + b"\r\nSubject: hi\r\n")), "contact"),
        Adversarial("structured-3000-deep", "structured mode, data nested 3,000 deep",
                    chat_topic, STRUCTURED, _structured(b"[" * 3_000 + b"]" * 3_000),
                    "rejected"),
        Adversarial("structured-4301-digits", "structured mode, a 4,301-digit number",
                    chat_topic, STRUCTURED, _structured(b"1" * 4_301), "rejected"),
        # --- found while fixing the above ----------------------------------------------------
        Adversarial("email-content-type-2000-comments", "Content-Type with 2,000 nested comments"
                    " (RecursionError inside the MIME parser)", email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\nContent-Type: text/plain " + b"(" * 2_000
                               + b")" * 2_000 + b"\r\n")), "contact"),
        Adversarial("email-content-type-4kb-params", "Content-Type with 4 kB of parameters",
                    email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\nContent-Type: text/plain; "
                               + b"a=b; " * 800 + b"\r\n")), "contact"),
        Adversarial("email-multipart-20k-parts", "20,000 empty MIME parts (0.2 MB)",
                    email_topic, mail, email(_flat_multipart(20_000)), "rejected"),
        Adversarial("email-multipart-150-deep", "multipart nested 150 deep (under the part"
                    " limit)", email_topic, mail, email(_nested_multipart(150)), "rejected"),
        Adversarial("email-references-10k-ids", "References with 10,000 message ids",
                    email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\nReferences: "
                               + b" ".join(b"<id%d@example.com>" % i for i in range(10_000))
                               + b"\r\n")), "contact"),
        Adversarial("email-html-nested-5000-divs", "HTML body of 5,000 nested <div>",
                    email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\nContent-Type: text/html\r\n",
                               b"<div>" * 5_000 + b"hello" + b"</div>" * 5_000)), "contact"),
        Adversarial("email-html-2mb-paragraphs", "2 MB of HTML paragraphs", email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\nContent-Type: text/html\r\n",
                               b"<p>my parcel never arrived</p>" * 70_000)), "contact"),
        Adversarial("email-display-name-trick", "From: bob@example.org <eve@attacker.example>"
                    " (CVE-2023-27043)", email_topic, mail,
                    email(mime(b"From: bob@example.org <eve@attacker.example>\r\n"
                               b"Subject: refund\r\n")), "contact"),
        Adversarial("email-subject-encoded-newline", "Subject =?utf-8?q?Refund_please=0ABcc:_x@"
                    "evil?= (a newline in the decoded subject)", email_topic, mail,
                    email(mime(frm + b"Subject: =?utf-8?q?Refund_please=0ABcc:_x@evil?=\r\n")),
                    "contact"),
        Adversarial("email-control-chars-200kb", "200 kB body of \\x01", email_topic, mail,
                    email(mime(frm + b"Subject: hi\r\n", b"\x01" * 200_000)), "contact"),
        Adversarial("email-8bit-from-and-subject", "UTF-8 bytes and invalid bytes in raw headers",
                    email_topic, mail,
                    email(mime(b"From: Jos\xc3\xa9 <jose@ex\xc3\xa4mple.com>\r\n"
                               b"Subject: caf\xc3\xa9 \xff\xfe\r\n")), "contact"),
        Adversarial("structured-lone-surrogate-id", "structured mode, id with a lone surrogate",
                    chat_topic, STRUCTURED,
                    b'{"specversion": "1.0", "id": "a\\udc80", "source": "s", "type":'
                    b' "chat.message", "time": "' + WHEN.encode() + b'", "data": '
                    + chat_message("hi") + b"}", "rejected"),
        Adversarial("chat-naive-time-year-1", "chat message sent at 0001-01-01 (no zone)",
                    chat_topic, binary_headers("chat.message"),
                    _json({"session_id": "s", "message_id": "m", "text": "hi",
                           "sent_at": "0001-01-01T00:00:00"}), "either"),
        Adversarial("connect-huge-int-timestamp", "Connect timestamps as 10**30 and NaN",
                    voice_topic, connect,
                    b'{"event": {"channel": "VOICE", "contactId": "c-2", "eventType":'
                    b' "DISCONNECTED", "disconnectTimestamp": 1000000000000000000000000000000,'
                    b' "initiationTimestamp": NaN, "queueInfo": "x", "agentInfo": [1]}}',
                    "either"),
        Adversarial("voice-duration-infinity", "call.ended with duration_seconds Infinity",
                    voice_topic, binary_headers("call.ended"),
                    b'{"call_id": "c", "ended_at": "' + WHEN.encode()
                    + b'", "duration_seconds": "Infinity"}', "rejected"),
    ]


CORPUS: list[Adversarial] = _inputs()
BY_NAME: dict[str, Adversarial] = {a.name: a for a in CORPUS}
