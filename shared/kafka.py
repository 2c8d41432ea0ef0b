"""The one factory for Kafka clients: safe settings every service shares.

FastStream's defaults lose messages for us (auto-commit before processing, `acks=1`, consumers
starting at "latest", auto-created single-partition topics): every client is built here instead.

Security (TLS, SASL/SCRAM) comes from the environment (`KAFKA_SECURITY_PROTOCOL`,
`KAFKA_SASL_*`, `KAFKA_SSL_*`, see shared/settings.py) and applies to every client the project
builds: the services' broker and its subscribers, the outbox relay's producer, the topic admin
client and the runtime's start-up probe all take their connection options from
`client_options()`.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from shared.settings import Settings, get_settings


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS to the brokers: their certificate must chain to KAFKA_SSL_CAFILE (else the system's
    CAs) and name the host that was dialled; a client certificate if one is configured."""
    password = settings.kafka_ssl_key_password.get_secret_value() or None
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ssl_cafile or None,
        certfile=settings.kafka_ssl_certfile or None,
        keyfile=settings.kafka_ssl_keyfile or None,
        password=password,
    )
    return context


def client_options(settings: Settings | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured security: protocol, TLS context, SASL.

    Empty for PLAINTEXT (the local default). Used by every plain aiokafka client (producer,
    admin, probe); `make_broker` hands the same settings to FastStream as its `security`.
    """
    s = settings or get_settings()
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(s)
    if protocol.startswith("SASL_"):
        if not s.kafka_sasl_username:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME")
        options |= {
            "sasl_mechanism": s.kafka_sasl_mechanism,
            "sasl_plain_username": s.kafka_sasl_username,
            "sasl_plain_password": s.kafka_sasl_password.get_secret_value(),
        }
    return options


def broker_security(settings: Settings | None = None) -> BaseSecurity | None:
    """The same options as FastStream's `security` object (it also describes them in AsyncAPI)."""
    options = client_options(settings)
    if not options:
        return None
    context = options.get("ssl_context")
    if "sasl_mechanism" not in options:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    kind = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256,
            "PLAIN": SASLPlaintext}[options["sasl_mechanism"]]
    return kind(options["sasl_plain_username"], options["sasl_plain_password"],
                ssl_context=context, use_ssl=context is not None)


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """"host:port,host:port" as a list of addresses."""
    return [a.strip() for a in bootstrap_servers.split(",") if a.strip()]


def make_broker(
    bootstrap_servers: str, *, client_id: str, tracer_provider: TracerProvider | None = None,
    settings: Settings | None = None,
) -> KafkaBroker:
    """The services' broker. Security from `settings` (default: the environment's)."""
    middlewares = []
    # FastStream's telemetry middleware opens a span per batch, and before it reads each record's
    # trace context (links) and baggage, even for spans that are never recorded: with no exporter
    # (ALWAYS_OFF, shared/telemetry.py) it is left out. The runtime's own span per record carries
    # each contact's trace id either way.
    if tracer_provider is not None and tracer_provider.sampler is not ALWAYS_OFF:
        middlewares.append(KafkaTelemetryMiddleware(tracer_provider=tracer_provider))
    return KafkaBroker(
        # A list: FastStream hands a string to aiokafka as one host, so "a:9092,b:9092" (the
        # usual KAFKA_BOOTSTRAP_SERVERS of a cluster) would never connect.
        bootstrap_list(bootstrap_servers),
        client_id=client_id,
        enable_idempotence=True,  # implies acks="all": a record is acknowledged once replicated
        allow_auto_create_topics=False,  # topics are provisioned by `switchboard topics create`
        linger_ms=2,
        graceful_timeout=15.0,
        # FastStream logs every batch received and processed at INFO: at a few hundred batches
        # a second that is most of a service's log, so those lines go to DEBUG
        log_level=logging.DEBUG,
        middlewares=middlewares,
        # Subscribers' consumers are built from the broker's connection: the same security.
        security=broker_security(settings),
        # No dependency injection: a handler gets the message itself (the decoder below), and
        # nothing else. With it, FastDepends resolved the handler's message argument through a
        # synchronous context lookup that it runs in a worker thread, a thread hop per batch:
        # at a steady 25 contacts/s (hundreds of small batches a second) 5-10 % of each
        # service's samples, and system time from the threads' wake-ups.
        apply_types=False,
    )


async def the_message(message: Any) -> Any:
    """Hand handlers the message itself, undecoded: the runtime validates each record and
    dead-letters failures.

    FastStream's default decoder parses JSON before the handler runs; on bad JSON the handler is
    never called, and a later acknowledgement would commit past the record: lost, not dead-lettered.
    """
    return message


def subscriber_options(group_id: str, max_records: int = 200) -> dict[str, Any]:
    """How every subscriber consumes: its own group, from the earliest offset, manual acks.

    Acks are manual because the runtime acknowledges only after the decision is committed to
    PostgreSQL (or the message was dead-lettered): a crash before that means a redelivery, never a
    loss. Connection security is the broker's (`make_broker`): FastStream builds each
    subscriber's consumer with the broker's connection options.
    """
    return {
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.MANUAL,
        "decoder": the_message,
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
