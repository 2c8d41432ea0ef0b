"""The indexed board decides as `routing.select` does over the whole floor."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router import routing
from services.router.board import Board
from services.router.policy import load_policy
from shared.contracts.agents import AgentProfile, SkillLevel

POLICY = load_policy()
NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
SKILLS = ("billing", "orders", "general")


def floor(seed: int) -> tuple[Board, list[routing.Agent], list[routing.WaitingCase]]:
    rng = random.Random(seed)
    board = Board(POLICY)
    agents = []
    for i in range(12):
        profile = AgentProfile(
            agent_id=f"a{i:02d}", name="x", authority_tier=rng.randint(1, 3),
            languages=rng.sample(["en", "es"], rng.randint(1, 2)), changed_at=NOW,
            presence=rng.choice(["available", "available", "away"]),
            skills=[SkillLevel(skill=s, proficiency=rng.randint(1, 5))
                    for s in rng.sample(SKILLS, rng.randint(1, 2))])
        load = {"email": rng.randint(0, 5), "chat": rng.randint(0, 3)}
        agent = routing.Agent(profile, load, NOW - timedelta(seconds=rng.randint(0, 999)))
        agents.append(agent)
        board.put_agent(agent)
    cases = []
    for i in range(30):
        req = routing.Requirements(skill=rng.choice(SKILLS), min_proficiency=rng.randint(1, 4),
                                   min_tier=rng.randint(1, 3), language=rng.choice(["en", "es"]),
                                   channel=rng.choice(["email", "chat"]))  # type: ignore[arg-type]
        case = routing.WaitingCase(f"c{i:02d}", req, rng.choice(["normal", "high"]),
                                   NOW - timedelta(seconds=rng.randint(0, 50)))
        cases.append(case)
    return board, agents, cases


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_a_new_case_gets_the_agent_select_would_choose(seed: int) -> None:
    board, _agents, cases = floor(seed)
    for case in cases[:5]:
        expected = routing.select(case, list(board.agents.values()), POLICY, NOW).winner
        routed = board.route_case(case, f"e-{case.case_id}", NOW)
        got = routed.offer.agent_id if routed.offer else None
        assert got == (expected.agent_id if expected else None)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_an_agent_with_room_gets_the_first_case_in_order_they_may_take(seed: int) -> None:
    board, agents, cases = floor(seed)
    for case in cases:
        board.put_case(case)
    for agent in agents:
        ordered = sorted(board.cases.values(), key=lambda c: routing.order_key(c, POLICY))
        current = board.agents[agent.agent_id]
        eligible = [c for c in ordered if routing.exclusion(
            current, routing.stage(c, POLICY, NOW).requirements, c, POLICY) is None]
        routed = board.next_for_agent(agent.agent_id, f"f-{agent.agent_id}", NOW)
        if not eligible:
            assert routed is None
        else:
            assert routed is not None and routed.offer is not None
            assert routed.offer.case_id == eligible[0].case_id
