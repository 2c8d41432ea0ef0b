"""Publishing CloudEvents the way a real front-end does: binary mode, one idempotent producer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.contracts.base import Contract
from shared.contracts.envelope import Envelope


class Bus:
    def __init__(self, bootstrap_servers: str) -> None:
        # acks=all with idempotence: what the demo says it sent is really on the broker.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers, enable_idempotence=True, linger_ms=5,
            client_id="switchboard-demo",
        )
        self.sent = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(
        self, topic: str, key: str, type_: str, data: Contract, *, source: str,
        subject: str | None = None, event_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """Send one event; return its headers and body so a caller can re-deliver it verbatim."""
        envelope = Envelope(
            id=event_id or str(uuid.uuid4()), source=source, type=type_,
            time=datetime.now(UTC), subject=subject,
        )
        headers, body = envelope.to_headers(), data.model_dump_json().encode()
        await self.publish_raw(topic, key, headers, body)
        return headers, body

    async def publish_raw(self, topic: str, key: str, headers: dict[str, str], body: bytes) -> None:
        """Exactly these bytes: for the duplicate delivery and the malformed event."""
        await self._producer.send_and_wait(
            topic, body, key=key.encode(), headers=[(k, v.encode()) for k, v in headers.items()],
        )
        self.sent += 1


async def partitions_of(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of `topics` that exists, from fresh cluster metadata.

    `consumer.topics()` fetches metadata but does not store it, so `partitions_for_topic` would
    still answer None; the tests' helpers read the fetched metadata the same way.
    """
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t)
                                                                 or ())]
