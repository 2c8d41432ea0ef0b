"""Process, port and file helpers shared by the Kafka and PostgreSQL launchers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class InfraError(RuntimeError):
    """Local infrastructure could not be started, checked or stopped."""


def free_port(exclude: Collection[int] = ()) -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in exclude:
            return port


def port_in_use(port: int) -> bool:
    """True if something accepts connections on 127.0.0.1:port (ours or someone else's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """True if `pid` runs; reaps it first if it is our own dead child (else it stays a zombie)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        # A zombie still answers kill(0); /proc tells the truth (state is the 3rd field).
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> str:
    """The process's command line, or "" if it is gone (guards against recycled pids)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def terminate(pid: int, timeout: float, first: signal.Signals = signal.SIGTERM) -> bool:
    """Send `first`, wait up to `timeout` s, then SIGKILL. Returns True if it stopped gracefully."""
    if not alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    if wait_dead(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_dead(pid, 10)
    return False


def wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return f"(no log at {path})"


def rotate(log: Path) -> None:
    """Keep the previous run's log as <log>.1 so that each start's log begins empty."""
    if log.exists():
        log.replace(log.with_name(log.name + ".1"))


def write_private(path: Path, text: str) -> None:
    """Write a file that holds secrets: mode 0600 from its creation (not the umask's), replaced
    atomically so a reader never sees half of it, and never through a planted symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(text)
    finally:
        if fd != -1:
            os.close(fd)
    tmp.replace(path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (two `up`s at once, e.g. from pytest-xdist workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX)
                break
            except OSError as e:  # pragma: no cover - EINTR on signal
                if e.errno != errno.EINTR:
                    raise
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop
    (async pytest fixtures): then it runs on a private loop in a worker thread."""

    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()
