"""`switchboard db migrate` and `switchboard topics create`."""

from __future__ import annotations

import asyncio

import click

from shared.caselog.migrate import MigrationRefused, migrate
from shared.settings import get_settings
from shared.topics_admin import create_topics


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
    """Create every Switchboard topic that does not exist yet."""
    s = get_settings()
    count = partitions or s.topic_partitions
    created = asyncio.run(create_topics(s.kafka_bootstrap_servers, count))
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")
