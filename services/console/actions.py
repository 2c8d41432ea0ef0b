"""What a supervisor does, as events: the console writes no rows.

Acknowledge publishes `agent.escalation_acknowledged` and Reassign publishes
`agent.case_transferred`, both on `helpdesk.agent_activity` keyed by case id, as CloudEvents in
binary mode, exactly as an agent desktop does (`deploy/local/demo/bus.py`). The acting user's name
is the event's `agent_id`, so the escalation service's `escalation.acknowledged` row says who took
it (`by`) and the router's `routing.decided` row says who transferred the case (`transferred by`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from shared.contracts import agents as ag
from shared.contracts.base import Contract
from shared.contracts.envelope import Envelope
from shared.contracts.topics import AGENT_ACTIVITY

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, bootstrap_servers: str, source: str) -> None:
        self.source = source
        # acks=all with idempotence: a click reported as sent is on the broker.
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers,
                                          enable_idempotence=True,
                                          client_id="switchboard-console",
                                          request_timeout_ms=10_000)
        self.started = False

    async def start(self) -> None:
        await self._producer.start()
        self.started = True

    async def stop(self) -> None:
        if self.started:
            await self._producer.stop()
            self.started = False

    async def publish(self, type_: str, case_id: str, data: Contract) -> str:
        """One event on `helpdesk.agent_activity`; its CloudEvents id."""
        envelope = Envelope(id=str(uuid.uuid4()), source=self.source, type=type_,
                            time=datetime.now(UTC), subject=case_id)
        headers = envelope.to_headers()
        await self._producer.send_and_wait(
            AGENT_ACTIVITY, data.model_dump_json().encode(), key=case_id.encode(),
            headers=[(k, v.encode()) for k, v in headers.items()])
        return envelope.id

    async def acknowledge(self, case_id: str, escalation_id: str, by: str) -> str:
        event = ag.EscalationAcknowledgedByAgent(case_id=case_id, escalation_id=escalation_id,
                                                 agent_id=by, at=datetime.now(UTC))
        event_id = await self.publish("agent.escalation_acknowledged", case_id, event)
        log.info("%s acknowledged escalation %s of %s (event %s)", by, escalation_id, case_id,
                 event_id)
        return event_id

    async def transfer(self, case_id: str, by: str, to_skill: str, min_tier: int | None,
                       reason: str) -> str:
        event = ag.CaseTransferred(case_id=case_id, agent_id=by, to_skill=to_skill,
                                   min_authority_tier=min_tier, reason=reason[:1024] or None,
                                   at=datetime.now(UTC))
        event_id = await self.publish("agent.case_transferred", case_id, event)
        log.info("%s reassigned %s to %s (tier %s) (event %s)", by, case_id, to_skill, min_tier,
                 event_id)
        return event_id
