"""Where the tests' Kafka and PostgreSQL come from: external, testcontainers, or local processes.

Started once per test session. The choice is printed, so a run always says what it ran against.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from shared.infra import local, postgres
from shared.infra.local import Endpoints
from shared.settings import REPO_ROOT

TEST_STATE_DIR = Path(os.environ.get("SWITCHBOARD_TEST_STATE_DIR", REPO_ROOT / ".switchboard/test"))


def docker_engine_reachable() -> bool:
    """True when a Docker engine answers; `docker info` fails fast when none runs."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def start_infrastructure() -> tuple[Endpoints, str]:
    """Return the endpoints and a sentence saying which infrastructure the tests use."""
    if os.environ.get("SWITCHBOARD_INFRA") == "external":
        return local.endpoints_from_env(), "external infrastructure (SWITCHBOARD_INFRA=external)"
    # testcontainers' Kafka image is Confluent 7.6, not Apache Kafka 4: we prefer the same broker
    # as production, so even with Docker the local processes are used; say so.
    engine = "reachable, but" if docker_engine_reachable() else "not reachable:"
    if not os.environ.get("SWITCHBOARD_TEST_KEEP_INFRA"):
        # Every session starts from empty storage, so no state of an earlier run leaks in.
        local.purge(TEST_STATE_DIR)
    timings: dict[str, float] = {}
    endpoints = local.up(TEST_STATE_DIR, fast=True, timings=timings)
    local.write_env_file(TEST_STATE_DIR, endpoints)
    spent = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    return endpoints, (
        f"Docker engine {engine} local Apache Kafka 4.1.1 (KRaft) and PostgreSQL processes "
        f"in {TEST_STATE_DIR}, PostgreSQL's data in {postgres.Paths.of(TEST_STATE_DIR).data} "
        f"({spent})"
    )


def stop_infrastructure() -> None:
    if os.environ.get("SWITCHBOARD_INFRA") != "external" and not os.environ.get(
        "SWITCHBOARD_TEST_KEEP_INFRA"
    ):
        # The data goes (as root PostgreSQL's lives outside the checkout); the logs stay.
        local.down(TEST_STATE_DIR, remove_data=True)
