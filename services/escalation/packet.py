"""The warm-transfer packet (pure): built from the case log's rows, rendered as text and Markdown.

The packet is a function of the log (type and payload per row), so it carries everything the case
knows and nothing that was not recorded. Contact text comes from the log, which intake redacted
before anything was written: card numbers never reach a packet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity

History = list[tuple[str, dict[str, Any]]]  # (type, payload) in log order
_SLA_STATES = {"sla.started": "running", "sla.met": "met", "sla.breached": "breached",
               "sla.paused": "paused", "sla.resumed": "running"}


def build_packet(case_id: str, history: History, reason: str, level: int,
                 agent_tier: int | None = None) -> ce.WarmTransferPacket:
    customer, subject, contract = CustomerIdentity(), None, None
    # contact id → (channel, first time, texts, source): chat bursts, IVR choices and transcripts
    # arrive as contact.text_added after the contact itself, and belong in the packet with it.
    contacts: dict[str, tuple[Any, datetime, list[str], str]] = {}
    classification, assigned = None, None
    sla: dict[str, ce.PacketSlaState] = {}
    sentiment: list[ce.PacketSentiment] = []
    tried: list[ce.PacketAction] = []
    last_contact_at: datetime | None = None
    for type_, payload in history:
        if type_ == "case.opened":
            opened = ce.CaseOpened.model_validate(payload)
            customer, subject = opened.customer, opened.subject
        elif type_ == "contact.received":
            contact = ce.ContactReceived.model_validate(payload)
            contacts[contact.contact_id] = (contact.channel, contact.received_at, [contact.text],
                                            contact.source_type)
            last_contact_at = contact.received_at
            contract = contact.details.get("contract", contract)
            if customer == CustomerIdentity():
                customer = contact.customer
        elif type_ == "contact.text_added" and payload["contact_id"] in contacts:
            contacts[payload["contact_id"]][2].append(payload["text"])
        elif type_ == "case.classified":
            classification = ce.CaseClassified.model_validate(payload)
            sentiment.append(ce.PacketSentiment(at=last_contact_at,
                                                sentiment=classification.sentiment,
                                                frustrated=classification.frustrated))
        elif type_ == "case.assigned":
            assigned = payload["agent_id"]
            tried.append(ce.PacketAction(kind="assigned", agent_id=assigned,
                                         text=f"assigned to {assigned}"))
        elif type_ == "reply.sent":
            tried.append(ce.PacketAction(at=payload["at"], kind="reply",
                                         agent_id=payload["agent_id"], text=payload["text"]))
        elif type_ == "case.status_changed":
            tried.append(ce.PacketAction(at=payload["at"], kind="status",
                                         agent_id=payload.get("agent_id"),
                                         text=f"status set to {payload['status']}"))
        elif type_ == "assignment.withdrawn":
            tried.append(ce.PacketAction(kind="withdrawn", agent_id=payload["agent_id"],
                                         text=f"taken back from {payload['agent_id']}:"
                                              f" {payload['reason']}"))
        elif type_ in ("case.escalated", "escalation.reescalated"):
            tried.append(ce.PacketAction(kind="escalated",
                                         text=f"escalated ({payload['reason']}) to level"
                                              f" {payload['level']}: {payload['target']}"))
        elif type_ == "sla.cancelled":
            sla.pop(payload["clock_id"], None)
        elif type_ in _SLA_STATES:
            sla[payload["clock_id"]] = ce.PacketSlaState(
                metric=payload["metric"], due_at=payload["due_at"], state=_SLA_STATES[type_])  # type: ignore[arg-type]
    told = [ce.PacketContact(channel=channel, at=at, text="\n".join(t for t in texts if t),
                             contact_id=contact_id, source_type=source)
            for contact_id, (channel, at, texts, source) in contacts.items()]
    authority = _authority(classification, agent_tier, reason)
    return ce.WarmTransferPacket(
        case_id=case_id, customer=customer, contract=contract,
        problem=subject or _first_line(told), contacts=told, classification=classification,
        sentiment=sentiment, tried=tried, sla=list(sla.values()), assigned_agent=assigned,
        authority=authority, reason=reason, level=level,
        suggested_next_step=_next_step(reason, assigned, classification, authority),
    )


def _authority(c: ce.CaseClassified | None, agent_tier: int | None,
               reason: str) -> ce.PacketAuthority | None:
    if c is None or (c.min_authority_tier <= 1 and not reason.startswith("authority")):
        return None
    why = [line for line in c.evidence if line.startswith(("min_authority_tier", "authority"))]
    return ce.PacketAuthority(min_authority_tier=c.min_authority_tier,
                              assigned_agent_tier=agent_tier, refund_amount=c.refund_amount,
                              account_action=c.account_action, why=why)


def _first_line(contacts: list[ce.PacketContact]) -> str:
    """The customer's own first words; a call's placeholder line only if nothing else was said."""
    lines = [line for c in contacts for line in c.text.splitlines() if line.strip()]
    spoken = [line for line in lines if not line.startswith("Inbound call from")]
    return ((spoken or lines or ["(no text)"])[0])[:160]


def _next_step(reason: str, assigned: str | None, classification: ce.CaseClassified | None,
               authority: ce.PacketAuthority | None) -> str:
    skill = classification.skill if classification else "general"
    if reason.startswith("authority") and authority is not None:
        what = (f"a refund or credit of {authority.refund_amount:g}"
                if authority.refund_amount is not None else authority.account_action or "it")
        return (f"A tier {authority.min_authority_tier} agent approves {what}, then replies to"
                " the customer; no need to ask them again.")
    if reason == "supervisor_request":
        return "A supervisor calls or writes to the customer now: they asked for one."
    if reason == "frustration":
        return "Acknowledge the frustration first, then resolve; offer a call-back."
    if reason == "repeat_contact":
        return "The customer has contacted us repeatedly about this: resolve it in this contact."
    if reason == "agent_request":
        return f"Join {assigned or 'the agent'} on the case: they asked for help."
    if assigned is None:
        return f"Take the case from the {skill} queue and reply to the customer now."
    return f"Reply to the customer now, or reassign from {assigned} to a free {skill} agent."


def _who(packet: ce.WarmTransferPacket) -> str:
    c = packet.customer
    return c.name or c.email or c.phone or c.external_id or "unknown"


def render_summary(packet: ce.WarmTransferPacket) -> str:
    """The packet as plain text a supervisor reads in ten seconds (the SMTP sink's body)."""
    c = packet.customer
    extra = ", ".join(x for x in (f"tier {c.tier}" if c.tier else "",
                                  f"contract {packet.contract}" if packet.contract else "") if x)
    lines = [
        f"Case {packet.case_id} escalated (level {packet.level}): {packet.reason}",
        f"Customer: {_who(packet)} ({'verified' if c.verified else 'not verified'})"
        + (f", {extra}" if extra else ""),
        f"Problem: {packet.problem}",
    ]
    if packet.classification:
        k = packet.classification
        lines.append(f"Classified: {k.skill}, {k.priority} priority ({k.confidence:.0%})")
    if packet.sentiment:
        lines.append("Sentiment: " + " → ".join(
            f"{s.sentiment:+.2f}{' (frustrated)' if s.frustrated else ''}"
            for s in packet.sentiment))
    if packet.authority:
        a = packet.authority
        lines.append(f"Authority needed: tier {a.min_authority_tier}"
                     + (f" (assigned agent is tier {a.assigned_agent_tier})"
                        if a.assigned_agent_tier else "")
                     + (f"; {'; '.join(a.why)}" if a.why else ""))
    lines.append(f"Assigned: {packet.assigned_agent or 'nobody'}")
    lines += [f"- {c.at:%Y-%m-%d %H:%M} {c.channel}: {c.text[:200]}" for c in packet.contacts]
    lines += [f"Tried: {action.text[:200]}" for action in packet.tried]
    lines += [f"SLA {clock.metric}: {clock.state}, due {clock.due_at:%Y-%m-%d %H:%M}"
              for clock in packet.sla]
    lines.append(f"Next step: {packet.suggested_next_step}")
    return "\n".join(lines)


def render_markdown(packet: ce.WarmTransferPacket) -> str:
    """The packet as Markdown, for chat tools and ticket UIs that render it."""
    c = packet.customer
    out = [f"## Case `{packet.case_id}` — level {packet.level}: {packet.reason}", "",
           f"**Problem:** {packet.problem}", "",
           f"**Customer:** {_who(packet)} — {'verified' if c.verified else 'not verified'}"
           + (f", tier {c.tier}" if c.tier else "")
           + (f", contract {packet.contract}" if packet.contract else ""), ""]
    if packet.classification:
        k = packet.classification
        out += [(f"**Classification:** {k.intent} → {k.skill} ({k.confidence:.0%}),"
                f" {k.priority} priority, language {k.language}"), ""]
    if packet.sentiment:
        out += ["**Sentiment:** " + " → ".join(
            f"{s.sentiment:+.2f}{' 😠' if s.frustrated else ''}" for s in packet.sentiment), ""]
    if packet.authority:
        a = packet.authority
        out += [f"**Authority needed:** tier {a.min_authority_tier}"
                + (f" (assigned agent: tier {a.assigned_agent_tier})"
                   if a.assigned_agent_tier else ""), *(f"- {w}" for w in a.why), ""]
    out += ["### Contacts", "", "| when | channel | what the customer said |", "|---|---|---|"]
    out += [f"| {x.at:%Y-%m-%d %H:%M} | {x.channel} | {_cell(x.text)} |" for x in packet.contacts]
    out += ["", "### Tried so far", ""]
    out += [f"- {a.text}" for a in packet.tried] or ["- nothing yet"]
    if packet.sla:
        out += ["", "### SLA", ""]
        out += [f"- {s.metric}: **{s.state}**, due {s.due_at:%Y-%m-%d %H:%M} UTC"
                for s in packet.sla]
    out += ["", f"**Assigned:** {packet.assigned_agent or 'nobody'}",
            f"**Next step:** {packet.suggested_next_step}"]
    return "\n".join(out)


def _cell(text: str) -> str:
    return text[:300].replace("|", "\\|").replace("\n", " ")
