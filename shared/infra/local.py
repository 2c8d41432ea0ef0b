"""`up`/`down`/`status` of the local Kafka + PostgreSQL pair, used by the CLI and test fixtures.

Everything lives in the caller's state dir (ports, data, pids, logs, infra.env) except the Kafka
jars, which are cached per user (see kafka.cache_dir()), and, when running as root, PostgreSQL's
data dir, which must be reachable by the `postgres` OS user (see postgres.server_dir()).

A state dir's cluster is one Kafka node (default) or several (`brokers=3`), PLAINTEXT (default)
or secure (`secure=True`: Kafka SASL_SSL with SCRAM-SHA-512, PostgreSQL TLS only, clients
verifying a local CA); the choice is kept in the state dir until it is purged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shared.infra import kafka, postgres, tls
from shared.infra.proc import InfraError, free_port, locked, port_in_use, write_private

log = logging.getLogger("switchboard.infra")

ENV_FILE = "infra.env"
PORTS_FILE = "ports.json"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap_servers: str  # "127.0.0.1:PORT[,127.0.0.1:PORT…]"
    database_url: str  # the services' role (switchboard_app)
    database_admin_url: str  # the owner role, for migrations
    database_superuser_url: str  # postgres (tests and operators only)
    # More settings the clients need (Kafka's KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, …).
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def local(cls, kafka_port: int | Sequence[int], postgres_port: int, pw: postgres.Passwords,
              *, kafka_env: dict[str, str] | None = None,
              ca_file: Path | None = None) -> Endpoints:
        """The local pair's addresses. With `ca_file`, the database URLs require TLS and verify
        the server's certificate and name against it (`sslmode=verify-full`)."""
        db = f"127.0.0.1:{postgres_port}/{postgres.DATABASE}"
        query = f"?sslmode=verify-full&sslrootcert={quote(str(ca_file))}" if ca_file else ""

        def url(role: str, password: str) -> str:
            return f"postgresql://{role}:{quote(password, safe='')}@{db}{query}"

        ports = [kafka_port] if isinstance(kafka_port, int) else list(kafka_port)
        return cls(
            kafka_bootstrap_servers=",".join(f"127.0.0.1:{p}" for p in ports),
            database_url=url(postgres.APP_ROLE, pw.app),
            database_admin_url=url(postgres.OWNER_ROLE, pw.owner),
            database_superuser_url=url(postgres.SUPERUSER, pw.superuser),
            extra_env=dict(kafka_env or {}),
        )

    def as_env(self) -> dict[str, str]:
        urls = {k.upper(): v for k, v in asdict(self).items() if k != "extra_env"}
        return {**urls, **self.extra_env}

    def masked(self) -> dict[str, str]:
        """as_env() with the passwords replaced by `***`, for printing."""
        return {k: "***" if k.endswith("PASSWORD") else mask_password(v)
                for k, v in self.as_env().items()}


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


def _layout(state_dir: Path, ports: Ports, brokers: int | None,
            secure: bool | None) -> kafka.Layout:
    """The state dir's cluster layout: the one it was made with, or a new one as asked."""
    known = kafka.Layout.load(state_dir)
    if known is None and (kafka.Paths.of(state_dir).data / "meta.properties").is_file():
        # Made before layouts were recorded: one plaintext node.
        known = kafka.Layout((kafka.Node(1, ports.kafka, ports.kafka_controller),))
        known.save(state_dir)
    if known is not None:
        wanted = (brokers or known.brokers, known.secure if secure is None else secure)
        if wanted != (known.brokers, known.secure):
            raise InfraError(
                f"{state_dir} holds a cluster of {known.brokers} broker(s), "
                f"{'secure' if known.secure else 'plaintext'}; `switchboard infra down --purge` "
                "first (or use another SWITCHBOARD_STATE_DIR) to make it "
                f"{wanted[0]} broker(s), {'secure' if wanted[1] else 'plaintext'}"
            )
        return known
    count = brokers or 1
    if count < 1:
        raise InfraError("--brokers must be 1 or more")
    nodes = [kafka.Node(1, ports.kafka, ports.kafka_controller)]
    taken = [ports.kafka, ports.kafka_controller, ports.postgres]
    for node_id in range(2, count + 1):
        broker_port = free_port(exclude=taken)
        taken.append(broker_port)
        controller_port = free_port(exclude=taken)
        taken.append(controller_port)
        nodes.append(kafka.Node(node_id, broker_port, controller_port))
    layout = kafka.Layout(tuple(nodes), bool(secure))
    layout.save(state_dir)
    return layout


def _endpoints(state_dir: Path, layout: kafka.Layout, postgres_port: int,
               passwords: postgres.Passwords) -> Endpoints:
    return Endpoints.local(
        [n.broker_port for n in layout.nodes], postgres_port, passwords,
        kafka_env=kafka.client_env(state_dir, layout),
        ca_file=tls.TlsFiles.of(state_dir).ca if layout.secure else None,
    )


def up(
    state_dir: Path,
    *,
    fast: bool = False,
    timeout: float = 120,
    timings: dict[str, float] | None = None,
    brokers: int | None = None,
    secure: bool | None = None,
) -> Endpoints:
    """Start whatever is not running yet and wait until both are usable; idempotent.

    `brokers` (default 1) and `secure` (default False) choose the cluster when the state dir is
    new; for an existing one they must match what it was made with (None: whatever that was).
    `timeout` bounds each part's start-up, not the one-off jar download. `timings`, if given,
    receives the seconds each part took: "kafka_jars" (only when downloaded now), "kafka",
    "postgres" (only for parts started now) and "total".
    """
    timings = {} if timings is None else timings
    state_dir = _make_state_dir(state_dir)
    began = time.monotonic()
    with locked(state_dir / ".lock"):
        ports = _ensure_ports(state_dir)
        layout = _layout(state_dir, ports, brokers, secure)
        tls_files = tls.ensure(state_dir) if layout.secure else None

        started: dict[int, int] = {}
        kafka_began = time.monotonic()
        missing = [n for n in layout.nodes if kafka.running_pid(state_dir, n.node_id) is None]
        if missing:
            t = time.monotonic()
            lib, downloaded = kafka.ensure_jars()
            if downloaded:
                timings["kafka_jars"] = time.monotonic() - t
            _require_free(state_dir, *(p for n in missing
                                       for p in (n.broker_port, n.controller_port)))
            kafka_began = time.monotonic()
            for node in missing:
                started[node.node_id] = kafka.start(state_dir, layout, node, lib)

        # PostgreSQL starts while the JVMs warm up: the two overlap on purpose.
        try:
            pg_began = time.monotonic()
            started_pg = postgres.running_pid(state_dir) is None
            if started_pg:
                postgres.retire_legacy(state_dir)
                _require_free(state_dir, ports.postgres)
                postgres.init(state_dir, fast=fast)
                postgres.start(state_dir, ports.postgres, fast=fast, timeout=timeout,
                               tls=tls_files)
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
            endpoints = _endpoints(state_dir, layout, ports.postgres, passwords)
            postgres.provision(ports.postgres, passwords, deadline=time.monotonic() + timeout)
            if started_pg:
                timings["postgres"] = time.monotonic() - pg_began

            deadline = (kafka_began if started else time.monotonic()) + timeout
            kafka.wait_ready(state_dir, started, layout, deadline)
        except BaseException:
            # Half-started brokers would hold the ports and confuse the next `up`.
            for node_id in started:
                kafka.stop_node(state_dir, node_id, timeout=10)
            raise
        if started:
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
            shutil.rmtree(tls.TlsFiles.of(state_dir).dir, ignore_errors=True)
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
    layout = kafka.Layout.load(state_dir)
    if layout is None and ports is not None:
        layout = kafka.Layout((kafka.Node(1, ports.kafka, ports.kafka_controller),))
    nodes = [{
        "node_id": node.node_id,
        "running": kafka.running_pid(state_dir, node.node_id) is not None,
        "pid": kafka.running_pid(state_dir, node.node_id),
        "port": node.broker_port,
        "controller_port": node.controller_port,
        "log": str(kafka.Paths.of(state_dir, node.node_id).log),
    } for node in (layout.nodes if layout else ())]
    first = nodes[0] if nodes else {
        "running": False, "pid": None, "port": None, "controller_port": None,
        "log": str(kafka.Paths.of(state_dir).log)}
    pg_pid = postgres.running_pid(state_dir)
    kafka_running = bool(nodes) and all(n["running"] for n in nodes)
    return {
        "state_dir": str(state_dir),
        "running": kafka_running and pg_pid is not None,
        "kafka": {
            "running": kafka_running,
            "pid": first["pid"],
            "port": first["port"],
            "controller_port": first["controller_port"],
            "log": first["log"],
            "brokers": len(nodes) or 1,
            "secure": bool(layout and layout.secure),
            "nodes": nodes,
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
            _endpoints(state_dir, layout, ports.postgres, passwords).masked()
            if ports and passwords and layout
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
