"""The four services and the console as child processes (`python -m services.<name>`), as in
production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.keys import local_keys
from shared.settings import REPO_ROOT, default_state_dir

SERVICES = ("intake", "router", "sla", "escalation", "console")
READY_MARK = b"FastStream app started successfully"
# The console is no FastStream app: it says so once it listens.
READY_MARKS = {"console": b"Switchboard console ready on"}


class ServiceSet:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            # Fresh log per run, so a tail shows this run's trouble.
            # Own session: Ctrl-C in the terminal reaches the demo only, which then stops the
            # services in order (feed first, so nothing is fed to a service going down).
            with open(self.log_path(name), "wb") as log:  # the child keeps its own fd
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"], cwd=REPO_ROOT, env=self.env,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )

    def ready(self) -> set[str]:
        return {n for n in self.procs
                if READY_MARKS.get(n, READY_MARK) in self.log_path(n).read_bytes()}

    def dead(self) -> dict[str, int]:
        """Services that exited although nobody asked them to: name → exit code."""
        if self.stopping:
            return {}
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def stop(self, deadline: float = 20.0) -> list[str]:
        """SIGTERM all, wait for a graceful exit, SIGKILL the rest; return the ones killed."""
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        killed = []
        end = time.monotonic() + deadline
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                killed.append(name)
        return killed

    def log_tail(self, name: str, lines: int = 25) -> str:
        text = self.log_path(name).read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in text)


def service_env(endpoints_env: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The services' environment: the demo's infrastructure given as external (they start
    nothing), so on local infrastructure they also get the checkout's local keys, which they
    would refuse to start without (`shared/keys.py`)."""
    keys = {} if os.environ.get("SWITCHBOARD_INFRA") == "external" else {
        name: value for name, value in local_keys(default_state_dir()).items()
        if not os.environ.get(name)}
    return {**os.environ, **endpoints_env, "SWITCHBOARD_INFRA": "external",
            "PYTHONUNBUFFERED": "1", **keys, **overrides}
