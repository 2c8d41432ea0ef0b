"""Versioned SQL migrations, applied in file-name order by the owner role, each exactly once.

Each owner keeps its own: the log, the outbox and dead letters here (`shared/caselog/migrations/`),
each service its tables in `services/<name>/migrations/`. The one migrator gathers them all and
applies them in one global order of file names, the file name being the version recorded in
`schema_migrations`: a file keeps its name for ever once released (a database that has applied
it must not apply it again), and a new one takes a number above every existing one, whichever
folder it goes in. Each folder's `grants.sql` gives the services' role its rights on that
owner's tables, re-applied after every run.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from importlib.abc import Traversable

import asyncpg

_LOCK_KEY = 7_007_001  # one migrator at a time across processes


class MigrationRefused(RuntimeError):
    """The admin connection and the services' role are not separate: migrating would let the
    services' role own (or act as the owner of) the log, and an owner can disable its trigger."""


async def check_roles(conn: asyncpg.Connection, app_role: str) -> None:
    """Refuse unless the admin connection's role and `app_role` are distinct, the services' role
    is not a superuser and cannot act as the admin role (membership, SET ROLE)."""
    me = await conn.fetchval("SELECT current_user")
    hint = (
        "Set DATABASE_ADMIN_URL to the owner role (in the local cluster: switchboard_owner, "
        "see <state dir>/infra.env) and DATABASE_URL to the services' role"
    )
    if me == app_role:
        raise MigrationRefused(
            f"db migrate connects as {me!r}, the services' role itself: the log's owner can "
            f"disable its trigger and rewrite it. {hint}"
        )
    app = await conn.fetchrow(
        "SELECT rolsuper, pg_has_role(oid, current_user, 'MEMBER') AS acts_as_admin"
        " FROM pg_roles WHERE rolname = $1",
        app_role,
    )
    if app is None:
        raise MigrationRefused(f"the services' role {app_role!r} does not exist; create it first")
    if app["rolsuper"]:
        raise MigrationRefused(f"the services' role {app_role!r} is a superuser. {hint}")
    if app["acts_as_admin"]:
        raise MigrationRefused(
            f"the services' role {app_role!r} is a member of {me!r} and can act as the log's "
            f"owner: REVOKE {me} FROM {app_role}"
        )
    owned = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tableowner = $1",
        app_role,
    )
    if owned:
        names = ", ".join(sorted(r["tablename"] for r in owned))
        raise MigrationRefused(
            f"the services' role {app_role!r} owns {names} (an earlier migration ran as it): "
            f"ALTER TABLE ... OWNER TO {me} first"
        )


class DuplicateVersion(RuntimeError):
    """Two owners' folders hold a migration of the same file name (the version)."""


def migration_folders() -> list[Traversable]:
    """The log's folder first, then every service's `migrations/`, services in name order.

    The services are found as folders of the installed `services` package, not imported: the
    migrator reads SQL and runs no service code, and a new service needs no edit here.
    """
    services = sorted(resources.files("services").iterdir(), key=lambda p: p.name)
    return [resources.files("shared.caselog") / "migrations",
            *(p / "migrations" for p in services if p.is_dir() and (p / "migrations").is_dir())]


def migration_files(folders: Iterable[Traversable] | None = None) -> list[tuple[str, str]]:
    """(version, SQL) of every migration, in the one global order of their file names."""
    found: dict[str, str] = {}
    for folder in migration_folders() if folders is None else folders:
        for f in folder.iterdir():
            if not (f.name[:4].isdigit() and f.name.endswith(".sql")):
                continue
            if f.name in found:
                raise DuplicateVersion(f"migration {f.name} is in more than one folder")
            found[f.name] = f.read_text("utf-8")
    return sorted(found.items())


def grants_sql(app_role: str, folders: Iterable[Traversable] | None = None) -> str:
    """Every owner's grants.sql for the services' role, the log's first."""
    quoted = '"' + app_role.replace('"', '""') + '"'
    texts = [(folder / "grants.sql").read_text("utf-8")
             for folder in (migration_folders() if folders is None else folders)
             if (folder / "grants.sql").is_file()]
    return "\n".join(texts).replace("{app_role}", quoted)


async def migrate(admin_url: str, app_role: str) -> list[str]:
    """Apply pending migrations and re-apply the grants; return the versions applied now."""
    conn = await asyncpg.connect(admin_url)
    try:
        await check_roles(conn, app_role)
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", name)
            applied.append(name)
        await conn.execute(grants_sql(app_role))
        return applied
    finally:
        await conn.close()
