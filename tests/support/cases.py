"""Waiting on what the services wrote: cases by thread key, event types and payloads of a case."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import asyncpg

from shared.caselog.store import read_case
from shared.keys import keyring
from tests.support.kafka import wait_for


def stored_key(thread_key: str) -> str:
    """How intake stores a thread key: its keyed hash (shared/keys.py), never as written."""
    return keyring().stored(thread_key)


async def case_of(db: asyncpg.Connection, thread_key: str) -> str:
    """The case intake filed a thread under (`email:<id>`, `chat:<session>`, `call:<id>`)."""
    async def lookup() -> str | None:
        value: str | None = await db.fetchval(
            "SELECT case_id FROM intake_thread WHERE thread_key = $1", stored_key(thread_key))
        return value
    found: str = await wait_for(lookup, what=f"a case for {thread_key}")
    return found


async def types_of(db: asyncpg.Connection, case_id: str) -> list[str]:
    return [r.type for r in await read_case(db, case_id)]


async def wait_types(db: asyncpg.Connection, case_id: str, wanted: Iterable[str],
                     within: float = 90) -> list[str]:
    """Wait until the case's log holds the `wanted` types (a list counts repeats); its types."""
    need = Counter(wanted)

    async def has_all() -> list[str] | None:
        types = await types_of(db, case_id)
        return types if not need - Counter(types) else None
    found: list[str] = await wait_for(has_all, timeout=within, what=f"{need} on {case_id}")
    return found


async def payloads(db: asyncpg.Connection, case_id: str, type_: str, n: int = 1,
                   within: float = 60) -> list[dict[str, Any]]:
    """Wait until the case has at least `n` events of `type_`; their payloads in log order."""
    async def enough() -> list[dict[str, Any]] | None:
        found = [r.payload for r in await read_case(db, case_id) if r.type == type_]
        return found if len(found) >= n else None
    result: list[dict[str, Any]] = await wait_for(enough, timeout=within,
                                                  what=f"{n} × {type_} on {case_id}")
    return result
