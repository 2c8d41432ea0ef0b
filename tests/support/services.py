"""The four services as real processes (`python -m services.<name>`), for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from shared.infra.local import Endpoints
from shared.infra.proc import free_port
from shared.settings import REPO_ROOT

SERVICES = ("intake", "router", "sla", "escalation")

# Voice first responses are due after a few seconds, so a test sees a breach; email and chat
# stay within target for the length of a test run.
TEST_SLA_TARGETS = {"email": 3600, "chat": 3600, "voice": 4}


class ServiceProcesses:
    def __init__(self, endpoints: Endpoints, log_dir: Path, extra_env: dict[str, str]) -> None:
        self.env = {
            **os.environ, **endpoints.as_env(),
            "SWITCHBOARD_INFRA": "external",
            "SLA_FIRST_RESPONSE_SECONDS": json.dumps(TEST_SLA_TARGETS),
            "TIMER_TICK_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._since: dict[str, int] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, instance: int = 1) -> str:
        """Start one instance of a service; its label (`intake`, `intake#2`, ...)."""
        label = name if instance == 1 else f"{name}#{instance}"
        # one group member name per process (static membership): distinct instances
        self.ports[label] = free_port()  # /metrics, /healthz, /readyz of this process
        env = {**self.env, "SERVICE_INSTANCE_ID": f"test-{name}-{instance}",
               "METRICS_PORT": str(self.ports[label])}
        with open(self.log_dir / f"{label}.log", "ab") as log:  # the child keeps its own fd
            self._since[label] = log.tell()  # what this process writes starts here
            self.procs[label] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"], cwd=REPO_ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return label

    def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)

    def kill(self, name: str) -> None:
        """SIGKILL: no graceful shutdown, as in a crash."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def log_bytes(self, label: str) -> bytes:
        """What the latest process of that label has logged."""
        path = self.log_dir / f"{label}.log"
        return path.read_bytes()[self._since.get(label, 0):] if path.exists() else b""

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
