"""The committed contract documents are what the code generates, and they are complete."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main
from shared.channels import registry
from shared.contracts import export
from shared.contracts.dead_letter import DEAD_LETTER_HEADER_NAMES, DeadLetterHeaders
from shared.contracts.envelope import Envelope
from shared.contracts.inbound import ChatMessage
from shared.contracts.topics import all_topics

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DOCS / export.ASYNCAPI_FILE).read_text("utf-8"))
    return document


def test_committed_documents_are_up_to_date() -> None:
    result = export.plan(DOCS)
    assert not result.stale, (
        f"docs/ is stale (added {result.added}, changed {result.changed}, removed "
        f"{result.removed}): run `make schemas` and commit the result")


def test_asyncapi_names_every_topic(asyncapi: dict[str, Any]) -> None:
    addresses = {c["address"] for c in asyncapi["channels"].values()}
    assert addresses == {spec.name for spec in all_topics()}
    for channel in asyncapi["channels"].values():
        assert channel["messages"], f"{channel['address']} has no messages"


def test_every_reference_resolves(asyncapi: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "$ref"] + \
                [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(asyncapi):
        node: Any = asyncapi
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]


def test_channels_carry_the_right_types_and_sides(asyncapi: dict[str, Any]) -> None:
    by_address = {c["address"]: c for c in asyncapi["channels"].values()}
    assert set(by_address["routing.offers"]["messages"]) == {"assignment.offered"}
    assert set(by_address["supervisor.notifications"]["messages"]) == {
        "supervisor.notification", "supervisor.digest"}
    assert set(by_address["helpdesk.inbound.chat"]["messages"]) == \
        set(registry.inbound_topics()["helpdesk.inbound.chat"])
    assert by_address["helpdesk.agents"]["bindings"]["kafka"]["topicConfiguration"] == \
        {"cleanup.policy": ["compact"]}
    actions = {asyncapi["channels"][op["channel"]["$ref"].split("/")[-1]]["address"]:
               op["action"] for op in asyncapi["operations"].values()}
    assert actions["helpdesk.inbound.email"] == actions["helpdesk.agents"] == "receive"
    assert actions["cases.events"] == actions["routing.offers"] == "send"
    assert actions["supervisor.notifications"] == actions["helpdesk.inbound.chat.dlq"] == "send"


def test_the_headers_are_the_ones_the_envelope_writes(asyncapi: dict[str, Any]) -> None:
    schemas = asyncapi["components"]["schemas"]
    written = Envelope.model_validate(
        {"id": "e", "source": "s", "type": "t", "time": "2025-01-01T00:00:00Z", "subject": "c"}
    ).to_headers()
    assert set(written) <= set(schemas["CloudEventsHeaders"]["properties"])
    assert set(schemas["CloudEventsHeaders"]["required"]) == \
        {"ce_id", "ce_source", "ce_type", "ce_time"}
    assert set(schemas["DeadLetterHeaders"]["properties"]) == set(DEAD_LETTER_HEADER_NAMES)


def test_dead_letter_headers_tolerate_client_headers() -> None:
    # The runtime builds its headers from this model; the integration test validates real ones.
    DeadLetterHeaders.model_validate({
        "dlq_reason": "r", "dlq_service": "intake", "dlq_source_topic": "t",
        "dlq_source_partition": "0", "dlq_source_offset": "12",
        "dlq_failed_at": "2025-01-01T00:00:00+00:00", "dlq_original_headers": "[]",
        "correlation_id": "added by the client",
    })


def test_one_schema_file_per_event_type() -> None:
    for doc in export.catalogue():
        for ce_type, model in doc.types.items():
            schema = json.loads((DOCS / export.schema_path(doc.topic, ce_type)).read_text())
            assert schema["x-cloudevents-type"] == ce_type
            assert schema["properties"].keys() == model.model_fields.keys()
            assert f"`{ce_type}`" in schema["description"]
            assert "schema version" in schema["description"]


def test_the_cli_exports_and_checks(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["contracts", "check", str(tmp_path)]).exit_code == 1
    exported = runner.invoke(main, ["contracts", "export", str(tmp_path)])
    assert exported.exit_code == 0 and "added  asyncapi.json" in exported.output
    assert runner.invoke(main, ["contracts", "check", str(tmp_path)]).exit_code == 0
    chat = tmp_path / export.schema_path("helpdesk.inbound.chat", "chat.message")
    chat.write_text("{}\n")
    stale = tmp_path / "schemas" / "old.topic" / "gone.json"
    stale.parent.mkdir()
    stale.write_text("{}\n")
    checked = runner.invoke(main, ["contracts", "check", str(tmp_path)])
    assert checked.exit_code == 1
    assert "changed  schemas/helpdesk.inbound.chat/chat.message.json" in checked.output
    assert "removed  schemas/old.topic/gone.json" in checked.output
    again = runner.invoke(main, ["contracts", "export", str(tmp_path)])
    assert "2 file(s) changed" in again.output and not stale.parent.exists()
    assert runner.invoke(main, ["contracts", "check", str(tmp_path)]).exit_code == 0


def test_the_example_in_contracts_md_is_accepted() -> None:
    """The chat.message example of docs/contracts.md decodes and validates."""
    text = (DOCS / "contracts.md").read_text("utf-8")
    example = text[text.index("<!-- example:chat.message -->"):]
    headers_block, body_block = re.findall(r"```json\n(.*?)```", example, re.S)[:2]
    headers = json.loads(headers_block)
    envelope, body = Envelope.from_kafka(
        {k: v.encode() for k, v in headers.items()}, json.dumps(json.loads(body_block)).encode())
    assert envelope.type == "chat.message"
    assert ChatMessage.model_validate_json(body).session_id in text
