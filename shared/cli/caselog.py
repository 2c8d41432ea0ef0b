"""`switchboard log show CASE_ID` and `switchboard log verify [CASE_ID]`."""

from __future__ import annotations

import asyncio
import json
import sys

import asyncpg
import click

from shared.caselog.store import read_case, verify_all, verify_case
from shared.settings import get_settings


@click.group("log")
def log_group() -> None:
    """The immutable case event log."""


@log_group.command("show")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per row")
def show(case_id: str, as_json: bool) -> None:
    """Print a case's timeline."""

    async def run() -> None:
        conn = await asyncpg.connect(get_settings().database_url)
        try:
            rows = await read_case(conn, case_id)
        finally:
            await conn.close()
        if not rows:
            click.echo(f"no events for case {case_id}", err=True)
            sys.exit(1)
        for r in rows:
            if as_json:
                click.echo(json.dumps({"seq": r.seq, "type": r.type, "time": r.time.isoformat(),
                                       "source": r.source, "event_id": r.event_id,
                                       "trace_id": r.trace_id, "payload": r.payload}))
            else:
                click.echo(f"{r.seq:>4}  {r.time:%Y-%m-%d %H:%M:%S}  {r.type:<26} "
                           f"{r.source:<22} {_gist(r.payload)}")

    asyncio.run(run())


def _gist(payload: dict[str, object]) -> str:
    keys = ("agent_id", "queue", "skill", "priority", "metric", "due_at", "reason", "target",
            "channel", "subject")
    return " ".join(f"{k}={payload[k]}" for k in keys if payload.get(k) not in (None, ""))[:120]


@log_group.command("verify")
@click.argument("case_id", required=False)
def verify(case_id: str | None) -> None:
    """Check the hash chain of one case or of every case; exit 1 naming the first break."""

    async def run() -> int:
        conn = await asyncpg.connect(get_settings().database_url)
        try:
            if case_id is not None:
                count, broken = 1, await verify_case(conn, case_id)
            else:
                count, broken = await verify_all(conn)
        finally:
            await conn.close()
        if broken is not None:
            click.echo(f"BROKEN case {broken.case_id} at seq {broken.seq}: {broken.why}",
                       err=True)
            return 1
        click.echo(f"ok: {count} case chain(s) verified")
        return 0

    sys.exit(asyncio.run(run()))
