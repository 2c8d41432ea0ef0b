"""The `switchboard` command: infrastructure, migrations, topics and the case log."""

from __future__ import annotations

import click

from cli.caselog import log_group
from cli.classifier import classifier
from cli.contracts import contracts
from cli.dlq import dlq_group
from cli.infra import infra
from cli.intake import intake_group
from cli.keys import keys_group
from cli.setup import db, topics
from cli.sla import sla_group


@click.group()
def main() -> None:
    """Switchboard: route customer-service contacts over Kafka, with an immutable case log."""


main.add_command(db)
main.add_command(topics)
main.add_command(log_group)
main.add_command(dlq_group)

main.add_command(infra)
main.add_command(contracts)
main.add_command(classifier)
main.add_command(sla_group)
main.add_command(intake_group)
main.add_command(keys_group)
