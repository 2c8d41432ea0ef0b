"""A fresh checkout in a private (0700) directory brings the infrastructure up, as root too.

Issue 13: as root, a clone under /root or in `mktemp -d` failed because the `postgres` OS user
could not reach the database's data dir inside it. This test copies the working tree into a new
0700 directory and runs the README's commands there with that checkout's own code: `infra up`,
`db migrate`, `topics create`, a record through Kafka and a query as the services' role, then
`infra down --purge`. On the way it checks the safe defaults of issue 10 (item 9): no password-
less superuser, password files 0600, and `db migrate` refusing the services' role as admin.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.settings import REPO_ROOT

pytestmark = pytest.mark.integration

# Variables that would point the copy at this checkout's (or the tests') infrastructure.
_OURS = ("SWITCHBOARD_", "KAFKA_", "DATABASE_", "PG")


def _copy_working_tree(dest: Path) -> None:
    """The files git tracks or would track, as they are now (uncommitted edits included)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split(b"\0")):
        src = REPO_ROOT / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


@pytest.fixture(scope="module")
def checkout() -> Iterator[Path]:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout to copy")
    private = Path(tempfile.mkdtemp(prefix="switchboard-private-"))  # mode 0700
    clone = private / "switchboard"
    _copy_working_tree(clone)
    yield clone
    run(clone, "infra", "down", "--purge", check=False)
    shutil.rmtree(private, ignore_errors=True)


def run(
    clone: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`switchboard ARGS` as the copy's own code (PYTHONPATH), in the copy."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    if "SWITCHBOARD_CACHE_DIR" in os.environ:  # the Kafka jars: no second download
        base["SWITCHBOARD_CACHE_DIR"] = os.environ["SWITCHBOARD_CACHE_DIR"]
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=clone, env={**base, "PYTHONPATH": str(clone), **(env or {})},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, f"switchboard {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: shlex.split(v)[0] for k, v in pairs if not k.startswith("#")}


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def owner_and_mode(path: Path) -> tuple[str, int]:
    return path.owner(), mode(path)


async def test_a_private_checkout_runs_the_readme_commands(checkout: Path) -> None:
    assert mode(checkout.parent) == 0o700

    run(checkout, "infra", "up", "--fast")
    state = checkout / ".switchboard"  # the copy's code ran: its own state dir
    env = read_env(state / "infra.env")
    assert mode(state) == 0o700
    assert mode(state / "infra.env") == 0o600
    assert mode(state / "postgres" / "passwords.json") == 0o600

    info = json.loads(run(checkout, "infra", "status", "--json").stdout)
    assert info["running"], info
    data = Path(info["postgres"]["data"])
    if os.geteuid() == 0:
        # Out of the private checkout, where the `postgres` OS user can reach it, and its own.
        assert data.is_relative_to("/var/lib/switchboard/postgres"), data
        assert owner_and_mode(data) == owner_and_mode(data.parent) == ("postgres", 0o700)
    assert "***" in info["endpoints"]["DATABASE_URL"]  # printed without the password

    # The services' role as admin would own the log (and could disable its trigger): refused.
    refused = run(
        checkout, "db", "migrate", env={"DATABASE_ADMIN_URL": env["DATABASE_URL"]}, check=False
    )
    assert refused.returncode != 0 and "the services' role itself" in refused.stderr
    assert "applied:" in run(checkout, "db", "migrate").stdout
    assert "created:" in run(checkout, "topics", "create", "--partitions", "1").stdout

    # A record through the broker.
    topic, value = "helpdesk.inbound.chat", uuid.uuid4().bytes
    producer = AIOKafkaProducer(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], group_id=f"t-{uuid.uuid4()}",
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=15_000)
    finally:
        await consumer.stop()
    assert [r.value for recs in batches.values() for r in recs] == [value]

    # The database: the services' role reads the log; the superuser needs its password.
    app = await asyncpg.connect(env["DATABASE_URL"])
    try:
        assert await app.fetchval("SELECT count(*) FROM case_log") == 0
    finally:
        await app.close()
    superuser = await asyncpg.connect(env["DATABASE_SUPERUSER_URL"])
    assert await superuser.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    await superuser.close()
    port = urlsplit(env["DATABASE_SUPERUSER_URL"]).port
    for password in (None, "postgres", "wrong"):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host="127.0.0.1", port=port, user="postgres", password=password,
                database="postgres",
            )  # fmt: skip
    assert "ok" in run(checkout, "log", "verify").stdout

    run(checkout, "infra", "down", "--purge")
    assert not any(map(os.path.exists, (state, data)))
