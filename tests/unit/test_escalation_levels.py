"""Escalation policies in the pure core, with a FrozenClock: levels, timeouts, repeats, acks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.escalation import core, policy
from shared.clock import FrozenClock
from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity
from shared.policy_files import PolicyFileError

T0 = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)  # a Monday
CASE = "case-esc-1"
POLICY: dict[str, Any] = {
    "version": "test-3",
    "targets": {
        "team-leads": {"kind": "supervisor_group", "sinks": ["ops-hook"]},
        "floor-manager": {"kind": "supervisor_group"},
        "duty": {"kind": "rota", "time_zone": "Europe/Berlin", "shifts": [
            {"who": "early", "days": ["mon"], "hours": "06:00-14:00"},
            {"who": "on-call"}]},
        "tier-queue": {"kind": "queue", "min_authority_tier": 2},
    },
    "sinks": {"ops-hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook",
                           "allow_networks": ["127.0.0.1/32"],
                           "secret_env": "OPS_HOOK_SECRET"}},
    "rules": [
        {"name": "warn", "trigger": "sla.warning", "digest": True},
        {"name": "breach", "trigger": "sla.breached", "levels": [
            {"targets": ["team-leads"], "ack_timeout": "10m"},
            {"targets": ["floor-manager"], "ack_timeout": "15m"},
            {"targets": ["duty"], "ack_timeout": "30m", "repeats": 2}]},
        {"name": "authority", "trigger": "authority", "levels": [
            {"targets": ["tier-queue"], "ack_timeout": "15m"}]},
        {"name": "asked", "trigger": "supervisor_request", "levels": [
            {"targets": ["team-leads"], "ack_timeout": "5m"}]},
    ],
    "digest": {"every": "1h", "targets": ["floor-manager"]},
}
ENV = {"OPS_HOOK_SECRET": "s3cret"}
POL = policy.load_text(json.dumps(POLICY), environ=ENV)


def row(data: ce.Contract) -> dict[str, Any]:
    return data.model_dump(mode="json")


HISTORY: core.History = [
    ("case.opened", row(ce.CaseOpened(case_id=CASE, channel="voice",
                                      customer=CustomerIdentity(phone="+4930123"),
                                      opened_at=T0))),
    ("contact.received", row(ce.ContactReceived(
        case_id=CASE, contact_id="k1", channel="voice", source_type="call.started",
        customer=CustomerIdentity(phone="+4930123"), text="Inbound call from +4930123",
        received_at=T0))),
]
BREACH = ce.SlaBreached(case_id=CASE, clock_id="c1", metric="first_response", due_at=T0,
                        breached_at=T0, overdue_seconds=0)


class Floor:
    """The app's bookkeeping in memory: escalation state by id, every outcome kept."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.escalations: dict[str, core.Escalation] = {}
        self.outcomes: list[core.Outcome] = []

    def apply(self, outcome: core.Outcome) -> None:
        self.outcomes.append(outcome)
        for esc in outcome.escalations:
            self.escalations[esc.escalation_id] = esc

    def breach(self) -> None:
        [hit] = core.triggers(POL, "sla.breached", BREACH, core.view(HISTORY), None)
        self.apply(core.open_escalation(POL, hit, list(self.escalations.values()), HISTORY,
                                        "evt-breach", self.clock.now()))

    def tick(self) -> None:
        for esc in list(self.escalations.values()):
            while True:  # a late timer catches up step by step
                outcome = core.fire(POL, self.escalations[esc.escalation_id], HISTORY,
                                    self.clock.now())
                if not outcome.escalations:
                    break
                self.apply(outcome)

    def types(self) -> list[str]:
        return [e.type for o in self.outcomes for e in o.decision.events]

    def notifications(self) -> list[ce.SupervisorNotification]:
        return [m.data for o in self.outcomes for m in o.decision.outbound
                if isinstance(m.data, ce.SupervisorNotification)]

    @property
    def only(self) -> core.Escalation:
        [esc] = self.escalations.values()
        return esc


def test_a_breach_climbs_three_levels_and_an_acknowledgement_at_level_two_stops_it() -> None:
    clock = FrozenClock(T0)
    floor = Floor(clock)
    floor.breach()
    assert floor.types() == ["case.escalated", "escalation.notified"]
    assert [n.target for n in floor.notifications()] == ["team-leads"]
    clock.advance(timedelta(minutes=9, seconds=59))
    floor.tick()
    assert floor.only.level == 1
    clock.advance(timedelta(seconds=1))
    floor.tick()
    assert floor.only.level == 2 and floor.types()[-2:] == ["escalation.reescalated",
                                                           "escalation.notified"]
    [reescalated] = [e for o in floor.outcomes for e in o.decision.events
                     if e.type == "escalation.reescalated"]
    assert reescalated.data == ce.EscalationReescalated(
        case_id=CASE, escalation_id=floor.only.escalation_id, reason="sla.breached:first_response",
        from_level=1, level=2, target="floor-manager", timed_out_at=T0 + timedelta(minutes=10),
        acknowledge_by=T0 + timedelta(minutes=25))
    clock.advance(timedelta(minutes=5))
    floor.apply(core.acknowledge(floor.only, "sup-lee", "agent.escalation_acknowledged",
                                 clock.now()))
    assert floor.only.state == "acknowledged" and floor.types()[-1] == "escalation.acknowledged"
    before = len(floor.notifications())
    clock.advance(timedelta(hours=5))
    floor.tick()
    assert len(floor.notifications()) == before == 2
    assert [n.level for n in floor.notifications()] == [1, 2]


def test_unacknowledged_the_final_level_repeats_then_stays_open_and_is_reported() -> None:
    clock = FrozenClock(T0)
    floor = Floor(clock)
    floor.breach()
    clock.advance(timedelta(hours=6))  # the timer was down: it catches up, stamped truly
    floor.tick()
    notes = floor.notifications()
    assert [(n.level, n.repeat, n.kind) for n in notes] == [
        (1, 0, "escalation"), (2, 0, "reescalation"), (3, 0, "reescalation"), (3, 1, "repeat"),
        (3, 2, "repeat"), (3, 2, "exhausted")]
    # Level 3 is the rota: Monday 09:00 UTC is 10:00 in Berlin, the early shift.
    assert {n.target for n in notes if n.level == 3} == {"duty:early"}
    [exhausted] = [e for o in floor.outcomes for e in o.decision.events
                   if e.type == "escalation.exhausted"]
    # 10 + 15 + 3 × 30 minutes after the breach, however late the timer ran.
    assert exhausted.data.exhausted_at == T0 + timedelta(minutes=115)  # type: ignore[attr-defined]
    assert floor.only.state == "exhausted" and floor.only.next_fire_at is None
    assert len({n.notification_id for n in notes}) == len(notes)
    # Still open: a second breach of the same metric opens nothing; an ack still counts.
    floor.breach()
    assert len(floor.escalations) == 1
    floor.apply(core.acknowledge(floor.only, "sup-lee", "agent.escalation_acknowledged",
                                 clock.now()))
    assert floor.only.state == "acknowledged"


def test_one_live_escalation_per_case_and_reason_and_a_new_episode_after_resolution() -> None:
    clock = FrozenClock(T0)
    floor = Floor(clock)
    floor.breach()
    floor.breach()
    assert floor.types().count("case.escalated") == 1
    first = floor.only
    floor.apply(core.resolve(first, "case_solved", clock.now()))
    floor.breach()
    assert len(floor.escalations) == 2
    second = next(e for e in floor.escalations.values() if e.escalation_id != first.escalation_id)
    assert (second.episode, second.state) == (2, "open")


def test_the_same_input_twice_gives_the_same_ids() -> None:
    [hit] = core.triggers(POL, "sla.breached", BREACH, core.view(HISTORY), None)
    a = core.open_escalation(POL, hit, [], HISTORY, "evt-1", T0)
    b = core.open_escalation(POL, hit, [], HISTORY, "evt-2", T0)
    assert a == b
    fired_a = core.fire(POL, a.escalations[0], HISTORY, T0 + timedelta(hours=1))
    fired_b = core.fire(POL, b.escalations[0], HISTORY, T0 + timedelta(hours=2))
    assert [e.event_id for e in fired_a.decision.events] == \
        [e.event_id for e in fired_b.decision.events]


def test_external_sinks_get_a_delivery_with_the_notification_id() -> None:
    [hit] = core.triggers(POL, "sla.breached", BREACH, core.view(HISTORY), None)
    outcome = core.open_escalation(POL, hit, [], HISTORY, "evt-1", T0)
    [delivery] = outcome.deliveries
    [message] = outcome.decision.outbound
    assert delivery.sink == "ops-hook"
    assert delivery.notification_id == message.data.notification_id  # type: ignore[attr-defined]


def test_the_receiving_agents_acceptance_acknowledges_but_not_the_agent_who_had_it() -> None:
    history = [*HISTORY, ("case.assigned", row(ce.CaseAssigned(case_id=CASE, agent_id="ada")))]
    [hit] = core.triggers(POL, "sla.breached", BREACH, core.view(history), None)
    [esc] = core.open_escalation(POL, hit, [], history, "evt-1", T0).escalations
    assert esc.assigned_agent == "ada"
    assert core.acknowledge(esc, "ada", "case.assigned", T0) == core.NONE
    acked = core.acknowledge(esc, "lee", "case.assigned", T0)
    assert [e.type for e in acked.decision.events] == ["escalation.acknowledged"]


def classified(**kw: Any) -> ce.CaseClassified:
    base: dict[str, Any] = {"case_id": CASE, "skill": "billing", "queue": "billing",
                            "priority": "normal", "language": "en", "confidence": 0.8}
    return ce.CaseClassified(**{**base, **kw})


def test_a_refund_above_the_agents_limit_requeues_to_the_tier_that_can_approve_it() -> None:
    c = classified(min_authority_tier=3, refund_amount=1200.0,
                   evidence=["min_authority_tier: refund or credit of 1200 → tier 3"])
    history = [*HISTORY, ("case.classified", row(c)),
               ("case.assigned", row(ce.CaseAssigned(case_id=CASE, agent_id="ada")))]
    case = core.view(history)
    assert core.triggers(POL, "case.assigned", ce.CaseAssigned(case_id=CASE, agent_id="ada"),
                         case, agent_tier=3) == []
    [hit] = core.triggers(POL, "case.assigned", ce.CaseAssigned(case_id=CASE, agent_id="ada"),
                          case, agent_tier=1)
    assert hit.reason == "authority:tier3"
    outcome = core.open_escalation(POL, hit, [], history, "evt", T0, agent_tier=1)
    escalated = outcome.decision.events[0].data
    assert isinstance(escalated, ce.CaseEscalated)
    # The queue target says tier 2; the refund needs tier 3: the case goes where it can be approved.
    assert escalated.requeue == ce.EscalationRequeue(min_authority_tier=3, queue="tier-queue")
    authority = escalated.packet.authority
    assert authority is not None and (authority.min_authority_tier,
                                      authority.assigned_agent_tier) == (3, 1)
    assert authority.why == ["min_authority_tier: refund or credit of 1200 → tier 3"]
    assert "tier 3" in escalated.packet.suggested_next_step
    [esc] = outcome.escalations
    # A tier-2 agent accepting is not enough; a tier-3 agent's acceptance acknowledges.
    assert core.acknowledge(esc, "bo", "case.assigned", T0, agent_tier=2) == core.NONE
    assert core.acknowledge(esc, "cy", "case.assigned", T0, agent_tier=3).escalations


def test_classification_triggers_supervisor_request_repeat_and_frustration() -> None:
    calm, angry = classified(sentiment=0.3), classified(sentiment=-0.4)
    case = core.view([("case.classified", row(calm)), ("case.classified", row(angry))])
    reasons = {h.reason for h in core.triggers(POL, "case.classified", angry, case, None)}
    assert reasons == {"frustration"}  # rising: 0.3 → -0.4
    asked = classified(supervisor_requested=True, repeat_contact=True, repeat_count=3)
    reasons = {h.reason for h in core.triggers(POL, "case.classified", asked,
                                               core.view([("case.classified", row(asked))]), None)}
    assert reasons == {"supervisor_request", "repeat_contact"}
    two = classified(repeat_contact=True, repeat_count=2)
    assert core.triggers(POL, "case.classified", two, core.view([]), None) == []


def test_a_trigger_without_a_rule_escalates_nothing_and_warnings_go_to_the_digest() -> None:
    hit = core.Hit("frustration", "frustration", {})
    assert core.open_escalation(POL, hit, [], HISTORY, "e", T0) == core.NONE
    warning = ce.SlaWarning(case_id=CASE, clock_id="c1", metric="first_response", policy="p",
                            threshold="75%", due_at=T0, warned_at=T0,
                            business_remaining_seconds=10)
    [hit] = core.triggers(POL, "sla.warning", warning, core.view(HISTORY), None)
    outcome = core.open_escalation(POL, hit, [], HISTORY, "e", T0)
    assert not outcome.decision.events and not outcome.escalations
    [entry] = outcome.digest
    assert (entry.target, entry.reason) == ("floor-manager", "sla.warning:first_response")
    assert core.digest_due(POL, "floor-manager", [entry], T0 + timedelta(minutes=59)) is None
    due = core.digest_due(POL, "floor-manager", [entry], T0 + timedelta(hours=1))
    assert due is not None
    digest, message = due
    assert [i.case_id for i in digest.items] == [CASE] and message.key == "floor-manager"
    assert due == core.digest_due(POL, "floor-manager", [entry], T0 + timedelta(hours=1))


def test_policy_errors_name_the_line_and_the_field() -> None:
    bad = json.loads(json.dumps(POLICY))
    bad["rules"][1]["levels"][1]["ack_timeout"] = "soon"
    text = json.dumps(bad, indent=2)
    with pytest.raises(PolicyFileError) as err:
        policy.load_text(text, "esc.json", environ=ENV)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if '"soon"' in t)
    assert f"esc.json:{line}: rules.1.levels.1.ack_timeout:" in str(err.value)
    bad = json.loads(json.dumps(POLICY))
    bad["rules"][1]["levels"][0]["targets"] = ["nobody"]
    with pytest.raises(PolicyFileError, match="unknown target 'nobody'"):
        policy.load_text(json.dumps(bad), "esc.json", environ=ENV)


def test_the_packaged_policy_loads_and_its_schema_is_current() -> None:
    from pathlib import Path

    assert policy.load().rule_for("sla.breached", {}) is not None
    path = Path(policy.__file__).parent / "policies" / "policy.schema.json"
    assert json.loads(path.read_text()) == policy.json_schema(), \
        "run: python -c 'from services.escalation.policy import write_schema; write_schema()'"


def test_the_assigned_agents_tier_comes_from_case_assigned_not_the_customer_tier() -> None:
    from services.escalation.core import view

    history = [
        ("case.opened", {"channel": "email", "customer": {"tier": "gold"}}),
        ("case.assigned", {"case_id": "c", "agent_id": "agent-chen", "authority_tier": 1}),
        ("contact.received", {"channel": "email", "details": {"customer_tier": "gold"}}),
    ]
    seen = view(history)
    assert seen.assigned_agent == "agent-chen" and seen.assigned_tier == 1
    assert seen.facts["customer_tier"] == "gold"
