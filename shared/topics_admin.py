"""Provisioning of Kafka topics (the broker's auto-creation is off).

Missing topics are created with their configuration; topics that exist already get the
configuration Switchboard owns (retention of the inbound and dead-letter topics) set again with
IncrementalAlterConfigs (KIP-339): only the named keys change, anything else an operator set on
the topic stays. aiokafka's admin client has only the legacy AlterConfigs, which replaces a
topic's whole configuration, so the request is built here from its protocol primitives.

Replication follows the cluster: three replicas and `min.insync.replicas=2` once there are three
brokers or more (a write is acknowledged by two, so one broker may fail without losing it or
stopping producers), one replica on a single local broker. TOPIC_REPLICATION_FACTOR and
TOPIC_MIN_INSYNC_REPLICAS override both.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

from shared.contracts.topics import Retention, TopicSpec, all_topics
from shared.kafka import client_options
from shared.settings import get_settings

TOPIC_RESOURCE = 2  # ConfigResource type TOPIC
OP_SET = 0  # IncrementalAlterConfigs operation SET


@dataclass
class Provisioned:
    created: list[str] = field(default_factory=list)
    # existing topics whose owned configuration was set again: name -> {key: value}
    updated: dict[str, dict[str, str]] = field(default_factory=dict)


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
    retention: Retention | None = None,
    *, replication_factor: int | None = None, min_insync_replicas: int | None = None,
) -> list[str]:
    """Create the missing topics and set the owned configuration of existing ones; return the
    names created now. Replication: see the module."""
    return (await provision(bootstrap_servers, partitions, specs, retention,
                            replication_factor=replication_factor,
                            min_insync_replicas=min_insync_replicas)).created


async def provision(
    bootstrap_servers: str, partitions: int, specs: list[TopicSpec] | None = None,
    retention: Retention | None = None,
    *, replication_factor: int | None = None, min_insync_replicas: int | None = None,
) -> Provisioned:
    settings = get_settings()
    if specs is None:
        if retention is None:
            retention = Retention(settings.topic_retention_inbound_hours,
                                  settings.topic_retention_dlq_hours)
        specs = all_topics(retention)
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
        wanted = [s for s in specs if s.name not in existing]
        new = [
            NewTopic(s.name, num_partitions=partitions, replication_factor=rf,
                     topic_configs={**({"cleanup.policy": "compact"} if s.compacted else {}),
                                    "min.insync.replicas": str(isr), **s.config})
            for s in wanted
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                await admin.create_topics(new)
        done = Provisioned(created=[s.name for s in wanted])
        update = {s.name: s.config for s in specs if s.name in existing and s.config}
        if update:
            await incremental_alter_topic_configs(admin, update)
            done.updated = update
        return done
    finally:
        await admin.close()


# --- IncrementalAlterConfigs (API key 44), version 0 -------------------------------------------
class IncrementalAlterConfigsResponse_v0(Response):  # the protocol's naming
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("responses", Array(
            ("error_code", Int16),
            ("error_message", String("utf-8")),
            ("resource_type", Int8),
            ("resource_name", String("utf-8")),
        )),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        ("resources", Array(
            ("resource_type", Int8),
            ("resource_name", String("utf-8")),
            ("configs", Array(
                ("name", String("utf-8")),
                ("config_operation", Int8),
                ("value", String("utf-8")),
            )),
        )),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigsRequest(Request[IncrementalAlterConfigsRequest_v0]):
    API_KEY = 44

    def __init__(self, resources: list[Any], validate_only: bool = False) -> None:
        self._resources = resources
        self._validate_only = validate_only

    def build(self, request_struct_class: type[IncrementalAlterConfigsRequest_v0]
              ) -> IncrementalAlterConfigsRequest_v0:
        return request_struct_class(self._resources, self._validate_only)


class ConfigNotAltered(RuntimeError):
    """The broker refused to set a topic's configuration; the message names topic and error."""


async def incremental_alter_topic_configs(admin: AIOKafkaAdminClient,
                                          configs: dict[str, dict[str, str]]) -> None:
    """SET each key on each topic, leaving the topic's other configuration as it is."""
    resources = [(TOPIC_RESOURCE, topic, [(k, OP_SET, v) for k, v in sorted(entries.items())])
                 for topic, entries in sorted(configs.items())]
    response = await admin._send_request(  # no public way to send one
        IncrementalAlterConfigsRequest(resources))
    failed = [(name, code, message) for code, message, _, name in response.responses if code]
    if failed:
        raise ConfigNotAltered("; ".join(
            f"{name}: {for_code(code).__name__}{f' ({message})' if message else ''}"
            for name, code, message in failed))
