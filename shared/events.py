"""What a service core decides: case events to log and publish, and other messages to publish.

Cores return these plain values; the runtime writes them to the case log and the outbox in one
transaction and publishes them afterwards.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from shared.contracts.base import Contract, derive_event_id


@dataclass(frozen=True)
class CaseEvent:
    """One event of a case: a row of the case log and a record on `cases.events`."""

    event_id: uuid.UUID
    case_id: str
    type: str
    time: datetime
    data: Contract

    @classmethod
    def derived(
        cls, cause_id: str | uuid.UUID, step: str, case_id: str, type_: str, time: datetime,
        data: Contract,
    ) -> CaseEvent:
        return cls(derive_event_id(cause_id, step), case_id, type_, time, data)


@dataclass(frozen=True)
class Outbound:
    """A message for a topic other than `cases.events`, published only if `caused_by` was new."""

    topic: str
    key: str
    type: str
    event_id: uuid.UUID
    subject: str | None
    time: datetime
    data: Contract
    caused_by: uuid.UUID


@dataclass(frozen=True)
class Decision:
    """The result of one handler: what to log and what to publish."""

    events: tuple[CaseEvent, ...] = ()
    outbound: tuple[Outbound, ...] = ()

    def __add__(self, other: Decision) -> Decision:
        return Decision(self.events + other.events, self.outbound + other.outbound)


NOTHING = Decision()
