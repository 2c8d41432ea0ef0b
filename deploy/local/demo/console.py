"""The console in the demo: a free port, demo users with fresh random passwords, the sign-in.

Passwords are made per run and kept only as Argon2 hashes in `<state dir>/console-users.json`
(0600, git-ignored with the state dir); the terminal shows them once, for this run.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from services.console.users import add_user

DEMO_USERS = (("demo-supervisor", "supervisor"), ("demo-viewer", "viewer"),
              ("demo-admin", "admin"))
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class ConsoleAccess:
    url: str
    env: dict[str, str]
    sign_ins: tuple[tuple[str, str, str], ...]  # (name, role, password)

    def lines(self) -> list[str]:
        who = "; ".join(f"{role} {name} / {password}" for name, role, password in self.sign_ins)
        return [f"Console        {self.url}  sign in as {who}"]


def free_port(preferred: int) -> int:
    """`preferred` if nothing listens there, else any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            found: int = sock.getsockname()[1]
            return found
    raise OSError("no free port for the console")


def prepare(state_dir: Path) -> ConsoleAccess:
    port = int(os.environ.get("CONSOLE_PORT") or free_port(DEFAULT_PORT))
    users_file = Path(os.environ.get("CONSOLE_USERS_FILE") or state_dir / "console-users.json")
    sign_ins = []
    for name, role in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        add_user(users_file, name, role, password)  # type: ignore[arg-type]
        sign_ins.append((name, role, password))
    env = {"CONSOLE_PORT": str(port), "CONSOLE_HOST": "127.0.0.1",
           "CONSOLE_USERS_FILE": str(users_file),
           "CONSOLE_SECRET_KEY": os.environ.get("CONSOLE_SECRET_KEY") or secrets.token_urlsafe(32)}
    return ConsoleAccess(f"http://127.0.0.1:{port}/", env, tuple(sign_ins))
