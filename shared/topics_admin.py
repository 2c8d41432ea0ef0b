"""Provisioning of Kafka topics (the broker's auto-creation is off).

Replication follows the cluster: three replicas and `min.insync.replicas=2` once there are three
brokers or more (a write is acknowledged by two, so one broker may fail without losing it or
stopping producers), one replica on a single local broker. TOPIC_REPLICATION_FACTOR and
TOPIC_MIN_INSYNC_REPLICAS override both.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.contracts.topics import TopicSpec, all_topics
from shared.kafka import client_options
from shared.settings import get_settings


def replication_for(brokers: int, replication_factor: int = 0,
                    min_insync: int = 0) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`; 0 means automatic:
    min(3, brokers) replicas, and 2 in-sync replicas when there are 3 or more (else 1)."""
    rf = replication_factor or min(3, max(1, brokers))
    if rf > brokers:
        raise ValueError(f"replication factor {rf} needs {rf} brokers; the cluster has {brokers}")
    isr = min_insync or (2 if rf >= 3 else 1)
    if isr > rf:
        raise ValueError(f"min.insync.replicas {isr} is more than the replication factor {rf}")
    return rf, isr


async def create_topics(
    bootstrap_servers: str, partitions: int, specs: list[TopicSpec] | None = None,
    *, replication_factor: int | None = None, min_insync_replicas: int | None = None,
) -> list[str]:
    """Create the missing topics; return the names created now. Replication: see the module."""
    settings = get_settings()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="switchboard-admin",
                                **client_options())
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        rf, isr = replication_for(
            brokers,
            settings.topic_replication_factor if replication_factor is None
            else replication_factor,
            settings.topic_min_insync_replicas if min_insync_replicas is None
            else min_insync_replicas,
        )
        existing = set(await admin.list_topics())
        wanted = [s for s in (specs or all_topics()) if s.name not in existing]
        new = [
            NewTopic(s.name, num_partitions=partitions, replication_factor=rf,
                     topic_configs={**({"cleanup.policy": "compact"} if s.compacted else {}),
                                    "min.insync.replicas": str(isr), **s.config})
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
