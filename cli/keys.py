"""`switchboard keys generate | migrate`: keys for configuration, and rows of earlier versions.

`migrate` replaces every identifier that an earlier version stored as written (thread keys,
customer and subject keys, chat sessions, suppressed message ids, the router's customer keys)
by its keyed hash under the current `SWITCHBOARD_KEY_HMAC`. It runs as the owner role
(`DATABASE_ADMIN_URL`): the services' role may not rewrite these tables. Run it once after
`db migrate`, with the services stopped (the router reads its contacts at start-up); it is
idempotent, and rows already keyed are left alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import click

from shared.keys import KeyMissing, Keyring, generate, is_stored_form, keyring_from
from shared.settings import get_settings


@click.group("keys")
def keys_group() -> None:
    """Keys: generate one; key the identifiers of earlier versions."""


@keys_group.command("generate")
def generate_command() -> None:
    """Print a new random key (for SWITCHBOARD_KEY_HMAC or SWITCHBOARD_KEY_DLQ)."""
    click.echo(generate())


@keys_group.command("migrate")
@click.option("--dry-run", is_flag=True, help="count what would change, change nothing")
def migrate_command(dry_run: bool) -> None:
    """Replace identifiers stored as written by their keyed hashes (owner role)."""
    settings = get_settings()
    try:
        ring = keyring_from(settings)
    except KeyMissing as exc:
        raise click.ClickException(str(exc)) from exc

    async def run() -> dict[str, int]:
        conn = await asyncpg.connect(settings.database_admin_url)
        try:
            async with conn.transaction():
                counts = await migrate_rows(conn, ring)
                if dry_run:
                    raise _DryRun(counts)
            return counts
        except _DryRun as done:
            return done.counts
        finally:
            await conn.close()

    counts = asyncio.run(run())
    verb = "would key" if dry_run else "keyed"
    for table, n in counts.items():
        click.echo(f"{verb} {n} row(s) of {table}")


class _DryRun(Exception):
    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__(counts)
        self.counts = counts


def _raw(value: str | None) -> bool:
    return bool(value) and not is_stored_form(value or "")


async def migrate_rows(conn: asyncpg.Connection, ring: Keyring) -> dict[str, int]:
    """Key every identifier stored as written, in the caller's transaction; rows per table."""
    counts: dict[str, int] = {}
    key: Callable[[str], str] = ring.stored

    rows = [r for r in await conn.fetch("SELECT thread_key, case_id, created_at FROM"
                                        " intake_thread") if _raw(r["thread_key"])]
    await conn.executemany(
        "INSERT INTO intake_thread (thread_key, case_id, created_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (thread_key) DO NOTHING",
        [(key(r["thread_key"]), r["case_id"], r["created_at"]) for r in rows])
    await conn.execute("DELETE FROM intake_thread WHERE thread_key = ANY($1::text[])",
                       [r["thread_key"] for r in rows])
    counts["intake_thread"] = len(rows)

    rows = [r for r in await conn.fetch("SELECT case_id, customer_keys, subject_key FROM"
                                        " intake_case")
            if any(_raw(k) for k in r["customer_keys"]) or _raw(r["subject_key"])]
    await conn.executemany(
        "UPDATE intake_case SET customer_keys = $2, subject_key = $3 WHERE case_id = $1",
        [(r["case_id"], [key(k) if _raw(k) else k for k in r["customer_keys"]],
          key(f"subject:{r['subject_key']}") if _raw(r["subject_key"]) else r["subject_key"])
         for r in rows])
    counts["intake_case"] = len(rows)

    rows = [r for r in await conn.fetch("SELECT session_id FROM intake_chat_session")
            if _raw(r["session_id"])]
    await conn.executemany(
        "UPDATE intake_chat_session SET session_id = $2 WHERE session_id = $1"
        " AND NOT EXISTS (SELECT 1 FROM intake_chat_session WHERE session_id = $2)",
        [(r["session_id"], key(r["session_id"])) for r in rows])
    await conn.execute("DELETE FROM intake_chat_session WHERE session_id = ANY($1::text[])",
                       [r["session_id"] for r in rows])  # those whose keyed twin existed
    counts["intake_chat_session"] = len(rows)

    rows = [r for r in await conn.fetch("SELECT suppression_id, message_key, related_keys,"
                                        " released_at, release_key FROM intake_suppressed")
            if _raw(r["message_key"]) or any(_raw(k) for k in r["related_keys"])]
    await conn.executemany(
        "UPDATE intake_suppressed SET message_key = $2, related_keys = $3,"
        " release_key = coalesce(release_key, $4) WHERE suppression_id = $1",
        [(r["suppression_id"],
          key(r["message_key"]) if _raw(r["message_key"]) else r["message_key"],
          [key(k) if _raw(k) else k for k in r["related_keys"]],
          # earlier versions re-submitted a released message under its own message key
          key(r["message_key"]) if r["released_at"] is not None and _raw(r["message_key"])
          else None)
         for r in rows])
    counts["intake_suppressed"] = len(rows)

    rows = [r for r in await conn.fetch("SELECT DISTINCT customer_key FROM router_contact")
            if _raw(r["customer_key"])]
    await conn.executemany(
        "UPDATE router_contact SET customer_key = $2 WHERE customer_key = $1",
        [(r["customer_key"], key(r["customer_key"])) for r in rows])
    counts["router_contact"] = len(rows)
    return counts
