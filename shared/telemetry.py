"""OpenTelemetry set-up, once per process, with the exporter chosen by environment."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)


def make_tracer_provider(service_name: str, exporter: str) -> TracerProvider:
    """A tracer provider for one service: console, otlp (OTEL_EXPORTER_OTLP_* env) or none."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
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
