"""The channel registry: the channels in `entries.py`, plus any a caller registers.

Contracts validate channel names against it, so it imports no contract at module level: the
entries (which do) are read on first use, when every contract module is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

if TYPE_CHECKING:
    from shared.channels.contact import IncomingContact, Tools
    from shared.contracts.base import Contract

# An extractor: one inbound event of the channel (its contract), the instant intake received
# it, and intake's tools → the contact it stands for. Pure: no I/O, no clock.
Extractor = Callable[[Any, datetime, "Tools"], "IncomingContact"]


@dataclass(frozen=True)
class Threading:
    """How the channel's contacts find their case; intake's core applies it.

    Every channel's contacts first look up their own thread keys (`IncomingContact.lookup_keys`:
    a session, a call, message ids) and a case token in the subject.
    """

    # Thread keys anyone can write (email headers, a subject): the contact joins a case it names
    # only when its sender is one of the case's participants (`may_join`).
    sender_must_be_participant: bool = False
    # Same customer and same normalised subject within INTAKE_THREAD_WINDOW_HOURS: same case.
    subject_window: bool = False
    # A new conversation of a signed-in customer joins their open case, when
    # INTAKE_CHAT_JOINS_OPEN_CASE allows it.
    joins_open_case: bool = False


@dataclass(frozen=True)
class TopicText:
    """What the AsyncAPI export says about the channel's inbound topic."""

    key: str  # what the record key holds
    senders: str
    description: str


@dataclass(frozen=True)
class ChannelSpec:
    """Everything that is one channel's own; a channel module's `CHANNEL`."""

    name: str
    topic: str
    # CloudEvents type → contract, every type front-ends may publish on the topic (including
    # platform payloads that intake's adapters map to the channel's own events first).
    contracts: Mapping[str, type[Contract]]
    extract: Extractor
    threading: Threading
    # Contacts an agent takes at once on the channel when their profile does not say.
    default_capacity: int
    # Capacity units a contact of the channel takes when the routing policy does not say.
    default_weight: int
    # First-response target (seconds) of the SLA skeleton policy.
    first_response_seconds: float
    topic_text: TopicText
    # The customer is waiting on the line: the router starts the case at high priority.
    live: bool = False
    # Largest batch intake consumes from the topic (emails may each take the parse deadline).
    max_batch: int = 200


class UnknownChannel(LookupError):
    pass


_registered: dict[str, ChannelSpec] = {}
_entries_read = False


def _all() -> dict[str, ChannelSpec]:
    global _entries_read
    if not _entries_read:
        _entries_read = True
        from shared.channels.entries import CHANNELS  # the entries import the contracts

        for spec in CHANNELS:
            _registered.setdefault(spec.name, spec)
    return _registered


def register(spec: ChannelSpec) -> ChannelSpec:
    """Add a channel; its name, topic and event types must be new."""
    known = _all()
    if spec.name in known:
        raise ValueError(f"channel {spec.name!r} is already registered")
    for other in known.values():
        if other.topic == spec.topic:
            raise ValueError(f"topic {spec.topic!r} already belongs to channel {other.name!r}")
        clash = set(other.contracts) & set(spec.contracts)
        if clash:
            raise ValueError(f"event types {sorted(clash)} already belong to {other.name!r}")
    known[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a channel (tests that register one of their own)."""
    _all().pop(name, None)


def channels() -> tuple[ChannelSpec, ...]:
    """Every channel, in registration order."""
    return tuple(_all().values())


def names() -> tuple[str, ...]:
    return tuple(_all())


def get(name: str) -> ChannelSpec:
    try:
        return _all()[name]
    except KeyError:
        raise UnknownChannel(f"unknown channel {name!r}") from None


def of_event_type(event_type: str) -> ChannelSpec:
    """The channel whose topic carries this CloudEvents type."""
    for spec in _all().values():
        if event_type in spec.contracts:
            return spec
    raise UnknownChannel(f"no channel carries event type {event_type!r}")


def inbound_topics() -> dict[str, Mapping[str, type[Contract]]]:
    """Inbound topic → its CloudEvents types and contracts."""
    return {spec.topic: spec.contracts for spec in _all().values()}


# --- the channel name in contracts ---------------------------------------------------------
def _known(name: str) -> str:
    if name not in _all():
        raise ValueError(f"unknown channel {name!r}; known: {', '.join(_all())}")
    return name


class _ChannelSchema:
    """A channel name's JSON Schema: an enum of the registered names, read when the schema is
    generated (as the Literal it replaced wrote it)."""

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"enum": list(names()), "type": "string"}


# A channel's name on the wire: any registered channel ("email", "chat", "voice", …).
ChannelName = Annotated[str, AfterValidator(_known), _ChannelSchema()]
