"""`switchboard db migrate` and `switchboard topics create`."""

from __future__ import annotations

import asyncio

import click

from shared.caselog.migrate import MigrationRefused, migrate
from shared.settings import get_settings
from shared.topics_admin import provision


@click.group()
def db() -> None:
    """The PostgreSQL schema."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending SQL migrations (as the owner role) and the service role's grants."""
    s = get_settings()
    try:
        applied = asyncio.run(migrate(s.database_admin_url, s.database_app_role))
    except MigrationRefused as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema up to date")


@click.group()
def topics() -> None:
    """The Kafka topics."""


@topics.command("create")
@click.option("--partitions", type=int, default=None, help="partitions per topic")
def topics_create(partitions: int | None) -> None:
    """Create every Switchboard topic that does not exist yet; set retention (the card-data
    boundary: TOPIC_RETENTION_INBOUND_HOURS, TOPIC_RETENTION_DLQ_HOURS) on those that do."""
    s = get_settings()
    count = partitions or s.topic_partitions
    done = asyncio.run(provision(s.kafka_bootstrap_servers, count))
    click.echo(f"created: {', '.join(done.created)}" if done.created else "all topics exist")
    for name, config in done.updated.items():
        click.echo(f"set on {name}: {', '.join(f'{k}={v}' for k, v in config.items())}")
