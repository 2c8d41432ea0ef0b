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
import json
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


def accuracy_rows(seed: int, folds: int = 3) -> list[tuple[str, ...]]:
    """Intent classifiers, cross-validated on the training splits in `data/intents/` (copies of
    ../shared/data/intents with their licences): the recipe of the shipped default model and
    of `classifier train` (word + character n-grams, calibrated logistic regression) against
    the TF-IDF + logistic regression it replaces, and the keyword rules."""
    from cli.classifier import score
    from services.router import training
    from services.router.classify import RulesClassifier
    from services.router.model import OUT_OF_SCOPE, Example, read_examples
    from services.router.policy import load_policy, load_taxonomy

    threshold = load_policy().confidence_threshold
    rules = RulesClassifier(load_taxonomy())
    rows: list[tuple[str, ...]] = []

    def row(data: str, name: str, split: str, result: dict[str, object],
            per_source: str = "") -> None:
        oos = (f"{result['oos_rejected']:.1%} of {result['oos_rows']:,}"
               if result["oos_rows"] else "-")
        rows.append((data, name, split, f"{result['accuracy']:.3f}",
                     f"{result['macro_f1']:.3f}", f"{result['triage']:.1%}", oos, per_source))
        print(f"  {data[:40]:<40} {name:<34} acc {result['accuracy']:.3f} "
              f"F1 {result['macro_f1']:.3f} triage {result['triage']:.1%} oos {oos} {per_source}",
              flush=True)

    def pooled(parts: list[dict[str, object]]) -> dict[str, object]:
        n = sum(int(p["rows"]) - int(p["oos_rows"]) for p in parts)  # type: ignore[call-overload]
        o = sum(int(p["oos_rows"]) for p in parts)  # type: ignore[call-overload]
        mean = {k: sum(float(p[k]) * (int(p["rows"]) - int(p["oos_rows"]))  # type: ignore[arg-type,call-overload]
                       for p in parts) / max(n, 1)
                for k in ("accuracy", "macro_f1", "triage")}
        mean["oos_rejected"] = sum(float(p["oos_rejected"]) * int(p["oos_rows"])  # type: ignore[arg-type,call-overload]
                                   for p in parts) / max(o, 1)
        return {**mean, "oos_rows": o, "rows": n + o}

    # 1. The default taxonomy: every source, k folds; by source for the new recipe.
    data = training.default_data(seed=seed)
    new_parts, base_parts, rule_parts = [], [], []
    by_source: dict[str, list[tuple[bool, bool]]] = {}
    for train, calib, held in training.folds(data, folds, seed):
        fitted = training.fit_recipe(training.augment(train), [s.example for s in calib], seed)
        baseline = training.BaselineClassifier(training.baseline_fit(
            [e.text for e in training.augment(train)], [e.label for e in training.augment(train)],
            seed))
        examples = [s.example for s in held]
        new_parts.append(score(fitted, examples, threshold))
        base_parts.append(score(baseline, examples, threshold))
        rule_parts.append(score(rules, examples, threshold))
        for s in held:
            guess = fitted.predict(s.example.text)
            triaged = guess.confidence < threshold or guess.intent == "unknown"
            right = (triaged if s.example.label == OUT_OF_SCOPE
                     else guess.intent == s.example.label)
            by_source.setdefault(s.source, []).append((right, triaged))
    label = f"default taxonomy, {folds}-fold CV"
    split = f"{len(data):,} rows, evaluation halves of the folds"
    detail = "; ".join(
        f"{src} {sum(r for r, _ in v) / len(v):.0%} right, {sum(t for _, t in v) / len(v):.0%} "
        "triage" for src, v in sorted(by_source.items()))
    row(label, "word+char n-grams, calibrated LR (shipped)", split, pooled(new_parts), detail)
    row(label, "TF-IDF words + LR (before)", split, pooled(base_parts))
    row(label, "keyword rules (before, default)", split, pooled(rule_parts))

    # 2. A user's own labels: BANKING77 (77 intents), k folds of train.csv.
    b77 = read_examples(training.DATA_DIR / "banking77" / "train.csv", "text", "category")
    sourced = [training.Sourced(e, "banking77") for e in b77]
    new_parts, base_parts = [], []
    for train, calib, held in training.folds(sourced, folds, seed):
        fitted = training.fit_recipe([s.example for s in train], [s.example for s in calib], seed)
        baseline = training.BaselineClassifier(training.baseline_fit(
            [s.example.text for s in train], [s.example.label for s in train], seed))
        new_parts.append(score(fitted, [s.example for s in held], threshold))
        base_parts.append(score(baseline, [s.example for s in held], threshold))
    split = f"train.csv {len(b77):,} rows, {folds}-fold CV"
    row("BANKING77, 77 intents", "word+char n-grams, calibrated LR", split, pooled(new_parts))
    row("BANKING77, 77 intents", "TF-IDF words + LR (before)", split, pooled(base_parts))

    # 3. CLINC150: 150 intents + out of scope; fit on train + oos_train, score val + oos_val.
    clinc = json.loads((training.DATA_DIR / "clinc150" / "train_val.json").read_text("utf-8"))
    fit_rows = [Example(t, OUT_OF_SCOPE if lab == "oos" else lab)
                for t, lab in clinc["train"] + clinc["oos_train"]]
    val = [Example(t, OUT_OF_SCOPE if lab == "oos" else lab)
           for t, lab in clinc["val"] + clinc["oos_val"]]
    from sklearn.model_selection import train_test_split
    calib, held = train_test_split(val, test_size=0.5, random_state=seed,
                                   stratify=[e.label for e in val])
    fitted = training.fit_recipe(fit_rows, calib, seed)
    baseline = training.BaselineClassifier(training.baseline_fit(
        [e.text for e in fit_rows], [e.label for e in fit_rows], seed))
    split = "fit train + oos_train, score half of val + oos_val (other half calibrates)"
    row("CLINC150, 150 intents + out of scope", "word+char n-grams, calibrated LR", split,
        score(fitted, held, threshold))
    row("CLINC150, 150 intents + out of scope", "TF-IDF words + LR (before)", split,
        score(baseline, held, threshold))
    return rows


def latency_rows(n: int = 2000, seed: int = 0) -> list[tuple[str, ...]]:
    """classify() with the shipped model, as the router calls it, on customer texts of every
    length up to a 100,000-character chat."""
    import random as _random

    from services.router import training
    from services.router.classify import RulesClassifier, classify
    from services.router.model import StatisticalClassifier
    from services.router.policy import load_policy, load_taxonomy
    from shared.contracts.case_events import ContactReceived
    from shared.contracts.inbound import CustomerIdentity

    taxonomy, policy = load_taxonomy(), load_policy()
    rng = _random.Random(seed)
    texts = [s.example.text for s in training.default_data(seed=seed)]
    rng.shuffle(texts)
    texts = texts[:n]
    texts += [" ".join(rng.sample(texts, 40)) * 3, "Still nothing!!! " * 6000,
              ("I was charged twice and nobody answers. " * 2500)[:100_000]]
    rows: list[tuple[str, ...]] = []
    for name, clf in (("shipped default model", StatisticalClassifier.load("default", taxonomy)),
                      ("keyword rules", RulesClassifier(taxonomy))):
        for text in texts[:50]:  # warm up: the language model and the classifier load once
            classify(ContactReceived(case_id="w", contact_id="w", channel="chat",
                                     source_type="chat.message", customer=CustomerIdentity(),
                                     text=text, received_at=NOW), clf, taxonomy, policy, [], NOW)
        samples = []
        for i, text in enumerate(texts):
            contact = ContactReceived(case_id=f"c{i}", contact_id=f"k{i}", channel="chat",
                                      source_type="chat.message", customer=CustomerIdentity(),
                                      text=text, received_at=NOW)
            began = time.perf_counter()
            classify(contact, clf, taxonomy, policy, [], NOW)
            samples.append((time.perf_counter() - began) * 1000)
        longest = samples[-1]
        rows.append((name, f"{len(samples):,}", f"{statistics.median(samples):.2f}",
                     f"{percentile(samples, 0.99):.2f}", f"{max(samples):.2f}",
                     f"{longest:.2f}"))
        print(f"  classify() with {name}: p50 {rows[-1][2]} ms, p99 {rows[-1][3]} ms, "
              f"max {rows[-1][4]} ms, 100,000-char chat {rows[-1][5]} ms")
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
    parser.add_argument("--accuracy-only", action="store_true",
                        help="only the intent classifiers and classify() latency")
    args = parser.parse_args()
    args.accuracy = args.accuracy or args.accuracy_only
    when = (f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; {args.agents:,} agents, "
            f"{args.waiting:,} waiting cases, pure core (no Kafka, no SQL), seed {args.seed}.")
    if not args.accuracy_only:
        rows = bench(args.agents, args.waiting, args.decisions, args.seed)
    if not args.no_record and not args.accuracy_only:
        record("router-decisions", "Routing decisions (`benchmarks/router_decisions.py`)", when,
               "| decision | n | decisions/s | p50 ms | p99 ms |", rows)
    if args.accuracy:
        lat = latency_rows(seed=args.seed)
        if not args.no_record:
            record("router-latency", "classify() latency (`benchmarks/router_decisions.py "
                   "--accuracy`)",
                   f"{when.split(';')[0]}. Every field of `case.classified` (intent, language, "
                   "sentiment, frustration, authority), per contact, on 2,000 customer texts "
                   "of the training data plus three long ones (up to a 100,000-character chat).",
                   "| classifier | contacts | p50 ms | p99 ms | max ms | 100,000-char chat ms |",
                   lat)
        acc = accuracy_rows(args.seed)
        if not args.no_record:
            record("router-accuracy", "Intent classification (`benchmarks/router_decisions.py "
                   "--accuracy`)",
                   "Cross-validated on the training splits only (`data/intents/`: Bitext 20k + "
                   "8k, BANKING77 `train.csv`, CLINC150 `train`/`val` and `oos_train`/`oos_val`, "
                   "our German/Spanish examples); each fold's held-out part is halved: one half "
                   "calibrates the temperature, the other is scored. Triage: confidence below "
                   "the policy's 0.5 or rejected as out of scope, as a share of in-scope rows. "
                   "The shipped model is the first recipe fitted on all rows "
                   "(`switchboard classifier build-default`).",
                   "| data | classifier | split | intent accuracy | macro-F1 | to triage | "
                   "out of scope rejected | by source |", acc)


if __name__ == "__main__":
    main()
