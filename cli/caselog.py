"""`switchboard log show|verify|checkpoint|keygen`: the case log and its tamper evidence."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import asyncpg
import click

from shared.caselog.checkpoint import (
    checkpoint_path,
    read_checkpoints,
    run_checkpoints,
    take_checkpoint,
)
from shared.caselog.keys import checkpoint_keys_from, generate, row_keyring
from shared.caselog.store import read_case
from shared.caselog.verify import verify_log
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
@click.option("--checkpoints", "checkpoint_file", type=click.Path(dir_okay=False),
              help="signed checkpoint file (default: CASELOG_CHECKPOINT_FILE)")
@click.option("--max-lines", default=200, show_default=True, help="findings printed at most")
def verify(case_id: str | None, checkpoint_file: str | None, max_lines: int) -> None:
    """Check one case or the whole log: chains, row MACs, and the signed checkpoints (deleted
    tails and cases, recomputed chains, altered triggers). Exit 1 naming every case and row."""

    async def run() -> int:
        settings = get_settings()
        path = Path(checkpoint_file) if checkpoint_file else checkpoint_path(settings)
        checkpoints = read_checkpoints(path, checkpoint_keys_from(settings))
        conn = await asyncpg.connect(settings.database_url)
        try:
            report = await verify_log(conn, row_keyring(), checkpoints, case_id)
        finally:
            await conn.close()
        for note in report.notes:
            click.echo(f"note: {note} ({path})", err=True)
        for finding in report.findings[:max_lines]:
            click.echo(str(finding), err=True)
        against = (f"against checkpoint #{report.checkpoint.n} ({report.checkpoint.taken_at})"
                   if report.checkpoint else "without checkpoints")
        unkeyed = (f" ({report.unkeyed_rows} of them unkeyed, version 1)"
                   if report.unkeyed_rows else "")
        summary = f"{report.cases} case chain(s), {report.rows} row(s){unkeyed}, {against}"
        if report.findings:
            more = len(report.findings) - max_lines
            if more > 0:
                click.echo(f"... and {more} more", err=True)
            click.echo(f"FAILED: {len(report.findings)} problem(s) in {summary}", err=True)
            return 1
        click.echo(f"ok: {summary} verified")
        return 0

    sys.exit(asyncio.run(run()))


@log_group.command("checkpoint")
@click.option("--every", type=float, default=None,
              help="keep taking one every SECONDS (CASELOG_CHECKPOINT_INTERVAL_SECONDS if 0)")
@click.option("--file", "checkpoint_file", type=click.Path(dir_okay=False),
              help="checkpoint file (default: CASELOG_CHECKPOINT_FILE)")
def checkpoint(every: float | None, checkpoint_file: str | None) -> None:
    """Sign every case's head and the log's guards, and append them to the checkpoint file."""
    settings = get_settings()
    if checkpoint_file:
        settings = settings.model_copy(update={"caselog_checkpoint_file": checkpoint_file})
    if every is not None:
        asyncio.run(run_checkpoints(settings.database_url, settings,
                                    interval=every or None))
        return

    async def once() -> None:
        conn = await asyncpg.connect(settings.database_url)
        try:
            body = await take_checkpoint(conn, checkpoint_path(settings),
                                         checkpoint_keys_from(settings))
        finally:
            await conn.close()
        click.echo(f"checkpoint #{body['n']} at {body['taken_at']}: {body['cases']} case(s), "
                   f"{len(body['heads'])} head(s) advanced -> {checkpoint_path(settings)}")
        for case, what in body["anomalies"]:
            click.echo(f"BROKEN case {case}: {what} (not signed)", err=True)

    try:
        asyncio.run(once())
    except RuntimeError as e:
        raise click.ClickException(str(e)) from e


@log_group.command("keygen")
@click.argument("sources", nargs=-1)
def keygen(sources: tuple[str, ...]) -> None:
    """Print fresh production keys: a row key per SOURCE (e.g. switchboard/intake) and a
    checkpoint key pair, as environment variable lines."""
    fresh = generate()
    row_keys = {source: generate()["row_key"] for source in sources}
    click.echo(f"CASELOG_ROW_KEYS='{json.dumps(row_keys)}'")
    click.echo(f"CASELOG_CHECKPOINT_SIGNING_KEY={fresh['checkpoint_signing_key']}")
    click.echo(f"CASELOG_CHECKPOINT_VERIFY_KEYS='[\"{fresh['checkpoint_verify_key']}\"]'")
