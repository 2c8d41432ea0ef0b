"""The one factory for Kafka clients: safe settings every service shares.

FastStream's defaults lose messages for us (auto-commit before processing, `acks=1`, consumers
starting at "latest", auto-created single-partition topics): every client is built here instead.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider


def make_broker(
    bootstrap_servers: str, *, client_id: str, tracer_provider: TracerProvider | None = None
) -> KafkaBroker:
    middlewares = []
    if tracer_provider is not None:
        middlewares.append(KafkaTelemetryMiddleware(tracer_provider=tracer_provider))
    return KafkaBroker(
        bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,  # implies acks="all": a record is acknowledged once replicated
        allow_auto_create_topics=False,  # topics are provisioned by `switchboard topics create`
        linger_ms=2,
        graceful_timeout=15.0,
        # FastStream logs every batch received and processed at INFO: at a few hundred batches
        # a second that is most of a service's log, so those lines go to DEBUG
        log_level=logging.DEBUG,
        middlewares=middlewares,
    )


async def raw_body(message: Any) -> bytes:
    """Hand handlers the undecoded bytes: the runtime validates them, and dead-letters failures.

    FastStream's default decoder parses JSON before the handler runs; on bad JSON the handler is
    never called, and a later acknowledgement would commit past the record: lost, not dead-lettered.
    """
    body: bytes = message.body
    return body


def subscriber_options(group_id: str, max_records: int = 200) -> dict[str, Any]:
    """How every subscriber consumes: its own group, from the earliest offset, manual acks.

    Acks are manual because the runtime acknowledges only after the decision is committed to
    PostgreSQL (or the message was dead-lettered): a crash before that means a redelivery, never a
    loss.
    """
    return {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.MANUAL,
        "decoder": raw_body,
        # Records handled in one transaction (runtime.process_batch): one commit per batch.
        "max_records": max_records,
        # How long a poll waits for records; FastStream then sleeps as long again after an
        # empty one, so a record arriving meanwhile waits up to twice this: keep it short.
        "batch_timeout_ms": 20,
        # A batch must finish within this or the consumer is dropped from its group (and the
        # batch redelivered): records with a parse deadline (email) come in smaller batches.
        "max_poll_interval_ms": 600_000,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 1_000,
    }
