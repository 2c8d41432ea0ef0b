"""Jobs for the parse pool's tests: a small module, quick for a worker to import by name."""

from __future__ import annotations

import os

from services.intake import core


def double(x: int) -> int:
    return 2 * x


def my_pid() -> int:
    return os.getpid()


def spin() -> None:
    while True:
        pass


def refuse(reason: str) -> None:
    raise core.Unprocessable(reason)


def fail_with_customer_text(text: str) -> None:
    raise KeyError(text)


def die() -> None:
    os._exit(3)


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))
