"""`up`/`down`/`status` of the local Kafka + PostgreSQL pair, used by the CLI and test fixtures.

Everything lives in the caller's state dir (ports, data, pids, logs, infra.env) except the Kafka
jars, which are cached per user (see kafka.cache_dir()).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.infra import kafka, postgres
from shared.infra.proc import InfraError, free_port, locked, port_in_use

log = logging.getLogger("switchboard.infra")

ENV_FILE = "infra.env"
PORTS_FILE = "ports.json"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str  # "127.0.0.1:PORT"
    database_url: str  # the services' role (switchboard_app)
    database_admin_url: str  # the owner role, for migrations
    database_superuser_url: str  # postgres, no password (local cluster only)

    @classmethod
    def local(cls, kafka_port: int, postgres_port: int) -> Endpoints:
        db = f"127.0.0.1:{postgres_port}/{postgres.DATABASE}"
        app, owner = postgres.APP_ROLE, postgres.OWNER_ROLE
        return cls(
            kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
            database_url=f"postgresql://{app}:{app}@{db}",
            database_admin_url=f"postgresql://{owner}:{owner}@{db}",
            database_superuser_url=f"postgresql://{postgres.SUPERUSER}@{db}",
        )

    def as_env(self) -> dict[str, str]:
        return {k.upper(): v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Ports:
    kafka: int
    kafka_controller: int
    postgres: int


def _ports(state_dir: Path) -> Ports | None:
    try:
        return Ports(**json.loads((state_dir / PORTS_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _ensure_ports(state_dir: Path) -> Ports:
    """Free ports chosen at the first `up` and kept: data, env files and running services
    that read infra.env stay valid across restarts."""
    ports = _ports(state_dir)
    if ports is None:
        chosen: list[int] = []
        for _ in range(3):
            chosen.append(free_port(exclude=chosen))
        ports = Ports(*chosen)
        (state_dir / PORTS_FILE).write_text(json.dumps(asdict(ports), indent=2) + "\n")
    return ports


def _require_free(state_dir: Path, *ports: int) -> None:
    # Our process is not running, so whoever answers there is a stranger (maybe another
    # engineer's broker): never talk to it as if it were ours.
    busy = [p for p in ports if port_in_use(p)]
    if busy:
        raise InfraError(
            f"port(s) {busy} from {state_dir / PORTS_FILE} are in use by another process; "
            f"stop it, or delete {PORTS_FILE} to choose new ports"
        )


def up(
    state_dir: Path,
    *,
    fast: bool = False,
    timeout: float = 120,
    timings: dict[str, float] | None = None,
) -> Endpoints:
    """Start whatever is not running yet and wait until both are usable; idempotent.

    `timeout` bounds each part's start-up, not the one-off jar download. `timings`, if given,
    receives the seconds each part took: "kafka_jars" (only when downloaded now), "kafka",
    "postgres" (only for parts started now) and "total".
    """
    timings = {} if timings is None else timings
    state_dir = state_dir.expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with locked(state_dir / ".lock"):
        ports = _ensure_ports(state_dir)
        endpoints = Endpoints.local(ports.kafka, ports.postgres)

        kafka_pid = kafka.running_pid(state_dir)
        started_kafka = kafka_pid is None
        kafka_began = time.monotonic()
        if kafka_pid is None:
            t = time.monotonic()
            lib, downloaded = kafka.ensure_jars()
            if downloaded:
                timings["kafka_jars"] = time.monotonic() - t
            _require_free(state_dir, ports.kafka, ports.kafka_controller)
            kafka_began = time.monotonic()
            kafka_pid = kafka.start(state_dir, ports.kafka, ports.kafka_controller, lib)

        # PostgreSQL starts while the JVM warms up: the two overlap on purpose.
        try:
            pg_began = time.monotonic()
            started_pg = postgres.running_pid(state_dir) is None
            if started_pg:
                _require_free(state_dir, ports.postgres)
                postgres.init(state_dir, fast=fast)
                postgres.start(state_dir, ports.postgres, fast=fast, timeout=timeout)
            elif postgres.mode(state_dir) != ("fast" if fast else "normal"):
                log.warning(
                    "PostgreSQL already runs in %s mode; `down` first to change it",
                    postgres.mode(state_dir),
                )
            postgres.provision(ports.postgres, deadline=time.monotonic() + timeout)
            if started_pg:
                timings["postgres"] = time.monotonic() - pg_began

            deadline = (kafka_began if started_kafka else time.monotonic()) + timeout
            kafka.wait_ready(state_dir, kafka_pid, endpoints.kafka_bootstrap_servers, deadline)
        except BaseException:
            # A half-started broker would hold the ports and confuse the next `up`.
            if started_kafka:
                kafka.stop(state_dir, timeout=10)
            raise
        if started_kafka:
            timings["kafka"] = time.monotonic() - kafka_began
    timings["total"] = time.monotonic() - began
    return endpoints


def down(state_dir: Path, *, timeout: float = 60) -> None:
    """Stop both gracefully (SIGKILL after `timeout` s each); data, ports and logs are kept."""
    state_dir = state_dir.expanduser().resolve()
    if not state_dir.is_dir():
        return
    with locked(state_dir / ".lock"):
        if kafka.stop(state_dir, timeout=timeout):
            log.info("Kafka stopped")
        if postgres.stop(state_dir, timeout=timeout):
            log.info("PostgreSQL stopped")


def status(state_dir: Path) -> dict[str, Any]:
    """Whether each part runs, with pids, ports, logs and (once ports exist) the endpoints."""
    state_dir = state_dir.expanduser().resolve()
    ports = _ports(state_dir)
    kafka_pid = kafka.running_pid(state_dir)
    pg_pid = postgres.running_pid(state_dir)
    return {
        "state_dir": str(state_dir),
        "running": kafka_pid is not None and pg_pid is not None,
        "kafka": {
            "running": kafka_pid is not None,
            "pid": kafka_pid,
            "port": ports.kafka if ports else None,
            "controller_port": ports.kafka_controller if ports else None,
            "log": str(kafka.Paths.of(state_dir).log),
        },
        "postgres": {
            "running": pg_pid is not None,
            "pid": pg_pid,
            "port": ports.postgres if ports else None,
            "mode": postgres.mode(state_dir),
            "log": str(postgres.Paths.of(state_dir).log),
        },
        "endpoints": asdict(Endpoints.local(ports.kafka, ports.postgres)) if ports else None,
    }


def write_env_file(state_dir: Path, e: Endpoints) -> Path:
    """<state_dir>/infra.env: KEY=value lines for `set -a; . file` and for pydantic-settings."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / ENV_FILE
    lines = ["# Written by `switchboard infra up`; overwritten at every up."]
    lines += [f"{k}={shlex.quote(v)}" for k, v in e.as_env().items()]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)  # atomic: a service reading it never sees half a file
    return path


def endpoints_from_env() -> Endpoints:
    """Addresses of externally managed infrastructure (SWITCHBOARD_INFRA=external).
    The admin URL defaults to DATABASE_URL, the superuser URL to the admin URL."""
    missing = [k for k in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL") if not os.environ.get(k)]
    if missing:
        raise InfraError(
            f"SWITCHBOARD_INFRA=external needs {', '.join(missing)} in the environment"
        )
    admin = os.environ.get("DATABASE_ADMIN_URL") or os.environ["DATABASE_URL"]
    return Endpoints(
        kafka_bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=os.environ["DATABASE_URL"],
        database_admin_url=admin,
        database_superuser_url=os.environ.get("DATABASE_SUPERUSER_URL") or admin,
    )
