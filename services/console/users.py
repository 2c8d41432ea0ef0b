"""Console users: a name (the id written into the events they cause), a role and an Argon2id
password hash. Kept in a JSON file (0600, outside the repository: by default in the state dir) or
in the CONSOLE_USERS variable; never a password in clear.

    {"users": [{"name": "sup-ada", "role": "supervisor", "password_hash": "$argon2id$..."}]}

Roles: `viewer` sees every page; `supervisor` also acknowledges and reassigns escalations;
`admin` also sees the users and the console's own state.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

Role = Literal["viewer", "supervisor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "supervisor", "admin")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASHER = PasswordHasher()  # Argon2id with the library's current recommended parameters
# Verified when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class UsersError(ValueError):
    """The users file or variable is unusable; the message names the problem."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str

    def at_least(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise UsersError("a password needs at least 8 characters")
    return _HASHER.hash(password)


def check_password(user: User | None, password: str) -> bool:
    """True when `password` is the user's; takes as long for an unknown user."""
    try:
        return _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password) and \
            user is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def parse_users(text: str, where: str) -> dict[str, User]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsersError(f"{where}: not JSON ({exc})") from exc
    entries = data.get("users") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UsersError(f'{where}: expected {{"users": [...]}}')
    users: dict[str, User] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UsersError(f"{where}: users.{i}: expected an object")
        name, role, digest = entry.get("name"), entry.get("role"), entry.get("password_hash")
        if not isinstance(name, str) or not NAME.match(name):
            raise UsersError(f"{where}: users.{i}.name: letters, digits, . _ @ - (at most 64)")
        if role not in ROLES:
            raise UsersError(f"{where}: users.{i}.role: one of {', '.join(ROLES)}")
        if not isinstance(digest, str) or not digest.startswith("$argon2"):
            raise UsersError(f"{where}: users.{i}.password_hash: an Argon2 hash "
                             "(`python -m services.console user add`), never a password")
        if name in users:
            raise UsersError(f"{where}: users.{i}.name: {name!r} appears twice")
        users[name] = User(name, role, digest)
    return users


def dump_users(users: Iterable[User]) -> str:
    return json.dumps({"users": [{"name": u.name, "role": u.role,
                                  "password_hash": u.password_hash} for u in users]}, indent=2)


def write_users(path: Path, users: Iterable[User]) -> None:
    """Atomically, readable by the owner only (the hashes are secrets too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(dump_users(users) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_user(path: Path, name: str, role: Role, password: str) -> User:
    """Add or replace one user in the file."""
    if not NAME.match(name):
        raise UsersError(f"{name!r}: letters, digits, . _ @ - (at most 64 characters)")
    if role not in ROLES:
        raise UsersError(f"role {role!r}: one of {', '.join(ROLES)}")
    users = parse_users(path.read_text("utf-8"), str(path)) if path.exists() else {}
    users[name] = User(name, role, hash_password(password))
    write_users(path, users.values())
    return users[name]


class UserStore:
    """The users, from CONSOLE_USERS or the file; the file is read again when it changes (checked
    at most every few seconds), so removing a user or changing a role needs no restart."""

    def __init__(self, path: Path, env_value: str = "", check_every: float = 2.0) -> None:
        self.path = path
        self.env_value = env_value
        self.check_every = check_every
        self._users: dict[str, User] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self.reload()

    def reload(self) -> None:
        if self.env_value:
            self._users = parse_users(self.env_value, "CONSOLE_USERS")
            return
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._stamp:
            self._users = parse_users(self.path.read_text("utf-8"), str(self.path))
            self._stamp = stamp

    def get(self, name: str) -> User | None:
        now = time.monotonic()
        if not self.env_value and now - self._checked >= self.check_every:
            self._checked = now
            with contextlib.suppress(OSError, UsersError):  # a half-written edit: keep the users
                self.reload()
        return self._users.get(name)

    def all(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.name)
