"""`switchboard intake …`: what intake makes of raw emails, and the mail it set aside.

- `switchboard intake parse FILE_OR_DIR... [--json]` runs intake's own parsing, automated-mail
  detection and redaction on raw RFC 5322 files, without Kafka or PostgreSQL: "why was this mail
  treated so?".
- `switchboard intake suppressed list` and `switchboard intake suppressed release ID`: automated
  mail that opened no case, with its reason; releasing one re-submits it to intake as a person's
  email.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from shared.contracts.topics import INBOUND_EMAIL
from shared.settings import get_settings

_CAUSE = "switchboard-intake-parse"


@click.group("intake")
def intake_group() -> None:
    """Intake: parse raw emails offline; list and release suppressed mail."""


# --- parse -----------------------------------------------------------------------------------
def _files(paths: tuple[Path, ...]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def parse_file(path: Path, config: Any, max_event_bytes: int, mailbox: str) -> dict[str, Any]:
    """What intake makes of one raw email, as the JSON object `intake parse --json` prints."""
    from services.intake import core, suppression
    from services.router.classify import detect_language, identify_language
    from services.router.policy import load_policy
    from shared.contracts.case_events import ContactActivityRecorded, ContactReceived
    from shared.contracts.inbound import EmailReceived

    now = datetime.now(UTC)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return {"file": str(path), "rejected": f"cannot read: {exc.strerror or exc}"}
    event = EmailReceived(mailbox=mailbox, raw_mime=base64.b64encode(raw), received_at=now)
    size = len(event.model_dump_json().encode())
    if size > max_event_bytes:  # the runtime refuses the event before intake sees it
        return {"file": str(path),
                "rejected": f"event of {size} bytes exceeds the limit of {max_event_bytes} bytes"}
    try:
        contact = core.understand("email.received", event, now, config)
    except core.Unprocessable as exc:
        return {"file": str(path), "rejected": str(exc)}
    assert contact is not None
    cause = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{_CAUSE}:{path}"))
    decision, _case = core.decide(contact, core.Thread(), cause, now, config)
    stored: str | None = None
    stored_full: str | None = None
    where = "suppressed"
    for e in decision.events:
        if isinstance(e.data, ContactReceived):
            stored, stored_full, where = e.data.text, e.data.full_text, "contact.received"
        elif isinstance(e.data, ContactActivityRecorded):
            where = "contact.activity_recorded"
    if contact.automated and stored is None:
        stored = suppression.record(contact, cause, config).text
    language, confidence, _evidence = detect_language(contact.text or "", None, load_policy())
    return {
        "file": str(path), "from": contact.customer.email, "subject": contact.subject,
        "visible_text": contact.text, "automated": contact.automated,
        "automated_reason": contact.details.get("automated_reason"),
        "language": language, "language_confidence": confidence,
        "language_detected": identify_language(contact.text)[0] if contact.text else None,
        "stored_as": where, "stored_text": stored, "stored_full_text": stored_full,
        "attachments": [a.filename or a.content_type for a in contact.attachments],
        "defects": contact.details.get("defects", "").split(",") if contact.details.get(
            "defects") else [],
    }


@intake_group.command("parse")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per file and line")
@click.option("--mailbox", default="support@localhost", show_default=True,
              help="the mailbox the email was received by")
def parse_command(paths: tuple[Path, ...], as_json: bool, mailbox: str) -> None:
    """What intake makes of raw emails (FILE or DIR …), without Kafka or PostgreSQL."""
    from services.intake.app import IntakeHandler

    settings = get_settings()
    config = IntakeHandler(settings).config  # the limits and redaction intake runs with
    for path in _files(paths):
        try:
            result = parse_file(path, config, settings.max_inbound_event_bytes, mailbox)
        except Exception as exc:  # a bug, not the email's fault: still one line per file
            result = {"file": str(path), "rejected": f"internal error: {type(exc).__name__}: "
                                                     f"{exc}"}
        if as_json:
            click.echo(json.dumps(result, ensure_ascii=False))
        else:
            click.echo(_render(result))


def _render(r: dict[str, Any]) -> str:
    if "rejected" in r:
        return f"{r['file']}: rejected: {r['rejected']}\n"
    lines = [f"{r['file']}",
             f"  from       {r['from']}", f"  subject    {r['subject']}",
             f"  automated  {'yes: ' + str(r['automated_reason']) if r['automated'] else 'no'}",
             f"  language   {r['language']} ({r['language_confidence']:.2f})",
             f"  stored as  {r['stored_as']}"]
    text = (r["stored_text"] or "").strip()
    lines.append("  text       " + ("\n             ".join(text.splitlines()[:20]) or "(none)"))
    if len(text.splitlines()) > 20:
        lines.append(f"             … {len(text.splitlines()) - 20} more lines")
    return "\n".join(lines) + "\n"


# --- suppressed ------------------------------------------------------------------------------
@intake_group.group("suppressed")
def suppressed_group() -> None:
    """Automated mail that opened no case: list it, release it."""


@suppressed_group.command("list")
@click.option("--all", "include_released", is_flag=True, help="released ones too")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per record")
def list_command(include_released: bool, limit: int, as_json: bool) -> None:
    """The suppressed messages, newest first, and counts by reason."""
    from services.intake import suppression

    async def run() -> tuple[list[suppression.Suppressed], dict[str, int]]:
        import asyncpg

        conn = await asyncpg.connect(get_settings().database_url)
        try:
            return (await suppression.listing(conn, include_released, None, limit),
                    await suppression.counts(conn))
        finally:
            await conn.close()

    records, counts = asyncio.run(run())
    if as_json:
        for s in records:
            click.echo(json.dumps({
                "suppression_id": s.suppression_id, "reason": s.reason, "sender": s.sender,
                "subject": s.subject, "received_at": s.received_at.isoformat(),
                "released_at": s.released_at.isoformat() if s.released_at else None,
                "text": s.text[:2000]}, ensure_ascii=False))
        return
    total = sum(v for k, v in counts.items() if k != "released")
    click.echo(f"{total} suppressed, {counts.get('released', 0)} released; by reason: "
               + (", ".join(f"{k} {v}" for k, v in counts.items() if k != "released") or "-"))
    for s in records:
        state = f" (released {s.released_at:%Y-%m-%d %H:%M} by {s.released_by})" \
            if s.released_at else ""
        click.echo(f"{s.suppression_id}  {s.received_at:%Y-%m-%d %H:%M}  {s.sender or '-'}"
                   f"  {(s.subject or '')[:60]!r}\n    reason: {s.reason}{state}")


@suppressed_group.command("release")
@click.argument("suppression_id")
def release_command(suppression_id: str) -> None:
    """Treat a suppressed message as a person's: intake opens a case for it."""
    from aiokafka import AIOKafkaProducer

    from services.intake import suppression
    from shared.contracts.envelope import Envelope
    from shared.contracts.inbound import EmailReceived
    settings = get_settings()

    async def run() -> suppression.Suppressed | None:
        import asyncpg

        conn = await asyncpg.connect(settings.database_url)
        try:
            found = await suppression.get(conn, suppression_id)
            if found is None:
                return None
            found = await suppression.mark_released(conn, found, getpass.getuser(),
                                                    datetime.now(UTC))
        finally:
            await conn.close()
        raw = suppression.release_email(found)
        envelope = Envelope(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"release:{suppression_id}")),
                            source="switchboard-cli", type="email.received",
                            time=datetime.now(UTC))
        body = EmailReceived(mailbox=found.mailbox or "support@localhost",
                             raw_mime=base64.b64encode(raw), received_at=found.received_at)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                    enable_idempotence=True, client_id="switchboard-cli")
        await producer.start()
        try:
            await producer.send_and_wait(
                INBOUND_EMAIL, body.model_dump_json().encode(),
                key=(found.message_key or suppression_id).encode(),
                headers=[(k, v.encode()) for k, v in envelope.to_headers().items()])
        finally:
            await producer.stop()
        return found

    released = asyncio.run(run())
    if released is None:
        click.echo(f"no suppressed message {suppression_id}", err=True)
        sys.exit(1)
    click.echo(f"released {suppression_id} ({released.sender}, {released.subject!r}): "
               f"re-submitted to {INBOUND_EMAIL} as {released.message_key}")
