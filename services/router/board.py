"""An indexed, in-memory view of the floor for large rosters and long queues.

`routing.select` looks at every agent it is given; with 10,000 agents and 100,000 waiting cases
that is too slow for one decision. The board keeps two indexes so each decision looks only
where an answer can be:

- free agents by (skill, language, channel): a new case considers only agents who could take it;
- waiting cases by queue (skill, channel, language), sorted by `routing.order_key` (which does
  not change with time), so an agent with room takes the head of the queues they serve.

Decisions are still made by `routing.route`, so the rules are the same as the app's.
Known limit: a case is indexed under its own queue; overflow to the fallback queue is found
by the app's timer (re-evaluation), not by the board.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from datetime import datetime

from services.router import routing
from services.router.policy import RoutingPolicy

CHANNELS = ("email", "chat", "voice")
SCAN_LIMIT = 64  # queue entries looked at per queue before giving up on an agent


class Board:
    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy
        self.agents: dict[str, routing.Agent] = {}
        self.cases: dict[str, routing.WaitingCase] = {}
        self._free: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._queues: dict[tuple[str, str, str], list[tuple[tuple[float, str], str]]] = \
            defaultdict(list)

    # --- agents ----------------------------------------------------------------------------
    def _keys(self, agent: routing.Agent, channel: str) -> list[tuple[str, str, str]]:
        p = agent.profile
        return [(s.skill, lang, channel) for s in p.skills for lang in p.languages]

    def put_agent(self, agent: routing.Agent) -> None:
        old = self.agents.get(agent.agent_id)
        if old is not None:
            for channel in CHANNELS:
                for key in self._keys(old, channel):
                    self._free[key].discard(old.agent_id)
        self.agents[agent.agent_id] = agent
        if agent.profile.presence != "available":
            return
        for channel in CHANNELS:
            if agent.room_for(channel, self.policy) is None:  # type: ignore[arg-type]
                for key in self._keys(agent, channel):
                    self._free[key].add(agent.agent_id)

    # --- cases -----------------------------------------------------------------------------
    @staticmethod
    def _queue(case: routing.WaitingCase) -> tuple[str, str, str]:
        r = case.requirements
        return (r.skill, r.channel, r.language)

    def put_case(self, case: routing.WaitingCase) -> None:
        self.cases[case.case_id] = case
        bisect.insort(self._queues[self._queue(case)],
                      (routing.order_key(case, self.policy), case.case_id))

    def take_case(self, case_id: str) -> routing.WaitingCase:
        case = self.cases.pop(case_id)
        queue = self._queues[self._queue(case)]
        entry = (routing.order_key(case, self.policy), case_id)
        del queue[bisect.bisect_left(queue, entry)]
        return case

    # --- decisions -------------------------------------------------------------------------
    def route_case(self, case: routing.WaitingCase, cause_id: str, now: datetime
                   ) -> routing.Routed:
        """A case arrives: only free agents with its skill and language are considered."""
        r = case.requirements
        pool = [self.agents[i] for i in sorted(self._free.get((r.skill, r.language, r.channel),
                                                              ()))]
        not_listed = {"not free, or lacks the skill or language": len(self.agents) - len(pool)}
        routed = routing.route(case, pool, self.policy, cause_id, "contact received", now,
                               not_listed=not_listed)
        if routed.offer is None:
            self.put_case(case)
        else:
            self._took(routed.offer.agent_id, r.channel)
        return routed

    def next_for_agent(self, agent_id: str, cause_id: str, now: datetime
                       ) -> routing.Routed | None:
        """An agent has room: the first case, in queue order, among the heads of the queues
        they serve that they are eligible for."""
        agent = self.agents[agent_id]
        best: tuple[tuple[float, str], str] | None = None
        for channel in CHANNELS:
            if agent.profile.presence != "available" or \
                    agent.room_for(channel, self.policy) is not None:  # type: ignore[arg-type]
                continue
            for skill in {s.skill for s in agent.profile.skills}:
                for lang in agent.profile.languages:
                    queue = self._queues.get((skill, channel, lang))
                    for entry in (queue or [])[:SCAN_LIMIT]:
                        if best is not None and entry >= best:
                            break
                        case = self.cases[entry[1]]
                        req = routing.stage(case, self.policy, now).requirements
                        if routing.exclusion(agent, req, case, self.policy) is None:
                            best = entry
                            break
        if best is None:
            return None
        case = self.take_case(best[1])
        routed = routing.route(case, [agent], self.policy, cause_id, "capacity freed", now)
        if routed.offer is None:  # held for a previous agent: back in its place
            self.put_case(case)
            return routed
        self._took(agent_id, case.requirements.channel)
        return routed

    def _took(self, agent_id: str, channel: str) -> None:
        self.put_agent(self.agents[agent_id].with_load(channel, +1))

    def release(self, agent_id: str, channel: str) -> None:
        self.put_agent(self.agents[agent_id].with_load(channel, -1))
