"""`make bench-e2e`: the whole pipeline under load, the way `make run` runs it.

Starts its own Kafka broker and PostgreSQL (normal durability: fsync on) in
`<state dir>/bench`, the four services as processes, and simulated agents who accept every
offer at once and solve each case `--hold` seconds later. Then, in one run:

1. saturation: N contacts (50 % chat, 30 % email, 20 % voice) published as fast as possible,
   for N = 2,000 and N = 20,000: contacts/s from the first publish to the last contact's first
   `routing.decided` in the case log (the 20,000 run last, after the latency phases, so that
   its SLA breaches and escalations do not fire during them);
2. latency at fixed offered rates (50/s, 200/s): publish → `assignment.offered`, p50/p95/p99/max;
3. the highest offered rate with a flat backlog (latency in the last third of the run no worse
   than in the first, and the log caught up within 2 s of the last publish);
4. CPU by process (each service, Kafka, PostgreSQL), log rows/s, dead letters, duplicates;
5. baselines on the same broker and database: a bare consume→produce relay and a bare
   consume → batched INSERT → commit pipeline.

It prints a table, records it in docs/benchmarks.md, and ends with the line
`e2e: <C> contacts/s sustained (20000), <C2> (2000); p99 offer <L> ms at 200/s; max steady <R>/s;
ratio <X> of bare consume+insert; lost <n> doubled <n>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from e2e_baselines import baselines
from e2e_load import Agents, Publisher, log_in, mix
from e2e_measure import (
    CpuMeter,
    PhaseResult,
    dead_letter_count,
    decided_count,
    duplicate_event_ids,
    latency_row,
    phase_result,
    reset_statements,
    top_statements,
)

from shared.caselog.migrate import migrate
from shared.infra import kafka, local, postgres
from shared.keys import local_keys
from shared.settings import REPO_ROOT, default_state_dir, get_settings
from shared.topics_admin import create_topics

SERVICES = ("intake", "router", "sla", "escalation")
READY_MARK = b"FastStream app started successfully"
STATEMENTS_SHOWN = 6  # of each phase's top statements, printed
STALL_SECONDS = 90.0  # no progress for this long: the phase is reported as it stands


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contacts", type=int, default=20_000, help="the large saturation run")
    p.add_argument("--small", type=int, default=2_000, help="the small saturation run")
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--hold", type=float, default=0.25, help="seconds an agent keeps a case")
    p.add_argument("--rates", default="50,200", help="fixed offered rates (contacts/s)")
    p.add_argument("--rate-seconds", type=float, default=20.0)
    p.add_argument("--steady", default="25,50,75,100,150,200,300,400,600,800,1000,1500",
                   help="rates tried, in order, for the highest steady rate")
    p.add_argument("--baseline", type=int, default=50_000, help="records per baseline")
    p.add_argument("--instances", default="",
                   help="processes per service, e.g. intake=2,sla=2 (default one each)")
    p.add_argument("--phases", default="saturation,rates,steady,baselines")
    p.add_argument("--keep", action="store_true", help="leave the infrastructure running")
    p.add_argument("--pg-statements", action="store_true",
                   help="load pg_stat_statements and print each phase's top"
                   " statements (costs PostgreSQL a few per cent)")
    p.add_argument("--no-record", action="store_true", help="do not update docs/benchmarks.md")
    return p.parse_args()


def say(text: str) -> None:
    print(text, flush=True)


# --- infrastructure and services -------------------------------------------------------------
async def fresh_infra(state_dir: Path) -> local.Endpoints:
    await asyncio.to_thread(local.down, state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    endpoints = await asyncio.to_thread(local.up, state_dir)
    local.write_env_file(state_dir, endpoints)
    settings = get_settings()
    await migrate(endpoints.database_admin_url, settings.database_app_role)
    await create_topics(endpoints.kafka_bootstrap_servers, settings.topic_partitions)
    return endpoints


@dataclass
class Services:
    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, counts: dict[str, int]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in SERVICES:
            for i in range(counts.get(name, 1)):
                label = name if i == 0 else f"{name}#{i + 1}"
                # Each process its own member name (two with one name fence each other out of
                # the group, over and over) and, past the first, no metrics port of its own.
                env = {**self.env, "SERVICE_INSTANCE_ID": f"bench-{name}-{i + 1}",
                       **({"METRICS_PORT": "-1"} if i else {})}
                with open(self.log_dir / f"{label}.log", "wb") as log:  # the child keeps its fd
                    self.procs[label] = subprocess.Popen(
                        [sys.executable, "-m", f"services.{name}"], cwd=REPO_ROOT, env=env,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    async def ready(self, within: float = 180.0) -> None:
        end = time.monotonic() + within
        while time.monotonic() < end:
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"services exited: {dead}; logs in {self.log_dir}")
            if all(READY_MARK in (self.log_dir / f"{n}.log").read_bytes() for n in self.procs):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"services not ready after {within:.0f} s; logs in {self.log_dir}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def groups(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for label, proc in self.procs.items():
            out.setdefault(label.split("#")[0], []).append(proc.pid)
        return out


# --- phases --------------------------------------------------------------------------------
@dataclass
class Phase:
    name: str
    contacts: int
    rate: float | None
    result: PhaseResult
    first: float  # wall clock of the first publish
    last: float
    cpu: dict[str, float]
    wall: float

    @property
    def sustained(self) -> float:
        end = self.result.decided_at_last
        if end is None:
            return 0.0
        return self.result.decided / max(1e-6, end.timestamp() - self.first)

    @property
    def lost(self) -> int:
        return max(0, self.contacts - self.result.opened) + \
            max(0, self.result.opened - self.result.decided)


class Bench:
    def __init__(self, args: argparse.Namespace, endpoints: local.Endpoints, services: Services,
                 meter: CpuMeter) -> None:
        self.args, self.endpoints, self.services, self.meter = args, endpoints, services, meter
        self.publisher = Publisher(endpoints.kafka_bootstrap_servers)
        self.agents = Agents(endpoints.kafka_bootstrap_servers, self.publisher, args.hold)
        self.pool: asyncpg.Pool | None = None
        self.phases: list[Phase] = []
        self._n = 0

    async def run_phase(self, name: str, contacts: int, rate: float | None) -> Phase:
        assert self.pool is not None
        self._n += 1
        run = f"{int(time.time())}-{self._n}"
        counting = self.args.pg_statements and \
            await reset_statements(self.endpoints.database_superuser_url)
        if self.args.pg_statements and not counting:
            say(f"  {name}: --pg-statements, but pg_stat_statements cannot be reset: not counted")
        cpu0, t0 = self.meter.sample(), time.monotonic()
        started = datetime.now(UTC)
        self.agents.stats.phase_cases.clear()
        first, last = await self.publisher.contacts(run, mix(contacts, self._n), rate)
        since = datetime.fromtimestamp(first, UTC)
        until = datetime.fromtimestamp(last, UTC)
        # Progress is the cases offered to the desktops; the case log is asked (an exact count
        # of the phase's cases with their routing decision) only once they are all offered.
        # Polled every second, that count grew with the phase (it reads every case of the
        # phase: 13.6 ms a poll at 6,000 contacts; a rewrite tried took 692 ms at 20,000):
        # load of the benchmark's own on the database it measures, heavier the longer the run.
        done, progress_at = -1, time.monotonic()
        while True:
            offered = len(self.agents.stats.phase_cases)
            if offered >= contacts:
                async with self.pool.acquire() as conn:
                    if await decided_count(conn, started) >= contacts:
                        break
            if offered != done:
                done, progress_at = offered, time.monotonic()
            elif time.monotonic() - progress_at > STALL_SECONDS:
                async with self.pool.acquire() as conn:
                    now_done = await decided_count(conn, started)
                say(f"  {name}: stalled at {now_done}/{contacts} decided, {offered} offered")
                break
            await asyncio.sleep(1.0)
        wall = time.monotonic() - t0
        cpu = self.meter.cores(cpu0, self.meter.sample(), wall)
        # before the benchmark's own summary query, which is not the services' load
        top = await top_statements(self.endpoints.database_superuser_url) if counting else []
        await asyncio.sleep(1.0)  # offers made by the last decisions reach the log
        async with self.pool.acquire() as conn:
            result = await phase_result(conn, since, until, contacts)
        phase = Phase(name, contacts, rate, result, first, last, cpu, wall)
        self.phases.append(phase)
        lat = latency_row(result.offer_latencies_ms)
        say(f"  {name}: {result.opened}/{contacts} opened, {result.decided} decided,"
            f" {result.offered} offered; {phase.sustained:,.1f} contacts/s;"
            f" offer p50 {lat['p50']:.0f} ms p99 {lat['p99']:.0f} ms;"
            f" cpu {', '.join(f'{k} {v:.2f}' for k, v in sorted(cpu.items()))}")
        if counting:  # where PostgreSQL's time went in this phase (pg_stat_statements)
            out = self.services.log_dir / f"pg-statements-{re.sub(r'[^0-9A-Za-z]+', '-', name)}.txt"
            out.write_text("\n".join(top) + "\n")
            say("    PostgreSQL's top statements by execution time (all in " + str(out) + "):\n"
                + "\n".join(f"    {line[:150]}" for line in top[:STATEMENTS_SHOWN]))
        return phase

    def steady(self, phase: Phase) -> bool:
        """Flat backlog: the last third of the contacts waited no longer than the first."""
        r = phase.result
        if r.decided < phase.contacts or r.decided_at_last is None:
            return False
        if r.decided_at_last.timestamp() - phase.last > 2.0:
            return False
        lat = r.offer_latencies_ms  # in publish order only roughly; thirds by rank of arrival
        if len(lat) < 30:
            return False
        third = len(lat) // 3
        head, tail = sorted(lat[:third]), sorted(lat[-third:])
        return tail[len(tail) // 2] <= max(2 * head[len(head) // 2], head[len(head) // 2] + 200)


# --- report --------------------------------------------------------------------------------
def fmt(v: float) -> str:
    return "–" if v != v else f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def report(bench: Bench, base: dict[str, float], dead: int, dup_ids: int,
           instances: str) -> tuple[list[str], str]:
    by = {p.name: p for p in bench.phases}
    lines = [(f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; Kafka and PostgreSQL "
             f"(fsync on) on the same machine; {bench.args.agents} agents accepting every offer"
             f" and solving after {bench.args.hold} s; services: "
             f"{instances or 'one process each'}."), "",
             ("| phase | contacts | offered rate | sustained contacts/s | offer p50 ms | p95 | "
             "p99 | max | log rows/s | CPU cores (intake / router / sla / escalation / kafka /"
             f" postgres) | machine busy of {os.cpu_count()} cores (in the kernel) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in bench.phases:
        lat = latency_row(p.result.offer_latencies_ms)
        span = max(1e-6, (p.result.decided_at_last.timestamp() if p.result.decided_at_last
                          else p.last) - p.first)
        cpu = " / ".join(f"{p.cpu.get(k, 0):.2f}" for k in
                         ("intake", "router", "sla", "escalation", "kafka", "postgres"))
        lines.append(f"| {p.name} | {p.contacts:,} | {fmt(p.rate) if p.rate else 'max'} | "
                     f"{fmt(p.sustained)} | {fmt(lat['p50'])} | {fmt(lat['p95'])} | "
                     f"{fmt(lat['p99'])} | {fmt(lat['max'])} | {fmt(p.result.log_rows / span)} "
                     f"| {cpu} | {p.cpu.get('machine', 0):.2f} "
                     f"({p.cpu.get('machine system', 0):.2f}) |")
    steady = [p.rate or 0 for p in bench.phases if p.name.startswith("steady")
              and bench.steady(p)]
    max_steady = max(steady, default=0)
    lost = sum(p.lost for p in bench.phases)
    doubled = sum(p.result.doubled for p in bench.phases) + dup_ids
    big, small = by.get(f"saturation {bench.args.contacts}"), by.get(
        f"saturation {bench.args.small}")
    r200 = by.get("rate 200/s")
    p99 = latency_row(r200.result.offer_latencies_ms)["p99"] if r200 else float("nan")
    c_big = big.sustained if big else 0.0
    c_small = small.sustained if small else 0.0
    ratio = c_big / base["insert"] if base.get("insert") else float("nan")
    dup_offers = bench.agents.stats.duplicate_offers
    lines += ["", (f"Highest steady offered rate: {fmt(max_steady)}/s. "
              f"Baselines on the same broker and database: bare consume→produce relay "
              f"{fmt(base.get('relay', float('nan')))} records/s, bare consume → batched INSERT"
              f" → commit {fmt(base.get('insert', float('nan')))} records/s. "
              f"Lost {lost}, doubled {doubled}, dead letters {dead}, duplicate offers delivered"
              f" to agents {dup_offers}.")]
    last = (f"e2e: {c_big:,.0f} contacts/s sustained ({bench.args.contacts}), {c_small:,.0f} "
            f"({bench.args.small}); p99 offer {p99:,.0f} ms at 200/s; max steady "
            f"{max_steady:,.0f}/s; ratio {ratio:.3f} of bare consume+insert; lost {lost} "
            f"doubled {doubled}")
    return lines, last


def record(lines: list[str]) -> None:
    path = REPO_ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    start, end = "<!-- e2e:start -->", "<!-- e2e:end -->"
    block = "\n".join([start, "", *lines, "", end])
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.replace("# Benchmarks\n", "# Benchmarks\n\n## End to end (`make bench-e2e`)"
                            "\n\n" + block + "\n", 1)
    path.write_text(text)


# --- main ----------------------------------------------------------------------------------
async def main(args: argparse.Namespace) -> None:
    state_dir = default_state_dir() / "bench"
    if args.pg_statements:  # read by shared/infra/postgres.py when it writes the configuration
        os.environ["SWITCHBOARD_PG_STATEMENTS"] = "1"
    say(f"bench-e2e: fresh Kafka + PostgreSQL in {state_dir}")
    endpoints = await fresh_infra(state_dir)
    counts = {k: int(v) for k, v in (x.split("=") for x in args.instances.split(",") if x)}
    env = {**os.environ, **endpoints.as_env(), "SWITCHBOARD_INFRA": "external",
           "SWITCHBOARD_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1",
           # external infrastructure: the services refuse to start without their keys, so
           # they get the bench's local ones, as `make run` gives its services the checkout's
           **{k: v for k, v in local_keys(state_dir).items() if not os.environ.get(k)}}
    services = Services(env, state_dir / "logs")
    meter = CpuMeter({}, postgres.running_pid(state_dir))
    bench = Bench(args, endpoints, services, meter)
    phases = set(args.phases.split(","))
    base: dict[str, float] = {}
    try:
        await bench.publisher.start()
        await bench.agents.start()
        seed = [a["agent_id"] for a in json.loads(
            (REPO_ROOT / "services/router/seed_roster.json").read_text())]
        services.start(counts)
        await services.ready()
        meter.groups = {**services.groups(), "kafka": [kafka.running_pid(state_dir) or 0]}
        await log_in(bench.publisher, args.agents, seed)
        bench.pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
        agents_task = asyncio.create_task(bench.agents.run())
        say("warm-up: 300 contacts at 100/s")
        await bench.run_phase("warm-up", 300, 100)
        bench.phases.clear()
        # The large saturation run goes last: its backlog breaches SLAs and escalates cases
        # (4,744 warnings and 3,474 escalations for 20,600 cases in one run, docs/benchmarks.md),
        # and those timers go on firing for minutes after it, which the latency phases would
        # otherwise measure instead of their own rate.
        if "saturation" in phases:
            await bench.run_phase(f"saturation {args.small}", args.small, None)
        if "rates" in phases:
            for rate in (float(r) for r in args.rates.split(",")):
                await bench.run_phase(f"rate {rate:g}/s", int(rate * args.rate_seconds), rate)
        if "steady" in phases:
            for rate in (float(r) for r in args.steady.split(",")):
                phase = await bench.run_phase(f"steady {rate:g}/s",
                                              int(rate * args.rate_seconds), rate)
                if not bench.steady(phase):
                    break
        if "saturation" in phases:
            await bench.run_phase(f"saturation {args.contacts}", args.contacts, None)
        agents_task.cancel()
        async with bench.pool.acquire() as conn:
            dup_ids = await duplicate_event_ids(conn)
        dead = await dead_letter_count(endpoints.kafka_bootstrap_servers)
        services.stop()
        if "baselines" in phases:
            say(f"baselines: {args.baseline:,} records each, services stopped")
            base = await baselines(endpoints.kafka_bootstrap_servers,
                                   endpoints.database_admin_url, args.baseline,
                                   get_settings().topic_partitions)
        lines, last = report(bench, base, dead, dup_ids, args.instances)
        say("\n".join(lines))
        if not args.no_record:
            record(lines)
        say(last)
    finally:
        services.stop()
        if bench.pool is not None:
            await bench.pool.close()
        await bench.publisher.stop()
        await bench.agents.consumer.stop()
        if not args.keep:
            await asyncio.to_thread(local.down, state_dir)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM too stops the services and the infrastructure it started


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    asyncio.run(main(parse_args()))
