"""Traces received for real: the four services export OTLP/HTTP to an OpenTelemetry Collector
(built here from its Go modules, tests/support/otelcol), which forwards what it received to a
decoder in this test; each contact is one trace end to end.

The services run as processes with OTEL_EXPORTER=otlp and the standard OTEL_EXPORTER_OTLP_*
variables. Two calls are placed; each breaches its SLA, escalates, and (with a 2-second
acknowledgement timeout) is re-escalated by the escalation service's timer. For each call the
test checks what arrived at the receiver:

- one trace: every row of the case's log carries the same trace id, the other call's another;
- the trace is one tree: a single root (intake's span for the inbound record) and every other
  span's parent among the received spans, so the outbox relay's copied `traceparent` really
  continued the decision's trace on every hop (intake -> router, sla, escalation);
- spans of all four services, including the timers: `sla.fire` and `escalation.fire`, and the
  timer's log rows (escalation.reescalated) carry the same trace id;
- FastStream's own Kafka spans arrive with the messaging semantic-convention attributes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from shared.caselog.store import read_case
from shared.contracts.topics import CASE_EVENTS, INBOUND_VOICE
from shared.infra.local import Endpoints
from tests.support import contacts
from tests.support.cases import stored_key
from tests.support.infra import TEST_STATE_DIR
from tests.support.kafka import cloudevent_headers, publish, wait_for
from tests.support.otlp import ReceivedSpan, Receiver, collector, otlp_receiver
from tests.support.services import ServiceProcesses

pytestmark = pytest.mark.integration

SERVICES = {"switchboard-intake", "switchboard-router", "switchboard-sla",
            "switchboard-escalation"}
CONSUMER = 5  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_CONSUMER


@pytest.fixture(scope="module")
def traced(endpoints: Endpoints) -> Iterator[tuple[Receiver, ServiceProcesses]]:
    policy = TEST_STATE_DIR / "otlp-escalation-policy.json"
    policy.write_text(json.dumps({
        "version": "otlp-test",
        "targets": {"leads": {"kind": "supervisor_group"}, "duty": {"kind": "supervisor_group"}},
        # Unacknowledged for 2 s: the escalation timer moves it to the next level.
        "rules": [{"name": "breach", "trigger": "sla.breached", "levels": [
            {"targets": ["leads"], "ack_timeout": "2s"},
            {"targets": ["duty"], "ack_timeout": "1h"}]}]}))
    with otlp_receiver() as (receiver, decoder_url), \
            collector(decoder_url, TEST_STATE_DIR / "logs" / "otelcol.log") as url:
        procs = ServiceProcesses(endpoints, TEST_STATE_DIR / "logs", {
            "OTEL_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "ESCALATION_POLICY_FILE": str(policy),
        })
        procs.start_all()
        try:
            yield receiver, procs
        finally:
            procs.stop_all()


def _tree_problems(spans: list[ReceivedSpan]) -> list[str]:
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if not s.parent_span_id]
    problems = [f"{len(roots)} roots: {[(r.service, r.name) for r in roots]}"] \
        if len(roots) != 1 else []
    problems += [f"{s.service} {s.name}: parent {s.parent_span_id} not received"
                 for s in spans if s.parent_span_id and s.parent_span_id not in ids]
    return problems


async def test_each_contact_is_one_trace_across_the_four_services_with_its_timers(
    endpoints: Endpoints, traced: tuple[Receiver, ServiceProcesses], app_db: asyncpg.Connection,
) -> None:
    receiver, procs = traced
    calls = [f"otlp-{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
    for call in calls:
        await publish(endpoints.kafka_bootstrap_servers, INBOUND_VOICE,
                      contacts.call_started(call), cloudevent_headers("call.started"), key=call)

    async def reescalated(call: str) -> str | None:
        case_id: str | None = await app_db.fetchval(
            "SELECT case_id FROM intake_thread WHERE thread_key = $1", stored_key(f"call:{call}"))
        if case_id is None:
            return None
        types = {r.type for r in await read_case(app_db, case_id)}
        return case_id if "escalation.reescalated" in types else None

    traces: dict[str, str] = {}
    for call in calls:
        case_id = await wait_for(lambda c=call: reescalated(c), timeout=120,
                                 what=f"{call} to breach, escalate and be re-escalated")
        rows = await read_case(app_db, case_id)
        ids = {r.trace_id for r in rows}
        assert len(ids) == 1 and None not in ids, {r.type: r.trace_id for r in rows}
        traces[case_id] = ids.pop()  # type: ignore[assignment]
    assert len(set(traces.values())) == len(calls), "two contacts, two traces"

    wanted_names = {"helpdesk.inbound.voice handle", "cases.events handle", "sla.fire",
                    "escalation.fire"}

    for case_id, trace_id in traces.items():
        def complete(t: str = trace_id) -> list[ReceivedSpan] | None:
            spans = [s for s in receiver.snapshot() if s.trace_id == t]
            if {s.service for s in spans} != SERVICES or not wanted_names <= {
                    s.name for s in spans} or _tree_problems(spans):
                return None
            return spans

        try:
            spans = await wait_for(complete, timeout=60, what=f"the whole trace of {case_id}")
        except AssertionError:
            spans = [s for s in receiver.snapshot() if s.trace_id == trace_id]
            raise AssertionError(
                f"trace {trace_id}: services {sorted({s.service for s in spans})}, names "
                f"{sorted({s.name for s in spans})}, problems {_tree_problems(spans)}") from None
        root = next(s for s in spans if not s.parent_span_id)
        assert (root.service, root.name) == ("switchboard-intake",
                                             "helpdesk.inbound.voice handle")
        by_id = {s.span_id: s for s in spans}
        # Every service's handling of cases.events descends from a decision of another service.
        for s in spans:
            if s.name == "cases.events handle":
                assert by_id[s.parent_span_id].service != s.service or \
                    by_id[s.parent_span_id].name != s.name
        timers = [s for s in spans if s.name == "escalation.fire"]
        assert timers and all(t.service == "switchboard-escalation" for t in timers)
        # No span of this trace handled the other contact's records.
        other = {c for c in traces if c != case_id}
        assert not [s for s in spans
                    if s.attributes.get("messaging.kafka.message.key") in other]

    # FastStream's Kafka consumer spans carry the messaging semantic-convention attributes.
    kafka_spans = [s for s in receiver.snapshot()
                   if s.kind == CONSUMER and s.attributes.get("messaging.system") == "kafka"]
    topics = {s.attributes.get("messaging.destination_publish.name") for s in kafka_spans}
    assert {INBOUND_VOICE, CASE_EVENTS} <= topics, topics
    process = [s for s in kafka_spans if s.attributes.get("messaging.operation") == "process"]
    assert process and all("messaging.kafka.destination.partition" in s.attributes
                           for s in process)
    assert {s.service for s in process} == SERVICES
    assert all(procs.alive().values()), procs.alive()


async def test_the_per_record_spans_in_the_contact_trace_have_messaging_attributes(
    endpoints: Endpoints, traced: tuple[Receiver, ServiceProcesses], app_db: asyncpg.Connection,
) -> None:
    receiver, _ = traced
    call = f"otlp-attrs-{uuid.uuid4().hex[:8]}"
    await publish(endpoints.kafka_bootstrap_servers, INBOUND_VOICE,
                  contacts.call_started(call), cloudevent_headers("call.started"), key=call)

    async def handled() -> list[ReceivedSpan] | None:
        case_id = await app_db.fetchval(
            "SELECT case_id FROM intake_thread WHERE thread_key = $1", stored_key(f"call:{call}"))
        rows = await read_case(app_db, case_id) if case_id else []
        if not rows:
            return None
        spans = [s for s in receiver.snapshot()
                 if s.trace_id == rows[0].trace_id and s.name.endswith(" handle")]
        return spans if {s.service for s in spans} >= {"switchboard-intake",
                                                        "switchboard-router"} else None

    spans = await wait_for(handled, timeout=60, what="the contact's handle spans")
    for s in spans:
        assert s.kind == CONSUMER, (s.service, s.name, s.kind)
        assert s.attributes.get("messaging.system") == "kafka"
        assert s.attributes.get("messaging.operation.type") == "process"
        assert s.attributes.get("messaging.destination.name") == s.name.removesuffix(" handle")
        assert "messaging.kafka.offset" in s.attributes
        assert "messaging.destination.partition.id" in s.attributes
        assert s.attributes.get("messaging.message.id")
