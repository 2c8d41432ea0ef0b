"""The CloudEvents envelope: binary-mode headers out and back, and clear rejections."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import SCHEMA_VERSION, Envelope, EnvelopeError

WHEN = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
BODY = b'{"session_id": "s-1"}'

TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=60)
ZONES = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
# hypothesis takes naive bounds and attaches the zones itself
TIMES = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1),  # noqa: DTZ001
                     timezones=ZONES)


def headers(**overrides: Any) -> dict[str, Any]:
    base = {
        "ce_specversion": "1.0", "ce_id": "evt-1", "ce_source": "acme/chat-widget",
        "ce_type": "chat.message", "ce_time": WHEN.isoformat(), "content-type": "application/json",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def rejection(headers: dict[str, Any], body: bytes = BODY) -> str:
    with pytest.raises(EnvelopeError) as caught:
        Envelope.from_kafka(headers, body)
    return str(caught.value)


@given(id_=TEXT, source=TEXT, type_=TEXT, time=TIMES, subject=st.none() | TEXT,
       schemaversion=TEXT, as_bytes=st.booleans())
def test_headers_round_trip(id_: str, source: str, type_: str, time: datetime,
                            subject: str | None, schemaversion: str, as_bytes: bool) -> None:
    sent = Envelope(id=id_, source=source, type=type_, time=time, subject=subject,
                    schemaversion=schemaversion)
    written: dict[str, Any] = sent.to_headers()
    assert all(isinstance(v, str) for v in written.values())
    if as_bytes:  # what aiokafka hands a consumer
        written = {k: v.encode() for k, v in written.items()}
    received, body = Envelope.from_kafka(written, BODY)
    assert received == sent
    assert received.time.utcoffset() == time.utcoffset()
    assert body == BODY


def test_binary_mode_headers_are_the_ce_attributes() -> None:
    envelope = Envelope(id="e", source="switchboard/intake", type="case.opened", time=WHEN,
                        subject="case-1")
    assert envelope.to_headers() == {
        "ce_specversion": "1.0", "ce_id": "e", "ce_source": "switchboard/intake",
        "ce_type": "case.opened", "ce_time": "2025-03-14T09:26:53.589000+00:00",
        "ce_subject": "case-1", "ce_schemaversion": SCHEMA_VERSION,
        "content-type": "application/json",
    }


def test_defaults_for_optional_headers() -> None:
    envelope, _ = Envelope.from_kafka(headers(**{"content-type": None}), BODY)
    assert envelope.specversion == "1.0"
    assert envelope.datacontenttype == "application/json"
    assert envelope.schemaversion == SCHEMA_VERSION
    assert envelope.subject is None


def test_header_names_are_case_insensitive_and_extensions_are_ignored() -> None:
    envelope, _ = Envelope.from_kafka(
        {**{k.upper(): v for k, v in headers().items()}, "ce_partitionkey": "p",
         "ce_traceparent": "00-x", "x-other": b"\xff\xfe binary"}, BODY)
    assert (envelope.id, envelope.type, envelope.traceparent) == ("evt-1", "chat.message", None)


@pytest.mark.parametrize(("missing", "named"), [
    ("ce_id", "id"), ("ce_source", "source"), ("ce_type", "type"), ("ce_time", "time"),
])
def test_a_missing_required_header_is_named(missing: str, named: str) -> None:
    message = rejection(headers(**{missing: None}))
    assert message.startswith("bad CloudEvents attributes:")
    assert f"{named}: Field required" in message


def test_no_ce_headers_at_all() -> None:
    assert rejection({"content-type": "application/json"}) == \
        "no ce_* headers: not a CloudEvent in binary mode"
    assert "no ce_* headers" in rejection({})


@pytest.mark.parametrize(("override", "expected"), [
    ({"ce_time": "yesterday"}, "time: Input should be a valid datetime"),
    ({"ce_time": "2025-03-14T09:26:53"}, "ce_time has no time zone offset"),
    ({"ce_specversion": "0.3"}, "unsupported CloudEvents specversion '0.3'"),
    ({"ce_id": ""}, "id: String should have at least 1 character"),
    ({"ce_subject": "x" * 300}, "subject: String should have at most 256 characters"),
])
def test_invalid_headers_are_explained(override: dict[str, str], expected: str) -> None:
    assert expected in rejection(headers(**override))


def test_bytes_header_values() -> None:
    envelope, body = Envelope.from_kafka({k: v.encode() for k, v in headers().items()}, BODY)
    assert envelope.id == "evt-1" and envelope.time == WHEN and body == BODY


def test_a_non_utf8_ce_header_is_rejected_by_name() -> None:
    message = rejection({**headers(), "ce_id": b"\xff\xfeevt"})
    assert message.startswith("header 'ce_id' is not UTF-8")


def test_a_non_utf8_header_we_do_not_read_is_ignored() -> None:
    envelope, _ = Envelope.from_kafka({**headers(), "x-binary-trace": b"\x00\xff\xfe"}, BODY)
    assert envelope.id == "evt-1"


def structured(document: Any) -> tuple[dict[str, Any], bytes]:
    return ({"content-type": b"application/cloudevents+json; charset=utf-8"},
            json.dumps(document).encode())


def test_structured_mode_is_accepted() -> None:
    data = {"session_id": "s-1", "text": "hi"}
    envelope, body = Envelope.from_kafka(*structured({
        "specversion": "1.0", "id": "evt-9", "source": "sdk", "type": "chat.message",
        "time": "2025-03-14T09:26:53Z", "subject": "s-1", "partitionkey": "ignored",
        "data": data,
    }))
    assert (envelope.id, envelope.source, envelope.type, envelope.subject) == \
        ("evt-9", "sdk", "chat.message", "s-1")
    assert envelope.time == datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
    assert json.loads(body) == data


@pytest.mark.parametrize(("body", "expected"), [
    (b"{not json", "structured CloudEvent is not JSON"),
    (b"\xff\xfe", "structured CloudEvent is not JSON"),
    (b"[1, 2]", "structured CloudEvent has no 'data' member"),
    (json.dumps({"specversion": "1.0", "id": "e", "source": "s", "type": "t",
                 "time": "2025-01-01T00:00:00Z"}).encode(),
     "structured CloudEvent has no 'data' member"),
    (json.dumps({"specversion": "1.0", "id": "e", "source": "s",
                 "time": "2025-01-01T00:00:00Z", "data": {}}).encode(),
     "type: Field required"),
])
def test_bad_structured_events_are_explained(body: bytes, expected: str) -> None:
    assert expected in rejection({"content-type": "application/cloudevents+json"}, body)
