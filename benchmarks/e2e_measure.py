"""What the end-to-end benchmark reads back: the case log, dead letters, CPU by process."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contracts.topics import all_topics

_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- CPU ------------------------------------------------------------------------------------
def cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU of a process so far (0 if it is gone); with `reaped`, also that of its
    children that have exited (a backend's CPU would otherwise vanish with it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = int(fields[11]) + int(fields[12])
    return (own + (int(fields[13]) + int(fields[14]) if reaped else 0)) / _CLK_TCK


def machine_cpu_seconds() -> tuple[float, float]:
    """The machine's busy CPU seconds so far (all cores), and the part of them in the kernel."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    kernel = system + irq + softirq
    return (user + nice + kernel + steal) / _CLK_TCK, kernel / _CLK_TCK


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds per named group of processes between two samples, and the whole machine's:
    `machine` (busy, every process and the kernel's work) and `machine system` (of which in
    the kernel: system calls, interrupts), so a phase says how close the machine was to full."""

    def __init__(self, groups: dict[str, list[int]], postmaster: int | None) -> None:
        self.groups, self.postmaster = groups, postmaster

    def sample(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}
        if self.postmaster is not None:
            # PostgreSQL: the postmaster with the backends it has reaped, and those running
            # (connections come and go)
            out["postgres"] = cpu_seconds(self.postmaster, reaped=True) + sum(
                cpu_seconds(p) for p in children_of(self.postmaster))
        out["machine"], out["machine system"] = machine_cpu_seconds()
        return out

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float], seconds: float
              ) -> dict[str, float]:
        return {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) / seconds for k in after}


# --- the case log ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PhaseResult:
    published: int
    opened: int
    doubled: int
    decided: int
    offered: int
    decided_at_last: datetime | None
    offer_latencies_ms: list[float]
    opened_latencies_ms: list[float]
    log_rows: int


async def phase_result(conn: asyncpg.Connection, first: datetime, last: datetime,
                       published: int) -> PhaseResult:
    """Cases whose contact was published in [first, last], read back from the log."""
    rows = await conn.fetch(
        "WITH opened AS (SELECT case_id, (payload->>'opened_at')::timestamptz AS at,"
        " count(*) OVER (PARTITION BY case_id) AS n FROM case_log WHERE type = 'case.opened'"
        " AND (payload->>'opened_at')::timestamptz BETWEEN $1 AND $2)"
        " SELECT o.case_id, o.at, o.n,"
        " (SELECT min(time) FROM case_log l WHERE l.case_id = o.case_id"
        "  AND l.type = 'case.opened') AS opened_time,"
        " (SELECT min(time) FROM case_log l WHERE l.case_id = o.case_id"
        "  AND l.type = 'routing.decided') AS decided_time,"
        " (SELECT min(time) FROM case_log l WHERE l.case_id = o.case_id"
        "  AND l.type = 'assignment.offered') AS offered_time"
        " FROM opened o", first, last)
    cases = {r["case_id"]: r for r in rows}
    decided = [r["decided_time"] for r in cases.values() if r["decided_time"] is not None]
    offers = [(r["offered_time"] - r["at"]).total_seconds() * 1000 for r in cases.values()
              if r["offered_time"] is not None]
    opened = [(r["opened_time"] - r["at"]).total_seconds() * 1000 for r in cases.values()
              if r["opened_time"] is not None]
    log_rows = await conn.fetchval(
        "SELECT count(*) FROM case_log WHERE case_id = ANY($1::text[])", list(cases))
    return PhaseResult(
        published=published, opened=len(cases), doubled=sum(r["n"] - 1 for r in rows),
        decided=len(decided), offered=len(offers),
        decided_at_last=max(decided) if decided else None,
        offer_latencies_ms=offers, opened_latencies_ms=opened, log_rows=log_rows)


async def decided_count(conn: asyncpg.Connection, since: datetime) -> int:
    """How many cases opened since `since` (this phase: the last one drained before it
    started) have their routing decision yet. No JSON is read: polled while the system runs,
    it must cost the database little."""
    value: int = await conn.fetchval(
        "SELECT count(*) FROM case_log o WHERE o.type = 'case.opened' AND o.recorded_at >= $1"
        " AND EXISTS (SELECT 1 FROM case_log d WHERE d.case_id = o.case_id"
        " AND d.type = 'routing.decided')", since)
    return value


async def duplicate_event_ids(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval(
        "SELECT count(*) - count(DISTINCT event_id) FROM case_log")
    return value


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1] \
        if q < 100 else max(values)


def latency_row(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values) if values else float("nan")}


# --- dead letters ---------------------------------------------------------------------------
async def dead_letter_count(bootstrap: str) -> int:
    """Records on every `<topic>.dlq` so far (end offsets; DLQs are never compacted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                client_id="bench-dlq-count")
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = [TopicPartition(s.name, p) for s in all_topics() if s.name.endswith(".dlq")
                 for p in cluster.partitions_for_topic(s.name) or ()]
        if not parts:
            return 0
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        return sum(ends[p] - starts[p] for p in parts)
    finally:
        await consumer.stop()


# --- where PostgreSQL's time goes -------------------------------------------------------------
STATEMENTS_SQL = (
    "SELECT calls, total_exec_time AS total_ms, mean_exec_time AS mean_ms, rows,"
    " regexp_replace(query, '\\s+', ' ', 'g') AS query FROM pg_stat_statements"
    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " ORDER BY total_exec_time DESC LIMIT $1")


async def reset_statements(superuser_url: str) -> bool:
    """Start counting afresh (False where the server has no pg_stat_statements loaded)."""
    conn = await asyncpg.connect(superuser_url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
        return True
    except asyncpg.PostgresError:
        return False
    finally:
        await conn.close()


async def top_statements(superuser_url: str, limit: int = 500) -> list[str]:
    """The statements since the reset, most execution time first, one line each: all of them
    (up to `limit`), so the file also counts the round trips a contact costs (calls)."""
    conn = await asyncpg.connect(superuser_url)
    try:
        rows = await conn.fetch(STATEMENTS_SQL, limit)
        # shares of this database's statement time, the same rows the list is drawn from
        total = await conn.fetchval(
            "SELECT sum(total_exec_time) FROM pg_stat_statements WHERE dbid ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())") or 1
    except asyncpg.PostgresError:
        return []
    finally:
        await conn.close()
    return [f"{r['total_ms'] / total * 100:5.1f} % {r['total_ms']:10,.0f} ms {r['calls']:8,d} calls"
            f" {r['mean_ms']:8.2f} ms mean {r['rows']:9,d} rows  {r['query'][:160]}"
            for r in rows]
