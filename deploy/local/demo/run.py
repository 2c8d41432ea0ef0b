"""`make run`: the whole system with a live demo feed, and a summary of what happened.

Starts (or reuses) the local Kafka broker and PostgreSQL, the four services and the supervisor
console as processes, simulated front-ends and agents; prints the console's address and sign-ins
and a live summary read back from the case log and Kafka until Ctrl-C (or for `--seconds N`), then
stops everything it started and prints the final summary.

    python deploy/local/demo/run.py [--seconds N] [--seed S]

Exit status: 0 on success; 1 if a service died, did not start, or the log failed verification.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path

import asyncpg
from aiokafka.errors import KafkaError

sys.path.insert(1, str(Path(__file__).resolve().parents[3]))  # the repo, if not installed

from agents import SimulatedAgents, close_leftovers, publish_roster
from bus import Bus
from console import prepare as prepare_console
from feed import Feed
from procs import SERVICES, ServiceSet, service_env
from sample import load_mailbox, load_utterances
from summary import Collector, Snapshot, compact_line, full_report

from shared.caselog.migrate import migrate
from shared.infra import Endpoints, InfraError, local
from shared.settings import default_state_dir, get_settings
from shared.topics_admin import create_topics

# Targets short enough that a one-minute demo sees clocks met and breached; email keeps its
# production-like 4 h. The environment may override them, as it can for the services.
DEMO_SLA_TARGETS = '{"email": 14400, "chat": 40, "voice": 20}'
DEMO_TIMER_TICK = "0.5"
READY_TIMEOUT = 120.0  # two cores, four Python processes importing at once: be patient
DRAIN_TIMEOUT = 20.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0,
                        help="feed for N seconds, then stop (0: until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the feed and the agents")
    parser.add_argument("--refresh", type=float, default=3.0, help="seconds between summaries")
    return parser.parse_args()


def say(text: str) -> None:
    print(text, flush=True)


async def ensure_infra(external: bool) -> Endpoints:
    """Idempotent: reuse what runs, start what does not, migrate, create missing topics."""
    state_dir = default_state_dir()
    if external:
        endpoints = local.endpoints_from_env()
    else:
        endpoints = await asyncio.to_thread(local.up, state_dir)
        local.write_env_file(state_dir, endpoints)
    settings = get_settings()
    await migrate(endpoints.database_admin_url, settings.database_app_role)
    await create_topics(endpoints.kafka_bootstrap_servers, settings.topic_partitions)
    return endpoints


class Demo:
    def __init__(self, args: argparse.Namespace, endpoints: Endpoints) -> None:
        self.args = args
        self.endpoints = endpoints
        self.rng = random.Random(args.seed)
        self.run_id = uuid.uuid4().hex[:6]  # fresh per run: thread keys outlive runs in the DB
        self.stop = asyncio.Event()
        self.hurry = False  # a second Ctrl-C: skip the drain, stop the services at once
        self.reason = ""
        self.tty = sys.stdout.isatty()
        overrides = {
            "SLA_FIRST_RESPONSE_SECONDS": os.environ.get("SLA_FIRST_RESPONSE_SECONDS",
                                                         DEMO_SLA_TARGETS),
            "TIMER_TICK_SECONDS": os.environ.get("TIMER_TICK_SECONDS", DEMO_TIMER_TICK),
        }
        self.targets: dict[str, float] = json.loads(overrides["SLA_FIRST_RESPONSE_SECONDS"])
        self.console = prepare_console(default_state_dir())
        self.services = ServiceSet(service_env(endpoints.as_env(), {**overrides,
                                                                   **self.console.env}),
                                   default_state_dir() / "logs")
        self.bus = Bus(endpoints.kafka_bootstrap_servers)
        self.collector = Collector(endpoints.database_url, endpoints.kafka_bootstrap_servers)
        self.agents = SimulatedAgents(self.bus, endpoints.kafka_bootstrap_servers, self.targets,
                                      self.rng)
        self.feed = Feed(self.bus, self.run_id, load_mailbox(), load_utterances(), self.rng)
        self.fed_since: float | None = None
        self.fed_until: float | None = None

    def on_signal(self, signum: int) -> None:
        if self.stop.is_set():
            self.hurry = True
            say("\nsecond interrupt: stopping without waiting for the pipeline to drain")
            return
        self.reason = f"{signal.Signals(signum).name} received"
        self.stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self.on_signal, signum)
        try:
            await self.bus.start()
            await self.collector.prepare()  # before the services: mark where this run starts
            await self.agents.prepare()
            if not await self.start_services():
                return 0 if self.stop.is_set() else 1  # interrupted while starting: no failure
            closed, still_open = await close_leftovers(self.collector.pool, self.bus)
            if closed:
                say(f"closed {closed} assignment(s) an earlier run left open (frees capacity)"
                    + (f"; the router has not released {still_open} of them yet, see"
                       f" {self.services.log_path('router')}" if still_open else ""))
            agents = await publish_roster(self.bus)
            say(f"agents on shift: {', '.join(agents)}; SLA first-response targets"
                f" {self.targets} s")
            for line in self.console.lines():
                say(line)
            return await self.feed_and_watch()
        finally:
            await self.shutdown()

    async def start_services(self) -> bool:
        say(f"starting {', '.join(SERVICES)} (logs in {self.services.log_dir})")
        self.services.start()
        began = time.monotonic()
        while time.monotonic() - began < READY_TIMEOUT and not self.stop.is_set():
            dead = self.services.dead()
            if dead:
                self.report_dead(dead)
                return False
            if self.services.ready() == set(SERVICES):
                say(f"services ready in {time.monotonic() - began:.1f} s")
                return True
            await asyncio.sleep(0.3)
        if not self.stop.is_set():
            waiting = sorted(set(SERVICES) - self.services.ready())
            say(f"services not ready after {READY_TIMEOUT:.0f} s: {', '.join(waiting)}")
            for name in waiting:
                say(f"--- {name} log (last lines):\n{self.services.log_tail(name)}")
        return False

    async def feed_and_watch(self) -> int:
        seconds = self.args.seconds
        say(f"feeding contacts (run {self.run_id}) "
            + (f"for {seconds:.0f} s" if seconds > 0 else "until Ctrl-C"))
        self.fed_since = time.monotonic()
        workers = [asyncio.create_task(self.feed.run(), name="feed"),
                   asyncio.create_task(self.agents.run(), name="agents")]
        status = 0
        try:
            while not self.stop.is_set():
                wait = self.args.refresh
                if seconds > 0:
                    wait = max(0.05, min(wait, seconds - self.elapsed()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=wait)
                if seconds > 0 and self.elapsed() >= seconds:
                    self.reason = f"{seconds:.0f} s elapsed"
                    break
                dead = self.services.dead()
                if dead:
                    self.report_dead(dead)
                    status = 1
                    break
                failed = [t for t in workers if t.done()]
                if failed:
                    for task in failed:
                        why = "cancelled" if task.cancelled() else repr(task.exception())
                        say(f"the demo's {task.get_name()} stopped: {why}")
                    status = 1
                    break
                if not self.stop.is_set():
                    try:
                        self.show(await self.snapshot())
                    except (OSError, asyncpg.PostgresError, KafkaError) as exc:
                        # One missed refresh is no reason to stop the demo; the next may work.
                        say(f"summary unavailable this time: {exc!r}")
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.fed_until = time.monotonic()
        say(f"\nstopping ({self.reason or 'see above'}): feed and agents stopped")
        return await self.finish(status)

    async def finish(self, status: int) -> int:
        """Let the services catch up, stop them, and print the final summary."""
        if not self.hurry and status == 0:  # a dead service would never catch up
            began = time.monotonic()
            backlog = await self.collector.backlog()
            while backlog and time.monotonic() - began < DRAIN_TIMEOUT and not self.hurry:
                await asyncio.sleep(0.5)
                backlog = await self.collector.backlog()
            say(f"pipeline drained in {time.monotonic() - began:.1f} s" if not backlog else
                f"pipeline still has {backlog} record(s) in flight; summarising anyway")
        killed = await asyncio.to_thread(self.services.stop, 3.0 if self.hurry else 20.0)
        say("services stopped" + (f" (killed after the deadline: {', '.join(killed)})"
                                  if killed else " gracefully"))
        final = await self.snapshot()
        say("\n" + full_report(final, "Final summary", final=True) + "\n")
        if final.example_case:
            say("A case's timeline, once the infrastructure runs again (`switchboard infra up`):\n"
                f"  .venv/bin/switchboard log show {final.example_case}\n")
        if not final.verified_ok:
            status = 1
        return status

    async def shutdown(self) -> None:
        """Whatever happened: no service left running, clients closed."""
        if any(self.services.alive().values()):
            await asyncio.to_thread(self.services.stop, 3.0 if self.hurry else 20.0)
        with contextlib.suppress(Exception):
            await self.agents.close()
        with contextlib.suppress(Exception):
            await self.collector.close()
        with contextlib.suppress(Exception):
            await self.bus.stop()

    async def snapshot(self) -> Snapshot:
        return await self.collector.snapshot(self.elapsed(), self.services.alive(),
                                             self.feed.stats, self.agents.stats,
                                             services_stopped=self.services.stopping)

    def elapsed(self) -> float:
        """Seconds of feeding: the clock stops with the feed, not with the shutdown."""
        if self.fed_since is None:
            return 0.0
        return (self.fed_until or time.monotonic()) - self.fed_since

    def show(self, snap: Snapshot) -> None:
        if self.tty:
            # Redraw in place: home the cursor, clear the screen.
            hint = "Ctrl-C to stop" if self.args.seconds <= 0 else f"{self.args.seconds:.0f} s run"
            say("\x1b[H\x1b[2J" + full_report(snap, f"Switchboard demo, live - {hint}") + "\n\n"
                + "\n".join(self.console.lines()))
        else:
            say(compact_line(snap))

    def report_dead(self, dead: dict[str, int]) -> None:
        for name, code in dead.items():
            say(f"service {name} exited unexpectedly (code {code}); last lines of its log:")
            say(self.services.log_tail(name))
        self.reason = f"{', '.join(dead)} died"


async def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("switchboard.infra").setLevel(logging.INFO)  # first-run downloads
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries it recovers from
    external = os.environ.get("SWITCHBOARD_INFRA", "local") == "external"
    try:
        endpoints = await ensure_infra(external)
    except (InfraError, OSError) as exc:
        say(f"infrastructure did not start: {exc}")
        return 1
    say(f"Kafka {endpoints.kafka_bootstrap_servers}, PostgreSQL"
        f" {endpoints.database_url.rsplit('@', 1)[-1]}"
        + (" (external)" if external else " (local processes)"))
    try:
        return await Demo(args, endpoints).run()
    finally:
        if not external:
            say("stopping the local Kafka broker and PostgreSQL (data is kept)")
            await asyncio.to_thread(local.down, default_state_dir())


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
