"""A throwaway PostgreSQL cluster for one state dir, run by the Debian binaries (no Docker).

initdb and pg_ctl refuse to run as root, and our sessions and CI run as root. A non-root user
runs the server as themselves, with the data in `<state dir>/postgres/data`. Root runs every
server-side command as the `postgres` OS user, and that user may not be able to reach the state
dir at all (a checkout under /root, or in `mktemp -d`, is 0700): so as root the data dir always
lives in `/var/lib/switchboard/postgres/<name>-<hash of the state dir>/data`, owned 0700 by
`postgres`, while everything else (pid and mode files, the passwords, the log) stays in the state
dir, which the server never touches: its log goes to a file descriptor opened by us.

Authentication: scram-sha-256 over loopback TCP for every role, the superuser included, with
passwords generated at `initdb` and kept in `<state dir>/postgres/passwords.json` (mode 0600);
there is no Unix socket and no `trust` rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg

from shared.infra import paths, prereqs
from shared.infra.proc import (
    InfraError,
    alive,
    cmdline,
    read_pid,
    rotate,
    run_async,
    tail,
    terminate,
    write_private,
)
from shared.infra.tls import TlsFiles
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
# As root, the servers' own dirs live here (one per state dir), reachable by the `postgres` user
# whatever the mode of the checkout; root-owned and not world-writable, so no other local user
# can plant a symlink in the path.
SERVER_BASE = Path("/var/lib/switchboard/postgres")


def as_root() -> bool:
    return os.geteuid() == 0


def server_dir(state_dir: Path) -> Path:
    """The server's dir for `state_dir` when running as root: a readable name plus a hash of the
    resolved path, so two checkouts (or a checkout and its tests) never share a cluster."""
    state = state_dir.expanduser().resolve()
    digest = hashlib.sha256(str(state).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(state.parts[-3:])).strip("-")[-40:]
    return SERVER_BASE / f"{name}-{digest}"


@dataclass(frozen=True)
class Paths(paths.Paths):
    """`root` (<state dir>/postgres) holds the pid, mode and passwords files, never read by the
    server; `server` is `root` itself unless we run as root (`server_dir`)."""

    @classmethod
    def of(cls, state_dir: Path) -> Paths:
        root = state_dir / "postgres"
        server = server_dir(state_dir) if as_root() else root
        return cls("postgres", root=root, logs=state_dir / "logs", server=server)

    @property
    def legacy_data(self) -> Path | None:
        """Where clusters made by root lived before they moved out of the state dir."""
        return self.root / "data" if self.server != self.root else None

    @property
    def mode(self) -> Path:
        return self.root / "mode"

    @property
    def passwords(self) -> Path:
        return self.root / "passwords.json"


@dataclass(frozen=True)
class Passwords:
    """The cluster's generated passwords: superuser, owner (migrations), app (services)."""

    superuser: str
    owner: str
    app: str

    @classmethod
    def load(cls, state_dir: Path) -> Passwords | None:
        try:
            return cls(**json.loads(Paths.of(state_dir).passwords.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def create(cls, state_dir: Path) -> Passwords:
        new = cls(*(secrets.token_urlsafe(24) for _ in range(3)))
        write_private(Paths.of(state_dir).passwords, json.dumps(asdict(new), indent=2) + "\n")
        return new


def _as_server_user(cmd: list[str]) -> list[str]:
    if not as_root():
        return cmd
    try:
        import pwd

        pwd.getpwnam(OS_USER)
    except KeyError:
        raise InfraError(
            f"running as root, but there is no {OS_USER!r} OS user (it comes with the "
            "PostgreSQL server package)"
        ) from None
    return ["runuser", "-u", OS_USER, "--", *cmd]


def _chown(path: Path) -> None:
    if as_root():
        shutil.chown(path, OS_USER, OS_USER)


def bindir() -> Path:
    """The PostgreSQL server binaries, installed first if missing (see prereqs)."""
    found = prereqs.postgres_bindir()
    if found is None:
        try:
            prereqs.ensure(("postgresql",))
        except prereqs.PrerequisiteError as e:
            raise InfraError(str(e)) from None
        found = prereqs.postgres_bindir()
    if found is None:
        raise InfraError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    return found


def _postmaster(data: Path) -> int | None:
    pid = read_pid(data / "postmaster.pid")
    if pid and alive(pid) and str(data) in cmdline(pid):
        return pid
    return None


def running_pid(state_dir: Path) -> int | None:
    """The postmaster's pid if our cluster runs (its command line names our data dir)."""
    return _postmaster(Paths.of(state_dir).data)


def _shut(data: Path, timeout: float) -> bool:
    """Stop a postmaster by signal (SIGINT = fast shutdown). True if one was running."""
    pid = _postmaster(data)
    if pid is None:
        return False
    if not terminate(pid, timeout, first=signal.SIGINT):
        log.warning("PostgreSQL (pid %d) ignored a fast shutdown and was killed", pid)
    return True


def retire_legacy(state_dir: Path) -> None:
    """As root, a cluster that an older Switchboard made inside the state dir is stopped and
    deleted: its superuser had no password, and `postgres` may no longer reach it."""
    legacy = Paths.of(state_dir).legacy_data
    if legacy is None or not legacy.exists():
        return
    _shut(legacy, 30)
    log.warning("removing %s (made by an older Switchboard; clusters now live in %s)",
                legacy, SERVER_BASE)  # fmt: skip
    shutil.rmtree(legacy, ignore_errors=True)


def _prepare_server_dir(state_dir: Path, p: Paths) -> None:
    if p.server == p.root:
        p.server.mkdir(parents=True, exist_ok=True)
        return
    for d in (SERVER_BASE.parent, SERVER_BASE):
        if not d.exists():
            d.mkdir(mode=0o755, exist_ok=True)  # another `up` may make it at the same time
            d.chmod(0o755)  # whatever the umask
        st = d.lstat()
        if d.is_symlink() or st.st_uid != 0 or st.st_mode & 0o022:
            raise InfraError(f"{d} must be a directory owned by root and writable only by root")
    _prune_orphans(p.server)
    p.server.mkdir(mode=0o700, exist_ok=True)
    p.server.chmod(0o700)
    _chown(p.server)
    (p.server / "origin").write_text(f"{state_dir.expanduser().resolve()}\n")


def _prune_orphans(keep: Path) -> None:
    """Servers' dirs whose state dir is gone (a deleted clone) hold data nobody can log in to:
    their passwords went with the state dir. Delete them unless a server still runs there."""
    for d in SERVER_BASE.iterdir():
        try:
            origin = Path((d / "origin").read_text().strip())
        except OSError:
            continue  # being created right now, or not ours
        if d == keep or origin.exists() or _postmaster(d / "data") is not None:
            continue
        log.info("removing %s: its state dir %s no longer exists", d, origin)
        shutil.rmtree(d, ignore_errors=True)


def init(state_dir: Path, *, fast: bool = False) -> bool:
    """initdb on first use, with a generated superuser password. True if a cluster was made."""
    p = Paths.of(state_dir)
    if (p.data / "PG_VERSION").is_file():
        if Passwords.load(state_dir) is not None:
            return False
        log.warning("%s has no passwords file (made by an older Switchboard, or its state dir "
                    "was removed): replacing it with a new cluster", p.data)  # fmt: skip
        _shut(p.data, 30)
        shutil.rmtree(p.data)
    initdb = bindir() / "initdb"
    _prepare_server_dir(state_dir, p)
    p.root.mkdir(parents=True, exist_ok=True)
    passwords = Passwords.create(state_dir)
    p.data.mkdir(mode=0o700, exist_ok=True)
    p.data.chmod(0o700)
    _chown(p.data)
    # initdb reads the superuser's password from a file it can open as the server user.
    pwfile = p.server / ".superuser-password"
    write_private(pwfile, passwords.superuser + "\n")
    _chown(pwfile)
    cmd = [str(initdb), "-D", str(p.data), "-U", SUPERUSER, "-E", "UTF8", "--locale=C",
           "--auth=scram-sha-256", f"--pwfile={pwfile}"]  # fmt: skip
    if fast:
        cmd.append("--no-sync")  # skips fsyncing the new files: throwaway data only
    try:
        done = subprocess.run(
            _as_server_user(cmd), capture_output=True, text=True, check=False, cwd=p.server
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise InfraError(f"initdb failed:\n{done.stdout}{done.stderr}")
    with (p.data / "postgresql.conf").open("a") as f:
        f.write(f"\n# Switchboard: port, listen address and mode\ninclude '{INCLUDE_FILE}'\n")
    return True


def _configure(p: Paths, port: int, fast: bool, tls: TlsFiles | None = None) -> None:
    conf = f"port = {port}\n\n" + (DEPLOY_DIR / "postgresql.conf").read_text()
    if fast:
        conf += "\n" + (DEPLOY_DIR / "postgresql.fast.conf").read_text()
    if os.environ.get("SWITCHBOARD_PG_STATEMENTS") == "1":
        conf += "\n" + (DEPLOY_DIR / "postgresql.statements.conf").read_text()
    hba = (DEPLOY_DIR / "pg_hba.conf").read_text()
    if tls is not None:
        conf += "\n" + (DEPLOY_DIR / "postgresql.tls.conf").read_text()
        hba = (DEPLOY_DIR / "pg_hba.tls.conf").read_text()
        # The server reads its certificate and key from its own data dir: the key 0600 and
        # owned by the server's user, as PostgreSQL requires.
        for source, name in ((tls.cert, "server.crt"), (tls.key, "server.key")):
            target = p.data / name
            write_private(target, source.read_text())
            _chown(target)
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


def start(state_dir: Path, port: int, *, fast: bool, timeout: float,
          tls: TlsFiles | None = None) -> int:
    """pg_ctl start -w (returns when the server accepts connections); the postmaster's pid.
    With `tls`, the server accepts TLS connections only."""
    p = Paths.of(state_dir)
    _configure(p, port, fast, tls)
    p.logs.mkdir(parents=True, exist_ok=True)
    rotate(p.log)
    cmd = [str(bindir() / "pg_ctl"), "start", "-D", str(p.data), "-w",
           "-t", str(max(1, int(timeout))), "-s"]  # fmt: skip
    # Without -l, pg_ctl hands the server its own stdout: a log file we opened, so the server
    # user needs no access to the state dir.
    with p.log.open("ab") as out:
        done = subprocess.run(
            _as_server_user(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            check=False, start_new_session=True, cwd=p.server,
        )  # fmt: skip
    pid = read_pid(p.data / "postmaster.pid")
    if done.returncode != 0 or pid is None:
        raise InfraError(
            f"PostgreSQL did not start (pg_ctl exit {done.returncode}); "
            f"last lines of {p.log}:\n{tail(p.log)}"
        )
    p.pid.write_text(f"{pid}\n")
    return pid


def provision(port: int, passwords: Passwords, deadline: float) -> None:
    """Roles, database and schema privileges; idempotent, so it runs at every `up`."""
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            run_async(lambda: _provision(port, passwords))
            return
        except (OSError, asyncpg.CannotConnectNowError) as e:  # not accepting connections yet
            last_error = e
            time.sleep(0.2)
    raise InfraError(f"PostgreSQL on 127.0.0.1:{port} refused connections: {last_error!r}")


async def _superuser(port: int, passwords: Passwords, database: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1", port=port, user=SUPERUSER, password=passwords.superuser,
        database=database,
    )  # fmt: skip


async def _provision(port: int, passwords: Passwords) -> None:
    conn = await _superuser(port, passwords, "postgres")
    try:
        for role, password in ((OWNER_ROLE, passwords.owner), (APP_ROLE, passwords.app)):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            # ALTER as well as CREATE, so a role someone changed by hand is put back.
            literal = await conn.fetchval("SELECT quote_literal($1)", password)
            await conn.execute(
                f"{'ALTER' if exists else 'CREATE'} ROLE {role} "
                f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {literal}"
            )
        # The services' role may not act as the owner (who can disable the log's trigger).
        if await conn.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", APP_ROLE, OWNER_ROLE):
            await conn.execute(f"REVOKE {OWNER_ROLE} FROM {APP_ROLE}")
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"ALTER DATABASE {DATABASE} OWNER TO {OWNER_ROLE}")
        else:
            await conn.execute(f"CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}")
    finally:
        await conn.close()

    conn = await _superuser(port, passwords, DATABASE)
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
        done = subprocess.run(
            _as_server_user(cmd), capture_output=True, text=True, check=False, cwd=p.server
        )
        if done.returncode != 0 and alive(pid):
            log.warning("pg_ctl stop failed (%s): killing PostgreSQL", done.stderr.strip())
            terminate(pid, 10, first=signal.SIGQUIT)
    if p.legacy_data is not None and _shut(p.legacy_data, timeout):
        log.info("stopped the old-layout cluster in %s", p.legacy_data)
    p.pid.unlink(missing_ok=True)
    return pid is not None


def remove(state_dir: Path) -> None:
    """Stop the cluster and delete its data and passwords (the server's dir too, as root)."""
    p = Paths.of(state_dir)
    stop(state_dir)
    shutil.rmtree(p.data, ignore_errors=True)
    if p.server != p.root:
        shutil.rmtree(p.server, ignore_errors=True)
    if p.legacy_data is not None:
        shutil.rmtree(p.legacy_data, ignore_errors=True)
    for f in (p.passwords, p.mode):
        with contextlib.suppress(OSError):
            f.unlink()
