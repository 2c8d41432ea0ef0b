"""One contact's path through the four services is one trace (spans in an in-memory exporter).

The services run in this test's process, on the real broker and database, sharing one tracer
provider whose spans the test reads back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.escalation.app import wire as wire_escalation
from services.intake.app import wire as wire_intake
from services.router.app import wire as wire_router
from services.sla.app import wire as wire_sla
from shared.caselog.store import read_case
from shared.clock import SystemClock
from shared.contracts.topics import INBOUND_VOICE
from shared.infra.local import Endpoints
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from tests.support import contacts
from tests.support.cases import stored_key
from tests.support.kafka import cloudevent_headers, publish, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def in_process_services(
    endpoints: Endpoints,
) -> AsyncIterator[tuple[InMemorySpanExporter, list[ServiceRuntime]]]:
    exporter = InMemorySpanExporter()

    def provider_for(name: str) -> TracerProvider:
        # One provider per service, as in production, all writing to the same exporter.
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    settings = Settings(
        kafka_bootstrap_servers=endpoints.kafka_bootstrap_servers,
        database_url=endpoints.database_url, database_admin_url=endpoints.database_admin_url,
        sla_first_response_seconds=json.loads('{"email": 3600, "chat": 3600, "voice": 2}'),
        timer_tick_seconds=0.2,
    )
    runtimes = [
        wire(ServiceRuntime(name, settings, SystemClock(), provider_for(name)))
        for name, wire in (("intake", wire_intake), ("router", wire_router), ("sla", wire_sla),
                           ("escalation", wire_escalation))
    ]
    for runtime in runtimes:
        await runtime.start()
    yield exporter, runtimes
    for runtime in runtimes:
        await runtime.stop()


async def test_spans_of_one_contact_across_the_four_services_share_one_trace(
    endpoints: Endpoints, in_process_services: tuple[InMemorySpanExporter, list[ServiceRuntime]],
    app_db: asyncpg.Connection,
) -> None:
    exporter, _ = in_process_services
    call_id = f"c-{uuid.uuid4().hex[:10]}"
    await publish(endpoints.kafka_bootstrap_servers, INBOUND_VOICE,
                  contacts.call_started(call_id), cloudevent_headers("call.started"), key=call_id)

    async def escalated_case() -> str | None:
        case_id: str | None = await app_db.fetchval(
            "SELECT case_id FROM intake_thread WHERE thread_key = $1",
            stored_key(f"call:{call_id}"))
        if case_id is None:
            return None
        types = {r.type for r in await read_case(app_db, case_id)}
        return case_id if "escalation.notified" in types else None

    case_id = await wait_for(escalated_case, timeout=90, what="the call to escalate")
    rows = await read_case(app_db, case_id)
    trace_ids = {r.trace_id for r in rows}
    assert len(trace_ids) == 1
    (trace_id,) = trace_ids
    assert trace_id is not None

    def spans_of_trace() -> set[str] | None:
        names = {s.name for s in exporter.get_finished_spans()
                 if format(s.context.trace_id, "032x") == trace_id}
        # Each service consumed (or, for sla, fired) within the trace.
        wanted = {"helpdesk.inbound.voice handle", "cases.events handle", "sla.fire"}
        return names if wanted <= names else None

    def services_in_trace() -> set[object] | None:
        found = {s.resource.attributes.get("service.name") for s in exporter.get_finished_spans()
                 if format(s.context.trace_id, "032x") == trace_id}
        return found if len(found) == 4 else None

    assert await wait_for(spans_of_trace, timeout=30, what="the spans of the trace")
    found = await wait_for(services_in_trace, timeout=30, what="spans of all four services")
    assert found == {"intake", "router", "sla", "escalation"}


async def test_each_service_names_itself_to_postgresql(
    in_process_services: tuple[InMemorySpanExporter, list[ServiceRuntime]],
    app_db: asyncpg.Connection,
) -> None:
    # An operator reading pg_stat_activity (or the log, `%a`) sees which service holds a
    # session, waits on a lock or runs a slow statement.
    _, runtimes = in_process_services
    names = {r["application_name"] for r in await app_db.fetch(
        "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()")}
    assert {f"switchboard-{rt.name}" for rt in runtimes} <= names
    assert "switchboard-router-leader" in names  # the session holding the leadership lock
