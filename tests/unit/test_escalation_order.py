"""Decisions from the log as of the event handled, whatever order the events arrive in.

After router kills the escalation service handled `case.classified` once the router had already
assigned the case: it read the *current* log, took the new agent for the one the case had when
it escalated, and that agent's `case.assigned` never acknowledged: 21 escalations stayed open
for good. Here the app's pure decision (`core.as_of` → `hits_as_of` → `decide_input`) runs over
every arrival order of a case's events, with the app's bookkeeping (escalation rows, inputs
already applied) kept in memory.
"""

from __future__ import annotations

import itertools
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.escalation import app, core, policy
from shared.contracts import case_events as ce
from shared.contracts.envelope import Envelope
from shared.contracts.inbound import CustomerIdentity
from tests.unit.test_escalation_levels import CASE, ENV, POLICY, classified, row

T0 = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
FRUSTRATION = {**POLICY, "rules": [*POLICY["rules"], {
    "name": "angry", "trigger": "frustration",
    "levels": [{"targets": ["team-leads"], "ack_timeout": "20m"}]}]}
POL = policy.load_text(json.dumps(FRUSTRATION), environ=ENV)


@dataclass(frozen=True)
class Row:
    seq: int
    event_id: str
    type: str
    payload: dict[str, Any]


def opened(channel: str) -> ce.CaseOpened:
    return ce.CaseOpened(case_id=CASE, channel=channel, customer=CustomerIdentity(),  # type: ignore[arg-type]
                         opened_at=T0)


def log_of(*events: tuple[str, ce.Contract]) -> list[Row]:
    return [Row(n, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{CASE}/{n}")), t, row(p))
            for n, (t, p) in enumerate(events, start=1)]


class Service:
    """The escalation rows and applied inputs of one case, as app.decide keeps them."""

    def __init__(self, log: list[Row]) -> None:
        self.log = log
        self.escalations: dict[str, core.Escalation] = {}
        self.applied: set[str] = set()  # escalation_input
        self.types: list[str] = []

    def handle(self, entry: Row, now: datetime) -> None:
        payload = ce.CASE_EVENT_TYPES[entry.type].model_validate(entry.payload)
        at = core.as_of(list(self.log), entry.event_id)
        hits = core.hits_as_of(POL, at, entry.type, payload)
        if hits:
            if entry.event_id in self.applied:
                hits = []
            self.applied.add(entry.event_id)
        outcome = core.decide_input(POL, list(self.escalations.values()), at, entry.type,
                                    payload, entry.event_id, now, hits)
        for esc in outcome.escalations:
            self.escalations[esc.escalation_id] = esc
        self.types += [e.type for e in outcome.decision.events]

    def open(self) -> list[core.Escalation]:
        return [e for e in self.escalations.values() if e.state == "open"]


ANGRY = classified(sentiment=-0.8, frustrated=True)
ASSIGNED_LEE = ce.CaseAssigned(case_id=CASE, agent_id="lee", authority_tier=1)


def test_classified_handled_after_the_assignment_is_logged_is_still_acknowledged_by_it() -> None:
    """The incident: the log already holds case.assigned when case.classified is handled."""
    log = log_of(("case.opened", opened("chat")),
                 ("case.classified", ANGRY), ("case.assigned", ASSIGNED_LEE))
    service = Service(log)
    service.handle(log[1], T0)
    [esc] = service.escalations.values()
    assert esc.assigned_agent is None  # nobody had the case when it was classified
    assert esc.opened_seq == 2
    service.handle(log[2], T0)
    assert service.open() == [] and service.types.count("escalation.acknowledged") == 1


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_every_arrival_order_leaves_no_escalation_open_for_an_assigned_case(
    order: tuple[int, ...],
) -> None:
    log = log_of(("case.opened", opened("chat")),
                 ("case.classified", ANGRY),
                 ("case.assigned", ASSIGNED_LEE),
                 ("case.classified", classified(sentiment=-0.9, frustrated=True)))
    service = Service(log)
    handled = [log[1], log[2], log[3]]
    for n in order:
        service.handle(handled[n], T0)
    for n in order:  # every event redelivered once more, after a restart
        service.handle(handled[n], T0 + timedelta(minutes=1))
    assert service.open() == []
    [esc] = service.escalations.values()  # one episode, acknowledged by lee
    assert (esc.state, esc.opened_seq) == ("acknowledged", 2)
    assert service.types.count("case.escalated") == 1
    assert service.types.count("escalation.acknowledged") == 1


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_an_authority_escalation_is_acknowledged_by_the_tier_it_needs_in_any_order(
    order: tuple[int, ...],
) -> None:
    refund = classified(min_authority_tier=2, refund_amount=900.0)
    log = log_of(("case.opened", opened("email")),
                 ("case.assigned", ASSIGNED_LEE),
                 ("case.classified", refund),
                 ("case.assigned", ce.CaseAssigned(case_id=CASE, agent_id="ada",
                                                   authority_tier=2)))
    service = Service(log)
    handled = [log[1], log[2], log[3]]
    for n in order:
        service.handle(handled[n], T0)
    [esc] = service.escalations.values()
    assert esc.reason == "authority:tier2" and esc.assigned_agent == "lee"
    assert esc.state == "acknowledged"


def test_the_tier_one_agent_who_had_it_never_acknowledges_an_authority_escalation() -> None:
    refund = classified(min_authority_tier=2, refund_amount=900.0)
    log = log_of(("case.assigned", ASSIGNED_LEE), ("case.classified", refund),
                 ("case.assigned", ce.CaseAssigned(case_id=CASE, agent_id="bo",
                                                   authority_tier=1)))
    for order in itertools.permutations(log):
        service = Service(log)
        for entry in order:
            service.handle(entry, T0)
        [esc] = service.escalations.values()
        assert esc.state == "open", order  # bo has tier 1 too: still waiting for tier 2


def test_a_solved_case_resolves_an_escalation_opened_before_not_one_opened_after() -> None:
    solved = ce.CaseSolvedEvent(case_id=CASE, agent_id="lee", at=T0)
    log = log_of(("case.classified", ANGRY), ("case.solved", solved),
                 ("case.classified", classified(supervisor_requested=True)))
    service = Service(log)
    for entry in reversed(log):
        service.handle(entry, T0)
    states = {e.reason: e.state for e in service.escalations.values()}
    assert states == {"frustration": "resolved", "supervisor_request": "open"}


def test_an_acknowledgement_only_touches_escalations_opened_before_it_in_the_log() -> None:
    esc = core.Escalation("esc-1", CASE, "frustration", "angry", 1, "open", 1, 0, 1, T0,
                          T0 + timedelta(minutes=20), None, opened_seq=5)
    earlier = core.apply_input([esc], "case.assigned", ASSIGNED_LEE, 4, T0)
    same = core.apply_input([esc], "case.assigned", ASSIGNED_LEE, 5, T0)
    later = core.apply_input([esc], "case.assigned", ASSIGNED_LEE, 6, T0)
    assert earlier == same == core.NONE
    assert [e.state for e in later.escalations] == ["acknowledged"]
    legacy = core.apply_input([core.Escalation(**{**esc.__dict__, "opened_seq": None})],
                              "case.solved", ce.CaseSolvedEvent(case_id=CASE, agent_id="x",
                                                                at=T0), 1, T0)
    assert [e.state for e in legacy.escalations] == ["resolved"]


class NoIO:
    """A connection that fails the test if the handler touches it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the handler used the database ({name})")


@pytest.mark.parametrize(("type_", "payload"), [
    ("case.classified", classified(sentiment=0.2)),
    ("case.classified", classified(repeat_contact=True, repeat_count=2)),
    ("sla.met", ce.SlaMet(case_id=CASE, clock_id="c", metric="first_response", due_at=T0,
                          met_at=T0, remaining_seconds=10)),
])
async def test_most_case_events_are_decided_from_their_payload_without_io(
    type_: str, payload: ce.Contract,
) -> None:
    handle = app.handlers(None, POL)[type_]  # type: ignore[arg-type]
    env = Envelope(id=str(uuid.uuid4()), source="t", type=type_, time=T0, subject=CASE)
    assert await handle(NoIO(), env, payload, T0) == app.NOTHING


def test_the_screen_lets_through_what_can_matter() -> None:
    assert core.could_open(POL, "case.classified", classified(frustrated=True))
    assert core.could_open(POL, "case.classified", classified(sentiment=-0.1))
    assert core.could_open(POL, "case.classified", classified(min_authority_tier=2))
    assert core.could_open(POL, "case.classified", classified(supervisor_requested=True))
    assert core.could_open(POL, "case.classified", classified(repeat_contact=True,
                                                              repeat_count=3)) is False
    assert core.could_open(POL, "sla.breached", None) and core.could_open(POL, "sla.warning",
                                                                          None)
    assert core.could_open(POL, "case.assigned", ASSIGNED_LEE)
    assert not core.could_open(POL, "case.assigned", ce.CaseAssigned(case_id=CASE,
                                                                      agent_id="x"))
    assert core.could_change(POL, "case.assigned") and core.could_change(POL, "case.solved")
    assert not core.could_change(POL, "sla.met")  # warnings go to the digest in this policy
    assert not core.could_change(POL, "case.classified")


def test_a_timer_pass_stays_within_a_backends_cached_subtransactions() -> None:
    # `fire_due` fires each escalation in a savepoint of its own. PostgreSQL caches 64
    # subtransaction ids a backend (PGPROC_MAX_CACHED_SUBXIDS); a transaction holding more
    # overflows every other session's snapshots onto pg_subtrans lookups until it ends.
    assert 0 < app.BATCH < 64
