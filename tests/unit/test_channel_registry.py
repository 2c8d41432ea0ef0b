"""A channel is one module plus one registration entry (shared/channels/).

The proof: SMS, a fourth channel written as `tests/support/sms_channel.py` and registered here,
runs through intake's pure core, the router's pure decision over its floor and SLA's core, is
provisioned and documented, and validates on the wire; with nothing else in Switchboard changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.intake import core as intake
from services.intake.app import inbound_models
from services.router import decide
from services.router.classify import RulesClassifier
from services.router.core import RouterConfig
from services.router.floor import Floor, PutOffer
from services.router.policy import load_policy, load_taxonomy
from services.sla import policy as sla_policy
from services.sla.replay import Simulation
from shared.channels import registry
from shared.contracts import agents as ag
from shared.contracts import case_events as ce
from shared.contracts import export
from shared.contracts.inbound import CustomerIdentity
from shared.contracts.topics import all_topics, dlq
from shared.settings import Settings
from tests.support import sms_channel
from tests.support.sms_channel import SmsReceived

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
POLICY = load_policy()
TAXONOMY = load_taxonomy()
CONFIG = RouterConfig(POLICY, TAXONOMY, RulesClassifier(TAXONOMY))


@pytest.fixture
def sms() -> Iterator[registry.ChannelSpec]:
    yield registry.register(sms_channel.CHANNEL)  # the one entry
    registry.unregister("sms")


def text(body: str = "I was charged twice for order 81234, please refund one") -> SmsReceived:
    return SmsReceived(message_sid="SM1", from_number="+14155550100", to_number="+14155550199",
                       body=body, received_at=NOW)


def test_the_built_in_channels_keep_their_names_and_order() -> None:
    assert registry.names() == ("email", "chat", "voice")
    assert set(registry.inbound_topics()) == {
        "helpdesk.inbound.email", "helpdesk.inbound.chat", "helpdesk.inbound.voice"}


def test_an_sms_contact_goes_through_intake_and_the_router(sms: registry.ChannelSpec) -> None:
    # intake's pure core: understood by the channel's extractor, threaded by its strategy
    contact = intake.understand("sms.received", text(), NOW)
    assert contact is not None and contact.channel == "sms"
    steps = intake.thread_lookups(contact, intake.ThreadRules(joins_open_case=True), True)
    assert [s.how for s in steps] == ["thread", "customer"]
    assert steps[0].keys == ("sms:+14155550100/+14155550199",)
    assert not intake.may_join(contact, intake.Candidate("case-x", "customer", True)), \
        "an unverified number does not join the customer's other open case"
    decision, case_id = intake.decide(contact, None, "evt-sms-1", NOW)
    assert [e.type for e in decision.events] == ["case.opened", "contact.received"]
    opened, received = (e.data for e in decision.events)
    assert isinstance(opened, ce.CaseOpened) and opened.channel == "sms"
    assert isinstance(received, ce.ContactReceived) and received.case_id == case_id

    # over the wire to the router, which validates the channel like any other
    wire = ce.ContactReceived.model_validate_json(received.model_dump_json())

    # the router's pure decisions over its floor: an agent with the channel's default capacity
    floor = Floor(POLICY)
    profile = ag.AgentProfile(
        agent_id="agent-1", name="Agent One", authority_tier=3, changed_at=NOW,
        skills=[ag.SkillLevel(skill=s, proficiency=5) for s in TAXONOMY.skills])
    assert profile.capacity["sms"] == 4
    for step, event in ((decide.on_profile, profile), (decide.on_contact, wire)):
        outcome = decide.decide(floor, CONFIG, NOW, step, f"cause-{step.__name__}", event)
        floor.begin()
        for change in outcome.changes:
            floor.apply(change)
        floor.commit()
    offers = [c.offer for c in outcome.changes if isinstance(c, PutOffer)]
    assert [(o.agent_id, o.case_id, o.channel) for o in offers] == [("agent-1", case_id, "sms")]
    assert floor.agents["agent-1"].load == {"sms": 1}
    assert floor.agents["agent-1"].used_units(POLICY) == 20  # the channel's default weight
    assert "case.classified" in [e.type for e in outcome.decision.events]


def test_sla_times_an_sms_case_by_the_channel_s_own_first_response_target(
        sms: registry.ChannelSpec) -> None:
    contact = intake.understand("sms.received", text(), NOW)
    assert contact is not None
    decision, _ = intake.decide(contact, None, "evt-sms-2", NOW)
    # SLA_FIRST_RESPONSE_SECONDS' default (the environment of the test run may set it)
    seconds = Settings.model_fields["sla_first_response_seconds"].get_default(
        call_default_factory=True)
    assert seconds["sms"] == 600
    run = Simulation(sla_policy.skeleton(seconds))
    received = [e for e in decision.events if e.type == "contact.received"]  # what SLA reads
    started = [e for event in received
               for e in run.feed(event.type, event.data, str(event.event_id), NOW)
               if e.type == "sla.started"]
    assert [e.data.due_at - NOW for e in started] == [timedelta(seconds=600)]  # type: ignore[attr-defined]


def test_an_sms_channel_is_provisioned_subscribed_and_documented(
        sms: registry.ChannelSpec) -> None:
    topics = {t.name for t in all_topics()}
    assert {sms_channel.TOPIC, dlq(sms_channel.TOPIC)} <= topics
    assert set(inbound_models()[sms_channel.TOPIC]) == {"sms.received"}
    assert f"schemas/{sms_channel.TOPIC}/sms.received.json" in export.event_schemas()
    addresses = {c["address"] for c in export.asyncapi()["channels"].values()}
    assert sms_channel.TOPIC in addresses
    channel = ce.CaseOpened.model_json_schema()["properties"]["channel"]
    assert channel["enum"] == ["email", "chat", "voice", "sms"]


def test_an_unregistered_channel_is_refused_on_the_wire() -> None:
    with pytest.raises(ValidationError, match="unknown channel 'sms'"):
        ce.CaseOpened(case_id="case-1", channel="sms", customer=CustomerIdentity(),
                      opened_at=NOW)
    with pytest.raises(registry.UnknownChannel, match="sms"):
        registry.get("sms")


def test_a_channel_cannot_take_another_ones_name_topic_or_types(
        sms: registry.ChannelSpec) -> None:
    for clash in (replace(sms, topic="helpdesk.inbound.other"),
                  replace(sms, name="sms2"),
                  replace(sms, name="sms2", topic="helpdesk.inbound.other")):
        with pytest.raises(ValueError, match="already"):
            registry.register(clash)
