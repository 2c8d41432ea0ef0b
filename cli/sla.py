"""`switchboard sla replay CASE_ID [--policy FILE]`: recompute a case's SLA clocks from its log.

Audit (did the service do what its policy said?) and what-if (what would a candidate policy have
done?). Prints the logged and the recomputed SLA events and their differences; exit 1 if any.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import asyncpg
import click

from shared.caselog.store import read_case
from shared.settings import get_settings


@click.group("sla")
def sla_group() -> None:
    """SLA clocks and policies."""


@sla_group.command("replay")
@click.argument("case_id")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False),
              help="a candidate policy file (default: the one the service is configured with)")
def replay_command(case_id: str, policy_file: str | None) -> None:
    """Recompute CASE_ID's SLA clocks from its log and print the differences."""
    # Imported here: the service packages are heavier than the other commands need.
    from services.sla import app as sla_app
    from services.sla import policy as sla_policy
    from services.sla.replay import differences, replay

    settings = get_settings()
    try:
        pol = (sla_policy.load(policy_file) if policy_file else sla_app.load_policy(settings))
    except sla_policy.PolicyError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)

    async def rows() -> list[tuple[str, dict[str, object], datetime, str]]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return [(r.type, r.payload, r.time, r.event_id) for r in await read_case(conn, case_id)]
        finally:
            await conn.close()

    log = asyncio.run(rows())
    if not log:
        click.echo(f"no events for case {case_id}", err=True)
        sys.exit(1)
    logged, recomputed = replay(pol, log, datetime.now(UTC))
    click.echo(f"case {case_id} under policy {pol.version}")
    click.echo("logged:")
    for line in logged:
        click.echo(f"  {line.render()}")
    click.echo("recomputed:")
    for line in recomputed:
        click.echo(f"  {line.render()}")
    diff = differences(logged, recomputed)
    click.echo("differences:" if diff else "no differences")
    for change in diff:
        click.echo(f"  {change}")
    sys.exit(1 if diff else 0)
