"""`switchboard infra up|down|status`: the local Kafka broker and PostgreSQL, without Docker."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from shared.infra import InfraError, down, endpoints_from_env, local, status, up, write_env_file
from shared.settings import default_state_dir


def _external() -> bool:
    return os.environ.get("SWITCHBOARD_INFRA", "local") == "external"


def _log_to_stderr() -> None:
    # Progress (first-run jar download, apt-get, warnings) goes to stderr; results to stdout.
    logger = logging.getLogger("switchboard.infra")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


@click.group()
def infra() -> None:
    """Local Kafka 4.1.1 (KRaft) and PostgreSQL processes, kept in the state dir."""


@infra.command("up")
@click.option("--fast", is_flag=True, help="fsync=off etc. on PostgreSQL: tests only.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds per part.")
@click.option("--brokers", type=click.IntRange(1, 9), default=None,
              help="Kafka nodes (KRaft, each broker and controller); default 1. With 3 or "
                   "more, topics get 3 replicas and min.insync.replicas=2.")
@click.option("--secure/--plaintext", default=None,
              help="Kafka over SASL_SSL (SCRAM-SHA-512) and PostgreSQL over TLS only, with a "
                   "local CA that clients verify; default plaintext.")
def up_cmd(fast: bool, timeout: float, brokers: int | None, secure: bool | None) -> None:
    """Start Kafka and PostgreSQL (if not running) and write <state dir>/infra.env.

    The number of brokers and the security mode are fixed when the state dir's cluster is
    made; to change them, `infra down --purge` first."""
    state_dir = default_state_dir()
    if _external():
        try:
            endpoints = endpoints_from_env()
        except InfraError as e:
            raise click.ClickException(str(e)) from e
        click.echo("SWITCHBOARD_INFRA=external: starting nothing")
    else:
        _log_to_stderr()
        timings: dict[str, float] = {}
        try:
            endpoints = up(state_dir, fast=fast, timeout=timeout, timings=timings,
                           brokers=brokers, secure=secure)
        except InfraError as e:
            raise click.ClickException(str(e)) from e
        if "kafka_jars" in timings:
            click.echo(f"kafka jars  downloaded in {timings['kafka_jars']:.1f} s (first run)")
        for part in ("kafka", "postgres"):
            took = timings.get(part)
            done = f"started in {took:.1f} s" if took is not None else "already running"
            click.echo(f"{part:<11} {done}")
        click.echo(f"total       {timings['total']:.1f} s" + (" (fast mode)" if fast else ""))
    path = write_env_file(state_dir, endpoints)
    shown = endpoints.masked()
    for key in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "DATABASE_URL"):
        if key in shown:
            click.echo(f"{key}={shown[key]}")
    click.echo(f"env file    {path}   (mode 0600, with the passwords: set -a; . {path}; set +a)")


@infra.command("down")
@click.option(
    "--purge", is_flag=True, help="Also delete the state dir and all data (the next up is empty)."
)
def down_cmd(purge: bool) -> None:
    """Stop Kafka and PostgreSQL; data, ports and logs stay in the state dir unless --purge."""
    if _external():
        click.echo("SWITCHBOARD_INFRA=external: nothing to stop")
        return
    _log_to_stderr()
    try:
        if purge:
            local.purge(default_state_dir())
        else:
            down(default_state_dir())
    except InfraError as e:
        raise click.ClickException(str(e)) from e
    click.echo("stopped, data deleted" if purge else "stopped")


@infra.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(as_json: bool) -> None:
    """Whether Kafka and PostgreSQL run, with pids, ports, logs and endpoints (passwords
    masked: they are in <state dir>/infra.env)."""
    if _external():
        click.echo("SWITCHBOARD_INFRA=external: not managed here")
        return
    info = status(default_state_dir())
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"state dir   {info['state_dir']}")
    for node in info["kafka"]["nodes"]:
        state = f"running (pid {node['pid']})" if node["running"] else "stopped"
        name = "kafka" if len(info["kafka"]["nodes"]) == 1 else f"kafka {node['node_id']}"
        click.echo(f"{name:<11} {state}, port {node['port']}, log {node['log']}")
    if info["kafka"]["secure"]:
        click.echo("security    Kafka SASL_SSL (SCRAM-SHA-512), PostgreSQL TLS (verify-full)")
    p = info["postgres"]
    state = f"running (pid {p['pid']})" if p["running"] else "stopped"
    click.echo(f"{'postgres':<11} {state}, port {p['port']}, log {p['log']}")
    click.echo(f"pg data     {info['postgres']['data']}")
    if info["endpoints"]:
        for key, value in info["endpoints"].items():
            click.echo(f"{key}={value}")
