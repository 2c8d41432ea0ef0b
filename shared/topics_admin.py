"""Provisioning of Kafka topics (the broker's auto-creation is off)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.contracts.topics import TopicSpec, all_topics


async def create_topics(
    bootstrap_servers: str, partitions: int, specs: list[TopicSpec] | None = None
) -> list[str]:
    """Create the missing topics; return the names created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="switchboard-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in (specs or all_topics()) if s.name not in existing]
        new = [
            NewTopic(s.name, num_partitions=partitions, replication_factor=1,
                     topic_configs={**({"cleanup.policy": "compact"} if s.compacted else {}),
                                    **s.config})
            for s in wanted
        ]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another process won the race: fine
        return [s.name for s in wanted]
    finally:
        await admin.close()
