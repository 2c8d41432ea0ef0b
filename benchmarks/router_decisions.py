"""Benchmark: routing decisions in the pure core with 10,000 agents and 100,000 waiting cases.

Steady state of a busy floor: every agent is full, 100,000 cases wait. Two kinds of decision,
each made exactly as the router service makes it (`decide.py` on the indexed `Floor`, then the
changes applied), without Kafka or SQL:
- *capacity freed*: an agent solves a case; the router releases them and offers them the next
  case from the queues they serve (`routing.decided` + `assignment.offered`);
- *case arrives*: a case enters its queue and is routed among the free agents.
For contrast, one unindexed `routing.route` over all 10,000 agents is timed too. Records in
docs/benchmarks.md.
Also the intent classifiers' held-out accuracy and macro-F1 (`--accuracy`).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.router import decide, routing
from services.router.classify import RulesClassifier
from services.router.core import RouterConfig
from services.router.floor import AgentRecord, CaseRecord, Floor, Offer, PutAgent, PutCase, PutOffer
from services.router.policy import RoutingPolicy, load_policy, load_taxonomy
from shared.contracts.agents import AgentProfile, CaseSolved, SkillLevel
from shared.settings import REPO_ROOT

SKILLS = ("billing", "orders", "technical", "accounts", "general")
LANGS = ("en", "en", "en", "es", "fr")
CHANNELS = ("email", "chat", "voice")
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def make_profile(i: int, rng: random.Random) -> AgentProfile:
    skills = rng.sample(SKILLS, rng.randint(1, 3))
    langs = sorted({"en", rng.choice(LANGS)})
    return AgentProfile(
        agent_id=f"agent-{i:05d}", name=f"Agent {i}", authority_tier=rng.choice((1, 1, 2, 3)),
        languages=langs, changed_at=NOW,
        skills=[SkillLevel(skill=s, proficiency=rng.randint(1, 5)) for s in skills])


def make_case(i: int, rng: random.Random, at: datetime) -> routing.WaitingCase:
    req = routing.Requirements(
        skill=rng.choice(SKILLS), min_proficiency=rng.randint(1, 3),
        min_tier=rng.choice((1, 1, 1, 2)), language=rng.choice(LANGS),
        channel=rng.choice(CHANNELS))  # type: ignore[arg-type]
    return routing.WaitingCase(f"case-{i:06d}", req, rng.choice(("normal", "normal", "high")),
                               at)


def make_floor(policy: RoutingPolicy, n_agents: int, n_waiting: int,
               rng: random.Random) -> tuple[Floor, list[str]]:
    """A busy floor: every agent full (5 emails + 1 chat: no room for chat or voice, and 5 is
    the email cap), each holding one chat case they will solve; `n_waiting` cases wait."""
    floor = Floor(policy)
    agents = []
    for i in range(n_agents):
        profile = make_profile(i, rng)
        agents.append(profile.agent_id)
        floor.load(PutAgent(AgentRecord(profile, NOW, NOW - timedelta(seconds=rng.randint(
            0, 3600)))))
        held = make_case(10_000_000 + i, rng, NOW - timedelta(hours=1))
        floor.load(PutCase(CaseRecord(held.case_id, "assigned", held,
                                      last_agent=profile.agent_id)))
        for n, channel in enumerate(["chat"] + ["email"] * 5):
            floor.load(PutOffer(Offer(f"o-{i}-{n}", held.case_id if n == 0 else f"x-{i}-{n}",
                                      profile.agent_id, channel, "accepted", NOW, NOW, held)))
    for i in range(n_waiting):
        case = make_case(i, rng, NOW - timedelta(seconds=rng.randint(0, 50)))
        floor.load(PutCase(CaseRecord(case.case_id, "waiting", case,
                                      stage_skill=case.requirements.skill,
                                      next_check_at=case.queued_at + timedelta(seconds=60))))
    return floor, agents


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(floor: Floor, config: RouterConfig, now: datetime, step: Any, *args: Any,
          into: list[float]) -> decide.Outcome:
    """One decision as the service makes it: decided on the floor, then applied."""
    t0 = time.perf_counter()
    outcome = decide.decide(floor, config, now, step, *args)
    for change in outcome.changes:
        floor.apply(change)
    into.append(time.perf_counter() - t0)
    return outcome


def bench(n_agents: int, n_waiting: int, n_decisions: int, seed: int) -> list[tuple[str, ...]]:
    rng = random.Random(seed)
    policy = load_policy()
    config = RouterConfig(policy, load_taxonomy(), RulesClassifier(load_taxonomy()))
    began = time.perf_counter()
    floor, agents = make_floor(policy, n_agents, n_waiting, rng)
    load_s = time.perf_counter() - began
    now = NOW + timedelta(seconds=55)  # before the first relaxation step

    freed: list[float] = []
    offered = 0
    for d in range(n_decisions):
        agent_id = agents[rng.randrange(n_agents)]
        held = [o for o in floor.open_offers_of_agent(agent_id) if o.case_id in floor.cases]
        if not held:
            continue
        solved = CaseSolved(case_id=held[0].case_id, agent_id=agent_id, at=now)
        outcome = timed(floor, config, now, decide.on_solved, f"freed-{d}", solved, into=freed)
        offered += any(e.type == "assignment.offered" for e in outcome.decision.events)

    arrivals: list[float] = []
    for d in range(n_decisions):
        case = make_case(n_waiting + d, rng, now)
        timed(floor, config, now, decide.route_one, case, f"arrival-{d}", "contact received",
              into=arrivals)

    full: list[float] = []
    all_agents = list(floor.agents.values())
    for d in range(20):
        case = make_case(10 * n_waiting + d, rng, now)
        t0 = time.perf_counter()
        routing.route(case, all_agents, policy, f"full-{d}", "contact received", now)
        full.append(time.perf_counter() - t0)

    rows: list[tuple[str, ...]] = []
    for name, samples in (("agent solves a case → next case offered (service path)", freed),
                          ("case arrives → routed among free agents (service path)", arrivals),
                          ("case arrives, all agents scanned (unindexed, for contrast)", full)):
        ms = [s * 1000 for s in samples]
        rows.append((name, f"{len(ms):,}", f"{len(ms) / sum(samples):,.0f}",
                     f"{statistics.median(ms):.3f}", f"{percentile(ms, 0.99):.3f}"))
    print(f"{n_agents:,} agents, {n_waiting:,} waiting cases (floor loaded in {load_s:.1f} s); "
          f"{offered:,} of {len(freed):,} solved cases freed an offer")
    for row in rows:
        print(f"  {row[0]:<58} n={row[1]:>6}  {row[2]:>8}/s  p50 {row[3]} ms  p99 {row[4]} ms")
    return rows


def accuracy_rows(seed: int) -> list[tuple[str, ...]]:
    """Held-out accuracy and macro-F1 of the rules and the trained classifier."""
    from services.router import model
    from services.router.classify import RulesClassifier
    from services.router.policy import load_taxonomy

    taxonomy = load_taxonomy()
    data = (REPO_ROOT / "tests" / "fixtures" / "router" / "bitext-8k"
            / "Bitext_Sample_Customer_Service_Training_Dataset.csv")
    examples = model.read_examples(data)
    _train, held_out = model.split(examples, seed)
    document, report = model.train(examples, taxonomy, seed)
    rules = RulesClassifier(taxonomy)
    trained = model.StatisticalClassifier(document, taxonomy, "model")
    rows: list[tuple[str, ...]] = []
    for name, classifier in (("rules (taxonomy keywords)", rules),
                             ("trained (TF-IDF + logistic regression)", trained)):
        accuracy, macro_f1 = model.evaluate(classifier, held_out)
        skill_hits = sum(classifier.predict(e.text).skill == taxonomy.by_name[e.label].skill
                         for e in held_out)
        rows.append(("Bitext customer service (27 intents)", name, f"{len(held_out):,}",
                     f"{accuracy:.3f}", f"{macro_f1:.3f}", f"{skill_hits / len(held_out):.3f}"))
    assert rows[1][3] == f"{report.accuracy:.3f}"  # what `classifier train` printed
    for row in rows:
        print(f"  {row[1]:<40} held-out {row[2]}: accuracy {row[3]}, macro-F1 {row[4]},"
              f" skill accuracy {row[5]}")
    return rows


def record(marker: str, title: str, intro: str, header: str, rows: list[tuple[str, ...]]) -> None:
    path = REPO_ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    cols = header.count("|") - 1
    table = [start, "", intro, "", header, "|" + "---|" * cols]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    block = "\n".join([*table, "", end])
    if start in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += f"\n## {title}\n\n{block}\n"
    Path(path).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--accuracy", action="store_true",
                        help="also train and report the intent classifiers")
    args = parser.parse_args()
    rows = bench(args.agents, args.waiting, args.decisions, args.seed)
    when = (f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; {args.agents:,} agents, "
            f"{args.waiting:,} waiting cases, pure core (no Kafka, no SQL), seed {args.seed}.")
    if not args.no_record:
        record("router-decisions", "Routing decisions (`benchmarks/router_decisions.py`)", when,
               "| decision | n | decisions/s | p50 ms | p99 ms |", rows)
    if args.accuracy:
        acc = accuracy_rows(args.seed)
        if not args.no_record:
            record("router-accuracy", "Intent classification (`benchmarks/router_decisions.py "
                   "--accuracy`)",
                   "Held-out split: stratified 20 %, seed 0, of the Bitext sample in "
                   "`tests/fixtures/router/bitext-8k/` (CDLA-Sharing 1.0). The trained model is "
                   "what `switchboard classifier train` writes, scored as the router scores it.",
                   "| data | classifier | held-out rows | intent accuracy | intent macro-F1 "
                   "| skill accuracy |", acc)


if __name__ == "__main__":
    main()
