"""Base model and deterministic event identities."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

# Bumped on a breaking change of any contract; carried in every envelope (`ce_schemaversion`).
SCHEMA_VERSION = "1"

# Namespace of every id Switchboard derives. Fixed forever: changing it would re-key every event.
SWITCHBOARD_NAMESPACE = uuid.UUID("5b0c7d1e-2f4a-5a8e-9c3d-6e7f8a9b0c1d")


class Contract(BaseModel):
    """A message on the wire: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def inbound_cause(source: str, event_id: str) -> str:
    """The cause of everything an inbound event leads to: its CloudEvents source *and* id.

    CloudEvents promises only that the pair is unique: two front-ends may both send id "42",
    and deriving from the id alone would make their contacts one case. The source's length
    keeps the pair unambiguous ("a/b" + "c" is not "a" + "b/c"). Ids derived before this
    (from the id alone) stay as they are in the log: see docs/intake.md, "Derived ids".
    """
    return f"ce:{len(source)}:{source}/{event_id}"


def derive_event_id(cause_id: str | uuid.UUID, step: str) -> uuid.UUID:
    """The id of the event that `step` produces from the event `cause_id`.

    A redelivered input yields the same downstream ids, so the case log's unique key absorbs the
    repeat instead of doubling it.
    """
    return uuid.uuid5(SWITCHBOARD_NAMESPACE, f"{cause_id}/{step}")
