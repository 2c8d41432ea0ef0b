"""What the pages show, computed from rows (pure: unit-tested without a database).

- queues: waiting work per skill, tier and channel with the oldest wait, the expected wait (the
  queue's length over the rate cases left it lately) and the overflow state (cases past the
  queue's relaxation steps, and the queue's KPIs in the routing policy);
- agents: load per channel against capacity, in counts and in the router's capacity units;
- SLA risk: ordered by the due instant (the most overdue first);
- case timeline: each log row's place in the hash chain.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.router.policy import RoutingPolicy
from shared.caselog.chain import ChainedFields, check_chain
from shared.channels import registry


# --- queues ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueGroup:
    """One SQL group of waiting cases: queue, channel, tier and relaxation step."""

    queue: str
    channel: str
    tier: int
    step: int
    waiting: int
    oldest: datetime


@dataclass(frozen=True)
class QueueRow:
    queue: str
    skill: str
    channel: str
    tier: int
    waiting: int
    oldest_wait: float  # seconds
    overflowed: int  # cases of this row past the queue's relaxation steps
    expected_wait: float | None  # seconds; None: nobody took a case from the queue lately
    taken_per_hour: float
    hot: str | None  # why the queue is past its KPIs (it overflows early), else None


def skill_of(queue: str, channel: str) -> str:
    suffix = f"-{channel}"
    return queue.removesuffix(suffix)


def expected_wait(waiting: int, taken: int, window_seconds: float) -> float | None:
    """Little's law for the back of the queue: `waiting` cases ahead, leaving at the rate they
    left over the window. 0 for an empty queue; None when none left (no rate to go by)."""
    if waiting == 0:
        return 0.0
    if taken <= 0:
        return None
    return waiting / (taken / window_seconds)


def queue_rows(groups: Iterable[QueueGroup], taken: Mapping[tuple[str, str], int],
               policy: RoutingPolicy, window_seconds: float, now: datetime) -> list[QueueRow]:
    """Rows per (queue, tier), the longest-waiting first."""
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    count: dict[tuple[str, str], int] = defaultdict(int)
    oldest: dict[tuple[str, str], datetime] = {}
    for g in groups:
        steps, _overflow = policy.steps_for(skill_of(g.queue, g.channel), g.channel)
        row = rows.setdefault((g.queue, g.channel, g.tier),
                              {"waiting": 0, "oldest": g.oldest, "overflowed": 0})
        row["waiting"] += g.waiting
        row["oldest"] = min(row["oldest"], g.oldest)
        if g.step >= len(steps):
            row["overflowed"] += g.waiting
        key = (g.queue, g.channel)
        count[key] += g.waiting
        oldest[key] = min(oldest.get(key, g.oldest), g.oldest)
    out = []
    for (queue, channel, tier), r in rows.items():
        skill = skill_of(queue, channel)
        n, first = count[(queue, channel)], oldest[(queue, channel)]
        _steps, overflow = policy.steps_for(skill, channel)
        oldest_queue = (now - first).total_seconds()
        hot = None
        if n > overflow.max_waiting:
            hot = f"{n} waiting > {overflow.max_waiting}"
        elif oldest_queue > overflow.max_oldest_wait_seconds:
            hot = f"oldest {duration(oldest_queue)} > {duration(overflow.max_oldest_wait_seconds)}"
        n_taken = taken.get((skill, channel), 0)
        out.append(QueueRow(
            queue=queue, skill=skill, channel=channel, tier=tier, waiting=r["waiting"],
            oldest_wait=max(0.0, (now - r["oldest"]).total_seconds()),
            overflowed=r["overflowed"],
            expected_wait=expected_wait(n, n_taken, window_seconds),
            taken_per_hour=n_taken * 3600.0 / window_seconds, hot=hot))
    out.sort(key=lambda q: (-q.oldest_wait, q.queue, q.tier))
    return out


# --- agents ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpenOffer:
    agent_id: str
    case_id: str
    channel: str
    state: str  # offered | accepted
    offered_at: datetime
    expires_at: datetime | None


@dataclass
class AgentRow:
    agent_id: str
    name: str
    presence: str
    tier: int
    skills: str
    idle_since: datetime | None
    missed: int
    capacity: dict[str, int]
    load: dict[str, int] = field(default_factory=dict)
    units_used: int = 0
    units_capacity: int = 0
    current: list[OpenOffer] = field(default_factory=list)
    pending: list[OpenOffer] = field(default_factory=list)

    def full(self, channel: str) -> bool:
        return self.load.get(channel, 0) >= self.capacity.get(channel, 0)


def agent_row(agent_id: str, profile: Mapping[str, Any], idle_since: datetime | None,
              missed: int, offers: Sequence[OpenOffer], policy: RoutingPolicy) -> AgentRow:
    """Occupancy as the router counts it: an offer still open or accepted holds its channel."""
    skills = sorted(profile.get("skills") or [], key=lambda s: (-s["proficiency"], s["skill"]))
    capacity = {ch: int((profile.get("capacity") or {}).get(ch, 0)) for ch in registry.names()}
    row = AgentRow(
        agent_id=agent_id, name=str(profile.get("name") or ""),
        presence=str(profile.get("presence") or "offline"),
        tier=int(profile.get("authority_tier") or 1),
        skills=", ".join(f"{s['skill']} {s['proficiency']}" for s in skills),
        idle_since=idle_since, missed=missed, capacity=capacity,
        units_capacity=int(profile.get("capacity_units") or policy.capacity.default_units))
    for offer in offers:
        row.load[offer.channel] = row.load.get(offer.channel, 0) + 1
        row.units_used += policy.capacity.weight(offer.channel)
        (row.current if offer.state == "accepted" else row.pending).append(offer)
    return row


# --- SLA risk ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlaRow:
    clock_id: str
    case_id: str
    metric: str
    policy: str
    rule: str
    state: str  # running | breached
    due_at: datetime
    seconds_left: float  # negative: overdue
    queue: str | None
    case_state: str | None
    agent: str | None


def by_urgency(rows: Iterable[SlaRow]) -> list[SlaRow]:
    """The most overdue first, then the least time left: one order for breached and running."""
    return sorted(rows, key=lambda r: (r.due_at, r.case_id, r.metric))


# --- case timeline -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TimelineRow:
    seq: int
    time: datetime
    type: str
    source: str
    event_id: str
    trace_id: str | None
    data: str  # pretty-printed JSON of what was hashed
    summary: str  # one line of it, for the table
    hash: str
    prev_hash: str
    status: str  # ok | broken | unverified (after a break)
    why: str = ""


def chain_statuses(rows: Sequence[tuple[ChainedFields, str, str]],
                   versions: Sequence[int] | None = None) -> list[TimelineRow]:
    """Each row (fields, prev_hash, hash, in seq order; `versions`: each row's hash version,
    default 1) as `log verify` finds the case's chain (`check_chain`): the first row that fails
    is `broken` with the reason; the rows after it cannot be vouched for (`unverified`). Row
    MACs are not checked here: the console holds no service's row key (`switchboard log verify`
    does)."""
    broken = check_chain(list(rows), list(versions) if versions else None)
    out: list[TimelineRow] = []
    status = "ok"
    for fields, prev_hash, stored in rows:
        why = ""
        if status == "broken":
            status = "unverified"
        elif broken is not None and status == "ok" and fields.seq == broken.seq:
            status, why = "broken", broken.why
        out.append(TimelineRow(seq=fields.seq, time=fields.time, type=fields.type,
                               source=fields.source, event_id=fields.event_id,
                               trace_id=fields.trace_id, data=pretty(fields.data),
                               summary=summary(fields.data), hash=stored,
                               prev_hash=prev_hash, status=status, why=why))
    return out


SUMMARY_KEYS = ("text", "subject", "queue", "agent_id", "by", "reason", "metric", "status",
                "outcome", "target")


def summary(data: str, limit: int = 140) -> str:
    """The fields a reader looks for first (`text: …`, `queue: …`), on one line."""
    try:
        value = json.loads(data)
    except ValueError:
        return data[:limit]
    if not isinstance(value, dict):
        return str(value)[:limit]
    parts = [f"{k}: {value[k]}" for k in SUMMARY_KEYS if isinstance(value.get(k), str | int)]
    line = " · ".join(parts) if parts else ", ".join(sorted(value))
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def pretty(data: str) -> str:
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return data


# --- formatting --------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """`45s`, `12m 05s`, `3h 20m`, `2d 4h`; a leading minus when negative."""
    s = int(abs(seconds))
    sign = "-" if seconds < 0 and s else ""
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{sign}{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{sign}{s // 86400}d {s % 86400 // 3600}h"


def group_offers(offers: Iterable[OpenOffer]) -> dict[str, list[OpenOffer]]:
    out: dict[str, list[OpenOffer]] = defaultdict(list)
    for offer in offers:
        out[offer.agent_id].append(offer)
    return out
