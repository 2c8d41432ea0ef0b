"""`up`/`down`/`status` of the local Kafka + PostgreSQL pair, used by the CLI and test fixtures.

Everything lives in the caller's state dir (ports, data, pids, logs, infra.env) except the Kafka
jars, which are cached per user (see kafka.cache_dir()), and, when running as root, PostgreSQL's
data dir, which must be reachable by the `postgres` OS user (see postgres.server_dir()).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.infra import kafka, postgres
from shared.infra.proc import InfraError, free_port, locked, port_in_use, write_private

log = logging.getLogger("switchboard.infra")

ENV_FILE = "infra.env"
PORTS_FILE = "ports.json"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str  # "127.0.0.1:PORT"
    database_url: str  # the services' role (switchboard_app)
    database_admin_url: str  # the owner role, for migrations
    database_superuser_url: str  # postgres (tests and operators only)

    @classmethod
    def local(cls, kafka_port: int, postgres_port: int, pw: postgres.Passwords) -> Endpoints:
        db = f"127.0.0.1:{postgres_port}/{postgres.DATABASE}"

        def url(role: str, password: str) -> str:
            return f"postgresql://{role}:{quote(password, safe='')}@{db}"

        return cls(
            kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}",
            database_url=url(postgres.APP_ROLE, pw.app),
            database_admin_url=url(postgres.OWNER_ROLE, pw.owner),
            database_superuser_url=url(postgres.SUPERUSER, pw.superuser),
        )

    def as_env(self) -> dict[str, str]:
        return {k.upper(): v for k, v in asdict(self).items()}

    def masked(self) -> dict[str, str]:
        """as_env() with the passwords replaced by `***`, for printing."""
        return {k: mask_password(v) for k, v in self.as_env().items()}


def mask_password(url: str) -> str:
    return re.sub(r"^([a-z+]+://[^:/@]+):[^@]*@", r"\1:***@", url)


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
    state_dir = _make_state_dir(state_dir)
    began = time.monotonic()
    with locked(state_dir / ".lock"):
        ports = _ensure_ports(state_dir)

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
                postgres.retire_legacy(state_dir)
                _require_free(state_dir, ports.postgres)
                postgres.init(state_dir, fast=fast)
                postgres.start(state_dir, ports.postgres, fast=fast, timeout=timeout)
            elif postgres.mode(state_dir) != ("fast" if fast else "normal"):
                log.warning(
                    "PostgreSQL already runs in %s mode; `down` first to change it",
                    postgres.mode(state_dir),
                )
            passwords = postgres.Passwords.load(state_dir)
            if passwords is None:
                raise InfraError(
                    f"{postgres.Paths.of(state_dir).passwords} is missing while PostgreSQL runs: "
                    "`switchboard infra down --purge` and `up` again make a new cluster"
                )
            endpoints = Endpoints.local(ports.kafka, ports.postgres, passwords)
            postgres.provision(ports.postgres, passwords, deadline=time.monotonic() + timeout)
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


def _make_state_dir(state_dir: Path) -> Path:
    """The state dir, resolved; created 0700 (it holds the env file with the passwords)."""
    state_dir = state_dir.expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    st = state_dir.stat()
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:  # also one made 0755 by older versions
        state_dir.chmod(0o700)
    return state_dir


def down(state_dir: Path, *, timeout: float = 60, remove_data: bool = False) -> None:
    """Stop both gracefully (SIGKILL after `timeout` s each). Ports and logs are kept; data too
    unless `remove_data` (then the broker's and the database's data, passwords and env file go:
    the next `up` starts empty)."""
    state_dir = state_dir.expanduser().resolve()
    if not state_dir.is_dir():
        return
    with locked(state_dir / ".lock"):
        if kafka.stop(state_dir, timeout=timeout):
            log.info("Kafka stopped")
        if postgres.stop(state_dir, timeout=timeout):
            log.info("PostgreSQL stopped")
        if remove_data:
            postgres.remove(state_dir)
            kafka.remove(state_dir)
            (state_dir / ENV_FILE).unlink(missing_ok=True)


def purge(state_dir: Path, *, timeout: float = 60) -> None:
    """Stop both and delete everything of this state dir: data (also outside it, see
    postgres.server_dir), ports, logs and the dir itself."""
    state_dir = state_dir.expanduser().resolve()
    down(state_dir, timeout=timeout, remove_data=True)
    shutil.rmtree(state_dir, ignore_errors=True)


def status(state_dir: Path) -> dict[str, Any]:
    """Whether each part runs, with pids, ports, logs and (once ports exist) the endpoints."""
    state_dir = state_dir.expanduser().resolve()
    ports = _ports(state_dir)
    passwords = postgres.Passwords.load(state_dir)
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
            "data": str(postgres.Paths.of(state_dir).data),
            "log": str(postgres.Paths.of(state_dir).log),
        },
        "endpoints": (
            Endpoints.local(ports.kafka, ports.postgres, passwords).masked()
            if ports and passwords
            else None
        ),
    }


def write_env_file(state_dir: Path, e: Endpoints) -> Path:
    """<state_dir>/infra.env: KEY=value lines for `set -a; . file` and for pydantic-settings.
    It holds the database passwords: mode 0600, replaced atomically."""
    path = _make_state_dir(state_dir) / ENV_FILE
    lines = ["# Written by `switchboard infra up`; overwritten at every up. Holds passwords: 0600."]
    lines += [f"{k}={shlex.quote(v)}" for k, v in e.as_env().items()]
    write_private(path, "\n".join(lines) + "\n")
    return path


def endpoints_from_env() -> Endpoints:
    """Addresses of externally managed infrastructure (SWITCHBOARD_INFRA=external).
    The admin URL defaults to DATABASE_URL (then `db migrate` refuses to run: the services' role
    must not own the log), the superuser URL to the admin URL."""
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
