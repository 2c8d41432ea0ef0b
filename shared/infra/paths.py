"""Where a local server started by `switchboard infra up` keeps its files in the state dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """One server's files: `root` is ours (its pid file and our bookkeeping), `server` holds the
    `data` the server writes (`root` itself unless the server must live elsewhere), and every
    server logs into `<state dir>/logs`. Kafka and PostgreSQL add their own files."""

    name: str  # names the pid file and, by default, the log
    root: Path
    logs: Path
    server: Path
    log_name: str = ""  # default `<name>.log`

    @property
    def data(self) -> Path:
        return self.server / "data"

    @property
    def pid(self) -> Path:
        return self.root / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return self.logs / (self.log_name or f"{self.name}.log")
