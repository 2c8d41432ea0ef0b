"""Event contracts: the CloudEvents envelope, inbound events from front-ends, case events.

Every model is a frozen pydantic model that forbids unknown fields: a front-end that sends a
field we do not know gets a dead letter that names it instead of having it silently dropped.
"""

from shared.contracts.base import SCHEMA_VERSION, Contract, derive_event_id
from shared.contracts.envelope import Envelope, EnvelopeError

__all__ = ["SCHEMA_VERSION", "Contract", "Envelope", "EnvelopeError", "derive_event_id"]
