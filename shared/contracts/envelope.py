"""CloudEvents 1.0 envelope in Kafka binary mode: attributes in `ce_*` headers, data in the body.

Structured mode (the whole event as `application/cloudevents+json` in the body) is accepted on input
too, because some front-end SDKs only speak that; Switchboard itself always publishes binary mode.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError

from shared.contracts.base import SCHEMA_VERSION, Contract

CE_PREFIX = "ce_"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"


class EnvelopeError(ValueError):
    """The message is not a usable CloudEvent; the reason goes to the dead-letter topic."""


class Envelope(Contract):
    specversion: str = Field(
        default="1.0", json_schema_extra={"const": "1.0"},
        description="CloudEvents version; only 1.0 is accepted.")
    id: str = Field(
        min_length=1, max_length=256,
        description="The event's unique id. Front-ends: your own id, stable across retries; "
                    "Switchboard derives the ids of everything the event causes from it.")
    source: str = Field(
        min_length=1, max_length=1024,
        description="Who produced the event, e.g. `acme/chat-widget` or `switchboard/intake`.")
    type: str = Field(
        min_length=1, max_length=256,
        description="The event type, e.g. `chat.message`: selects the payload schema.")
    time: datetime = Field(
        description="When it happened: RFC 3339 with a time zone offset (required).")
    subject: str | None = Field(
        default=None, max_length=256,
        description="The case id on every message Switchboard publishes.")
    datacontenttype: str = Field(
        default="application/json",
        description="The body's media type; `application/cloudevents+json` means structured "
                    "mode (the whole event in the body).")
    schemaversion: str = Field(
        default=SCHEMA_VERSION,
        description="The contracts' schema version (bumped on a breaking change).")
    traceparent: str | None = None

    def to_headers(self) -> dict[str, str]:
        headers = {
            "ce_specversion": self.specversion,
            "ce_id": self.id,
            "ce_source": self.source,
            "ce_type": self.type,
            "ce_time": self.time.isoformat(),
            "ce_schemaversion": self.schemaversion,
            "content-type": self.datacontenttype,
        }
        if self.subject is not None:
            headers["ce_subject"] = self.subject
        return headers

    @classmethod
    def from_kafka(cls, headers: dict[str, Any], body: bytes) -> tuple[Envelope, bytes]:
        """Return the envelope and the data bytes of a Kafka record, or raise EnvelopeError."""
        # Only the headers we read must be text: other tools may add binary headers of their own.
        text_headers = {
            k.lower(): _header_text(k, v) for k, v in headers.items()
            if v is not None and (k.lower().startswith(CE_PREFIX) or k.lower() == "content-type")
        }
        if text_headers.get("content-type", "").startswith(STRUCTURED_CONTENT_TYPE):
            return cls._from_structured(body)
        attributes = {
            k[len(CE_PREFIX) :]: v for k, v in text_headers.items() if k.startswith(CE_PREFIX)
        }
        if not attributes:
            raise EnvelopeError("no ce_* headers: not a CloudEvent in binary mode")
        if "content-type" in text_headers:
            attributes["datacontenttype"] = text_headers["content-type"]
        attributes.pop("traceparent", None)
        known = set(cls.model_fields)
        attributes = {k: v for k, v in attributes.items() if k in known}
        return _validated(attributes), body

    @classmethod
    def _from_structured(cls, body: bytes) -> tuple[Envelope, bytes]:
        # Every failure of the standard JSON module is a reason, never an escaping exception:
        # nesting deeper than the interpreter's recursion limit raises RecursionError, and an
        # integer of more than 4,300 digits raises ValueError (CVE-2020-10735's limit).
        try:
            document = json.loads(body)
        except RecursionError:
            raise EnvelopeError("structured CloudEvent nests too deeply") from None
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            raise EnvelopeError(f"structured CloudEvent is not JSON: {_brief(exc)}") from None
        if not isinstance(document, dict) or "data" not in document:
            raise EnvelopeError("structured CloudEvent has no 'data' member")
        try:
            data = json.dumps(document.pop("data")).encode()
        except RecursionError:
            raise EnvelopeError("structured CloudEvent's data nests too deeply") from None
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(f"structured CloudEvent's data: {_brief(exc)}") from None
        known = set(cls.model_fields)
        return _validated({k: v for k, v in document.items() if k in known}), data


def _validated(attributes: dict[str, Any]) -> Envelope:
    try:
        envelope = Envelope.model_validate(attributes)
    except ValidationError as exc:
        raise EnvelopeError(f"bad CloudEvents attributes: {_short(exc)}") from exc
    if envelope.specversion != "1.0":
        raise EnvelopeError(f"unsupported CloudEvents specversion {envelope.specversion[:16]!r}")
    for name in ("id", "source", "type", "subject", "datacontenttype", "schemaversion"):
        value = getattr(envelope, name)
        if value is not None and not _is_unicode(value):
            # JSON allows a lone surrogate escape ("\udc80"); no encoder downstream does.
            raise EnvelopeError(f"attribute {name!r} is not valid Unicode (lone surrogate)")
    if envelope.time.tzinfo is None:
        raise EnvelopeError("ce_time has no time zone offset")
    return envelope


def _header_text(name: str, value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"header {name[:64]!r} is not UTF-8: {_brief(exc)}") from None
    text = str(value)
    if not _is_unicode(text):
        raise EnvelopeError(f"header {name[:64]!r} is not valid Unicode (lone surrogate)")
    return text


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _brief(exc: Exception) -> str:
    """The library's own explanation, which names positions, never the input's content."""
    return str(exc)[:200]


def _short(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
