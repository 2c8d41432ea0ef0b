"""Benchmark: the console's pages with 10,000 waiting cases and 1,000 agents (issue 15).

Makes a database of its own on the PostgreSQL of `switchboard infra up` (dropped at the end, so
the demo's floor is untouched), migrates it, and fills it as a busy floor's history would:
10,000 waiting cases across skills, channels and tiers (plus 100,000 solved ones), 1,000 agents
with ~3,500 open offers (plus 60,000 answered ones), 10,000 running SLA clocks (due from 10 minutes
ago to 4 hours ahead), 2,000 breaches and 100,000 closed clocks, 500 open escalations with their
packets in the case log (plus 5,000 closed ones), and a case with a 300-row log.

Then starts the console as a process (`python -m services.console`, as the services' role, no
Kafka: the live wake-ups are not what is measured), signs in over HTTP and times each page's full
response (server-rendered HTML, as a browser receives it) sequentially, `--repeat` times each:
with the indexes of migration 0050, then again after dropping them. Prints the figures and records
them in docs/benchmarks.md.

    python benchmarks/console.py [--repeat 30] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg

from services.console.users import add_user
from services.router import core
from services.router.routing import Requirements, WaitingCase
from shared.caselog.migrate import migrate
from shared.caselog.store import append_events
from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity
from shared.events import CaseEvent
from shared.settings import REPO_ROOT, default_state_dir, get_settings

WAITING = 10_000
AGENTS = 1_000
SOLVED = 100_000
ANSWERED_OFFERS = 60_000
RUNNING_CLOCKS = 10_000
BREACHED = 2_000
CLOSED_CLOCKS = 100_000
OPEN_ESCALATIONS = 500
CLOSED_ESCALATIONS = 5_000
LONG_CASE_ROWS = 300
SKILLS = ("billing", "orders", "technical", "accounts", "general")
CHANNELS = ("email", "chat", "voice")
PRESENCE = ("available",) * 14 + ("busy",) * 3 + ("away",) * 2 + ("offline",)
CONSOLE_INDEXES = ("router_case_queue_wait_idx", "router_offer_answered_idx",
                   "sla_clock_running_due_idx", "sla_clock_breached_due_idx",
                   "escalation_live_idx", "router_offer_open_idx")
USER, PASSWORD = "bench-supervisor", uuid.uuid4().hex


def infra_env() -> dict[str, str]:
    """The addresses `switchboard infra up` wrote (the superuser's URL is only there)."""
    path = default_state_dir() / "infra.env"
    found: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                found[key] = shlex.split(value)[0] if value else ""
    return {**found, **{k: v for k, v in os.environ.items() if k.startswith("DATABASE_")}}


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


# --- the floor -------------------------------------------------------------------------------
async def fill(admin_url: str, now: datetime, rng: random.Random) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_url)
    began = time.monotonic()
    try:
        agents = [f"agent-{i:04d}" for i in range(AGENTS)]
        await conn.copy_records_to_table("router_agent", columns=(
            "agent_id", "profile", "updated_at", "idle_since", "missed"), records=[
            (a, core_profile(a, rng, now), now, now - timedelta(minutes=rng.uniform(0, 90)),
             rng.choice((0, 0, 0, 1))) for a in agents])

        cases, offers = [], []
        for i in range(WAITING):
            skill, channel = rng.choice(SKILLS), rng.choice(CHANNELS)
            tier = rng.choice((1, 1, 1, 2, 3))
            queued = now - timedelta(seconds=rng.uniform(5, 7200))
            cases.append(case_row(f"case-w{i:05d}", "waiting", skill, channel, tier, queued,
                                  rng.choice((0, 1, 2, 3)), now))
        for i in range(SOLVED):
            skill, channel = rng.choice(SKILLS), rng.choice(CHANNELS)
            cases.append(case_row(f"case-s{i:06d}", "solved", skill, channel, 1,
                                  now - timedelta(hours=rng.uniform(2, 24 * 30)), 0, now))
        open_offers = 0
        for agent in agents:
            for _ in range(rng.choice((2, 3, 4))):
                case_id, channel = f"case-a{open_offers:05d}", rng.choice(("email", "chat"))
                skill = rng.choice(SKILLS)
                state = "offered" if rng.random() < 0.15 else "accepted"
                cases.append(case_row(case_id, "offered" if state == "offered" else "assigned",
                                      skill, channel, 1, now - timedelta(minutes=20), 0, now))
                offers.append(offer_row(f"offer-o{open_offers:05d}", case_id, agent, channel,
                                        skill, state, now - timedelta(minutes=rng.uniform(0, 30)),
                                        now, rng))
                open_offers += 1
        for i in range(ANSWERED_OFFERS):
            channel, skill = rng.choice(CHANNELS), rng.choice(SKILLS)
            offers.append(offer_row(f"offer-h{i:05d}", f"case-s{i:06d}", rng.choice(agents),
                                    channel, skill, rng.choice(("released", "declined")),
                                    now - timedelta(hours=rng.uniform(0, 48)), now, rng))
        await conn.copy_records_to_table("router_case", columns=CASE_COLUMNS, records=cases)
        await conn.copy_records_to_table("router_offer", columns=OFFER_COLUMNS, records=offers)

        clocks: list[tuple[Any, ...]] = []
        for i in range(RUNNING_CLOCKS):
            due = now + timedelta(seconds=rng.uniform(-600, 4 * 3600))
            clocks.append((f"clock-r{i:05d}", f"case-w{i:05d}", "first_response", "bench",
                           due - timedelta(hours=1), due, "running", None, due))
        for i in range(BREACHED):
            due = now - timedelta(seconds=rng.uniform(60, 30 * 3600))
            clocks.append((f"clock-b{i:05d}", f"case-w{(i * 7) % WAITING:05d}", "resolution",
                           "bench", due - timedelta(hours=8), due, "breached", due, None))
        for i in range(CLOSED_CLOCKS):
            due = now - timedelta(hours=rng.uniform(1, 24 * 30))
            clocks.append((f"clock-m{i:06d}", f"case-s{i:06d}", "first_response", "bench",
                           due - timedelta(hours=1), due, rng.choice(("met", "breached")), due,
                           None))
        await conn.copy_records_to_table("sla_clock", columns=(
            "clock_id", "case_id", "metric", "policy", "started_at", "due_at", "state",
            "closed_at", "next_fire_at"), records=clocks)

        escalations, events = [], []
        for i in range(OPEN_ESCALATIONS + CLOSED_ESCALATIONS):
            live = i < OPEN_ESCALATIONS
            case_id = f"case-w{i:05d}" if live else f"case-s{i:06d}"
            esc_id = f"esc-{i:05d}"
            opened = now - timedelta(minutes=rng.uniform(1, 600))
            escalations.append((esc_id, case_id, "sla.breached:first_response", "breach", 1,
                                "open" if live else rng.choice(("acknowledged", "resolved")), 1,
                                0, 1, opened, opened + timedelta(minutes=30) if live else None,
                                None, 1))
            if live:
                events.append(escalated_event(case_id, esc_id, opened))
        await conn.copy_records_to_table("escalation", columns=(
            "escalation_id", "case_id", "reason", "rule", "episode", "state", "level", "repeat",
            "notifications", "opened_at", "next_fire_at", "assigned_agent", "opened_seq"),
            records=escalations)
        long_case = "case-w00000"
        events += [CaseEvent.derived(long_case, f"text/{n}", long_case, "contact.text_added",
                                     now - timedelta(seconds=LONG_CASE_ROWS - n),
                                     ce.ContactTextAdded(case_id=long_case, contact_id="c1",
                                                         channel="chat",
                                                         source_type="chat.message",
                                                         text=f"message {n}: " + "x" * 200,
                                                         at=now))
                   for n in range(LONG_CASE_ROWS - 1)]
        async with conn.transaction():
            for start in range(0, len(events), 500):
                await append_events(conn, events[start:start + 500], source="bench/console")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return {"long_case": long_case, "escalation": "esc-00000", "fill_s": time.monotonic() - began}


CASE_COLUMNS = ("case_id", "state", "channel", "classification", "waiting", "queue", "step",
                "queued_at", "next_check_at", "generation", "last_agent", "contact_text",
                "customer_key", "stage_skill", "updated_at")
OFFER_COLUMNS = ("offer_id", "case_id", "agent_id", "channel", "needs", "state", "offered_at",
                 "expires_at", "answered_at")


def core_profile(agent_id: str, rng: random.Random, now: datetime) -> str:
    skills = rng.sample(SKILLS, rng.choice((2, 3, 4)))
    return json.dumps({"agent_id": agent_id, "name": f"Agent {agent_id[-4:]}",
                       "skills": [{"skill": s, "proficiency": rng.randint(1, 5)} for s in skills],
                       "authority_tier": rng.choice((1, 1, 2, 3)), "languages": ["en"],
                       "capacity": {"email": 5, "chat": 3, "voice": 1}, "capacity_units": None,
                       "presence": rng.choice(PRESENCE), "changed_at": now.isoformat()})


def waiting_json(case_id: str, skill: str, channel: str, tier: int, queued: datetime) -> str:
    case = WaitingCase(case_id, Requirements(skill=skill, min_proficiency=1, min_tier=tier,
                                             language="en", channel=channel),  # type: ignore[arg-type]
                       "normal", queued)
    return json.dumps(core.case_to_json(case))


def case_row(case_id: str, state: str, skill: str, channel: str, tier: int, queued: datetime,
             step: int, now: datetime) -> tuple[Any, ...]:
    return (case_id, state, channel, "{}", waiting_json(case_id, skill, channel, tier, queued),
            f"{skill}-{channel}", step, queued, None, 0, None, "", None, None, now)


def offer_row(offer_id: str, case_id: str, agent: str, channel: str, skill: str, state: str,
              at: datetime, now: datetime, rng: random.Random) -> tuple[Any, ...]:
    answered = None if state == "offered" else at + timedelta(seconds=rng.uniform(3, 60))
    return (offer_id, case_id, agent, channel, waiting_json(case_id, skill, channel, 1, at),
            state, at, at + timedelta(seconds=120), answered)


def escalated_event(case_id: str, esc_id: str, at: datetime) -> CaseEvent:
    text = "I was charged twice for order 4411 and nobody answered my two e-mails. " * 3
    packet = ce.WarmTransferPacket(
        case_id=case_id, customer=CustomerIdentity(name="Maya Patel", email="maya@example.com"),
        problem="Refund for a double charge",
        contacts=[ce.PacketContact(channel="email", at=at, text=text) for _ in range(5)],
        reason="sla.breached:first_response", level=1,
        suggested_next_step="Reply to the customer now.")
    return CaseEvent.derived(esc_id, "escalated", case_id, "case.escalated", at,
                             ce.CaseEscalated(case_id=case_id, escalation_id=esc_id,
                                              reason=packet.reason, level=1,
                                              target="supervisors-tier2", packet=packet))


# --- the console over HTTP ---------------------------------------------------------------------
class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                ) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                self.cookie = value.split(";", 1)[0]
        conn.close()
        return response.status, text

    def sign_in(self) -> None:
        _, html = self.request("GET", "/login")
        token = re.search(r'name="csrf-token" content="([^"]+)"', html)
        assert token, html[:500]
        status, _ = self.request("POST", "/login", {"name": USER, "password": PASSWORD,
                                                    "csrf_token": token.group(1), "next": "/"})
        assert status == 303, status

    def first_fragment(self, path: str) -> float:
        """Seconds until a live stream's first fragment arrives."""
        began = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", path, headers={"Cookie": self.cookie})
        response = conn.getresponse()
        while True:
            line = response.fp.readline()
            if line.startswith(b"event: fragment") or not line:
                break
        elapsed = time.perf_counter() - began
        conn.close()
        return elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_console(app_url: str, users: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": app_url, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
           "SWITCHBOARD_INFRA": "external", "CONSOLE_PORT": str(port),
           "CONSOLE_USERS_FILE": str(users), "CONSOLE_SECRET_KEY": uuid.uuid4().hex}
    proc = subprocess.Popen([sys.executable, "-m", "services.console"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ready = threading.Event()

    def drain() -> None:  # read its output to the end, so a full pipe never blocks it
        assert proc.stdout is not None
        for raw in proc.stdout:
            if b"Switchboard console ready on" in raw:
                ready.set()
    threading.Thread(target=drain, daemon=True).start()
    while not ready.wait(0.2):
        if proc.poll() is not None:
            raise RuntimeError(f"the console exited ({proc.returncode})")
    return proc


def measure(client: Client, pages: dict[str, str], repeat: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {}
    for label, path in pages.items():
        status, html = client.request("GET", path)  # warm: plans cached, pool connections open
        assert status == 200, (path, status, html[:300])
        runs = []
        for _ in range(repeat):
            began = time.perf_counter()
            status, _ = client.request("GET", path)
            runs.append(time.perf_counter() - began)
            assert status == 200
        timings[label] = runs
    return timings


def pages(facts: dict[str, Any]) -> dict[str, str]:
    return {
        "Queues (all waiting work, aggregated)": "/queues",
        "Queue billing-chat, page 1": "/queues/billing-chat",
        "Queue billing-chat, last page": "/queues/billing-chat?page=14",
        "Agents, page 1 by id": "/agents",
        "Agents, page 10 by load": "/agents?sort=load&page=10",
        "Agents, available, by load": "/agents?presence=available&sort=load",
        "SLA risk, page 1": "/sla",
        "Escalations, page 1": "/escalations",
        "Escalation with its packet": f"/escalations/{facts['escalation']}",
        f"Case timeline, {LONG_CASE_ROWS} rows verified": f"/cases/{facts['long_case']}",
    }


def stats(runs: list[float]) -> tuple[float, float, float]:
    ordered = sorted(runs)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000, ordered[-1] * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = infra_env()
    superuser = env.get("DATABASE_SUPERUSER_URL")
    if not superuser:
        raise SystemExit("no DATABASE_SUPERUSER_URL: run `switchboard infra up` first")
    settings = get_settings()
    name = f"switchboard_console_bench_{uuid.uuid4().hex[:8]}"
    su = await asyncpg.connect(superuser)
    owner = urlsplit(settings.database_admin_url).username
    await su.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    await su.close()
    admin_url = with_database(settings.database_admin_url, name)
    app_url = with_database(settings.database_url, name)
    proc = None
    try:
        await migrate(admin_url, settings.database_app_role)
        now = datetime.now(UTC)
        facts = await fill(admin_url, now, random.Random(15))
        users = default_state_dir() / "bench" / "console-bench-users.json"
        users.unlink(missing_ok=True)
        add_user(users, USER, "supervisor", PASSWORD)
        port = free_port()
        proc = start_console(app_url, users, port)
        client = Client(port)
        client.sign_in()
        timed = await asyncio.to_thread(measure, client, pages(facts), args.repeat)
        first = [await asyncio.to_thread(client.first_fragment, "/live/sla?page=1")
                 for _ in range(5)]
        conn = await asyncpg.connect(admin_url)
        try:
            counts = {
                "waiting": await conn.fetchval(
                    "SELECT count(*) FROM router_case WHERE state = 'waiting'"),
                "agents": await conn.fetchval("SELECT count(*) FROM router_agent"),
                "open_offers": await conn.fetchval(
                    "SELECT count(*) FROM router_offer WHERE state IN ('offered', 'accepted')"),
            }
            for index in CONSOLE_INDEXES:
                await conn.execute(f"DROP INDEX IF EXISTS {index}")
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
        proc.terminate()
        proc.wait(timeout=30)
        proc = start_console(app_url, users, port)  # fresh plans
        client = Client(port)
        client.sign_in()
        without = await asyncio.to_thread(measure, client, pages(facts), max(5, args.repeat // 3))
        return {"timed": timed, "without": without, "first_fragment": first, "counts": counts,
                "fill_s": facts["fill_s"], "repeat": args.repeat}
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        su = await asyncpg.connect(superuser)
        await su.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await su.close()


def report(r: dict[str, Any]) -> str:
    rows = []
    for label, runs in r["timed"].items():
        p50, p95, worst = stats(runs)
        b50, _b95, _ = stats(r["without"][label])
        rows.append(f"| {label} | {p50:.1f} ms | {p95:.1f} ms | {worst:.1f} ms | {b50:.1f} ms |")
    first = sorted(r["first_fragment"])
    c = r["counts"]
    return (
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, Python "
        f"{sys.version.split()[0]}, the PostgreSQL of `switchboard infra up` (a database of its "
        f"own), 2 cores shared with other work. The floor: {c['waiting']:,} waiting cases (and "
        f"{SOLVED:,} solved), {c['agents']:,} agents with {c['open_offers']:,} open offers (and "
        f"{ANSWERED_OFFERS:,} answered), {RUNNING_CLOCKS:,} running SLA clocks, {BREACHED:,} "
        f"breaches and {CLOSED_CLOCKS:,} closed clocks, {OPEN_ESCALATIONS} open escalations "
        f"with packets (and {CLOSED_ESCALATIONS:,} closed). Each page is the whole HTML "
        "response over HTTP from the console process (`python -m services.console`), signed "
        f"in, one request at a time, {r['repeat']} times after one warm-up request; the last "
        "column drops migration 0050's indexes.\n\n"
        "| page | p50 | p95 | max | p50 without 0050's indexes |\n|---|---|---|---|---|\n"
        + "\n".join(rows) +
        "\n\nA live stream's first fragment (`/live/sla`): median "
        f"{statistics.median(first) * 1000:.0f} ms over 5 connections. Loading the floor (COPY, "
        f"set-up only): {r['fill_s']:.1f} s.\n")


def record(body: str) -> None:
    path = REPO_ROOT / "docs" / "benchmarks.md"
    text = path.read_text("utf-8") if path.exists() else "# Benchmarks\n"
    start, end = "<!-- console-pages:start -->", "<!-- console-pages:end -->"
    block = f"{start}\n\n{body}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = (text.rstrip() + "\n\n## Console pages, 10,000 waiting cases and 1,000 agents "
                "(`benchmarks/console.py`)\n\n" + block + "\n")
    path.write_text(text, "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    body = report(asyncio.run(run(args)))
    print(body)
    if not args.no_record:
        record(body)


if __name__ == "__main__":
    main()
