"""Benchmark: appending to the case log (rows/s), one event per transaction vs batches.

Runs against the PostgreSQL of `switchboard infra up` (normal durability settings, not the tests'
fsync=off cluster), prints the figures and records them in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from shared.caselog.store import append_events
from shared.contracts.case_events import ContactReceived
from shared.contracts.inbound import CustomerIdentity
from shared.events import CaseEvent
from shared.settings import REPO_ROOT, get_settings

TEXT = "Hi, I was charged twice for order 4411 last week, could you refund one of them? " * 4


def contact(case_id: str, n: int) -> CaseEvent:
    data = ContactReceived(
        case_id=case_id, contact_id=f"c-{n}", channel="email", source_type="email.received",
        customer=CustomerIdentity(name="Maya Patel", email="maya@example.com"),
        subject="Refund for order 4411", text=TEXT, received_at=datetime.now(UTC))
    return CaseEvent(uuid.uuid4(), case_id, "contact.received", datetime.now(UTC), data)


async def run(pool: asyncpg.Pool, total: int, batch: int, cases: int) -> tuple[float, float]:
    """Rows per second (wall clock) and this process's CPU microseconds per row: the second is
    what the writer's own work costs (hashing, MACs, encoding), the figure a loaded machine or a
    slow disk does not move."""
    ids = [f"bench-{uuid.uuid4()}" for _ in range(cases)]
    events = [contact(ids[n % cases], n) for n in range(total)]
    began, cpu_began = time.perf_counter(), time.process_time()
    async with pool.acquire() as conn:
        for start in range(0, total, batch):
            async with conn.transaction():
                await append_events(conn, events[start:start + batch], source="bench",
                                    trace_id=None)
    cpu = time.process_time() - cpu_began
    return total / (time.perf_counter() - began), cpu / total * 1e6


async def main() -> None:
    pool = await asyncpg.create_pool(get_settings().database_url, min_size=1, max_size=2)
    assert pool is not None
    results = []
    for total, batch, cases in ((2_000, 1, 200), (20_000, 100, 200), (20_000, 1_000, 1_000)):
        rate, cpu_us = await run(pool, total, batch, cases)
        results.append((total, batch, cases, rate, cpu_us))
        print(f"case log append: {total} rows, {batch}/transaction, {cases} cases: "
              f"{rate:,.0f} rows/s, writer CPU {cpu_us:.1f} µs/row")
    await pool.close()
    record(results)


def record(results: list[tuple[int, int, int, float, float]]) -> None:
    path = REPO_ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = "<!-- case-log-append:start -->", "<!-- case-log-append:end -->"
    table = [start, "", (f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, "
             f"{_cores()} cores, Python {sys.version.split()[0]}, PostgreSQL with fsync on."), "",
             "| rows | rows per transaction | cases | rows/s | writer CPU µs/row |",
             "|---|---|---|---|---|"]
    table += [f"| {t:,} | {b:,} | {c:,} | {r:,.0f} | {u:.1f} |" for t, b, c, r, u in results]
    table += ["", end]
    block = "\n".join(table)
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += "\n## Case log append (`benchmarks/case_log_append.py`)\n\n" + block + "\n"
    Path(path).write_text(text)


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    asyncio.run(main())
