"""Dead letters without card data at rest: a redacted copy to read, the original only sealed.

A record is dead-lettered because it could not be understood, so nothing upstream has redacted
it: it is the customer's text as the front-end sent it. What is kept in the `dead_letter` table
and published on `<topic>.dlq` is therefore a *redacted copy* (`redacted_copy`): the record's
key, header values and body decoded to text (JSON strings one by one, with `raw_mime` and
`data_base64` decoded from base64, and base64 or quoted-printable parts of a MIME message decoded
in turn), made storable and passed through `shared.redaction`. It is for reading; it is not the
record and is never redriven.

The original key, headers and bytes are kept only *sealed* (`seal_original`): AES-256-GCM under
`SWITCHBOARD_KEY_DLQ` (shared/keys.py), bound to the dead letter's service and source position.
`switchboard dlq show --decrypt` and `switchboard dlq redrive` open them for an operator who holds
the key. Without a key the original is not kept at all.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import quopri
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.keys import Sealer, sealer_from
from shared.redaction import redact

if TYPE_CHECKING:
    from shared.settings import Settings

log = logging.getLogger(__name__)

# The redacted copy shows at most this much of a record; the sealed original keeps it whole.
MAX_VIEW_BYTES = 1_000_000
_BASE64_FIELDS = frozenset({"raw_mime", "data_base64"})
_B64_LINE_MIN = 16
_MAX_DEPTH = 3


@dataclass(frozen=True)
class RedactedCopy:
    key: bytes
    headers: list[list[str]]  # [[name, base64 of the redacted value]], in order
    value: bytes


def redacted_copy(key: bytes | None, headers: Iterable[tuple[str, bytes | None]],
                  value: bytes | None) -> RedactedCopy:
    """What may be kept and published of a dead letter. Never raises: a copy that cannot be
    made is replaced by a note saying so (the original is then only in the sealed blob)."""
    try:
        return RedactedCopy(
            key=_text(key or b"").encode(),
            headers=[[_text(name.encode("utf-8", "replace")),
                      base64.b64encode(_text(v or b"").encode()).decode()]
                     for name, v in headers],
            value=redacted_value(value or b""))
    except Exception as exc:  # pragma: no cover - a bug must not keep the original in clear
        log.error("dead letter: redacted copy failed: %s", type(exc).__name__)
        note = f"[redacted copy unavailable: {type(exc).__name__}]".encode()
        return RedactedCopy(key=b"", headers=[], value=note)


def redacted_value(value: bytes) -> bytes:
    """The body as redacted text: JSON kept as JSON (every string redacted, base64 fields
    decoded), anything else as text with its MIME parts decoded."""
    cut = len(value) > MAX_VIEW_BYTES
    text = value[:MAX_VIEW_BYTES].decode("utf-8", "replace")
    tail = f"\n[… {len(value) - MAX_VIEW_BYTES} more bytes not shown]" if cut else ""
    try:
        tree = json.loads(text)
    except (ValueError, RecursionError):
        return (_text_view(text, 0) + tail).encode()
    body = json.dumps(_tree(tree, None, 0), ensure_ascii=False, separators=(",", ":"))
    return (body + tail).encode()


def _tree(value: Any, key: str | None, depth: int) -> Any:
    if isinstance(value, str):
        if key in _BASE64_FIELDS:
            decoded = _b64(value)
            if decoded is not None:
                return _text_view(decoded.decode("utf-8", "replace"), depth + 1)
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _tree(v, str(k), depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_tree(v, None, depth) for v in value]
    return value


def _text_view(text: str, depth: int) -> str:
    """MIME text with base64 blocks and quoted-printable decoded, then redacted."""
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if not block:
            return
        decoded = _b64("".join(block))
        text = _as_text(decoded) if decoded is not None and depth < _MAX_DEPTH else None
        if text is None:  # binary (an attachment) or nested too deep: not shown
            out.append(f"[base64, {sum(len(b) for b in block)} characters not shown]")
        else:
            out.append(_text_view(text, depth + 1))
        block.clear()

    for line in text.split("\n"):
        bare = line.strip()
        if len(bare) >= _B64_LINE_MIN and _is_b64(bare):
            block.append(bare)
            continue
        flush()
        out.append(line)
    flush()
    joined = "\n".join(out)
    if "=" in joined:
        joined = quopri.decodestring(joined.encode("utf-8", "surrogatepass")).decode(
            "utf-8", "replace")
    return _clean(joined)


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _is_b64(line: str) -> bool:
    return line.isascii() and all(c in _B64_ALPHABET for c in line.encode())


def _as_text(data: bytes) -> str | None:
    """`data` as text when it is text (UTF-8, or mostly printable in Windows-1252)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", "replace")
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return text if printable >= 0.9 * len(text) else None


def _b64(text: str) -> bytes | None:
    try:
        return binascii.a2b_base64(text.encode("ascii", "ignore"))
    except (binascii.Error, ValueError):
        return None


def _text(data: bytes) -> str:
    return _clean(data.decode("utf-8", "replace"))


def _clean(text: str) -> str:
    """Storable and redacted: U+0000 removed first (so "4\\x001\\x00…" is seen as digits),
    lone surrogates replaced."""
    text = text.replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return redact(text)


# --- the sealed original -----------------------------------------------------------------------
def original_blob(key: bytes | None, headers: Iterable[tuple[str, bytes | None]],
                  value: bytes | None) -> bytes:
    return json.dumps({
        "key": base64.b64encode(key).decode() if key is not None else None,
        "headers": [[k, base64.b64encode(v or b"").decode()] for k, v in headers],
        "value": base64.b64encode(value or b"").decode(),
    }, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Original:
    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes


def parse_original(blob: bytes) -> Original:
    data = json.loads(blob)
    return Original(
        key=base64.b64decode(data["key"]) if data["key"] is not None else None,
        headers=[(k, base64.b64decode(v)) for k, v in data["headers"]],
        value=base64.b64decode(data["value"]))


def binding(service: str, topic: str, partition: int, offset: int) -> bytes:
    """What a sealed original is bound to: it opens only on its own dead-letter row."""
    return f"switchboard/dead-letter\x00{service}\x00{topic}\x00{partition}\x00{offset}".encode()


_SEALERS: dict[int, tuple[object, Sealer | None]] = {}


def sealer_for(settings: Settings) -> Sealer | None:
    """The settings' sealer (cached per settings object); None, said once, without a key."""
    cached = _SEALERS.get(id(settings))
    if cached is not None and cached[0] is settings:
        return cached[1]
    sealer = sealer_from(settings)
    if sealer is None:
        log.warning("SWITCHBOARD_KEY_DLQ is not set: dead letters keep only their redacted "
                    "copy, and cannot be redriven")
    _SEALERS[id(settings)] = (settings, sealer)
    return sealer
