"""Production cluster settings against the real thing: Kafka over SASL_SSL (SCRAM-SHA-512) and
PostgreSQL over TLS with `sslmode=verify-full`, all from environment variables.

The local pair is started in its secure mode (`switchboard infra up --secure`): the broker has
no plaintext listener for clients and PostgreSQL accepts TLS connections only (`hostssl`), with
a throwaway CA that every client verifies. The four services run as processes configured by
the environment alone (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_CAFILE, DATABASE_URL
with sslmode=verify-full&sslrootcert=…) and take a call from intake to escalation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from shared.caselog.store import read_case
from shared.contracts.topics import INBOUND_VOICE
from shared.infra import tls
from shared.infra.local import Endpoints
from shared.kafka import client_options
from shared.logs import RateLimitedLog
from shared.outbox import make_producer
from shared.runtime import wait_for_kafka
from tests.support import contacts
from tests.support.cases import stored_key
from tests.support.clusters import client_env, cluster
from tests.support.infra import TEST_STATE_DIR
from tests.support.kafka import cloudevent_headers, wait_for
from tests.support.services import ServiceProcesses

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture(scope="module")
def secure() -> Iterator[Endpoints]:
    with cluster("secure", secure=True) as (endpoints, timings):
        print(f"[switchboard] secure cluster ready in {timings['ready']:.1f}s")
        yield endpoints


@pytest.fixture
def secure_env(secure: Endpoints) -> Iterator[Endpoints]:
    """This test's own clients use the secure settings (the module's were restored since)."""
    with client_env(secure):
        yield secure


def _without_tls(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((*parts[:3], "sslmode=disable", ""))


async def test_a_call_goes_from_intake_to_escalation_over_sasl_ssl_and_tls(
    secure_env: Endpoints,
) -> None:
    endpoints = secure_env
    env = endpoints.as_env()
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "sslmode=verify-full" in env["DATABASE_URL"]
    procs = ServiceProcesses(endpoints, TEST_STATE_DIR.parent / "test-secure" / "logs" / "svc", {})
    procs.start_all()
    try:
        # The outbox relay's producer: the same settings, from the environment.
        producer = make_producer(endpoints.kafka_bootstrap_servers, "test-secure-front-end")
        await producer.start()
        call_id = f"c-{uuid.uuid4().hex[:10]}"
        try:
            await producer.send_and_wait(
                INBOUND_VOICE, json.dumps(contacts.call_started(call_id)).encode(),
                key=call_id.encode(),
                headers=[(k, v.encode()) for k, v in cloudevent_headers("call.started").items()])
        finally:
            await producer.stop()

        conn = await asyncpg.connect(endpoints.database_url)  # verify-full
        try:
            async def escalated() -> list[str] | None:
                case_id = await conn.fetchval(
                    "SELECT case_id FROM intake_thread WHERE thread_key = $1",
                        stored_key(f"call:{call_id}"))
                if case_id is None:
                    return None
                types = [r.type for r in await read_case(conn, case_id)]
                return types if "escalation.notified" in types else None

            types = await wait_for(escalated, timeout=120, what="the call to be escalated")
            assert types[0] == "case.opened" and "sla.breached" in types, types
            assert all(procs.alive().values()), procs.alive()
            # Every connection the services hold to PostgreSQL is encrypted.
            sessions = await asyncpg.connect(endpoints.database_superuser_url)
            try:
                rows = await sessions.fetch(
                    "SELECT a.application_name, s.ssl, s.version FROM pg_stat_activity a"
                    " JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'switchboard_app'")
            finally:
                await sessions.close()
            assert rows and all(r["ssl"] for r in rows), rows
            assert {r["version"] for r in rows} <= {"TLSv1.2", "TLSv1.3"}
        finally:
            await conn.close()
    finally:
        procs.stop_all()


async def test_the_runtime_probe_and_admin_client_connect_with_the_settings(
    secure_env: Endpoints,
) -> None:
    options = client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    probe_log = RateLimitedLog(logging.getLogger("test"), every_seconds=10)
    await asyncio.wait_for(wait_for_kafka(secure_env.kafka_bootstrap_servers, probe_log), 30)
    admin = AIOKafkaAdminClient(bootstrap_servers=secure_env.kafka_bootstrap_servers, **options)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, "cases.events")])
        assert described
    finally:
        await admin.close()


async def _produce(bootstrap: str, **options: object) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5_000,
                                **options)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(producer.start(), timeout=20)
        await asyncio.wait_for(producer.send_and_wait("cases.events.dlq", b"x"), timeout=20)
    finally:
        await producer.stop()


async def test_kafka_refuses_plaintext_a_wrong_password_and_an_unknown_ca(
    secure_env: Endpoints, tmp_path: Path,
) -> None:
    bootstrap = secure_env.kafka_bootstrap_servers
    good = client_options()
    # No TLS at all: the broker's TLS listener never completes a Kafka handshake.
    with pytest.raises((KafkaConnectionError, KafkaError, TimeoutError)):
        await _produce(bootstrap)
    # TLS, but a wrong SCRAM password.
    with pytest.raises((KafkaError, TimeoutError)):
        await _produce(bootstrap, **{**good, "sasl_plain_password": "not-the-password"})
    # The right password, but the client trusts another CA: the broker's certificate fails.
    other = tls.ensure(tmp_path)
    with pytest.raises((KafkaConnectionError, KafkaError, TimeoutError, ssl.SSLError)):
        await _produce(bootstrap, **{**good, "ssl_context": create_ssl_context(
            cafile=str(other.ca))})
    # And the right settings work.
    await _produce(bootstrap, **good)


async def test_postgresql_refuses_connections_without_tls_or_with_an_unknown_ca(
    secure_env: Endpoints, tmp_path: Path,
) -> None:
    url = secure_env.database_url
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(_without_tls(url))
    other = tls.ensure(tmp_path)
    wrong_ca = url.replace(str(Path(secure_env.extra_env["KAFKA_SSL_CAFILE"])), str(other.ca))
    assert wrong_ca != url
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncpg.connect(wrong_ca)
    # verify-full checks the name too: the certificate names localhost and 127.0.0.1 only.
    conn = await asyncpg.connect(url.replace("@127.0.0.1:", "@localhost:"))
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()
