"""The warm-transfer packet v2: complete for an email, a chat and a call; no card number."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from services.escalation import packet as pk
from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity
from shared.redaction import redact

T0 = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
CASE = "case-pkt"
CARD = "4111 1111 1111 1111"
CUSTOMER = CustomerIdentity(name="Maya Patel", email="maya@example.com", verified=True,
                            tier="gold")


def row(data: ce.Contract) -> dict[str, Any]:
    return data.model_dump(mode="json")


def contact(cid: str, channel: str, minutes: int, text: str, **details: str) -> dict[str, Any]:
    return row(ce.ContactReceived(case_id=CASE, contact_id=cid, channel=channel,  # type: ignore[arg-type]
                                  source_type=f"{channel}.x", customer=CUSTOMER,
                                  text=redact(text), details=details,
                                  received_at=T0 + timedelta(minutes=minutes)))


def history() -> list[tuple[str, dict[str, Any]]]:
    c1 = ce.CaseClassified(case_id=CASE, skill="billing", queue="billing", priority="normal",
                           language="en", confidence=0.82, sentiment=0.1, intent="refund",
                           min_authority_tier=2, refund_amount=450.0,
                           evidence=["min_authority_tier: refund or credit of 450 → tier 2"])
    c2 = c1.model_copy(update={"sentiment": -0.6, "frustrated": True})
    return [
        ("case.opened", row(ce.CaseOpened(case_id=CASE, channel="email", customer=CUSTOMER,
                                          subject="Refund for a double charge", opened_at=T0))),
        ("contact.received", contact("e1", "email", 0,
                                     f"You charged my card {CARD} twice. Please refund 450.",
                                     contract="premium-support")),
        ("case.classified", row(c1)),
        ("case.assigned", row(ce.CaseAssigned(case_id=CASE, agent_id="ada"))),
        ("reply.sent", row(ce.ReplySent(case_id=CASE, agent_id="ada",
                                        text="Looking into it today.",
                                        at=T0 + timedelta(minutes=20)))),
        ("contact.received", contact("c1", "chat", 60, "Still nothing? This is the third time!")),
        ("case.classified", row(c2)),
        ("contact.received", contact("v1", "voice", 120, "Inbound call from +14155550123")),
        ("contact.text_added", row(ce.ContactTextAdded(
            case_id=CASE, contact_id="v1", channel="voice", source_type="call.transcript",
            text="I want my money back, I already told you twice.",
            at=T0 + timedelta(minutes=121)))),
        ("sla.started", row(ce.SlaStarted(case_id=CASE, clock_id="s1", metric="resolution",
                                          policy="p", target_seconds=86400, started_at=T0,
                                          due_at=T0 + timedelta(days=1)))),
    ]


def test_the_packet_names_every_contact_with_its_text_and_no_card_number() -> None:
    packet = pk.build_packet(CASE, history(), "authority:tier2", 1, agent_tier=1)
    assert packet.packet_version == "2"
    assert [(c.channel, c.contact_id) for c in packet.contacts] == [
        ("email", "e1"), ("chat", "c1"), ("voice", "v1")]
    assert "charged my card" in packet.contacts[0].text
    assert "third time" in packet.contacts[1].text
    assert "money back" in packet.contacts[2].text
    assert packet.customer.tier == "gold" and packet.contract == "premium-support"
    assert [(s.sentiment, s.frustrated) for s in packet.sentiment] == [(0.1, False),
                                                                       (-0.6, True)]
    assert [a.kind for a in packet.tried] == ["assigned", "reply"]
    assert packet.authority is not None and packet.authority.min_authority_tier == 2
    assert packet.sla[0].state == "running"
    for rendering in (packet.model_dump_json(), pk.render_summary(packet),
                      pk.render_markdown(packet)):
        assert "4111111111111111" not in rendering.replace(" ", "") and CARD not in rendering
        for words in ("charged my card", "third time", "money back"):
            assert words in rendering


def test_a_version_1_packet_from_the_log_still_reads() -> None:
    old = {"packet_version": "1", "case_id": CASE, "customer": {}, "problem": "p",
           "contacts": [{"channel": "chat", "at": T0.isoformat(), "text": "hi"}],
           "reason": "sla.breached:first_response", "level": 1, "suggested_next_step": "s"}
    packet = ce.WarmTransferPacket.model_validate_json(json.dumps(old))
    assert packet.packet_version == "1" and packet.tried == []


def test_both_renderings_carry_the_reason_level_problem_and_next_step() -> None:
    packet = pk.build_packet(CASE, history(), "sla.breached:first_response", 2)
    text, markdown = pk.render_summary(packet), pk.render_markdown(packet)
    for rendering in (text, markdown):
        assert "sla.breached:first_response" in rendering and "level 2" in rendering
        assert "Refund for a double charge" in rendering
        assert packet.suggested_next_step in rendering
    assert markdown.startswith("## Case `case-pkt`") and "| chat |" in markdown
