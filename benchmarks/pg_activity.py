"""What PostgreSQL's sessions are doing while a benchmark runs, sampled from pg_stat_activity,
and how large the outbox is.

Run it beside `benchmarks/e2e.py` during a phase, for example:

    .venv/bin/python benchmarks/e2e.py --contacts 20000 --small 2000 --phases saturation \\
        --no-record &
    # once the 2,000 run's line is printed:
    .venv/bin/python benchmarks/pg_activity.py --seconds 40

Every `--interval` it reads the sessions that are not idle: the average number found running
each (service, statement, wait event) is how many sessions it keeps busy, on the CPU when the
wait event is empty. Services name their sessions (`application_name`,
`switchboard-<service>`). Every second it reads the outbox: live rows, dead rows and the heap's
pages, whose growth between vacuums docs/benchmarks.md describes. It connects as the bench's
superuser (from `<state dir>/bench/infra.env`), which sees every session's statement.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from shared.settings import default_state_dir

_SESSIONS = (
    "SELECT application_name AS service, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS q,"
    " coalesce(wait_event_type || ':' || wait_event, '') AS wait FROM pg_stat_activity"
    " WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()")
_OUTBOX = (
    "SELECT n_live_tup AS live, n_dead_tup AS dead, pg_relation_size('outbox') / 8192 AS pages"
    " FROM pg_stat_user_tables WHERE relname = 'outbox'")


def bench_url() -> str:
    env = default_state_dir() / "bench" / "infra.env"
    for line in env.read_text().splitlines():
        if line.startswith("DATABASE_SUPERUSER_URL="):
            return line.split("=", 1)[1]
    raise SystemExit(f"no DATABASE_SUPERUSER_URL in {env}: is benchmarks/e2e.py running?")


async def sample(url: str, seconds: float, interval: float, top: int) -> None:
    conn = await asyncpg.connect(url)
    busy: Counter[tuple[str, str, str]] = Counter()
    samples, outbox, next_outbox = 0, [], 0.0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for row in await conn.fetch(_SESSIONS):
                busy[(row["service"] or "?", row["q"], row["wait"])] += 1
            samples += 1
            if time.monotonic() >= next_outbox:
                outbox.append(await conn.fetchrow(_OUTBOX))
                next_outbox = time.monotonic() + 1.0
            await asyncio.sleep(interval)
    finally:
        await conn.close()
    print(f"{samples} samples over {seconds:g} s: sessions kept busy (on the CPU when no wait)")
    for (service, q, wait), n in busy.most_common(top):
        print(f"  {n / samples:6.3f}  {service:<26} {wait or 'cpu':<22} {q}")
    rows = [r for r in outbox if r is not None]
    if rows:
        print(f"outbox, each second: live rows up to {max(r['live'] for r in rows):,}, dead rows"
              f" up to {max(r['dead'] for r in rows):,}, heap up to"
              f" {max(r['pages'] for r in rows):,} pages")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--interval", type=float, default=0.02, help="seconds between samples")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--database-url", help="default: the running bench's superuser")
    args = p.parse_args()
    asyncio.run(sample(args.database_url or bench_url(), args.seconds, args.interval, args.top))


if __name__ == "__main__":
    main()
