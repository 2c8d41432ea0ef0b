"""The contracts as documents for front-ends: JSON Schema per event type and an AsyncAPI 3.0 file.

Everything here is generated from the models, the topic list and the envelope; nothing in
`docs/schemas/` or `docs/asyncapi.json` is written by hand. `switchboard contracts export docs`
writes the files, `switchboard contracts check docs` fails when they are stale.

Layout of the generated tree (relative to the docs folder):
- `schemas/<topic>/<ce_type>.json`: one self-contained JSON Schema (draft 2020-12) per event type.
- `asyncapi.json`: every topic as a channel, its messages with the `ce_*` headers and payloads,
  and who sends and who receives what.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.channels import registry
from shared.contracts import topics as t
from shared.contracts.agents import AGENT_ACTIVITY_TYPES, AGENT_TOPIC_TYPES
from shared.contracts.base import SCHEMA_VERSION, Contract
from shared.contracts.case_events import (
    CASE_EVENT_TYPES,
    ROUTING_OFFER_TYPES,
    SUPERVISOR_NOTIFICATION_TYPES,
)
from shared.contracts.dead_letter import DeadLetterHeaders
from shared.contracts.envelope import STRUCTURED_CONTENT_TYPE, Envelope

ASYNCAPI_FILE = "asyncapi.json"
SCHEMAS_DIR = "schemas"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMA_ID_PREFIX = "urn:switchboard:schema"

Side = Literal["front-end", "switchboard"]


@dataclass(frozen=True)
class TopicDoc:
    """What a front-end needs to know about one topic besides its message schemas."""

    topic: str
    types: Mapping[str, type[Contract]]
    key: str  # what the record key holds
    sent_by: Side
    senders: str
    receivers: str
    description: str
    subject: str | None = None  # what `ce_subject` holds, when Switchboard always sets it


@dataclass(frozen=True)
class DeadLetterDoc:
    topic: str
    source: TopicDoc


def _inbound_docs() -> tuple[TopicDoc, ...]:
    """One topic per registered channel (shared/channels/), as the channel describes it."""
    return tuple(
        TopicDoc(spec.topic, spec.contracts, key=spec.topic_text.key, sent_by="front-end",
                 senders=spec.topic_text.senders, receivers="Switchboard intake",
                 description=spec.topic_text.description)
        for spec in registry.channels())


def catalogue() -> tuple[TopicDoc, ...]:
    """Every topic with messages of its own: the channels' inbound topics, then the others."""
    return (*_inbound_docs(), *_OTHER_TOPICS)


_OTHER_TOPICS: tuple[TopicDoc, ...] = (
    TopicDoc(
        t.AGENTS, AGENT_TOPIC_TYPES,
        key="the agent id (the topic is compacted: the latest record per agent is its state)",
        sent_by="front-end", senders="agent desktops and workforce-management tools",
        receivers="Switchboard router",
        description="Each record is an agent's whole current profile: skills, tier, languages, "
                    "capacity per channel, presence.",
    ),
    TopicDoc(
        t.AGENT_ACTIVITY, AGENT_ACTIVITY_TYPES,
        key="the case id, so that what agents do on a case stays in order",
        sent_by="front-end", senders="agent desktops",
        receivers="Switchboard router and escalation",
        description="What agents do on cases: accept or decline offers, reply, solve.",
    ),
    TopicDoc(
        t.CASE_EVENTS, CASE_EVENT_TYPES,
        key="the case id: each case's events are ordered", subject="the case id",
        sent_by="switchboard", senders="Switchboard services (intake, router, sla, escalation)",
        receivers="Switchboard router, sla and escalation; any read-only consumer",
        description="The canonical case stream: every event of the immutable case log.",
    ),
    TopicDoc(
        t.ROUTING_OFFERS, ROUTING_OFFER_TYPES,
        key="the agent id: each agent's offers are ordered", subject="the case id",
        sent_by="switchboard", senders="Switchboard router",
        receivers="agent desktops (answer on helpdesk.agent_activity)",
        description="Offers of a case to an agent; the agent accepts or declines with "
                    "`agent.offer_accepted` / `agent.offer_declined`.",
    ),
    TopicDoc(
        t.SUPERVISOR_NOTIFICATIONS, SUPERVISOR_NOTIFICATION_TYPES,
        key="the case id", subject="the case id",
        sent_by="switchboard", senders="Switchboard escalation",
        receivers="supervisor tools",
        description="Escalations with the warm-transfer packet; `notification_id` is stable, "
                    "so a repeated record can be dropped.",
    ),
)


# --- naming --------------------------------------------------------------------------------
def schema_path(topic: str, ce_type: str) -> str:
    return f"{SCHEMAS_DIR}/{topic}/{ce_type}.json"


def schema_id(topic: str, ce_type: str) -> str:
    return f"{SCHEMA_ID_PREFIX}:{topic}:{ce_type}:v{SCHEMA_VERSION}"


def channel_id(topic: str) -> str:
    words = topic.replace("_", ".").split(".")
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _doc_text(model: type[BaseModel]) -> str:
    return inspect.cleandoc(model.__doc__) if model.__doc__ else ""


def _catalogue() -> list[TopicDoc | DeadLetterDoc]:
    """Every provisioned topic, documented; a topic without documentation is an error."""
    docs = catalogue()
    by_name = {d.topic: d for d in docs}
    documented: list[TopicDoc | DeadLetterDoc] = []
    for spec in t.all_topics():
        if spec.name in by_name:
            documented.append(by_name[spec.name])
            continue
        source = next((d for d in docs if t.dlq(d.topic) == spec.name), None)
        if source is None:
            raise LookupError(f"topic {spec.name!r} is not documented in shared.contracts.export")
        documented.append(DeadLetterDoc(spec.name, source))
    return documented


# --- JSON Schema per event type --------------------------------------------------------------
def event_schema(doc: TopicDoc, ce_type: str) -> dict[str, Any]:
    model = doc.types[ce_type]
    generated = model.model_json_schema()
    generated.pop("title", None)
    generated.pop("description", None)
    text = _doc_text(model)
    description = (f"{text}\n\n" if text else "") + (
        f"CloudEvents type `{ce_type}` on Kafka topic `{doc.topic}`, schema version "
        f"{SCHEMA_VERSION} (header `ce_schemaversion`). Record key: {doc.key}."
    )
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(doc.topic, ce_type),
        "title": f"{ce_type} ({model.__name__})",
        "description": description,
        "x-cloudevents-type": ce_type,
        "x-kafka-topic": doc.topic,
        "x-schema-version": SCHEMA_VERSION,
        **generated,
    }


def event_schemas() -> dict[str, dict[str, Any]]:
    """Relative path → JSON Schema document, for every event type of every topic."""
    return {
        schema_path(doc.topic, ce_type): event_schema(doc, ce_type)
        for doc in catalogue()
        for ce_type in doc.types
    }


# --- CloudEvents headers ---------------------------------------------------------------------
def header_names() -> dict[str, str]:
    """Envelope attribute → Kafka header, as `Envelope.to_headers` writes them."""
    sample_values: dict[str, Any] = {
        name: f"<{name}>" for name, f in Envelope.model_fields.items() if f.annotation != datetime
    }
    sample_values["time"] = datetime(2000, 1, 1, tzinfo=UTC)
    sample = Envelope.model_validate(sample_values)
    written = sample.to_headers()
    names: dict[str, str] = {}
    for attribute in Envelope.model_fields:
        value = getattr(sample, attribute)
        text = value.isoformat() if isinstance(value, datetime) else value
        header = next((h for h, v in written.items() if v == text), None)
        if header is not None:
            names[attribute] = header
    unmapped = set(written) - set(names.values())
    if unmapped:
        raise LookupError(f"headers without an envelope attribute: {sorted(unmapped)}")
    return names


def _header_property(schema: dict[str, Any]) -> dict[str, Any]:
    """A header's schema: a header is present or absent, never null."""
    prop = {k: v for k, v in schema.items() if k not in ("title", "anyOf", "default")}
    for branch in schema.get("anyOf", []):
        if branch.get("type") != "null":
            prop = {**branch, **prop}
    if "default" in schema and schema["default"] is not None:
        prop["default"] = schema["default"]
    return prop


def cloudevents_headers_schema() -> dict[str, Any]:
    envelope = Envelope.model_json_schema()["properties"]
    names = header_names()
    properties = {header: _header_property(envelope[attr]) for attr, header in names.items()}
    properties["traceparent"] = {
        "type": "string",
        "description": "Optional W3C trace context, read and written by the OpenTelemetry "
                       "Kafka instrumentation when tracing is on.",
    }
    required = [names[a] for a, f in Envelope.model_fields.items() if f.is_required()]
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode: one `ce_<attribute>` "
                       "header per attribute, UTF-8 strings; the body is the event's data. "
                       f"Structured mode (`content-type: {STRUCTURED_CONTENT_TYPE}`, the whole "
                       "event as JSON in the body) is accepted on input too.",
        "properties": properties,
        "required": required,
        "additionalProperties": True,
    }


def dead_letter_headers_schema() -> dict[str, Any]:
    schema = DeadLetterHeaders.model_json_schema()
    schema.pop("title", None)
    for prop in schema["properties"].values():
        prop.pop("title", None)
    schema["additionalProperties"] = True
    return schema


# --- AsyncAPI --------------------------------------------------------------------------------
@dataclass
class _Components:
    schemas: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, Any] = field(default_factory=dict)


def _payload_schemas() -> tuple[dict[type[BaseModel], dict[str, Any]], dict[str, Any]]:
    """Each payload model's `$ref`, and the schemas of all models under components/schemas."""
    models = sorted({m for d in catalogue() for m in d.types.values()}, key=lambda m: m.__name__)
    refs, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = defs["$defs"]
    return ({m: dict(refs[(m, "validation")]) for m in models}, dict(sorted(schemas.items())))


def _message(doc: TopicDoc, ce_type: str, payload_ref: dict[str, Any]) -> dict[str, Any]:
    model = doc.types[ce_type]
    text = _doc_text(model)
    header_rule: dict[str, Any] = {
        "type": "object",
        "properties": {"ce_type": {"const": ce_type}},
    }
    if doc.sent_by == "switchboard":
        # Envelope.to_headers always writes these; Switchboard sets the subject to the case id.
        names = header_names()
        header_rule["required"] = [h for a, h in names.items() if doc.subject or a != "subject"]
        if doc.subject:
            header_rule["properties"][names["subject"]] = {"description": doc.subject}
    return {
        "name": ce_type,
        "title": model.__name__,
        "summary": text.splitlines()[0] if text else ce_type,
        **({"description": text} if text else {}),
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "allOf": [{"$ref": "#/components/schemas/CloudEventsHeaders"}, header_rule],
        },
        "payload": payload_ref,
        "bindings": {"kafka": {"key": {"type": "string", "description": doc.key},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
        "x-json-schema": schema_path(doc.topic, ce_type),
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "dead-letter",
        "title": "Dead letter",
        "summary": "A record a Switchboard service could not process.",
        "description": "The value is the rejected record's original bytes and the key its "
                       "original key; the `dlq_*` headers say why and where it came from. The "
                       "consumer moved on: fix the producer, then replay the value if needed.",
        "contentType": "application/octet-stream",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"type": "string", "format": "binary",
                    "description": "The original record's value, unchanged."},
        "bindings": {"kafka": {"key": {"type": "string",
                                       "description": "the original record's key"},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every Switchboard topic, from Switchboard's point of view."""
    components = _Components()
    components.schemas["CloudEventsHeaders"] = cloudevents_headers_schema()
    components.schemas["DeadLetterHeaders"] = dead_letter_headers_schema()
    payload_refs, payload_schemas = _payload_schemas()
    components.schemas.update(payload_schemas)
    components.messages["deadLetter"] = _dead_letter_message()
    specs = {s.name: s for s in t.all_topics()}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for doc in _catalogue():
        cid = channel_id(doc.topic)
        compacted = specs[doc.topic].compacted
        binding = {"kafka": {
            "topic": doc.topic,
            "topicConfiguration": {"cleanup.policy": ["compact" if compacted else "delete"]},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }}
        if isinstance(doc, DeadLetterDoc):
            messages = {"deadLetter": {"$ref": "#/components/messages/deadLetter"}}
            description = (f"Dead letters of `{doc.source.topic}`: records a Switchboard service "
                           "rejected (bad envelope, schema violation, oversized, or failing "
                           "processing), with the reason and the source position in `dlq_*` "
                           "headers.")
            sent_by: Side = "switchboard"
            senders, receivers = "Switchboard services", "operators"
        else:
            messages = {}
            for ce_type in doc.types:
                message_key = f"{cid}.{ce_type}"
                components.messages[message_key] = _message(
                    doc, ce_type, payload_refs[doc.types[ce_type]])
                messages[ce_type] = {"$ref": f"#/components/messages/{message_key}"}
            description = f"{doc.description} Record key: {doc.key}."
            sent_by, senders, receivers = doc.sent_by, doc.senders, doc.receivers
        channels[cid] = {
            "address": doc.topic,
            "title": doc.topic,
            "description": description,
            "messages": messages,
            "bindings": binding,
        }
        action = "receive" if sent_by == "front-end" else "send"
        operations[f"{action}{cid[:1].upper()}{cid[1:]}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "title": f"{senders} → {receivers}",
            "summary": f"Sent by {senders}; received by {receivers}.",
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in messages],
            "x-sent-by": sent_by,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Switchboard",
            "version": SCHEMA_VERSION,
            "description": (
                "Event contracts of Switchboard, the ticket-routing backbone. Every message is a "
                "CloudEvent 1.0 in Kafka binary mode: attributes in `ce_*` headers, JSON data in "
                "the body. Operations are Switchboard's: `receive` marks what front-ends send, "
                "`send` what Switchboard publishes. Generated from `shared/contracts` by "
                "`switchboard contracts export docs`; do not edit."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components.schemas, "messages": components.messages},
    }


# --- files -----------------------------------------------------------------------------------
def _json_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """Relative path → file content of every generated document."""
    files = {path: _json_text(schema) for path, schema in event_schemas().items()}
    files[ASYNCAPI_FILE] = _json_text(asyncapi())
    return dict(sorted(files.items()))


@dataclass(frozen=True)
class Plan:
    """How a docs folder differs from what the code generates."""

    added: list[str]
    changed: list[str]
    removed: list[str]  # generated files the code no longer produces
    unchanged: list[str]

    @property
    def stale(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def plan(directory: Path, files: Mapping[str, str] | None = None) -> Plan:
    """Compare `directory` with the generated files (reads, never writes)."""
    wanted = render() if files is None else files
    added, changed, unchanged = [], [], []
    for path, text in wanted.items():
        target = directory / path
        if not target.exists():
            added.append(path)
        elif target.read_text(encoding="utf-8") != text:
            changed.append(path)
        else:
            unchanged.append(path)
    present = sorted(
        p.relative_to(directory).as_posix() for p in (directory / SCHEMAS_DIR).rglob("*.json")
    ) if (directory / SCHEMAS_DIR).is_dir() else []
    removed = [p for p in present if p not in wanted]
    return Plan(added, changed, removed, unchanged)
