"""A throwaway PostgreSQL cluster in the state dir, run by the Debian binaries (no Docker).

initdb/pg_ctl refuse to run as root, and our sessions and CI run as root: then every server-side
command runs as the `postgres` OS user (runuser) and the data dir belongs to that user.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shared.infra.proc import (
    InfraError,
    alive,
    cmdline,
    read_pid,
    rotate,
    run_async,
    tail,
    terminate,
)
from shared.settings import REPO_ROOT

log = logging.getLogger("switchboard.infra")

DEPLOY_DIR = REPO_ROOT / "deploy" / "local" / "postgres"
OS_USER = "postgres"
SUPERUSER = "postgres"
OWNER_ROLE = "switchboard_owner"
APP_ROLE = "switchboard_app"
DATABASE = "switchboard"
# The cluster's postgresql.conf includes this file, rewritten at every start (port and mode).
INCLUDE_FILE = "switchboard.conf"


@dataclass(frozen=True)
class Paths:
    root: Path
    logs: Path

    @classmethod
    def of(cls, state_dir: Path) -> Paths:
        return cls(root=state_dir / "postgres", logs=state_dir / "logs")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pid(self) -> Path:
        return self.root / "postgres.pid"

    @property
    def mode(self) -> Path:
        return self.root / "mode"

    @property
    def log(self) -> Path:
        return self.logs / "postgres.log"


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise InfraError(f"running as root, but there is no {OS_USER!r} OS user") from None
    return ["runuser", "-u", OS_USER, "--", *cmd]


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, OS_USER, OS_USER)


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name)) or (0,)


def bindir() -> Path:
    """The newest Debian PostgreSQL bin dir, else the one on PATH; apt-get it if absent."""
    for attempt in range(2):
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.insert(0, Path(on_path).resolve().parent)
        for d in reversed(candidates):
            if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
                return d
        if attempt == 0 and os.geteuid() == 0 and shutil.which("apt-get"):
            log.warning("PostgreSQL binaries not found: running apt-get install -y postgresql")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update"], check=False, env=env)
            subprocess.run(["apt-get", "install", "-y", "postgresql"], check=False, env=env)
    raise InfraError("PostgreSQL binaries (initdb, pg_ctl) not found; install postgresql")


def running_pid(state_dir: Path) -> int | None:
    """The postmaster's pid if our cluster runs (its command line names our data dir)."""
    p = Paths.of(state_dir)
    pid = read_pid(p.data / "postmaster.pid")
    if pid and alive(pid) and str(p.data) in cmdline(pid):
        return pid
    return None


def init(state_dir: Path, *, fast: bool = False) -> bool:
    """initdb on first use. Returns True if a new cluster was created."""
    p = Paths.of(state_dir)
    if (p.data / "PG_VERSION").is_file():
        return False
    p.data.mkdir(parents=True, exist_ok=True)
    p.data.chmod(0o700)
    _chown(p.data)
    if os.geteuid() == 0:
        reach = subprocess.run(_as_server_user(["test", "-w", str(p.data)]), check=False)
        if reach.returncode != 0:
            raise InfraError(
                f"the {OS_USER!r} OS user cannot write {p.data} (a parent dir is private?): "
                "choose another state dir with SWITCHBOARD_STATE_DIR"
            )
    cmd = [str(bindir() / "initdb"), "-D", str(p.data), "-U", SUPERUSER, "-E", "UTF8",
           "--locale=C", "--auth=trust"]  # fmt: skip
    if fast:
        cmd.append("--no-sync")  # skips fsyncing the new files: throwaway data only
    done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InfraError(f"initdb failed:\n{done.stdout}{done.stderr}")
    with (p.data / "postgresql.conf").open("a") as f:
        f.write(f"\n# Switchboard: port, listen address and mode\ninclude '{INCLUDE_FILE}'\n")
    return True


def _configure(p: Paths, port: int, fast: bool) -> None:
    conf = f"port = {port}\n\n" + (DEPLOY_DIR / "postgresql.conf").read_text()
    if fast:
        conf += "\n" + (DEPLOY_DIR / "postgresql.fast.conf").read_text()
    hba = (DEPLOY_DIR / "pg_hba.conf").read_text()
    for name, text in ((INCLUDE_FILE, conf), ("pg_hba.conf", hba)):
        target = p.data / name
        target.write_text(text)
        _chown(target)
    p.mode.write_text("fast\n" if fast else "normal\n")


def mode(state_dir: Path) -> str | None:
    try:
        return Paths.of(state_dir).mode.read_text().strip()
    except OSError:
        return None


def start(state_dir: Path, port: int, *, fast: bool, timeout: float) -> int:
    """pg_ctl start -w (returns when the server accepts connections); the postmaster's pid."""
    p = Paths.of(state_dir)
    _configure(p, port, fast)
    p.logs.mkdir(parents=True, exist_ok=True)
    rotate(p.log)
    p.log.touch()
    _chown(p.log)  # pg_ctl, running as postgres, appends to it
    cmd = [str(bindir() / "pg_ctl"), "start", "-D", str(p.data), "-l", str(p.log), "-w",
           "-t", str(max(1, int(timeout))), "-s"]  # fmt: skip
    done = subprocess.run(
        _as_server_user(cmd), capture_output=True, text=True, check=False, start_new_session=True
    )
    pid = read_pid(p.data / "postmaster.pid")
    if done.returncode != 0 or pid is None:
        raise InfraError(
            f"PostgreSQL did not start ({done.stdout}{done.stderr}); "
            f"last lines of {p.log}:\n{tail(p.log)}"
        )
    p.pid.write_text(f"{pid}\n")
    return pid


def provision(port: int, deadline: float) -> None:
    """Roles, database and schema privileges; idempotent, so it runs at every `up`."""
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            run_async(lambda: _provision(port))
            return
        except (OSError, asyncpg.CannotConnectNowError) as e:  # not accepting connections yet
            last_error = e
            time.sleep(0.2)
    raise InfraError(f"PostgreSQL on 127.0.0.1:{port} refused connections: {last_error!r}")


async def _provision(port: int) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=SUPERUSER, database="postgres")
    try:
        for role in (OWNER_ROLE, APP_ROLE):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            # ALTER as well as CREATE, so a role someone changed by hand is put back.
            # The password equals the role name: a throwaway local cluster.
            await conn.execute(
                f"{'ALTER' if exists else 'CREATE'} ROLE {role} "
                f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{role}'"
            )
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"ALTER DATABASE {DATABASE} OWNER TO {OWNER_ROLE}")
        else:
            await conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}")
    finally:
        await conn.close()

    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=SUPERUSER, database=DATABASE)
    try:
        # Only the owner (migrations) creates objects; the services' role may only use them.
        await conn.execute(
            f"""
            REVOKE CREATE ON SCHEMA public FROM PUBLIC;
            GRANT USAGE ON SCHEMA public TO {APP_ROLE};
            GRANT ALL ON SCHEMA public TO {OWNER_ROLE};
            """
        )
    finally:
        await conn.close()


def stop(state_dir: Path, timeout: float = 60) -> bool:
    """pg_ctl stop -m fast (rolls back sessions, checkpoints); SIGQUIT then SIGKILL if it hangs.
    Returns True if a running cluster was stopped."""
    p = Paths.of(state_dir)
    pid = running_pid(state_dir)
    if pid is not None:
        cmd = [str(bindir() / "pg_ctl"), "stop", "-D", str(p.data), "-m", "fast", "-w",
               "-t", str(max(1, int(timeout))), "-s"]  # fmt: skip
        done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, check=False)
        if done.returncode != 0 and alive(pid):
            log.warning("pg_ctl stop failed (%s): killing PostgreSQL", done.stderr.strip())
            terminate(pid, 10, first=signal.SIGQUIT)
    p.pid.unlink(missing_ok=True)
    return pid is not None
