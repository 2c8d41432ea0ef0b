"""`switchboard dlq list | show | redrive`: dead letters by topic and reason, and sending them
back once the cause is mended.

Every record a service could not process is kept in the `dead_letter` table (and copied to
`<topic>.dlq`) with its reason and source position. Redriving publishes the original bytes,
key and headers to the source topic again: the CloudEvents id is unchanged, so everything the
record causes has the ids it would have had the first time, and redriving twice (or a record
that did get through before) changes nothing in the case log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import Any

import asyncpg
import click
from aiokafka import AIOKafkaProducer

from shared.settings import get_settings

_LIST_SQL = (
    "SELECT id, service, source_topic, source_partition, source_offset, reason, failed_at,"
    " redriven_at, redrive_count, length(value) AS size FROM dead_letter"
    " WHERE ($1::text IS NULL OR source_topic = $1) AND ($2::text IS NULL OR reason ILIKE $2)"
    " AND ($3::text IS NULL OR service = $3) AND ($4 OR redriven_at IS NULL)"
    " ORDER BY id LIMIT $5"
)


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters: list, inspect, send back."""


def _like(reason: str | None) -> str | None:
    return None if reason is None else f"%{reason}%"


@dlq_group.command("list")
@click.option("--topic", help="only records from this source topic")
@click.option("--reason", help="only reasons containing this text (case-insensitive)")
@click.option("--service", help="only records this service dead-lettered")
@click.option("--all", "include_redriven", is_flag=True, help="include redriven ones")
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_(topic: str | None, reason: str | None, service: str | None, include_redriven: bool,
          limit: int, as_json: bool) -> None:
    """Dead letters, oldest first, with a count by topic and reason."""

    async def run() -> None:
        rows = await _fetch(_LIST_SQL, topic, _like(reason), service, include_redriven, limit)
        counts: dict[tuple[str, str], int] = {}
        for r in rows:
            if as_json:
                click.echo(json.dumps({k: (v.isoformat() if hasattr(v, "isoformat") else v)
                                       for k, v in dict(r).items()}))
            else:
                redriven = f" redriven×{r['redrive_count']}" if r["redrive_count"] else ""
                click.echo(f"{r['id']:>6}  {r['failed_at']:%Y-%m-%d %H:%M:%S}  {r['service']:<10}"
                           f" {r['source_topic']}[{r['source_partition']}]@{r['source_offset']}"
                           f"  {r['size']} B{redriven}  {r['reason'][:100]}")
            key = (r["source_topic"], r["reason"].split(":")[0])
            counts[key] = counts.get(key, 0) + 1
        if not as_json:
            click.echo(f"{len(rows)} dead letter(s)" + (" (limit reached)" if len(rows) == limit
                                                        else ""))
            for (t, why), n in sorted(counts.items(), key=lambda kv: -kv[1]):
                click.echo(f"  {n:>5}  {t}  {why}")

    asyncio.run(run())


@dlq_group.command("show")
@click.argument("dead_letter_id", type=int)
@click.option("--raw", is_flag=True, help="write the original bytes to standard output")
def show(dead_letter_id: int, raw: bool) -> None:
    """One dead letter: reason, position, original headers and body."""

    async def run() -> int:
        rows = await _fetch("SELECT * FROM dead_letter WHERE id = $1", dead_letter_id)
        if not rows:
            click.echo(f"no dead letter {dead_letter_id}", err=True)
            return 1
        r = rows[0]
        if raw:
            sys.stdout.buffer.write(bytes(r["value"]))
            return 0
        headers = [(k, base64.b64decode(v).decode("utf-8", "replace"))
                   for k, v in json.loads(r["headers"])]
        click.echo(f"dead letter {r['id']} from {r['service']}, {r['failed_at']:%Y-%m-%d %H:%M:%S}"
                   f"\n  source: {r['source_topic']}[{r['source_partition']}]@"
                   f"{r['source_offset']}\n  reason: {r['reason']}\n  redriven: "
                   f"{r['redrive_count']} time(s), last {r['redriven_at'] or 'never'}")
        click.echo("  headers:")
        for k, v in headers:
            click.echo(f"    {k}: {v[:200]}")
        body = bytes(r["value"])
        click.echo(f"  body ({len(body)} bytes):")
        click.echo(body[:4000].decode("utf-8", "replace"))
        return 0

    sys.exit(asyncio.run(run()))


@dlq_group.command("redrive")
@click.argument("ids", nargs=-1, type=int)
@click.option("--topic", help="every dead letter (not yet redriven) of this source topic")
@click.option("--reason", help="... whose reason contains this text")
@click.option("--again", is_flag=True, help="also those redriven before")
@click.option("--dry-run", is_flag=True, help="say what would be sent, send nothing")
def redrive(ids: tuple[int, ...], topic: str | None, reason: str | None, again: bool,
            dry_run: bool) -> None:
    """Send dead letters back to their source topic, exactly as they first came."""
    if not ids and not topic:
        raise click.UsageError("name dead letter ids, or --topic (with --reason)")

    async def run() -> int:
        if ids:
            rows = await _fetch("SELECT * FROM dead_letter WHERE id = ANY($1::bigint[])"
                                " ORDER BY id", list(ids))
        else:
            rows = await _fetch("SELECT * FROM dead_letter WHERE source_topic = $1 AND"
                                " ($2::text IS NULL OR reason ILIKE $2) AND"
                                " ($3 OR redriven_at IS NULL) ORDER BY id", topic,
                                _like(reason), again)
        for r in rows:
            click.echo(f"{'would redrive' if dry_run else 'redriving'} {r['id']} to "
                       f"{r['source_topic']} ({r['reason'][:80]})")
        if dry_run or not rows:
            click.echo(f"{len(rows)} dead letter(s)")
            return 0
        await _send(rows)
        conn = await asyncpg.connect(get_settings().database_url)
        try:
            await conn.execute("UPDATE dead_letter SET redriven_at = now(),"
                               " redrive_count = redrive_count + 1 WHERE id = ANY($1::bigint[])",
                               [r["id"] for r in rows])
        finally:
            await conn.close()
        click.echo(f"{len(rows)} dead letter(s) redriven")
        return 0

    sys.exit(asyncio.run(run()))


async def _fetch(sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(get_settings().database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _send(rows: list[asyncpg.Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=get_settings().kafka_bootstrap_servers,
                                client_id="switchboard-dlq-redrive", enable_idempotence=True)
    await producer.start()
    try:
        sent = []
        for r in rows:
            headers = [(k, base64.b64decode(v)) for k, v in json.loads(r["headers"])]
            sent.append(await producer.send(r["source_topic"], bytes(r["value"]),
                                            key=bytes(r["key"]) if r["key"] else None,
                                            headers=[*headers, ("dlq_redrive_of",
                                                                str(r["id"]).encode())]))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
