"""Webhook and SMTP sinks against local servers started by the test (127.0.0.1 only).

The SSRF guard refuses loopback, so each local receiver is reached through an allow-list, as a
deployment would allow an internal receiver; the refusals themselves are tested with a resolver
that answers what an attacker's DNS would.
"""

from __future__ import annotations

import asyncio
import email.policy
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from services.escalation import sinks
from services.escalation.packet import build_packet, render_markdown, render_summary
from services.escalation.policy import EmailSink, WebhookSink
from shared.contracts import case_events as ce
from tests.support.escalation_fixtures import Inbox, smtp_server
from tests.unit.test_escalation_packet import history

SECRET = b"s3cret-for-tests"
NOW = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
LOCAL = ["127.0.0.1/32"]
INJECTED = "Refund please\nBcc: x@evil.example\r\nX-Evil: 1"  # the decoded RFC 2047 subject


def note(problem: str | None = None) -> ce.SupervisorNotification:
    packet = build_packet("case-pkt", history(), "sla.breached:first_response", 1)
    if problem is not None:
        packet = packet.model_copy(update={"problem": problem})
    return ce.SupervisorNotification(
        notification_id="ntf-123", escalation_id="esc-1", case_id="case-pkt",
        reason=packet.reason, level=1, target="team-leads", summary=render_summary(packet),
        packet=packet, markdown=render_markdown(packet))


class Receiver(BaseHTTPRequestHandler):
    """Answers each POST with the next scripted (status, headers), then 204; verifies 2xx."""

    script: ClassVar[list[tuple[int, dict[str, str]]]] = []
    calls: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    seen: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = dict(self.headers.items())
        type(self).calls.append((self.path, headers, body))
        status, extra = type(self).script.pop(0) if type(self).script else (204, {})
        if status < 300 and not sinks.verify(SECRET, headers, body, now=NOW.timestamp()):
            status = 401
        elif status < 300:
            type(self).seen.add(headers[sinks.ID_HEADER])  # dedup store of the receiver
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST  # a followed redirect would turn the POST into a GET: it must not come

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.calls, Receiver.seen, Receiver.script = [], set(), []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def hook(url: str, **kw: Any) -> WebhookSink:
    return WebhookSink(type="webhook", url=url, secret_env="X", allow_networks=LOCAL, **kw)


async def test_webhook_is_signed_a_500_is_retryable_and_a_duplicate_carries_the_same_id(
    receiver: str,
) -> None:
    Receiver.script = [(500, {})]
    sink = hook(receiver)
    first = await sinks.send_webhook(sink, SECRET, note(), NOW)
    assert (first.ok, first.retry, first.error) == (False, True, "HTTP 500")
    second = await sinks.send_webhook(sink, SECRET, note(), NOW)
    assert second.ok
    again = await sinks.send_webhook(sink, SECRET, note(), NOW)  # e.g. a crash before commit
    assert again.ok
    ids = [h[sinks.ID_HEADER] for _, h, _ in Receiver.calls]
    assert ids == ["ntf-123"] * 3 and Receiver.seen == {"ntf-123"}
    path, headers, body = Receiver.calls[1]
    assert path == "/hook"
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


async def test_a_4xx_is_not_retried_and_an_unreachable_receiver_is(receiver: str) -> None:
    Receiver.script = [(404, {})]
    gone = await sinks.send_webhook(hook(receiver), SECRET, note(), NOW)
    assert (gone.ok, gone.retry, gone.error) == (False, False, "HTTP 404")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = await sinks.send_webhook(hook(f"http://127.0.0.1:{port}/hook", timeout="2s"),
                                       SECRET, note(), NOW)
    assert not refused.ok and refused.retry and "ConnectionRefused" in (refused.error or "")
    assert [sinks.backoff_seconds(n, 1.0) for n in (1, 2, 3, 10)] == [1, 2, 4, 300]


async def test_a_redirect_is_not_followed(receiver: str) -> None:
    Receiver.script = [(302, {"Location": "http://169.254.169.254/latest/meta-data/"})]
    sent = await sinks.send_webhook(hook(receiver), SECRET, note(), NOW)
    assert not sent.ok and not sent.retry
    assert sent.error == ("HTTP 302: redirect to http://169.254.169.254/latest/meta-data/"
                          " not followed")
    assert len(Receiver.calls) == 1  # nothing went to the Location, nor again here


async def test_retry_after_is_honoured_in_seconds_or_as_a_date_and_bounded(receiver: str) -> None:
    Receiver.script = [(503, {"Retry-After": "120"}),
                       (429, {"Retry-After": format_datetime(NOW + timedelta(minutes=7),
                                                             usegmt=True)}),
                       (503, {"Retry-After": "86400"})]
    seconds = await sinks.send_webhook(hook(receiver), SECRET, note(), NOW)
    dated = await sinks.send_webhook(hook(receiver), SECRET, note(), NOW)
    huge = await sinks.send_webhook(hook(receiver), SECRET, note(), NOW)
    assert (seconds.retry, seconds.retry_after) == (True, 120.0)
    assert (dated.retry, dated.retry_after) == (True, 420.0)
    # After the first attempt the backoff is 1 s: the receiver's 120 s wins; a day is capped.
    assert sinks.next_attempt_delay(seconds, 1, 1.0, 600.0) == 120.0
    assert sinks.next_attempt_delay(dated, 1, 1.0, 600.0) == 420.0
    assert sinks.next_attempt_delay(huge, 1, 1.0, 600.0) == 600.0
    # A Retry-After shorter than the backoff does not hurry us.
    assert sinks.next_attempt_delay(sinks.Sent(False, True, "x", 1.0), 5, 1.0, 600.0) == 16.0


async def test_private_and_link_local_addresses_are_refused_at_send_time_too() -> None:
    """DNS rebinding: the name was public when the policy loaded; now it answers otherwise."""
    connected: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        connected.append(host)
        return {"metadata.example.com": ["169.254.169.254"],
                "inside.example.com": ["10.0.0.7", "::ffff:127.0.0.1"]}[host]

    for host, why in (("metadata.example.com", "169.254.169.254 is a link-local address"),
                      ("inside.example.com", "10.0.0.7 is a private address")):
        sink = WebhookSink(type="webhook", url=f"https://{host}/hook", secret_env="X")
        sent = await sinks.send_webhook(sink, SECRET, note(), NOW, resolver=rebinding)
        assert not sent.ok and not sent.retry, sent
        assert sent.error is not None and why in sent.error
    assert connected == ["metadata.example.com", "inside.example.com"]


async def test_a_name_resolving_to_loopback_is_sent_to_only_when_allow_listed(
    receiver: str,
) -> None:
    port = int(receiver.rsplit(":", 1)[1].split("/")[0])

    async def local(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    sink = WebhookSink(type="webhook", url=f"http://hooks.internal.example:{port}/hook",
                       secret_env="X")
    refused = await sinks.send_webhook(sink, SECRET, note(), NOW, resolver=local)
    assert not refused.ok and "loopback" in (refused.error or "") and not Receiver.calls
    allowed = await sinks.send_webhook(sink, SECRET, note(), NOW, resolver=local,
                                       allow_networks=["127.0.0.0/8"])
    assert allowed.ok
    [(_, headers, _)] = Receiver.calls
    assert headers["Host"] == f"hooks.internal.example:{port}"  # the name, to the checked address


async def test_proxy_environment_variables_are_ignored(receiver: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert (await sinks.send_webhook(hook(receiver), SECRET, note(), NOW)).ok
    assert len(Receiver.calls) == 1


@pytest.fixture
async def connect_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A minimal HTTP CONNECT proxy that records where it tunnels to."""
    tunnels: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        method, authority, _ = request.split(" ", 2)
        assert method == "CONNECT"
        tunnels.append(authority)
        host, port = authority.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", tunnels
    server.close()


async def test_a_configured_proxy_tunnels_to_the_checked_address(
    receiver: str, connect_proxy: tuple[str, list[str]]
) -> None:
    proxy, tunnels = connect_proxy
    port = receiver.rsplit(":", 1)[1].split("/")[0]
    sent = await sinks.send_webhook(hook(receiver), SECRET, note(), NOW, proxy=proxy)
    assert sent.ok, sent
    assert tunnels == [f"127.0.0.1:{port}"] and len(Receiver.calls) == 1


async def test_a_receiver_that_never_answers_times_out_as_a_retryable_failure() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sent = await sinks.send_webhook(hook(f"http://127.0.0.1:{port}/", timeout="200ms"),
                                        SECRET, note(), NOW)
    finally:
        for w in accepted:
            w.close()
        server.close()
    assert (sent.ok, sent.retry, sent.error) == (False, True, "timed out after 0.2s")


async def test_a_garbled_answer_is_a_retryable_failure_not_an_exception() -> None:
    async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SMTP? no\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sent = await sinks.send_webhook(hook(f"http://127.0.0.1:{port}/"), SECRET, note(), NOW)
    finally:
        server.close()
    assert not sent.ok and sent.retry and "not an HTTP response" in (sent.error or "")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as server:
        yield server


def mail_sink(port: int) -> EmailSink:
    return EmailSink(type="email", to=["leads@example.com"], sender="sb@example.com",
                     host="127.0.0.1", port=port)


async def test_the_email_sink_sends_the_packet_with_a_stable_message_id(
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    sink = mail_sink(port)
    assert (await sinks.send_email(sink, note())).ok
    assert (await sinks.send_email(sink, note())).ok
    # The server ran handle_DATA before it answered 250: both messages are in the inbox.
    mails = [message_from_bytes(m) for _, m in inbox.messages]
    assert {m["Message-ID"] for m in mails} == {"<ntf-123@switchboard>"}
    assert mails[0][sinks.ID_HEADER] == "ntf-123"
    assert "case-pkt escalated (level 1)" in mails[0]["Subject"]
    text = mails[0].get_payload()[0].get_payload(decode=True).decode()  # type: ignore[index, union-attr]
    assert "Problem: Refund for a double charge" in text and "third time" in text
    assert "4111111111111111" not in text.replace(" ", "")


async def test_a_subject_with_a_newline_cannot_inject_headers_or_recipients(
    smtp: tuple[Inbox, int],
) -> None:
    inbox, port = smtp
    mail = sinks.email_of(mail_sink(port), note(problem=INJECTED))  # no exception
    assert "\n" not in mail["Subject"] and "\r" not in mail["Subject"]
    assert mail["Bcc"] is None and mail["X-Evil"] is None
    sent = await sinks.send_email(mail_sink(port), note(problem=INJECTED))
    assert sent.ok, sent
    [(recipients, raw)] = inbox.messages
    assert recipients == ["leads@example.com"]
    received = message_from_bytes(raw, policy=email.policy.default)  # unfolds the Subject
    assert received["Bcc"] is None and received["X-Evil"] is None
    assert "Refund please Bcc: x@evil.example X-Evil: 1" in received["Subject"]


async def test_an_unreachable_smtp_server_is_retryable_and_an_unmailable_message_is_not() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = await sinks.send_email(mail_sink(port), note())
    assert not down.ok and down.retry
    odd = await sinks.send_email(mail_sink(port), ce.EscalationResolved(
        case_id="c", escalation_id="e", reason="r", resolution="case_solved", resolved_at=NOW))
    assert not odd.ok and not odd.retry and "cannot build the e-mail" in (odd.error or "")


def test_header_text_removes_every_line_break_and_control_character() -> None:
    nasty = "a\r\nb\nc\rd\x00e\x85f\u2028g\u2029h\u200bi\ud800j"
    clean = sinks.header_text(nasty)
    assert clean == "a b c d e f g h i j"
    assert sinks.header_text("x" * 500) == "x" * 200
