"""Micro-benchmark: what the escalation service's handlers cost per case event (issue 9).

The escalation service consumes every `cases.events` record. Records of types it has no handler
for are skipped by the runtime before decoding their body; this measures the handled ones
(`case.classified`, `case.assigned`, `sla.met`, `case.solved`: four per ordinary contact) with the
packaged policy, on realistic logs, in transactions of 100 records like the runtime's batches:
database round trips per record and wall time per record.

    python benchmarks/escalation_inputs.py [--contacts 500] [--baseline REF]

`--baseline REF` also runs the handler of git revision REF (e.g. `main`) on the same logs, loaded
from `git show` into a throw-away package, for a before/after comparison. Runs against the
PostgreSQL of `switchboard infra up` (DATABASE_URL), migrated.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from shared.caselog.store import append_events
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.inbound import CustomerIdentity
from shared.events import CaseEvent
from shared.settings import REPO_ROOT, get_settings

HANDLED = ("case.classified", "case.assigned", "sla.met", "case.solved")
T0 = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
TEXT = "Hi, I was charged twice for order 4411 last week, could you refund one of them? " * 3


class Counting:
    """An asyncpg connection that counts the round trips made through it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.trips = 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._conn, name)
        if name in ("execute", "executemany", "fetch", "fetchrow", "fetchval",
                    "copy_records_to_table"):
            self.trips += 1
        return value


def contact_log(case_id: str, rng: random.Random) -> list[CaseEvent]:
    """One ordinary contact, as the four services log it (about ten events)."""
    who = CustomerIdentity(name="Maya Patel", email="maya@example.com")
    at = T0
    sentiment = rng.choice([0.3, 0.1, 0.0, 0.2, -0.2, 0.4, -0.3])  # 2 in 7 negative
    data: list[tuple[str, ce.Contract]] = [
        ("case.opened", ce.CaseOpened(case_id=case_id, channel="email", customer=who,
                                      subject="Refund for order 4411", opened_at=at)),
        ("contact.received", ce.ContactReceived(
            case_id=case_id, contact_id=f"{case_id}-c1", channel="email",
            source_type="email.received", customer=who, subject="Refund for order 4411",
            text=TEXT, received_at=at)),
        ("case.classified", ce.CaseClassified(
            case_id=case_id, skill="billing", queue="billing-email", priority="normal",
            language="en", confidence=0.8, sentiment=sentiment)),
        ("sla.started", ce.SlaStarted(case_id=case_id, clock_id=f"{case_id}-fr",
                                      metric="first_response", policy="p",
                                      target_seconds=14400, started_at=at,
                                      due_at=at + timedelta(hours=4))),
        ("case.assigned", ce.CaseAssigned(case_id=case_id, agent_id="agent-lee",
                                          authority_tier=1)),
        ("reply.sent", ce.ReplySent(case_id=case_id, agent_id="agent-lee", text="On it.",
                                    at=at)),
        ("sla.met", ce.SlaMet(case_id=case_id, clock_id=f"{case_id}-fr",
                              metric="first_response", due_at=at + timedelta(hours=4),
                              met_at=at, remaining_seconds=3600)),
        ("case.solved", ce.CaseSolvedEvent(case_id=case_id, agent_id="agent-lee", at=at)),
    ]
    return [CaseEvent(uuid.uuid4(), case_id, t, at, d) for t, d in data]


def baseline_handlers(ref: str) -> Any:
    """The escalation package at git revision `ref`, importable as `baseline_escalation`."""
    root = Path(tempfile.mkdtemp(prefix="escalation-baseline-"))
    package = root / "baseline_escalation"
    (package / "policies").mkdir(parents=True)
    for name in ("__init__", "app", "core", "packet", "policy", "sinks"):
        text = subprocess.run(["git", "show", f"{ref}:services/escalation/{name}.py"],
                              cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
        text = text.replace("services.escalation", "baseline_escalation")
        (package / f"{name}.py").write_text(text)
    default = subprocess.run(["git", "show", f"{ref}:services/escalation/policies/default.json"],
                             cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    (package / "policies" / "default.json").write_text(default)
    sys.path.insert(0, str(root))
    app = importlib.import_module("baseline_escalation.app")
    return app.handlers(None, app.load())


def current_handlers() -> Any:
    from services.escalation import app

    return app.handlers(None, app.load())  # type: ignore[arg-type]


async def measure(pool: asyncpg.Pool, handlers: Any,
                  work: list[CaseEvent]) -> tuple[float, float, Counter[str]]:
    """Round trips and seconds per handled record, batches of 100 in one transaction each."""
    trips: Counter[str] = Counter()
    began = time.perf_counter()
    async with pool.acquire() as raw:
        for start in range(0, len(work), 100):
            async with raw.transaction():
                conn = Counting(raw)
                for event in work[start:start + 100]:
                    before = conn.trips
                    env = Envelope(id=str(event.event_id), source="bench", type=event.type,
                                   time=event.time, subject=event.case_id)
                    await handlers[event.type](conn, env, event.data, event.time)
                    trips[event.type] += conn.trips - before
    seconds = time.perf_counter() - began
    return conn.trips, seconds, trips


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=500)
    parser.add_argument("--baseline", default=None, help="git revision to compare with")
    args = parser.parse_args()
    rng = random.Random(7)
    pool = await asyncpg.create_pool(get_settings().database_url, min_size=1, max_size=2)
    assert pool is not None
    runs = [("this tree", current_handlers())]
    if args.baseline:
        runs.insert(0, (args.baseline, baseline_handlers(args.baseline)))
    for label, handlers in runs:
        logs = [contact_log(f"bench-esc-{uuid.uuid4()}", rng) for _ in range(args.contacts)]
        async with pool.acquire() as conn, conn.transaction():
            await append_events(conn, [e for log in logs for e in log], source="bench",
                                trace_id=None)
        work = [e for log in logs for e in log if e.type in HANDLED]
        await measure(pool, handlers, work[:100])  # warm up
        work = work[100:]
        _, seconds, trips = await measure(pool, handlers, work)
        per_type = ", ".join(f"{t} {trips[t] / sum(1 for e in work if e.type == t):.2f}"
                             for t in HANDLED)
        total = sum(trips.values())
        print(f"escalation handlers [{label}]: {len(work)} handled records:"
              f" {total / len(work):.2f} round trips and {seconds / len(work) * 1e6:,.0f} µs"
              f" per record; per contact {total / len(work) * 4:.1f} round trips,"
              f" {seconds / len(work) * 4e3:.2f} ms ({per_type})")
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
