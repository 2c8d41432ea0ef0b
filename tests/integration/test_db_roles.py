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


@pytest.mark.parametrize(
    ("make_it", "refusal"),
    [
        ("GRANT switchboard_owner TO {role}", "member of 'switchboard_owner'"),
        ("ALTER ROLE {role} SUPERUSER", "is a superuser"),
        (
            "CREATE TABLE {role}_table (x int); ALTER TABLE {role}_table OWNER TO {role}",
            "owns {role}_table",
        ),
    ],
    ids=["member-of-owner", "superuser", "owns-a-table"],
)
async def test_migrate_refuses_a_services_role_that_could_rewrite_the_log(
    endpoints: Endpoints,
    superuser_db: asyncpg.Connection,
    intruder: str,
    make_it: str,
    refusal: str,
) -> None:
    await superuser_db.execute(make_it.format(role=intruder))
    with pytest.raises(MigrationRefused, match=refusal.format(role=intruder)):
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
