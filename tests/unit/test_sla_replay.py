"""`switchboard sla replay`'s engine: a case's log recomputed under its own or another policy."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from services.sla import policy
from services.sla.replay import differences, replay
from tests.unit.test_sla_core import POLICY, Case


def logged_case() -> tuple[Case, list[tuple[str, dict[str, Any], Any, str]]]:
    """A case as the service would have logged it: inputs and SLA events in order."""
    case, rows = Case(), []

    for fn, kwargs in ((case.contact, {}), (case.reply, {"hours": 5}),
                       (case.contact, {"minutes": 30})):
        before = len(case.sim.events)
        fn(**kwargs)  # type: ignore[arg-type]
        # the input event itself, as intake or the router logged it
        n = case.n
        type_ = "contact.received" if fn == case.contact else "reply.sent"
        rows.append((type_, _input(case, type_), case.clock.now(), f"evt-{n}"))
        rows.extend((e.type, e.data.model_dump(mode="json"), e.time, str(e.event_id))
                    for e in case.sim.events[before:])
    return case, rows


def _input(case: Case, type_: str) -> dict[str, Any]:
    at = case.clock.now().isoformat()
    if type_ == "reply.sent":
        return {"case_id": "case-1", "agent_id": "ada", "text": "hi", "at": at}
    return {"case_id": "case-1", "contact_id": f"c-{case.n - 1}", "channel": "email",
            "source_type": "x", "customer": {"email": "maya@example.com"}, "text": "help",
            "received_at": at}


def test_a_case_replayed_under_its_own_policy_shows_no_differences() -> None:
    case, rows = logged_case()
    logged, recomputed = replay(policy.load_text(json.dumps(POLICY)), rows, case.clock.now())
    assert logged and logged == recomputed
    assert differences(logged, recomputed) == []
    assert {line.type for line in logged} >= {"sla.started", "sla.breached"}


def test_a_candidate_policy_shows_what_would_have_changed() -> None:
    case, rows = logged_case()
    candidate = json.loads(json.dumps(POLICY))
    candidate["version"] = "test-2"
    candidate["rules"][2]["targets"]["first_response"]["target"] = "6h"
    logged, recomputed = replay(policy.load_text(json.dumps(candidate)), rows,
                                case.clock.now() + timedelta(days=1))
    diff = differences(logged, recomputed)
    # The reply at 14:00 came at the 4 h due instant (lunch 12-13): breached; under 6 h, met.
    assert any(d.startswith("- sla.breached") and "first_response" in d for d in diff)
    assert any(d.startswith("+ sla.met") and "first_response" in d for d in diff)


def test_replay_rejects_a_broken_candidate_policy_naming_its_line(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from cli import main
    broken = json.loads(json.dumps(POLICY))
    broken["calendars"]["berlin"]["time_zone"] = "Europe/Berlim"
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(broken, indent=2))
    result = CliRunner().invoke(main, ["sla", "replay", "case-1", "--policy", str(path)])
    assert result.exit_code == 2
    assert f"{path}:" in result.output and "calendars.berlin.time_zone" in result.output


def test_the_packaged_calendars_close_on_public_holidays_from_the_holidays_package() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from services.sla import business_time as bt
    berlin = policy.load().calendars["emea-support"]
    christmas = datetime(2026, 12, 25, 10, tzinfo=ZoneInfo("Europe/Berlin"))  # a Friday
    assert not bt.is_open(berlin, christmas)
    assert bt.is_open(berlin, christmas - timedelta(days=2))
    new_york = policy.load().calendars["us-support"]
    assert not bt.is_open(new_york, datetime(2026, 11, 26, 12, tzinfo=ZoneInfo("America/New_York")))
