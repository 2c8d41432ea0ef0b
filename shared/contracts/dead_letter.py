"""The headers of a dead letter on `<topic>.dlq`.

A dead letter's value and key are a redacted copy of the rejected record's (issue 11: the original
bytes are kept only sealed, in the `dead_letter` table; see shared/dead_letters.py); these
headers say why it was rejected and where it came from. Header values are UTF-8 strings. Tools
that read a dead-letter topic can validate the decoded headers with `DeadLetterHeaders`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DeadLetterHeaders(BaseModel):
    """Why a record was dead-lettered and where it came from (Kafka headers, strings)."""

    # Kafka clients may add headers of their own (FastStream adds `correlation_id`): ignore them.
    model_config = ConfigDict(frozen=True, extra="ignore")

    dlq_reason: str = Field(description="Why the record was rejected: the envelope or schema "
                                        "error, the size limit, or the processing failure.")
    dlq_service: str = Field(description="The Switchboard service that rejected it "
                                         "(intake, router, sla, escalation).")
    dlq_source_topic: str = Field(description="The topic the record was read from.")
    dlq_source_partition: str = Field(pattern=r"^\d+$",
                                      description="Its partition, as a decimal string.")
    dlq_source_offset: str = Field(pattern=r"^\d+$",
                                   description="Its offset, as a decimal string.")
    dlq_failed_at: str = Field(json_schema_extra={"format": "date-time"},
                               description="When it was rejected (ISO 8601 with offset).")
    dlq_original_headers: str = Field(
        description="The record's original headers, their values redacted, as a JSON array "
                    "of [name, base64 value] pairs, in their original order.")


DEAD_LETTER_HEADER_NAMES: tuple[str, ...] = tuple(DeadLetterHeaders.model_fields)
