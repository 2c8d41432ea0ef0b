"""Escalation's pure core: triggers, escalation levels, acknowledgements, repeats and digests.

No Kafka, SQL or HTTP here: functions of the policy, an escalation's state, the case's log rows
and `now`, returning an Outcome (case events and messages to publish, the escalation's new state,
sink deliveries to record, digest items). Ids derive from the escalation id, so a redelivered
input or a timer pass repeated after a crash yields the same ids and the log absorbs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from services.escalation.packet import History, build_packet, render_markdown, render_summary
from services.escalation.policy import Policy, Rule, single_level
from shared.contracts import case_events as ce
from shared.contracts.base import Contract, derive_event_id
from shared.contracts.topics import SUPERVISOR_NOTIFICATIONS
from shared.durations import parse_duration
from shared.events import NOTHING, CaseEvent, Decision, Outbound

__all__ = ["History", "build_packet", "render_markdown", "render_summary"]

State = Literal["open", "acknowledged", "exhausted", "resolved"]
# Triggers that clear when the condition goes away (the SLA clock was met after a warning).
LIVE = ("open", "acknowledged", "exhausted")


@dataclass(frozen=True)
class Escalation:
    """One escalation of a case for one reason: where it stands in its policy's levels."""

    escalation_id: str
    case_id: str
    reason: str
    rule: str
    episode: int
    state: State
    level: int  # 1-based
    repeat: int  # repeats sent at this level
    notifications: int
    opened_at: datetime
    next_fire_at: datetime | None  # the acknowledgement deadline while open
    assigned_agent: str | None = None  # who had the case when it escalated
    requeue_tier: int | None = None
    # The case log's seq of the event that opened it (None: opened before seqs were kept).
    # Log events at or before it never acknowledge or resolve it, whatever order they arrive in.
    opened_seq: int | None = None


@dataclass(frozen=True)
class Hit:
    """A trigger that fired, with the facts the policy's rules match on."""

    trigger: str
    reason: str
    facts: dict[str, str | None]


@dataclass(frozen=True)
class Delivery:
    """A notification for an external sink: recorded in the deciding transaction, sent later."""

    notification_id: str
    sink: str
    case_id: str | None
    body: Contract


@dataclass(frozen=True)
class DigestEntry:
    target: str
    case_id: str
    reason: str
    at: datetime
    summary: str


@dataclass(frozen=True)
class Outcome:
    decision: Decision = NOTHING
    escalations: tuple[Escalation, ...] = ()
    deliveries: tuple[Delivery, ...] = ()
    digest: tuple[DigestEntry, ...] = ()

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(self.decision + other.decision, self.escalations + other.escalations,
                       self.deliveries + other.deliveries, self.digest + other.digest)


NONE = Outcome()


@dataclass(frozen=True)
class CaseView:
    """What the triggers need from a case's log."""

    facts: dict[str, str | None] = field(default_factory=dict)
    assigned_agent: str | None = None
    classifications: list[ce.CaseClassified] = field(default_factory=list)
    # The assigned agent's tier as the router recorded it on case.assigned (None: not recorded).
    assigned_tier: int | None = None


def view(history: History) -> CaseView:
    facts: dict[str, str | None] = {}
    assigned, classified, agent_tier = None, [], None
    for type_, payload in history:
        if type_ == "case.opened":
            facts["channel"] = payload["channel"]
            facts["customer_tier"] = (payload.get("customer") or {}).get("tier")
        elif type_ == "contact.received":
            facts.setdefault("channel", payload["channel"])
            tier = (payload.get("details") or {}).get("customer_tier")
            facts["customer_tier"] = tier or facts.get("customer_tier")
        elif type_ == "case.classified":
            c = ce.CaseClassified.model_validate(payload)
            classified.append(c)
            facts.update(priority=c.priority, skill=c.skill)
        elif type_ == "case.assigned":
            assigned, agent_tier = payload["agent_id"], payload.get("authority_tier")
        elif type_ in ("assignment.withdrawn", "case.solved") and \
                payload.get("agent_id") == assigned:
            assigned, agent_tier = None, None
    return CaseView(facts, assigned, classified, agent_tier)


# --- triggers ----------------------------------------------------------------------------------
def triggers(policy: Policy, type_: str, payload: Any, case: CaseView,
             agent_tier: int | None) -> list[Hit]:
    """What a case event (or an agent's request) triggers, before any policy rule applies."""
    facts = dict(case.facts)
    if type_ in ("sla.breached", "sla.warning"):
        facts["metric"] = payload.metric
        return [Hit(type_, f"{type_}:{payload.metric}", facts)]
    if type_ == "agent.escalation_requested":
        return [Hit("agent_request", "agent_request", facts)]
    hits: list[Hit] = []
    if type_ == "case.classified":
        c: ce.CaseClassified = payload
        if c.supervisor_requested:
            hits.append(Hit("supervisor_request", "supervisor_request", facts))
        if c.repeat_contact and c.repeat_count >= policy.spec.thresholds.repeat_contact_count:
            hits.append(Hit("repeat_contact", "repeat_contact", facts))
        if c.frustrated or _frustration_rising(case.classifications,
                                               policy.spec.thresholds.frustration_drop):
            hits.append(Hit("frustration", "frustration", facts))
    if type_ in ("case.classified", "case.assigned") and case.classifications \
            and case.assigned_agent and agent_tier is not None:
        needed = case.classifications[-1].min_authority_tier
        if needed > agent_tier:
            hits.append(Hit("authority", f"authority:tier{needed}", facts))
    return hits


def _frustration_rising(classified: list[ce.CaseClassified], drop: float) -> bool:
    """Sentiment fell by `drop` or more from the first contact to the latest, ending negative."""
    if len(classified) < 2:
        return False
    first, last = classified[0].sentiment, classified[-1].sentiment
    return last < 0 and first - last >= drop


# --- opening, levels, repeats ----------------------------------------
def open_escalation(policy: Policy, hit: Hit, existing: list[Escalation], history: History,
                    cause_id: str, now: datetime, agent_tier: int | None = None,
                    case_id: str | None = None, opened_seq: int | None = None) -> Outcome:
    """Open an escalation for `hit`, unless one for the case and reason is still live.

    `opened_seq` is the log position the decision was taken at (`history` ends there). An
    escalation for the same reason opened at or after it means this trigger was already
    handled, or came later in the log than one already handled: nothing new either way.
    """
    rule = policy.rule_for(hit.trigger, hit.facts)
    if rule is None:
        return NONE
    same = [e for e in existing if e.reason == hit.reason]
    if any(e.state in LIVE for e in same):
        return NONE  # no storms: one live escalation per case and reason
    if opened_seq is not None and any(e.opened_seq is not None and e.opened_seq >= opened_seq
                                      for e in same):
        return NONE
    case = view(history)
    case_id = case_id or _case_id(history, existing)
    if rule.digest:
        assert policy.spec.digest is not None
        summary = render_summary(build_packet(case_id, history, hit.reason, 0, agent_tier))
        return Outcome(digest=tuple(DigestEntry(t, case_id, hit.reason, now, summary)
                                    for t in policy.spec.digest.targets))
    episode = len(same) + 1
    # The first episode's id is the skeleton's, so escalations logged before policies stay put.
    key = hit.reason if episode == 1 else f"{hit.reason}#{episode}"
    esc = Escalation(f"esc-{derive_event_id(case_id, key)}", case_id, hit.reason, rule.name,
                     episode, "open", 1, 0, 0, now, None, case.assigned_agent,
                     opened_seq=opened_seq)
    return _notify(policy, rule, esc, history, now, "escalation", agent_tier)


def _case_id(history: History, existing: list[Escalation]) -> str:
    if existing:
        return existing[0].case_id
    return str(next(p["case_id"] for _, p in history if "case_id" in p))


def fire(policy: Policy, esc: Escalation, history: History, now: datetime,
         agent_tier: int | None = None) -> Outcome:
    """The acknowledgement timeout passed: repeat, go to the next level, or report exhaustion.

    Stamped with the deadline itself (not `now`), so a timer late after downtime records when
    the timeout really ran out and keeps the next deadline on the policy's schedule.
    """
    if esc.state != "open" or esc.next_fire_at is None or esc.next_fire_at > now:
        return NONE
    at = esc.next_fire_at
    rule = next((r for r in policy.spec.rules if r.name == esc.rule), None)
    if rule is None or not 1 <= esc.level <= len(rule.levels):
        # The policy changed under a live escalation: its rule or level is gone. Report it as
        # exhausted (nobody left to notify) rather than fail the timer on every pass.
        done = replace(esc, state="exhausted", next_fire_at=None)
        return Outcome(Decision(events=(_exhausted(esc, at),)), (done,))
    level = rule.levels[esc.level - 1]
    if esc.repeat < level.repeats:
        return _notify(policy, rule, replace(esc, repeat=esc.repeat + 1), history, at, "repeat",
                       agent_tier)
    if esc.level < len(rule.levels):
        nxt = replace(esc, level=esc.level + 1, repeat=0)
        return _notify(policy, rule, nxt, history, at, "reescalation", agent_tier)
    done = replace(esc, state="exhausted", next_fire_at=None)
    event = _exhausted(esc, at)
    packet = build_packet(esc.case_id, history, esc.reason, esc.level, agent_tier)
    return Outcome(Decision(events=(event,)), (done,)) + _messages(
        policy, level.targets, done, packet, at, "exhausted", event.event_id)


def _exhausted(esc: Escalation, at: datetime) -> CaseEvent:
    return CaseEvent.derived(esc.escalation_id, f"exhausted/level-{esc.level}", esc.case_id,
                             "escalation.exhausted", at, ce.EscalationExhausted(
                                 case_id=esc.case_id, escalation_id=esc.escalation_id,
                                 reason=esc.reason, level=esc.level,
                                 notifications=esc.notifications, exhausted_at=at))


def _notify(policy: Policy, rule: Rule, esc: Escalation, history: History, at: datetime,
            kind: Literal["escalation", "repeat", "reescalation"],
            agent_tier: int | None) -> Outcome:
    level = rule.levels[esc.level - 1]
    deadline = at + timedelta(seconds=parse_duration(level.ack_timeout))
    packet = build_packet(esc.case_id, history, esc.reason, esc.level, agent_tier)
    requeue = _requeue(policy, level.targets, packet)
    esc = replace(esc, next_fire_at=deadline,
                  requeue_tier=requeue.min_authority_tier if requeue else None)
    events: list[CaseEvent] = []
    target = level.targets[0]
    if kind == "escalation":
        events.append(CaseEvent.derived(esc.escalation_id, "escalated", esc.case_id,
                                        "case.escalated", at, ce.CaseEscalated(
                                            case_id=esc.case_id, escalation_id=esc.escalation_id,
                                            reason=esc.reason, level=esc.level, target=target,
                                            packet=packet, requeue=requeue,
                                            acknowledge_by=deadline)))
    elif kind == "reescalation":
        events.append(CaseEvent.derived(esc.escalation_id, f"reescalated/level-{esc.level}",
                                        esc.case_id, "escalation.reescalated", at,
                                        ce.EscalationReescalated(
                                            case_id=esc.case_id, escalation_id=esc.escalation_id,
                                            reason=esc.reason, from_level=esc.level - 1,
                                            level=esc.level, target=target, timed_out_at=at,
                                            requeue=requeue, acknowledge_by=deadline)))
    out = _messages(policy, level.targets, esc, packet, at, kind, None)
    esc = replace(esc, notifications=esc.notifications + len(level.targets))
    return Outcome(Decision(events=tuple(events)) + out.decision, (esc,), out.deliveries)


def _requeue(policy: Policy, targets: list[str],
             packet: ce.WarmTransferPacket) -> ce.EscalationRequeue | None:
    """A queue target re-queues the case to the tier that can act on it (never below its own)."""
    for name in targets:
        spec = policy.spec.targets[name]
        if spec.kind == "queue" and spec.min_authority_tier is not None:
            needed = packet.authority.min_authority_tier if packet.authority else 1
            return ce.EscalationRequeue(min_authority_tier=max(spec.min_authority_tier, needed),
                                        skill=spec.skill, queue=name)
    return None


def _messages(policy: Policy, targets: list[str], esc: Escalation, packet: ce.WarmTransferPacket,
              at: datetime, kind: Literal["escalation", "repeat", "reescalation", "exhausted"],
              caused_by_event: Any) -> Outcome:
    """Per target: `escalation.notified` (Kafka), the outbox message, and sink deliveries."""
    events: list[CaseEvent] = []
    outbound: list[Outbound] = []
    deliveries: list[Delivery] = []
    step = f"level-{esc.level}" + (f"/repeat-{esc.repeat}" if esc.repeat else "") + \
           ("/exhausted" if kind == "exhausted" else "")
    for n, target in enumerate(targets):
        # Level 1's first target keeps the skeleton's id; the others add the target's name.
        suffix = step if (n == 0 and kind != "exhausted") else f"{step}/{target}"
        notification_id = f"ntf-{derive_event_id(esc.escalation_id, suffix)}"
        who = policy.on_duty(target, at) if policy.spec.targets[target].kind == "rota" else None
        addressed = f"{target}:{who}" if who else target
        notified = CaseEvent.derived(esc.escalation_id, f"notified/{suffix}", esc.case_id,
                                     "escalation.notified", at, ce.EscalationNotified(
                                         case_id=esc.case_id, escalation_id=esc.escalation_id,
                                         notification_id=notification_id, target=addressed,
                                         sink="kafka", level=esc.level, repeat=esc.repeat))
        note = ce.SupervisorNotification(
            notification_id=notification_id, escalation_id=esc.escalation_id,
            case_id=esc.case_id, reason=esc.reason, level=esc.level, target=addressed,
            summary=render_summary(packet), packet=packet, kind=kind, repeat=esc.repeat,
            markdown=render_markdown(packet))
        events.append(notified)
        outbound.append(Outbound(topic=SUPERVISOR_NOTIFICATIONS, key=esc.case_id,
                                 type="supervisor.notification",
                                 event_id=derive_event_id(notification_id, "message"),
                                 subject=esc.case_id, time=at, data=note,
                                 caused_by=notified.event_id))
        deliveries += [Delivery(notification_id, sink, esc.case_id, note)
                       for sink in policy.spec.targets[target].sinks]
    return Outcome(Decision(tuple(events), tuple(outbound)), (), tuple(deliveries))


# --- acknowledgement and resolution ----------------------------------------
def acknowledge(esc: Escalation, by: str, via: Literal["case.assigned",
                                                        "agent.escalation_acknowledged"],
                now: datetime, agent_tier: int | None = None) -> Outcome:
    """Someone took it. Via `case.assigned`, only a new owner with the tier it was re-queued to
    counts: the agent who had the case when it escalated is the reason it escalated."""
    if esc.state not in ("open", "exhausted"):
        return NONE
    if via == "case.assigned" and (
            by == esc.assigned_agent or (esc.requeue_tier is not None and agent_tier is not None
                                         and agent_tier < esc.requeue_tier)):
        return NONE
    done = replace(esc, state="acknowledged", next_fire_at=None)
    event = CaseEvent.derived(esc.escalation_id, f"acknowledged/level-{esc.level}", esc.case_id,
                              "escalation.acknowledged", now, ce.EscalationAcknowledged(
                                  case_id=esc.case_id, escalation_id=esc.escalation_id,
                                  reason=esc.reason, level=esc.level, by=by, via=via,
                                  acknowledged_at=now))
    return Outcome(Decision(events=(event,)), (done,))


def resolve(esc: Escalation, resolution: Literal["case_solved", "condition_cleared"],
            now: datetime) -> Outcome:
    if esc.state not in LIVE:
        return NONE
    done = replace(esc, state="resolved", next_fire_at=None)
    event = CaseEvent.derived(esc.escalation_id, "resolved", esc.case_id, "escalation.resolved",
                              now, ce.EscalationResolved(case_id=esc.case_id,
                                                         escalation_id=esc.escalation_id,
                                                         reason=esc.reason,
                                                         resolution=resolution,
                                                         resolved_at=now))
    return Outcome(Decision(events=(event,)), (done,))


# --- what an input does to the escalations that exist -----------------------------------
LOG_INPUTS = ("case.assigned", "case.solved", "sla.met")  # acknowledge or resolve, from the log
# The states of the escalations each input can change.
TOUCHES = {"case.assigned": ("open", "exhausted"),
           "agent.escalation_acknowledged": ("open", "exhausted"),
           "case.solved": LIVE, "sla.met": LIVE}


def apply_input(existing: list[Escalation], type_: str, payload: Any, seq: int | None,
                now: datetime) -> Outcome:
    """Acknowledgements and resolutions an input brings to the case's escalations.

    A log event (`seq` known) only touches escalations opened before it in the log: handled
    late, or redelivered, it cannot acknowledge an escalation its own moment did not have.
    """
    outcome = NONE
    for esc in existing:
        if type_ in LOG_INPUTS and seq is not None and esc.opened_seq is not None \
                and esc.opened_seq >= seq:
            continue
        if type_ == "case.assigned":
            outcome += acknowledge(esc, payload.agent_id, "case.assigned", now,
                                   payload.authority_tier)
        elif type_ == "agent.escalation_acknowledged" and \
                esc.escalation_id == payload.escalation_id:
            outcome += acknowledge(esc, payload.agent_id, "agent.escalation_acknowledged", now)
        elif type_ == "case.solved":
            outcome += resolve(esc, "case_solved", now)
        elif type_ == "sla.met" and esc.reason == f"sla.warning:{payload.metric}":
            outcome += resolve(esc, "condition_cleared", now)
    return outcome


def merged(existing: list[Escalation], outcome: Outcome) -> list[Escalation]:
    """The escalations as `outcome` leaves them (changed ones replaced, new ones appended)."""
    changed = {e.escalation_id: e for e in outcome.escalations}
    known = {e.escalation_id for e in existing}
    return [changed.get(e.escalation_id, e) for e in existing] + \
        [e for e in changed.values() if e.escalation_id not in known]


# --- deciding an input as of its place in the log -------------------------------------------
class Logged(Protocol):
    """A case log row, as the store reads it."""

    @property
    def seq(self) -> int: ...
    @property
    def event_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AsOf:
    """The case's log as of one input: what was there when it happened, and what came after."""

    history: History
    seq: int  # the input's own seq, or the log's last if the input is not in the log
    in_log: bool
    later: tuple[Logged, ...]
    case: CaseView

    @classmethod
    def position(cls, seq: int | None) -> AsOf:
        """Only where an input sits (None: not in the log), for inputs that open nothing."""
        return cls([], seq or 0, seq is not None, (), CaseView())


def as_of(rows: list[Logged], event_id: str) -> AsOf:
    """`rows` (the case's whole log, in seq order) cut at the row of `event_id`.

    An input not in the log (an agent's request, not a case event) is decided as of its end.
    """
    at = next((i for i, r in enumerate(rows) if r.event_id == event_id), None)
    upto, later = (rows, []) if at is None else (rows[:at + 1], rows[at + 1:])
    history = [(r.type, r.payload) for r in upto]
    return AsOf(history, upto[-1].seq if upto else 0, at is not None, tuple(later),
                view(history))


def hits_as_of(policy: Policy, at: AsOf, type_: str, payload: Any) -> list[Hit]:
    """The triggers of an input that a rule of `policy` acts on, as of its place in the log."""
    return [h for h in triggers(policy, type_, payload, at.case, at.case.assigned_tier)
            if policy.rule_for(h.trigger, h.facts) is not None]


def decide_input(policy: Policy, existing: list[Escalation], at: AsOf, type_: str,
                 payload: Any, cause_id: str, now: datetime, hits: list[Hit]) -> Outcome:
    """What one input does: acknowledgements and resolutions of escalations opened before it,
    then the escalations its `hits` open (pass none for an input already applied).

    Events later in the log (perhaps handled already, before this one was) then act on what
    was just opened as they would have, had this input been handled in time: arrival order on
    the topics, redeliveries and restarts do not change the outcome.
    """
    outcome = apply_input(existing, type_, payload, at.seq if at.in_log else None, now)
    if not hits:
        return outcome
    touched: set[str] = set()
    for hit in hits:
        current = merged(existing, outcome)
        # The same reason opened from a *later* log position (that event was handled first):
        # in log order this trigger opened it, so it is as of here, with who had the case here.
        later = [e for e in current if e.reason == hit.reason and e.state in LIVE
                 and e.opened_seq is not None and e.opened_seq > at.seq]
        if later and at.in_log:
            anchored = replace(later[0], opened_seq=at.seq,
                               assigned_agent=at.case.assigned_agent)
            outcome += Outcome(escalations=(anchored,))
            touched.add(anchored.escalation_id)
            continue
        opened = open_escalation(policy, hit, current, at.history, cause_id, now,
                                 at.case.assigned_tier, case_id=payload.case_id,
                                 opened_seq=at.seq)
        touched |= {e.escalation_id for e in opened.escalations}
        outcome += opened
    if not at.in_log:
        return outcome
    for row in at.later:
        if row.type in LOG_INPUTS:
            mine = [e for e in merged(existing, outcome) if e.escalation_id in touched]
            model = ce.CASE_EVENT_TYPES[row.type].model_validate(row.payload)
            outcome += apply_input(mine, row.type, model, row.seq, now)
    return outcome


# --- the cheap screen: what an input could possibly do, from its payload alone ---------------
def could_open(policy: Policy, type_: str, payload: Any) -> bool:
    """False when `type_`/`payload` cannot open an escalation or a digest item under `policy`,
    whatever the case's log says (True may still open nothing). No I/O: most case events
    stop here. `case.assigned` also needs the case's latest classification (authority)."""
    rules = {r.trigger for r in policy.spec.rules}
    if type_ in ("sla.breached", "sla.warning"):
        return type_ in rules
    if type_ == "agent.escalation_requested":
        return "agent_request" in rules
    if type_ == "case.assigned":
        return "authority" in rules and payload.authority_tier is not None
    if type_ != "case.classified":
        return False
    c: ce.CaseClassified = payload
    thresholds = policy.spec.thresholds
    return (("supervisor_request" in rules and c.supervisor_requested)
            or ("repeat_contact" in rules and c.repeat_contact
                and c.repeat_count >= thresholds.repeat_contact_count)
            # rising frustration ends negative: a calm classification cannot be its end
            or ("frustration" in rules and (c.frustrated or c.sentiment < 0))
            # authority: an assigned agent's tier (at least 1) below the tier needed
            or ("authority" in rules and c.min_authority_tier > 1))


def could_change(policy: Policy, type_: str) -> bool:
    """False when `type_` cannot acknowledge or resolve any escalation `policy` opens."""
    if type_ == "sla.met":  # resolves escalated SLA warnings only (digest ones are no escalation)
        return any(r.trigger == "sla.warning" and not r.digest for r in policy.spec.rules)
    return type_ in ("case.assigned", "case.solved", "agent.escalation_acknowledged")


# --- digests ------------------------------------------------------------
def digest_ready(policy: Policy, oldest: datetime, now: datetime) -> bool:
    """Whether a target whose oldest pending entry is from `oldest` has a digest due."""
    every = policy.spec.digest.every if policy.spec.digest is not None else None
    return every is not None and oldest + timedelta(seconds=parse_duration(every)) <= now


def digest_due(policy: Policy, target: str, entries: list[DigestEntry],
               now: datetime) -> tuple[ce.SupervisorDigest, Outbound] | None:
    """A target's pending entries become one digest once the oldest has waited `every`."""
    if not entries:
        return None
    start = min(e.at for e in entries)
    if not digest_ready(policy, start, now):
        return None
    ordered = sorted(entries, key=lambda e: (e.at, e.case_id, e.reason))
    digest_id = f"dig-{derive_event_id(target, f'{start.isoformat()}/{ordered[0].case_id}')}"
    digest = ce.SupervisorDigest(
        digest_id=digest_id, target=target, window_start=start, window_end=now,
        items=[ce.DigestItem(case_id=e.case_id, reason=e.reason, at=e.at, summary=e.summary)
               for e in ordered])
    message = Outbound(topic=SUPERVISOR_NOTIFICATIONS, key=target, type="supervisor.digest",
                       event_id=derive_event_id(digest_id, "message"), subject=None, time=now,
                       data=digest, caused_by=derive_event_id(digest_id, "message"))
    return digest, message


# --- the walking skeleton's entry point ----------------------------------------
def escalate_breach(breach: ce.SlaBreached, history: History, target: str, cause_id: str,
                    now: datetime) -> Decision:
    """One escalation per case and breached metric, to one target (no existing escalations)."""
    hit = Hit("sla.breached", f"sla.breached:{breach.metric}", {"metric": breach.metric})
    history = history or [("sla.breached", breach.model_dump(mode="json"))]
    return open_escalation(single_level(target), hit, [], history, cause_id, now).decision
