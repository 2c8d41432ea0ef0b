"""`db migrate` refuses whenever the services' role could own, or act as the owner of, the log
(an owner can disable the log's trigger and rewrite rows); the local superuser needs a password.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from shared.caselog.migrate import MigrationRefused, migrate
from shared.infra.local import Endpoints

pytestmark = pytest.mark.integration

ROLE = "switchboard_test_intruder"


@pytest.fixture
async def intruder(superuser_db: asyncpg.Connection) -> AsyncIterator[str]:
    """A login role that tests turn into what the services' role must never be."""
    await superuser_db.execute(f"DROP TABLE IF EXISTS {ROLE}_table; DROP ROLE IF EXISTS {ROLE}")
    await superuser_db.execute(f"CREATE ROLE {ROLE} LOGIN")
    yield ROLE
    await superuser_db.execute(f"DROP TABLE IF EXISTS {ROLE}_table; DROP ROLE {ROLE}")


async def test_migrate_as_the_services_role_is_refused(endpoints: Endpoints) -> None:
    with pytest.raises(MigrationRefused, match="the services' role itself"):
        await migrate(endpoints.database_url, "switchboard_app")


async def test_migrate_refuses_a_services_role_that_can_act_as_the_owner(
    endpoints: Endpoints, superuser_db: asyncpg.Connection, intruder: str
) -> None:
    await superuser_db.execute(f"GRANT switchboard_owner TO {intruder}")
    with pytest.raises(MigrationRefused, match="member of 'switchboard_owner'"):
        await migrate(endpoints.database_admin_url, intruder)


async def test_migrate_refuses_a_superuser_services_role(
    endpoints: Endpoints, superuser_db: asyncpg.Connection, intruder: str
) -> None:
    await superuser_db.execute(f"ALTER ROLE {intruder} SUPERUSER")
    with pytest.raises(MigrationRefused, match="is a superuser"):
        await migrate(endpoints.database_admin_url, intruder)


async def test_migrate_refuses_a_services_role_that_owns_tables(
    endpoints: Endpoints, superuser_db: asyncpg.Connection, intruder: str
) -> None:
    await superuser_db.execute(f"CREATE TABLE {intruder}_table (x int)")
    await superuser_db.execute(f"ALTER TABLE {intruder}_table OWNER TO {intruder}")
    with pytest.raises(MigrationRefused, match=f"owns {intruder}_table"):
        await migrate(endpoints.database_admin_url, intruder)


async def test_migrate_as_the_owner_still_works(endpoints: Endpoints) -> None:
    assert await migrate(endpoints.database_admin_url, "switchboard_app") == []


async def test_the_superuser_needs_its_password(endpoints: Endpoints) -> None:
    url = urlsplit(endpoints.database_superuser_url)
    for password in (None, "", "postgres"):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host=url.hostname, port=url.port, user="postgres", password=password,
                database="postgres",
            )  # fmt: skip
