"""Fixtures: the real Kafka broker and PostgreSQL, started once a session; the services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from shared.caselog.migrate import migrate
from shared.infra.local import Endpoints
from shared.settings import get_settings
from shared.topics_admin import create_topics
from tests.support.infra import TEST_STATE_DIR, start_infrastructure, stop_infrastructure
from tests.support.services import ServiceProcesses

# One key per test session for every process (services, the `switchboard` command) unless the
# caller gave one: nothing committed, and nothing written into the checkout's keys.env.
os.environ.setdefault("SWITCHBOARD_KEY_HMAC", secrets.token_urlsafe(32))
os.environ.setdefault("SWITCHBOARD_KEY_DLQ", secrets.token_urlsafe(32))


@pytest.fixture(scope="session")
def endpoints(request: pytest.FixtureRequest) -> Iterator[Endpoints]:
    found, how = start_infrastructure()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        # Output capture is on during fixture set-up: suspend it, or the line is never seen.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"\n[switchboard] tests use {how}")
    # This process's own clients (settings from the environment) use the tests' pair, whatever
    # an infra.env of `make run` says (its KAFKA_SECURITY_PROTOCOL, say).
    os.environ.update(found.extra_env)
    get_settings.cache_clear()
    asyncio.run(migrate(found.database_admin_url, "switchboard_app"))
    asyncio.run(create_topics(found.kafka_bootstrap_servers, partitions=3))
    yield found
    stop_infrastructure()


@pytest.fixture(scope="module")
def services(endpoints: Endpoints) -> Iterator[ServiceProcesses]:
    """The four services as processes, per test module: a module may kill and restart them.

    Each module starts with a fresh contact-center floor (no offers, no busy or away agents), so
    capacity used by one module cannot change who is offered a case in the next.
    """
    asyncio.run(reset_floor(endpoints))
    procs = ServiceProcesses(endpoints, TEST_STATE_DIR / "logs", {})
    procs.start_all()
    yield procs
    procs.stop_all()


async def reset_floor(endpoints: Endpoints) -> None:
    conn = await asyncpg.connect(endpoints.database_superuser_url)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename LIKE 'router\\_%' AND tablename <> 'router_leader'")]
        if tables:
            await conn.execute(f"TRUNCATE {', '.join(tables)}")
    finally:
        await conn.close()


@pytest.fixture
async def app_db(endpoints: Endpoints) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the services' role."""
    conn = await asyncpg.connect(endpoints.database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def superuser_db(endpoints: Endpoints) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(endpoints.database_superuser_url)
    yield conn
    await conn.close()
