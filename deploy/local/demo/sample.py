"""The demo's sample data: real emails and customer utterances copied into `data/` (CREDITS.md).

Emails are kept byte for byte; when the feed replays one it only rewrites the threading headers,
so that every run (and every lap of an endless run) threads into its own cases instead of into the
cases of an earlier run that the database still remembers.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
SUPPORT_ADDRESS = "Support <support@shop.example>"


@dataclass(frozen=True)
class Mail:
    """One message of the sample mailbox, as stored (body-only fixtures wrapped in headers)."""

    key: str  # path under data/emails, also how follow-ups name their original
    raw: bytes
    reply_to: str | None = None
    automated: bool = False


@dataclass(frozen=True)
class Utterance:
    text: str
    intent: str
    source: str  # "bitext" or "banking77"


def load_mailbox() -> list[Mail]:
    manifest = json.loads((DATA_DIR / "emails.json").read_text("utf-8"))
    mails = []
    for entry in manifest["messages"]:
        key = entry["file"]
        data = (DATA_DIR / "emails" / key).read_bytes()
        if key.endswith(".txt"):
            # Reply-parser fixtures are bodies only; follow-ups get their headers at replay time.
            data = wrap_body(data.decode("utf-8"), entry.get("from"), entry.get("subject"))
        mails.append(Mail(key, data, entry.get("reply_to"), bool(entry.get("automated"))))
    known = {m.key for m in mails}
    missing = [m.reply_to for m in mails if m.reply_to and m.reply_to not in known]
    if missing:
        raise ValueError(f"emails.json: follow-ups of unknown messages {missing}")
    return mails


def load_utterances() -> list[Utterance]:
    found = []
    with open(DATA_DIR / "intents/bitext/utterances.csv", encoding="utf-8", newline="") as f:
        found += [Utterance(r["utterance"], r["intent"], "bitext") for r in csv.DictReader(f)]
    with open(DATA_DIR / "intents/banking77/utterances.csv", encoding="utf-8", newline="") as f:
        found += [Utterance(r["text"], r["category"], "banking77") for r in csv.DictReader(f)]
    return found


def wrap_body(body: str, sender: str | None, subject: str | None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender or "Customer <customer@example.com>"
    msg["To"] = SUPPORT_ADDRESS
    msg["Subject"] = subject or "(no subject)"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg.set_content(body)
    return msg.as_bytes()


# --- header rewriting ------------------------------------------------------------------------
_THREADING = ("message-id", "in-reply-to", "references")


def split_headers(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header lines without their line ends, the line end used, the body after the blank line)."""
    ends = [(raw.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n") if raw.find(sep) >= 0]
    if not ends:
        return raw.splitlines(), b"\n", b""
    index, sep = min(ends)
    eol = sep[: len(sep) // 2]
    return raw[:index].split(eol), eol, raw[index + len(sep):]


def header_value(raw: bytes, name: str) -> bytes | None:
    """The raw (possibly encoded, unfolded) value of the first header called `name`."""
    lines, _, _ = split_headers(raw)
    for field in _fields(lines):
        head, _, value = field.partition(b":")
        if head.strip().lower() == name.lower().encode():
            return re.sub(rb"\r?\n[ \t]+", b" ", value).strip()
    return None


def rewrite(raw: bytes, set_headers: dict[str, bytes], drop: tuple[str, ...] = ()) -> bytes:
    """Replace the threading headers (and `drop`) with `set_headers`; the body is untouched."""
    lines, eol, body = split_headers(raw)
    unwanted = {*_THREADING, *(d.lower() for d in drop), *(k.lower() for k in set_headers)}
    kept = [f for f in _fields(lines, eol)
            if f.partition(b":")[0].strip().lower().decode("ascii", "replace") not in unwanted]
    fresh = [k.encode() + b": " + v for k, v in set_headers.items()]
    # An mbox "From " envelope line must stay first, or the parser flags it as a defect.
    envelope = [kept.pop(0)] if kept and kept[0].startswith(b"From ") else []
    return eol.join(envelope + fresh + kept) + eol + eol + body


def _fields(lines: list[bytes], eol: bytes = b"\n") -> list[bytes]:
    """Header lines joined with their continuation lines (kept folded, as sent)."""
    fields: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += eol + line
        else:
            fields.append(line)
    return fields
