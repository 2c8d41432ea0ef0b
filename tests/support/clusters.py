"""Other shapes of the local infrastructure, for the tests that need them: secure (Kafka
SASL_SSL + PostgreSQL TLS) or three brokers. Each starts in a state dir of its own beside the
default pair's, once for the module that uses it, and is stopped (data deleted) at its end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator

from shared.caselog.migrate import migrate
from shared.infra import local
from shared.infra.local import Endpoints
from shared.settings import get_settings
from shared.topics_admin import create_topics
from tests.support.infra import TEST_STATE_DIR


@contextlib.contextmanager
def client_env(endpoints: Endpoints) -> Iterator[None]:
    """This process's Kafka clients (built from the environment's settings) talk to `endpoints`:
    its security variables are set, and the cached settings forgotten, until the block ends."""
    saved = {k: os.environ.get(k) for k in endpoints.extra_env}
    os.environ.update(endpoints.extra_env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@contextlib.contextmanager
def cluster(name: str, *, brokers: int = 1, secure: bool = False,
            partitions: int = 3) -> Iterator[tuple[Endpoints, dict[str, float]]]:
    """Start the cluster (from empty storage), migrate, create the topics; the endpoints and
    the start-up timings. Clients in this process use it while the block runs."""
    where = TEST_STATE_DIR.parent / f"test-{name}"
    keep = bool(os.environ.get("SWITCHBOARD_TEST_KEEP_INFRA"))
    if not keep:
        local.purge(where)
    timings: dict[str, float] = {}
    began = time.monotonic()
    endpoints = local.up(where, fast=True, brokers=brokers, secure=secure, timings=timings)
    local.write_env_file(where, endpoints)
    try:
        with client_env(endpoints):
            asyncio.run(migrate(endpoints.database_admin_url, "switchboard_app"))
            asyncio.run(create_topics(endpoints.kafka_bootstrap_servers, partitions=partitions))
            timings["ready"] = time.monotonic() - began
            yield endpoints, timings
    finally:
        if not keep:
            local.down(where, remove_data=True)
