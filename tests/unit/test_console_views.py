"""The console's pure parts: queue figures, agent load, SLA order, chain status per row, the
packet's Markdown with hostile customer text, and which pages an event wakes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.console import views
from services.console.live import Hub, areas_of
from services.console.safe_markdown import render
from services.console.views import OpenOffer, QueueGroup, SlaRow
from services.escalation.packet import render_markdown
from services.router.policy import load_policy
from shared.caselog.chain import GENESIS_HASH, ChainedFields, check_chain, row_hash
from shared.contracts import case_events as ce
from shared.contracts.inbound import CustomerIdentity

NOW = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
POLICY = load_policy()


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


# --- queues ------------------------------------------------------------------------------------
def test_expected_wait_is_the_queue_over_its_recent_rate() -> None:
    assert views.expected_wait(0, 0, 1800) == 0.0
    assert views.expected_wait(5, 0, 1800) is None  # nobody took one: no rate to go by
    # 30 taken in 30 minutes = one a minute: the 10th in line waits ten minutes
    assert views.expected_wait(10, 30, 1800) == pytest.approx(600.0)


def test_queue_rows_by_skill_tier_and_channel_with_overflow_and_kpis() -> None:
    groups = [
        # billing email: tier 1 at step 0 and at the overflow step (past the 3 relaxation steps)
        QueueGroup("billing-email", "email", 1, 0, 3, ago(100)),
        QueueGroup("billing-email", "email", 1, 3, 2, ago(700)),
        QueueGroup("billing-email", "email", 2, 1, 1, ago(50)),
        # voice: its own policy (max 50 waiting, oldest 180 s): 51 waiting is past the KPI
        QueueGroup("orders-voice", "voice", 1, 0, 51, ago(30)),
    ]
    rows = views.queue_rows(groups, {("billing", "email"): 12}, POLICY, 1800, NOW)
    by_key = {(r.queue, r.tier): r for r in rows}
    tier1 = by_key[("billing-email", 1)]
    assert (tier1.skill, tier1.channel, tier1.waiting, tier1.overflowed) == \
        ("billing", "email", 5, 2)
    assert tier1.oldest_wait == 700
    # the whole queue (6 cases) over 12 taken per 30 min
    assert tier1.expected_wait == pytest.approx(6 / (12 / 1800))
    assert by_key[("billing-email", 2)].overflowed == 0
    assert tier1.hot is None
    voice = by_key[("orders-voice", 1)]
    assert voice.hot == "51 waiting > 50" and voice.expected_wait is None
    assert rows[0].queue == "billing-email"  # the longest wait first


def test_a_queue_whose_oldest_case_waited_too_long_is_hot() -> None:
    rows = views.queue_rows([QueueGroup("general-voice", "voice", 1, 1, 1, ago(181))], {},
                            POLICY, 1800, NOW)
    assert rows[0].hot is not None and rows[0].hot.startswith("oldest 3m 01s")


def test_a_skill_with_dashes_keeps_them() -> None:
    assert views.skill_of("vip-billing-chat", "chat") == "vip-billing"


# --- agents ------------------------------------------------------------------------------------
def test_agent_load_counts_open_and_accepted_offers_against_capacity() -> None:
    profile = {"agent_id": "a1", "name": "Ada", "presence": "available", "authority_tier": 2,
               "capacity": {"email": 5, "chat": 2, "voice": 1},
               "skills": [{"skill": "orders", "proficiency": 3},
                          {"skill": "billing", "proficiency": 5}]}
    offers = [OpenOffer("a1", "c1", "chat", "accepted", ago(60), None),
              OpenOffer("a1", "c2", "chat", "offered", ago(5), NOW + timedelta(seconds=115)),
              OpenOffer("a1", "c3", "email", "accepted", ago(600), None)]
    row = views.agent_row("a1", profile, ago(0), 0, offers, POLICY)
    assert row.load == {"chat": 2, "email": 1}
    assert row.full("chat") and not row.full("email") and not row.full("voice")
    assert row.units_used == 30 + 30 + 10 and row.units_capacity == 100
    assert [o.case_id for o in row.current] == ["c1", "c3"]
    assert [o.case_id for o in row.pending] == ["c2"]
    assert row.skills == "billing 5, orders 3"


# --- SLA ---------------------------------------------------------------------------------------
def test_sla_rows_most_overdue_first_then_least_time_left() -> None:
    base = SlaRow("k", "c", "first_response", "p", "r", "running", NOW, 0, None, None, None)
    rows = [replace(base, case_id="soon", due_at=NOW + timedelta(minutes=3)),
            replace(base, case_id="breached-late", state="breached",
                    due_at=NOW - timedelta(minutes=1)),
            replace(base, case_id="breached-early", state="breached",
                    due_at=NOW - timedelta(hours=2)),
            replace(base, case_id="later", due_at=NOW + timedelta(minutes=14))]
    assert [r.case_id for r in views.by_urgency(rows)] == \
        ["breached-early", "breached-late", "soon", "later"]


# --- case timeline -----------------------------------------------------------------------------
def _chain(n: int, version: int = 1) -> list[tuple[ChainedFields, str, str]]:
    rows, prev = [], GENESIS_HASH
    for seq in range(1, n + 1):
        fields = ChainedFields("case-1", seq, f"00000000-0000-0000-0000-00000000000{seq}",
                               "case.opened" if seq == 1 else "contact.received", "test",
                               NOW, None, f'{{"n":{seq}}}',
                               recorded_at=NOW if version == 2 else None,
                               key_id="test" if version == 2 else None)
        digest = row_hash(prev, fields, version)
        rows.append((fields, prev, digest))
        prev = digest
    return rows


def test_every_row_of_an_intact_chain_is_ok() -> None:
    statuses = views.chain_statuses(_chain(4))
    assert [s.status for s in statuses] == ["ok"] * 4
    assert '"n": 1' in statuses[0].data  # pretty-printed


def test_a_rewritten_row_is_broken_and_the_rows_after_it_unverified_as_log_verify_says() -> None:
    rows = _chain(4)
    fields, prev, digest = rows[1]
    rows[1] = (replace(fields, data='{"n":99}'), prev, digest)
    statuses = views.chain_statuses(rows)
    assert [s.status for s in statuses] == ["ok", "broken", "unverified", "unverified"]
    broken = check_chain(rows)
    assert broken is not None and (broken.seq, broken.why) == (2, statuses[1].why)


def test_version_2_rows_are_checked_with_their_own_hash() -> None:
    rows = _chain(3, version=2)
    assert [s.status for s in views.chain_statuses(rows, [2, 2, 2])] == ["ok"] * 3
    # read as version 1, their hashes do not match: the version is what makes them ok
    assert views.chain_statuses(rows)[0].status == "broken"
    fields, prev, digest = rows[2]
    rows[2] = (replace(fields, recorded_at=NOW + timedelta(seconds=1)), prev, digest)
    assert [s.status for s in views.chain_statuses(rows, [2, 2, 2])] == ["ok", "ok", "broken"]


def test_a_missing_row_is_a_sequence_gap() -> None:
    rows = _chain(3)
    del rows[1]
    statuses = views.chain_statuses(rows)
    assert statuses[1].status == "broken" and "sequence gap" in statuses[1].why


# --- the packet's Markdown -----------------------------------------------------------------------
HOSTILE = ("<script>window.__pwned = 1</script> <img src=x onerror=\"window.__pwned = 2\">"
           " [refund](javascript:alert(1)) ![pixel](https://tracker.example/p.png)"
           " <https://evil.example/> | pipe")


def _packet(text: str, name: str) -> ce.WarmTransferPacket:
    return ce.WarmTransferPacket(
        case_id="case-x", customer=CustomerIdentity(name=name), problem=text,
        contacts=[ce.PacketContact(contact_id="c1", channel="chat", at=NOW, text=text)],
        reason="sla.breached:first_response", level=1, suggested_next_step="Reply now.")


def test_customer_markup_in_the_packet_is_shown_as_text() -> None:
    html = str(render(render_markdown(_packet(HOSTILE, "<b onmouseover=alert(1)>Eve</b>"))))
    assert "<script" not in html and "<img" not in html and "<a " not in html
    assert "<b " not in html and "onerror=\"" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert "[refund](javascript:alert(1))" in html  # what they typed, not a link
    assert "<table>" in html and "<h2>" in html  # the packet's own Markdown still renders


# --- live ----------------------------------------------------------------------------------------
def test_event_types_wake_the_pages_they_change() -> None:
    assert areas_of("sla.breached") == {"sla"}
    assert areas_of("escalation.acknowledged") == {"escalations"}
    assert areas_of("case.escalated") == {"escalations"}
    assert areas_of("assignment.accepted") == {"queues", "agents", "sla"}
    assert areas_of("case.queued") == {"queues"}
    assert areas_of("contact.text_added") == set()


async def test_a_stream_wakes_on_its_area_or_its_case_only() -> None:
    hub = Hub()
    seen = hub.snapshot(("sla",))
    hub.bump({"queues"}, "case-1", "case.queued")
    assert not await hub.wait(("sla",), seen, within=0.01)
    hub.bump({"sla"}, "case-1", "sla.breached")
    assert await hub.wait(("sla",), seen, within=0.01)
    with hub.watching_case("case-2") as key:
        before = hub.snapshot((key,))
        hub.bump({"sla"}, "case-1", "sla.met")
        assert hub.snapshot((key,)) == before
        hub.bump(set(), "case-2", "contact.received")
        assert await hub.wait((key,), before, within=0.01)
    assert "case:case-2" not in hub.versions  # nothing kept for cases nobody watches
    assert [s.type for s in hub.recent][:2] == ["contact.received", "sla.met"]


def test_durations_read_like_a_supervisor_says_them() -> None:
    assert [views.duration(s) for s in (0, 59, 61, 3600 + 120, 86400 * 2 + 3600 * 5, -75,
                                        -0.4)] == \
        ["0s", "59s", "1m 01s", "1h 02m", "2d 5h", "-1m 15s", "0s"]
