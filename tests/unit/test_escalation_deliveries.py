"""The delivery worker's per-delivery logic, without a database: whatever goes wrong with one
delivery is its own outcome, and failures end parked after a bounded number of attempts.

The claim/record loop against PostgreSQL is in tests/integration/test_escalation_delivery_db.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.escalation import app, policy, sinks
from shared.clock import FrozenClock
from shared.settings import Settings
from tests.unit.test_escalation_sinks import note

NOW = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
POL = policy.load_text(json.dumps({
    "version": "t",
    "targets": {"leads": {"kind": "supervisor_group", "sinks": ["hook", "mail"]}},
    "sinks": {"hook": {"type": "webhook", "url": "https://hooks.example.com/x",
                       "secret_env": "HOOK_SECRET", "max_attempts": 4},
              "mail": {"type": "email", "to": ["leads@example.com"],
                       "sender": "sb@example.com"}},
    "rules": [{"name": "b", "trigger": "sla.breached",
               "levels": [{"targets": ["leads"], "ack_timeout": "10m"}]}]}),
    environ={"HOOK_SECRET": "s"})


class Runtime:
    """What Deliveries.send needs of the runtime."""

    tracer_provider = None
    settings = Settings()
    clock = FrozenClock(NOW)


def claim(sink: str, body: str | None = None) -> app.Claim:
    return app.Claim("ntf-123", sink, "case-pkt", body or sinks.body_of(note()).decode(), 1,
                     None)


@pytest.fixture
def worker() -> app.Deliveries:
    return app.Deliveries(Runtime(), POL)  # type: ignore[arg-type]


async def test_a_sink_that_raises_fails_only_its_delivery_retryably(
    worker: app.Deliveries, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: Any, **kw: Any) -> sinks.Sent:
        raise RuntimeError("boom")

    monkeypatch.setattr(sinks, "send_webhook", broken)
    sent = await worker.send(claim("hook"))
    assert (sent.ok, sent.retry, sent.error) == (False, True, "unexpected RuntimeError('boom')")


async def test_an_unreadable_body_or_a_sink_gone_from_the_policy_is_not_retried(
    worker: app.Deliveries,
) -> None:
    garbled = await worker.send(claim("hook", body='{"notification_id": 5}'))
    assert not garbled.ok and not garbled.retry
    assert (garbled.error or "").startswith("stored body unreadable")
    gone = await worker.send(claim("old-hook"))
    assert (gone.ok, gone.retry, gone.error) == (False, False,
                                                 "sink 'old-hook' is not in the policy")


async def test_the_webhook_secret_comes_from_the_policy_loaded_with_it(
    worker: app.Deliveries, monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bytes] = []

    async def capture(sink: Any, secret: bytes, *args: Any, **kw: Any) -> sinks.Sent:
        seen.append(secret)
        return sinks.Sent(True)

    monkeypatch.setattr(sinks, "send_webhook", capture)
    monkeypatch.delenv("HOOK_SECRET", raising=False)  # read at load: not needed any more
    assert (await worker.send(claim("hook"))).ok and seen == [b"s"]


def test_a_failing_delivery_backs_off_then_is_parked_after_its_attempts() -> None:
    failing = sinks.Sent(False, True, "HTTP 503")
    steps = [sinks.disposition(failing, n, 4, 1.0, 600.0) for n in (1, 2, 3, 4)]
    assert [(d.park, d.delay) for d in steps[:3]] == [(False, 1.0), (False, 2.0), (False, 4.0)]
    assert steps[3].park and steps[3].reason == "parked after 4 attempt(s): HTTP 503"
    told = sinks.disposition(sinks.Sent(False, True, "HTTP 429", 90.0), 1, 4, 1.0, 600.0)
    assert (told.park, told.delay) == (False, 90.0)  # Retry-After honoured
    hopeless = sinks.disposition(sinks.Sent(False, False, "HTTP 404"), 1, 4, 1.0, 600.0)
    assert hopeless.park and hopeless.reason == "parked, not retryable: HTTP 404"
