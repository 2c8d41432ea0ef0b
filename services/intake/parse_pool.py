"""Parsing off the event loop, with a hard deadline per record: a small pool of worker processes.

The intake service's event loop also runs the Kafka consumer's heartbeat: a record that parsed
for seconds on it got the consumer evicted from its group, and the record was redelivered for
ever. Emails (and any large record) are therefore parsed here, in a worker process:

- the loop only waits on a pipe, so heartbeats and the other topics' records carry on;
- each call has a deadline; when it passes, the worker is killed (SIGKILL: pure-Python regular
  expressions and C parsers do not stop any other way), a new one is started in the background,
  and the caller gets `ParseTimeout`, which intake dead-letters as `parse_timeout`;
- a worker may be given an address-space limit, so a record that would need gigabytes fails
  with `MemoryError` in the worker (`TaskFailed`) instead of taking the machine;
- a worker that dies (a crash in a C extension, the kernel's OOM killer) is replaced as well
  (`WorkerCrashed`).

Workers are started by a fork server that has already imported the parsing code, so starting
one costs milliseconds, not the imports. Jobs are module-level functions (pickled by name) and
their arguments; an exception of a `passthrough` type raised by a job is re-raised in the caller
as is (intake's `Unprocessable`), any other reaches the caller as `TaskFailed` with the
exception's type and where it was raised, never its message (which may quote customer input).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger(__name__)

# Imported once by the fork server, so that each worker starts with them loaded. The service's
# app module too: a worker re-runs the parent's main script (as __mp_main__) before it starts,
# which costs a second of imports unless they are already there.
PRELOAD = ["services.intake.core", "services.intake.app"]


class ParseTimeout(Exception):
    """The job did not finish within the deadline; its worker was killed."""


class WorkerCrashed(Exception):
    """The worker process died during the job."""


class TaskFailed(Exception):
    """The job raised an exception that is not passed through: `kind` is its type's name."""

    def __init__(self, kind: str, where: str) -> None:
        super().__init__(f"{kind} at {where}")
        self.kind = kind
        self.where = where


def _context() -> BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def _limit_memory(megabytes: int) -> None:
    """Cap this process's address space at its current size plus `megabytes`."""
    try:
        import resource

        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
        current = pages * os.sysconf("SC_PAGE_SIZE")
        limit = current + megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass  # not Linux: no limit (the deadline still holds)


def where(exc: BaseException) -> str:
    """`file:line` where `exc` was raised: enough to find a bug, no customer text."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{os.path.basename(last.filename)}:{last.lineno}"


def _worker_main(conn: Connection, passthrough: tuple[type[BaseException], ...],
                 memory_mb: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if memory_mb > 0:
        _limit_memory(memory_mb)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if job is None:
            return
        fn, args = job
        reply: tuple[Any, ...]
        try:
            reply = ("ok", fn(*args))
        except passthrough as exc:
            reply = ("raise", exc)
        except BaseException as exc:  # MemoryError, RecursionError, bugs: type and place only
            reply = ("error", type(exc).__name__, where(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # the result cannot be pickled
            conn.send(("error", type(exc).__name__, "sending the result"))


class _Worker:
    def __init__(self, ctx: BaseContext, passthrough: tuple[type[BaseException], ...],
                 memory_mb: int) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.process: BaseProcess = ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child, passthrough, memory_mb), daemon=True,
            name="intake-parse")
        self.process.start()
        child.close()
        self.conn = parent

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def receive(self, within: float | None) -> Any:
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = self.conn.fileno()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await asyncio.wait_for(readable, within)
        finally:
            loop.remove_reader(fd)
        return self.conn.recv()  # the whole reply is written at once; EOFError if it died

    async def call(self, fn: Callable[..., Any], args: tuple[Any, ...], deadline: float) -> Any:
        self.conn.send((fn, args))
        return await self.receive(deadline)

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        with contextlib.suppress(OSError):
            self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.kill()


class ParsePool:
    """`size` worker processes; `run(fn, *args)` calls `fn(*args)` in one, within `deadline`."""

    def __init__(self, size: int, deadline: float, *, memory_mb: int = 0,
                 passthrough: tuple[type[BaseException], ...] = (),
                 start_timeout: float = 60.0) -> None:
        if size < 1:
            raise ValueError("a parse pool needs at least one worker")
        self.size = size
        self.deadline = deadline
        self.memory_mb = memory_mb
        self.passthrough = passthrough
        self.start_timeout = start_timeout
        self.timeouts = 0
        self.crashes = 0
        self._ctx: BaseContext | None = None
        self._idle: asyncio.Queue[_Worker] | None = None
        self._workers: set[_Worker] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.pid is not None]

    async def start(self) -> None:
        """Start the workers and wait until they are ready (also done by the first `run`)."""
        if self._idle is not None:
            return
        self._ctx = _context()
        self._idle = asyncio.Queue()
        for _ in range(self.size):
            self._spawn()
        await asyncio.gather(*list(self._starting), return_exceptions=True)

    def _spawn(self) -> None:
        task = asyncio.get_running_loop().create_task(self._start_one())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start_one(self) -> None:
        assert self._ctx is not None and self._idle is not None
        backoff = 0.5
        while not self._closed:
            try:
                worker = await asyncio.to_thread(_Worker, self._ctx, self.passthrough,
                                                 self.memory_mb)
            except OSError:
                log.exception("intake parse worker could not be started; retrying")
            else:
                self._workers.add(worker)
                try:
                    hello = await worker.receive(self.start_timeout)
                    if isinstance(hello, tuple) and hello[:1] == ("ready",):
                        self._idle.put_nowait(worker)
                        return
                except (TimeoutError, EOFError, OSError):
                    pass
                log.error("intake parse worker %s did not start; replacing it", worker.pid)
                self._discard(worker)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.discard(worker)
        # Reap it off the loop: join() blocks until the kernel has taken the process down.
        asyncio.get_running_loop().run_in_executor(None, worker.process.join, 5.0)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._idle is None:
            await self.start()
        assert self._idle is not None
        if self._closed:
            raise RuntimeError("parse pool is closed")
        worker = await self._idle.get()
        try:
            reply = await worker.call(fn, args, self.deadline)
        except TimeoutError:
            self.timeouts += 1
            self._discard(worker)
            self._spawn()
            raise ParseTimeout(f"no result within {self.deadline:g} s") from None
        except (EOFError, OSError):
            self.crashes += 1
            self._discard(worker)
            self._spawn()
            raise WorkerCrashed(f"worker {worker.pid} died") from None
        except BaseException:  # cancelled while the worker ran: its state is unknown
            self._discard(worker)
            if not self._closed:
                self._spawn()
            raise
        kind = reply[0]
        if kind == "error" and reply[1] == "MemoryError":
            self._discard(worker)  # a worker that ran out of memory may be in any state
            self._spawn()
        else:
            self._idle.put_nowait(worker)
        if kind == "ok":
            return reply[1]
        if kind == "raise":
            raise reply[1]
        raise TaskFailed(reply[1], reply[2])

    async def close(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*list(self._starting), return_exceptions=True)
        for worker in list(self._workers):
            worker.stop()
        await asyncio.gather(*(asyncio.to_thread(w.process.join, 5.0) for w in self._workers),
                             return_exceptions=True)
        self._workers.clear()
