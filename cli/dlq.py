"""`switchboard dlq list | show | redrive`: dead letters by topic and reason, and sending them
back once the cause is mended.

Every record a service could not process is kept in the `dead_letter` table (and copied to
`<topic>.dlq`) with its reason and source position, as a redacted copy; its original key,
headers and bytes are kept sealed under `SWITCHBOARD_KEY_DLQ` (shared/dead_letters.py), or not
at all when no key was configured. `show` prints the redacted copy, `show --decrypt` the
original (for an operator who holds the key). Redriving opens the original and publishes its
bytes, key and headers to the source topic again: the CloudEvents id is unchanged, so
everything the record causes has the ids it would have had the first time, and redriving twice
(or a record that did get through before) changes nothing in the case log. A dead letter whose
original cannot be opened is never redriven as its redacted copy: the command says why and
sends nothing. `seal` rewrites rows kept by earlier versions (originals in clear).
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

from shared import dead_letters
from shared.failures import clean_text
from shared.keys import KeyMissing, Sealer, SealError
from shared.redaction import redact
from shared.settings import get_settings

_LIST_SQL = (
    "SELECT id, service, source_topic, source_partition, source_offset, reason, failed_at,"
    " redriven_at, redrive_count, length(value) AS size, redacted, sealed IS NOT NULL AS sealed"
    " FROM dead_letter"
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
                           f"  {r['size']} B {_kept(r)}{redriven}  {r['reason'][:100]}")
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
@click.option("--decrypt", is_flag=True,
              help="the original key, headers and body (needs SWITCHBOARD_KEY_DLQ)")
@click.option("--raw", is_flag=True,
              help="write the body's bytes to standard output (the original with --decrypt)")
def show(dead_letter_id: int, decrypt: bool, raw: bool) -> None:
    """One dead letter: reason, position, headers and body (redacted unless --decrypt)."""

    async def run() -> int:
        rows = await _fetch("SELECT * FROM dead_letter WHERE id = $1", dead_letter_id)
        if not rows:
            click.echo(f"no dead letter {dead_letter_id}", err=True)
            return 1
        r = rows[0]
        if decrypt:
            try:
                original = _original(r, _sealer())
            except _Refused as exc:
                click.echo(str(exc), err=True)
                return 1
            key, headers, body = original.key, original.headers, original.value
        else:
            key = bytes(r["key"]) if r["key"] is not None else None
            headers = [(k, base64.b64decode(v)) for k, v in json.loads(r["headers"])]
            body = bytes(r["value"])
        if raw:
            sys.stdout.buffer.write(body)
            return 0
        what = "original" if decrypt else "redacted copy" if r["redacted"] else \
            "original in clear (kept by an earlier version: `switchboard dlq seal`)"
        click.echo(f"dead letter {r['id']} from {r['service']}, {r['failed_at']:%Y-%m-%d %H:%M:%S}"
                   f"\n  source: {r['source_topic']}[{r['source_partition']}]@"
                   f"{r['source_offset']}\n  reason: {r['reason']}\n  redriven: "
                   f"{r['redrive_count']} time(s), last {r['redriven_at'] or 'never'}"
                   f"\n  shown: {what}; {_kept(r)}")
        if key:
            click.echo(f"  key: {key[:200].decode('utf-8', 'replace')}")
        click.echo("  headers:")
        for k, v in headers:
            click.echo(f"    {k}: {v.decode('utf-8', 'replace')[:200]}")
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
    """Send dead letters back to their source topic, exactly as they first came (their sealed
    originals, opened with SWITCHBOARD_KEY_DLQ; never a redacted copy)."""
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
        sealer = _sealer() if any(r["redacted"] for r in rows) else None
        originals: list[tuple[asyncpg.Record, dead_letters.Original]] = []
        refused = []
        for r in rows:
            try:
                originals.append((r, _original(r, sealer)))
            except _Refused as exc:
                refused.append(str(exc))
        if refused:  # all or nothing: a partial redrive would be hard to tell apart
            for why in refused:
                click.echo(why, err=True)
            click.echo(f"refusing to redrive: {len(refused)} of {len(rows)} dead letter(s) "
                       "have no original that can be opened; nothing was sent", err=True)
            return 1
        for r in rows:
            click.echo(f"{'would redrive' if dry_run else 'redriving'} {r['id']} to "
                       f"{r['source_topic']} ({r['reason'][:80]})")
        if dry_run or not rows:
            click.echo(f"{len(rows)} dead letter(s)")
            return 0
        await _send(originals)
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


async def _send(originals: list[tuple[asyncpg.Record, dead_letters.Original]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=get_settings().kafka_bootstrap_servers,
                                client_id="switchboard-dlq-redrive", enable_idempotence=True)
    await producer.start()
    try:
        sent = []
        for r, original in originals:
            sent.append(await producer.send(r["source_topic"], original.value,
                                            key=original.key or None,
                                            headers=[*original.headers, ("dlq_redrive_of",
                                                                         str(r["id"]).encode())]))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


class _Refused(Exception):
    """This dead letter's original cannot be had; the message says why."""


def _kept(r: asyncpg.Record) -> str:
    if not r["redacted"]:
        return "original in clear"
    return "original sealed" if r["sealed"] else "redacted only"


def _sealer() -> Sealer | None:
    try:
        return dead_letters.sealer_for(get_settings())
    except KeyMissing as exc:
        raise click.ClickException(str(exc)) from exc


def _original(r: asyncpg.Record, sealer: Sealer | None) -> dead_letters.Original:
    if not r["redacted"]:  # kept by an earlier version, in clear
        headers = [(k, base64.b64decode(v)) for k, v in json.loads(r["headers"])]
        return dead_letters.Original(bytes(r["key"]) if r["key"] is not None else None,
                                     headers, bytes(r["value"]))
    if r["sealed"] is None:
        raise _Refused(f"dead letter {r['id']}: only its redacted copy was kept (no "
                       "SWITCHBOARD_KEY_DLQ when it failed); it cannot be redriven or decrypted")
    if sealer is None:
        raise _Refused(f"dead letter {r['id']}: SWITCHBOARD_KEY_DLQ is not set, so its sealed "
                       "original cannot be opened (the redacted copy is never sent)")
    try:
        blob = sealer.open(bytes(r["sealed"]), dead_letters.binding(
            r["service"], r["source_topic"], r["source_partition"], r["source_offset"]))
    except SealError as exc:
        raise _Refused(f"dead letter {r['id']}: {exc}") from None
    return dead_letters.parse_original(blob)


@dlq_group.command("seal")
@click.option("--dry-run", is_flag=True, help="count the rows, change nothing")
def seal(dry_run: bool) -> None:
    """Rewrite dead letters kept by earlier versions (originals in clear): a redacted copy in
    the row, the original sealed under SWITCHBOARD_KEY_DLQ (dropped if none is set). Runs as
    the owner role (DATABASE_ADMIN_URL). Copies already on `<topic>.dlq` are not rewritten:
    they go with the topic's retention (`switchboard topics create`)."""

    async def run() -> int:
        settings = get_settings()
        sealer = _sealer()
        conn = await asyncpg.connect(settings.database_admin_url)
        try:
            rows = await conn.fetch("SELECT id, service, source_topic, source_partition,"
                                    " source_offset, key, headers, value, reason FROM dead_letter"
                                    " WHERE NOT redacted ORDER BY id")
            if dry_run or not rows:
                click.echo(f"{len(rows)} dead letter(s) kept in clear")
                return 0
            for r in rows:
                headers = [(k, base64.b64decode(v)) for k, v in json.loads(r["headers"])]
                key = bytes(r["key"]) if r["key"] is not None else None
                value = bytes(r["value"])
                copy = dead_letters.redacted_copy(key, headers, value)
                sealed = None if sealer is None else sealer.seal(
                    dead_letters.original_blob(key, headers, value), dead_letters.binding(
                        r["service"], r["source_topic"], r["source_partition"],
                        r["source_offset"]))
                await conn.execute(
                    "UPDATE dead_letter SET key = $2, headers = $3, value = $4, sealed = $5,"
                    " reason = $6, redacted = true WHERE id = $1 AND NOT redacted", r["id"],
                    copy.key, json.dumps(copy.headers), copy.value, sealed,
                    clean_text(redact(r["reason"])))
        finally:
            await conn.close()
        kept = "originals sealed" if sealer is not None else \
            "originals dropped (no SWITCHBOARD_KEY_DLQ)"
        click.echo(f"{len(rows)} dead letter(s) redacted, {kept}")
        return 0

    sys.exit(asyncio.run(run()))
