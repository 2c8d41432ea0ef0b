"""Webhook and SMTP sinks against local servers started by the test (127.0.0.1 only)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller

from services.escalation import sinks
from services.escalation.policy import EmailSink, WebhookSink
from shared.contracts import case_events as ce
from tests.unit.test_escalation_packet import history

SECRET = b"s3cret-for-tests"
NOW = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)


def note() -> ce.SupervisorNotification:
    from services.escalation.packet import build_packet, render_markdown, render_summary

    packet = build_packet("case-pkt", history(), "sla.breached:first_response", 1)
    return ce.SupervisorNotification(
        notification_id="ntf-123", escalation_id="esc-1", case_id="case-pkt",
        reason=packet.reason, level=1, target="team-leads", summary=render_summary(packet),
        packet=packet, markdown=render_markdown(packet))


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver that fails first with 500 (`fail_first` times), then verifies."""

    fail_first = 1
    calls: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    seen: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = dict(self.headers.items())
        type(self).calls.append((headers, body))
        if len(type(self).calls) <= type(self).fail_first:
            self.send_response(500)
        elif not sinks.verify(SECRET, headers, body, now=NOW.timestamp()):
            self.send_response(401)
        else:
            type(self).seen.add(headers[sinks.ID_HEADER])  # dedup store of the receiver
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.calls, Receiver.seen, Receiver.fail_first = [], set(), 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


async def test_webhook_is_signed_a_500_is_retryable_and_a_duplicate_carries_the_same_id(
    receiver: str,
) -> None:
    sink = WebhookSink(type="webhook", url=receiver, secret_env="X")
    first = await sinks.send_webhook(sink, SECRET, note(), NOW)
    assert (first.ok, first.retry, first.error) == (False, True, "HTTP 500")
    second = await sinks.send_webhook(sink, SECRET, note(), NOW)
    assert second.ok
    again = await sinks.send_webhook(sink, SECRET, note(), NOW)  # e.g. a crash before commit
    assert again.ok
    ids = [h[sinks.ID_HEADER] for h, _ in Receiver.calls]
    assert ids == ["ntf-123"] * 3 and Receiver.seen == {"ntf-123"}
    headers, body = Receiver.calls[1]
    assert sinks.verify(SECRET, headers, body, now=NOW.timestamp())
    assert ce.SupervisorNotification.model_validate_json(body) == note()


def test_a_signature_fails_on_a_changed_body_a_wrong_secret_or_a_stale_timestamp() -> None:
    body = sinks.body_of(note())
    ts = int(NOW.timestamp())
    headers = {sinks.TIMESTAMP_HEADER: str(ts), sinks.SIGNATURE_HEADER: sinks.sign(SECRET, ts,
                                                                                   body)}
    assert sinks.verify(SECRET, headers, body, now=ts + 10)
    assert not sinks.verify(SECRET, headers, body + b" ", now=ts)
    assert not sinks.verify(b"other", headers, body, now=ts)
    assert not sinks.verify(SECRET, headers, body, now=ts + 301)  # a replay, later
    assert not sinks.verify(SECRET, {}, body, now=ts)


async def test_a_4xx_is_not_retried_and_an_unreachable_receiver_is() -> None:
    Receiver.calls, Receiver.fail_first = [], 0
    refused = WebhookSink(type="webhook", url="http://127.0.0.1:9/hook", secret_env="X",
                          timeout="2s")
    sent = await sinks.send_webhook(refused, SECRET, note(), NOW)
    assert not sent.ok and sent.retry
    assert [sinks.backoff_seconds(n, 1.0) for n in (1, 2, 3, 10)] == [1, 2, 4, 300]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


async def test_the_email_sink_sends_the_packet_with_a_stable_message_id() -> None:
    inbox = Inbox()
    with socket.socket() as probe:  # a free port: aiosmtpd's readiness check needs a real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sink = EmailSink(type="email", to=["leads@example.com"], sender="sb@example.com",
                         host="127.0.0.1", port=port)
        assert (await sinks.send_email(sink, note())).ok
        assert (await sinks.send_email(sink, note())).ok
        # The server ran handle_DATA before it answered 250: both messages are in the inbox.
    finally:
        controller.stop()
    mails = [message_from_bytes(m) for m in inbox.messages]
    assert {m["Message-ID"] for m in mails} == {"<ntf-123@switchboard>"}
    assert mails[0][sinks.ID_HEADER] == "ntf-123"
    assert "case-pkt escalated (level 1)" in mails[0]["Subject"]
    text = mails[0].get_payload()[0].get_payload(decode=True).decode()  # type: ignore[index, union-attr]
    assert "Problem: Refund for a double charge" in text and "third time" in text
    assert "4111111111111111" not in text.replace(" ", "")
