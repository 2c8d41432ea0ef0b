"""OpenTelemetry set-up, once per process, with the exporter chosen by environment."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF


def make_tracer_provider(service_name: str, exporter: str) -> TracerProvider:
    """A tracer provider for one service: console, otlp (OTEL_EXPORTER_OTLP_* env) or none.

    With no exporter nothing would ever read a span, so none is recorded (unless
    OTEL_TRACES_SAMPLER says otherwise): every span is then a non-recording one that still
    carries its trace id (the case log's `trace_id`, the `traceparent` of what we publish),
    without the attributes, events and timestamps a recorded span costs on every record.
    Otherwise the SDK's sampler is the one OTEL_TRACES_SAMPLER names (default: all). The
    `traceparent` a service without an exporter publishes says "not sampled", which a service
    downstream with the default parent-based sampler follows: export from all of them or none.
    """
    sampler = ALWAYS_OFF if exporter == "none" and not os.environ.get("OTEL_TRACES_SAMPLER") \
        else None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                              sampler=sampler)
    chosen: SpanExporter | None = None
    if exporter == "console":
        chosen = ConsoleSpanExporter()
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        chosen = OTLPSpanExporter()
    if chosen is not None:
        provider.add_span_processor(BatchSpanProcessor(chosen))
    return provider


def current_trace_id() -> str | None:
    """The trace id of the span being processed, as 32 hex digits, for the case log."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def consume_attributes(record: Any, group_id: str | None = None) -> dict[str, Any]:
    """Messaging semantic-convention attributes (OpenTelemetry semconv 1.27+) of a span that
    processes one Kafka record: for the per-record span the runtime opens in the record's own
    trace (FastStream's batch spans carry the older names, and start traces of their own)."""
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "messaging.message.body.size": len(record.value or b""),
    }
    if group_id:
        attributes["messaging.consumer.group.name"] = group_id
    if record.key is not None:
        key = record.key
        attributes["messaging.kafka.message.key"] = (
            key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key))
    for name, value in record.headers or ():
        if name == "ce_id" and value is not None:
            attributes["messaging.message.id"] = value.decode("utf-8", "replace")
    return attributes
