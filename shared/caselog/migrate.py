"""Versioned SQL migrations, applied in file-name order by the owner role, each exactly once."""

from __future__ import annotations

from importlib import resources

import asyncpg

_LOCK_KEY = 7_007_001  # one migrator at a time across processes


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("shared.caselog") / "migrations"
    files = sorted(
        (f.name, f.read_text("utf-8")) for f in folder.iterdir() if f.name[:4].isdigit()
    )
    return files


def grants_sql(app_role: str) -> str:
    text = (resources.files("shared.caselog") / "migrations" / "grants.sql").read_text("utf-8")
    quoted = '"' + app_role.replace('"', '""') + '"'
    return text.replace("{app_role}", quoted)


async def migrate(admin_url: str, app_role: str) -> list[str]:
    """Apply pending migrations and re-apply the grants; return the versions applied now."""
    conn = await asyncpg.connect(admin_url)
    try:
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
