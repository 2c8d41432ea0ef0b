"""Router's pure core, as the app uses it: classify a contact, turn the classification into a
waiting case with requirements, and emit the events of a case entering its queue.

Classification lives in `classify.py`, routing (eligibility, relaxation, selection, offers) in
`routing.py`, policies in `policy.py`, the trainable model in `model.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from services.router.classify import IntentClassifier, RulesClassifier
from services.router.policy import RoutingPolicy, Taxonomy, load_policy, load_taxonomy
from services.router.routing import PRIORITY_RANK, Requirements, WaitingCase
from shared.contracts.case_events import CaseClassified, CaseQueued, Priority
from shared.contracts.inbound import Channel
from shared.events import CaseEvent


@dataclass(frozen=True)
class RouterConfig:
    policy: RoutingPolicy
    taxonomy: Taxonomy
    classifier: IntentClassifier


def load_config(policy_path: Path | None = None, taxonomy_path: Path | None = None,
                model_path: Path | None = None) -> RouterConfig:
    """Policies validated at start (a bad file stops the router with the field named); the
    intent model: `default` (the one shipped in the package), a trained model file, or `rules`
    (the taxonomy's keywords; also when no model is named)."""
    policy, taxonomy = load_policy(policy_path), load_taxonomy(taxonomy_path)
    classifier: IntentClassifier = RulesClassifier(taxonomy)
    if model_path is not None and str(model_path) != "rules":
        from services.router.model import StatisticalClassifier
        classifier = StatisticalClassifier.load(model_path, taxonomy)
    return RouterConfig(policy, taxonomy, classifier)


def requirements_of(classified: CaseClassified, channel: Channel) -> Requirements:
    return Requirements(skill=classified.skill, min_proficiency=classified.min_proficiency,
                        min_tier=classified.min_authority_tier, language=classified.language,
                        channel=channel, preferred_skills=tuple(classified.preferred_skills))


def waiting_case(classified: CaseClassified, channel: Channel, queued_at: datetime,
                 previous_agent: str | None = None, previous_hold_seconds: float = 0,
                 excluded: frozenset[str] = frozenset()) -> WaitingCase:
    """A case entering its queue. A reopened case is held for its previous agent for a while."""
    until = (queued_at + timedelta(seconds=previous_hold_seconds)
             if previous_agent and previous_hold_seconds > 0 else None)
    return WaitingCase(case_id=classified.case_id,
                       requirements=requirements_of(classified, channel),
                       priority=classified.priority, queued_at=queued_at,
                       previous_agent=previous_agent, previous_until=until, excluded=excluded)


def raise_priority(case: WaitingCase, to: Priority) -> WaitingCase:
    if PRIORITY_RANK[to] <= PRIORITY_RANK[case.priority]:
        return case
    return replace(case, priority=to)


def queued_event(cause_id: str, case: WaitingCase, queue: str, now: datetime) -> CaseEvent:
    return CaseEvent.derived(cause_id, f"case.queued/{case.case_id}", case.case_id,
                             "case.queued", now,
                             CaseQueued(case_id=case.case_id, queue=queue,
                                        priority=case.priority))


def case_to_json(case: WaitingCase) -> dict[str, object]:
    """A waiting case as stored in `router_case.waiting` (restart-safe state)."""
    return {
        "case_id": case.case_id, "requirements": case.requirements.as_dict(),
        "priority": case.priority, "queued_at": case.queued_at.isoformat(),
        "previous_agent": case.previous_agent,
        "previous_until": case.previous_until.isoformat() if case.previous_until else None,
        "excluded": sorted(case.excluded),
    }


def case_from_json(data: dict[str, Any]) -> WaitingCase:
    r = data["requirements"]
    return WaitingCase(
        case_id=data["case_id"],
        requirements=Requirements(skill=r["skill"], min_proficiency=r["min_proficiency"],
                                  min_tier=r["min_authority_tier"], language=r["language"],
                                  channel=r["channel"],
                                  preferred_skills=tuple(r["preferred_skills"])),
        priority=data["priority"], queued_at=datetime.fromisoformat(data["queued_at"]),
        previous_agent=data["previous_agent"],
        previous_until=(datetime.fromisoformat(data["previous_until"])
                        if data["previous_until"] else None),
        excluded=frozenset(data["excluded"]))
