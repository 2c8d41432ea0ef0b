"""The `switchboard` command: infrastructure, migrations, topics and the case log."""

from __future__ import annotations

import click

from shared.cli.caselog import log_group
from shared.cli.classifier import classifier
from shared.cli.contracts import contracts
from shared.cli.dlq import dlq_group
from shared.cli.infra import infra
from shared.cli.intake import intake_group
from shared.cli.keys import keys_group
from shared.cli.setup import db, topics
from shared.cli.sla import sla_group


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
