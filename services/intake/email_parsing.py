"""RFC 5322 parsing with the standard library (pure: bytes in, a plain value out).

Real mail is broken in every way a parser can imagine (see the corpus test): wrong or unknown
charsets, bare message ids, missing boundaries, headers that fail RFC 2047 decoding. Parsing
therefore never raises for bad content; it records the defects and falls back to something a
person can read. It raises `EmailRejected` only for mail that exceeds the configured limits.

Bounded work (issue 10): the standard library's MIME parser is super-linear in the nesting of
parts and in the number of parts, and its header parsers in the length of a header, in encoded
words and in comments (recursion). Everything that could make them slow is capped *before* they
run: the raw bytes are scanned for the number of MIME containers and parts (`_prescan`), each
header is cut to a length and a number of encoded words as the parser reads it, and MIME headers
that are long, have many parameters or comments are rewritten to a plain form (`_BoundedPolicy`);
the tree's depth is checked without recursion before anything walks it; the sender is read by
`identity.first_mailbox` (one pass, no recursion) and message ids by a linear scan; body text and
HTML are cut before conversion and the reply splitter gets at most `max_reply_chars`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import Any

from services.intake.automated import automated_reason
from services.intake.html_text import html_texts
from services.intake.identity import first_mailbox
from services.intake.safe_text import one_line, split_reply_bounded, valid_unicode, without_controls
from shared.contracts.case_events import AttachmentMeta
from shared.contracts.inbound import MAX_TEXT


class EmailRejected(ValueError):
    """The email can never be processed (it exceeds a limit); the reason is precise."""


@dataclass(frozen=True)
class EmailLimits:
    max_bytes: int = 10_000_000
    max_headers: int = 500
    max_attachments: int = 50
    max_parts: int = 200
    # Nesting of multiparts and message/rfc822 (the corpus's deepest is 7).
    max_depth: int = 16
    # Multipart and message parts declared in the raw bytes (the corpus has at most 22).
    max_containers: int = 64
    max_text_chars: int = MAX_TEXT
    # Gmail clips HTML at 102 kB; five times that is plenty for anything a person wrote.
    max_html_chars: int = 512_000
    # The new text is looked for in the first characters only.
    max_reply_chars: int = 32_768


# Per header, at most this many characters and RFC 2047 encoded words reach the header parsers.
# A subject is at most 998 characters once decoded; 100 encoded words hold 998 CJK characters.
_MAX_HEADER_CHARS = {"subject": 8_192, "references": 32_768}
_DEFAULT_HEADER_CHARS = 4_096
_MAX_ENCODED_WORDS = {"subject": 100}
_DEFAULT_ENCODED_WORDS = 20
_MAX_COMMENT_DEPTH = 8
_MIME_HEADERS = frozenset({"content-type", "content-disposition"})
_MAX_MIME_PARAMS = 16
_MAX_PARAM_CHARS = 998
_MAX_IDS = 50
_MAX_ID_BYTES = 998  # a longer "id" cannot be a key of the thread index, nor an RFC 5322 line

_CONTAINER = re.compile(rb"^content-type:[ \t]*(?:\r?\n[ \t]+)?(?:multipart|message)/",
                        re.IGNORECASE | re.MULTILINE)
_BOUNDARY = re.compile(rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))',
                       re.IGNORECASE)
_MIME_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}(?:/[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64})?")
_PARAM_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
_ID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None
    in_reply_to: list[str]
    references: list[str]
    from_name: str | None
    from_address: str | None
    subject: str | None
    text: str  # the full body text, quoted history included
    visible_text: str = ""  # what the customer wrote in this message
    attachments: list[AttachmentMeta] = field(default_factory=list)
    automated: bool = False
    automated_reason: str | None = None
    defects: list[str] = field(default_factory=list)
    # Authentication-Results fields as read (capped), topmost first; authres.py judges them.
    authentication_results: list[str] = field(default_factory=list)


def parse_email(raw: bytes, limits: EmailLimits | None = None) -> ParsedEmail:
    limits = limits or EmailLimits()
    if len(raw) > limits.max_bytes:
        raise EmailRejected(f"email of {len(raw)} bytes exceeds the limit of {limits.max_bytes}")
    _prescan(raw, limits)
    notes: list[str] = []
    policy: Any = _BoundedPolicy
    message = message_from_bytes(raw, policy=policy(notes=notes, header_cache={}))
    assert isinstance(message, EmailMessage)
    defects = [type(d).__name__ for d in message.defects]
    if len(message.keys()) > limits.max_headers:
        raise EmailRejected(
            f"email has {len(message.keys())} headers, more than the limit of {limits.max_headers}")
    parts = _parts(message, limits)
    for part in parts[1:]:
        defects += [type(d).__name__ for d in part.defects]
    attachments = _attachments(message)
    if len(attachments) > limits.max_attachments:
        raise EmailRejected(f"email has {len(attachments)} attachments, more than the limit of "
                            f"{limits.max_attachments}")
    name, address = _sender(message, defects)
    text, visible = _body_text(message, defects, limits)
    reason = automated_reason(message, address)
    return ParsedEmail(
        message_id=next(iter(_ids(_raw_header(message, "Message-ID"))), None),
        in_reply_to=_ids(_raw_header(message, "In-Reply-To"))[:_MAX_IDS],
        references=_first_and_last(_ids(_raw_header(message, "References")), _MAX_IDS),
        from_name=name, from_address=address,
        subject=one_line(_header(message, "Subject", defects)) or None,
        text=text, visible_text=visible, attachments=attachments,
        automated=reason is not None, automated_reason=reason,
        defects=sorted(set(defects + notes)),
        authentication_results=_raw_headers(message, "Authentication-Results", 20),
    )


# --- limits before the parser runs ---------------------------------------------------------------
def _prescan(raw: bytes, limits: EmailLimits) -> None:
    """Refuse, from the raw bytes alone, mail whose MIME tree the parser would take long over.

    The parser's time grows with the depth of nested parts (each line passes every enclosing
    boundary) and it recurses once per level (RecursionError at ~1,000); thousands of parts cost
    seconds. Every nested part is declared by a `Content-Type: multipart/…` or `message/…`
    header line, and every part begins at a boundary delimiter line, so counting both in the
    bytes bounds the tree from above.
    """
    containers = len(_CONTAINER.findall(raw))
    if containers > limits.max_containers:
        raise EmailRejected(f"email has {containers} multipart or message parts, more than the "
                            f"limit of {limits.max_containers}")
    boundaries = {m.group(1) or m.group(2) for m in _BOUNDARY.finditer(raw)}
    if len(boundaries) > limits.max_containers:
        raise EmailRejected(f"email declares {len(boundaries)} MIME boundaries, more than the "
                            f"limit of {limits.max_containers}")
    delimiters = sum(raw.count(b"\n--" + b) + raw.count(b"\r--" + b) for b in boundaries)
    if delimiters - len(boundaries) > limits.max_parts:  # one closing delimiter per multipart
        raise EmailRejected(f"email has about {delimiters - len(boundaries)} MIME parts, more "
                            f"than the limit of {limits.max_parts}")


def _parts(message: EmailMessage, limits: EmailLimits) -> list[Message]:
    """Every part, depth first, without recursion; refuses trees too deep or too large."""
    parts: list[Message] = []
    stack: list[tuple[Message, int]] = [(message, 1)]
    while stack:
        part, depth = stack.pop()
        if depth > limits.max_depth:
            raise EmailRejected(f"email nests MIME parts more than {limits.max_depth} deep")
        parts.append(part)
        if len(parts) > limits.max_parts:
            raise EmailRejected(f"email has more than {limits.max_parts} MIME parts, the limit")
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
    return parts


class _BoundedPolicy(EmailPolicy):
    """`policy.default`, with caps applied to each header as it is read from the source, and
    each header parsed once (the standard library parses a header again on every access, and
    the MIME parser asks for each part's Content-Type several times).

    The caps keep every header the structured parsers see short and shallow; what was cut is
    noted as a defect (`notes`), so the contact says its header was not read whole.
    """

    notes: list[str] | None = None
    header_cache: dict[tuple[str, str], Any] | None = None

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        return valid_unicode(name), self._capped(name.lower(), valid_unicode(value))

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if hasattr(value, "name"):
            return value
        cache = self.header_cache
        key = (name.lower(), value)
        if cache is not None and key in cache:
            return cache[key]
        parsed = super().header_fetch_parse(name, value)
        if cache is not None and len(cache) < 2_048:
            cache[key] = parsed
        return parsed

    def _capped(self, name: str, value: str) -> str:
        limit = _MAX_HEADER_CHARS.get(name, _DEFAULT_HEADER_CHARS)
        if len(value) > limit:
            value = value[:limit]
            self._note("OversizedHeader")
        words = _MAX_ENCODED_WORDS.get(name, _DEFAULT_ENCODED_WORDS)
        if value.count("=?") > words:
            value = value[: _nth(value, "=?", words + 1)]
            self._note("TooManyEncodedWords")
        if name in _MIME_HEADERS:
            if len(value) > 1_024 or value.count(";") > _MAX_MIME_PARAMS or "(" in value:
                value = _plain_mime_header(value)
                self._note("RewrittenMimeHeader")
        elif name == "content-transfer-encoding":
            if len(value) > 64 or "(" in value:
                value = value.split("(")[0].strip()[:64]
                self._note("RewrittenMimeHeader")
        elif name != "subject" and _comment_depth(value) > _MAX_COMMENT_DEPTH:
            value = value.replace("(", " ").replace(")", " ")
            self._note("NestedComments")
        return value

    def _note(self, defect: str) -> None:
        if self.notes is not None:
            self.notes.append(defect)


def _nth(text: str, needle: str, n: int) -> int:
    """Index of the n-th occurrence of `needle` (1-based)."""
    index = -1
    for _ in range(n):
        index = text.index(needle, index + 1)
    return index


def _comment_depth(value: str) -> int:
    if "(" not in value:
        return 0
    depth = deepest = 0
    for char in value:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")" and depth:
            depth -= 1
    return deepest


def _plain_mime_header(value: str) -> str:
    """A Content-Type/-Disposition value rewritten without comments, with at most
    `_MAX_MIME_PARAMS` parameters of at most `_MAX_PARAM_CHARS` characters: one linear pass."""
    items: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted:
            current.append(char)
            if char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif depth:
            depth += (char == "(") - (char == ")")
        elif char == "(":
            depth = 1
        elif char == '"':
            quoted = True
            current.append(char)
        elif char == ";":
            items.append("".join(current).strip())
            current = []
            if len(items) > _MAX_MIME_PARAMS:
                break
        else:
            current.append(char)
    else:
        items.append("".join(current).strip())
    kind = "".join(items[0].split()) if items else ""
    out = [kind if _MIME_NAME.fullmatch(kind) else "application/octet-stream"]
    for item in items[1:_MAX_MIME_PARAMS + 1]:
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not _PARAM_NAME.fullmatch(key):
            continue
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        val = val[:_MAX_PARAM_CHARS].replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'{key}="{val}"')
    return "; ".join(out)


# --- headers -----------------------------------------------------------------------------------
def _header(message: Message, name: str, defects: list[str]) -> str:
    """A header's decoded value; a header the policy cannot parse is read as raw text."""
    try:
        value = message.get(name)
    except Exception:  # the header parser chokes on some malformed values: keep the raw text
        defects.append(f"Unparsable{name.replace('-', '')}Header")
        value = _raw_header(message, name)
    return valid_unicode(" ".join(str(value or "").split()) if name != "Subject"
                         else str(value or ""))


def _raw_header(message: Message, name: str) -> str:
    """The first `name` header as read from the source (capped and valid Unicode, unparsed)."""
    wanted = name.lower()
    return next((str(v) for k, v in message.raw_items() if k.lower() == wanted), "")


def _raw_headers(message: Message, name: str, limit: int) -> list[str]:
    wanted = name.lower()
    return [str(v) for k, v in message.raw_items() if k.lower() == wanted][:limit]


def _decoded_phrase(text: str) -> str:
    """A display name's RFC 2047 words decoded, by the unstructured header parser (bounded)."""
    if "=?" not in text:
        return text
    try:
        return str(_PHRASES.header_factory("x-display-name", text[:1_024]))
    except Exception:  # a phrase the parser cannot read stays as written
        return text


_PHRASES = EmailPolicy()


def _sender(message: Message, defects: list[str]) -> tuple[str | None, str | None]:
    raw = _raw_header(message, "From") or _raw_header(message, "Sender")
    mailbox = first_mailbox(raw, _decoded_phrase)
    if raw:
        defects.extend(d for d in mailbox.defects if d != "NoSenderAddress")
    if mailbox.address is None:
        return None, None
    name = " ".join(one_line(mailbox.name).split()) if mailbox.name else ""
    return (name or None), valid_unicode(mailbox.address.strip().lower())


def _ids(text: str) -> list[str]:
    """Message ids in angle brackets, in order; a bare `id@host` alone is read as one.

    Linear in the text: one character-class pattern, and plain string tests for the bare form.
    """
    text = " ".join(text.split())
    found = [i for i in _ID.findall(text) if len(i.encode()) <= _MAX_ID_BYTES]
    if not found and text and len(text.encode()) <= _MAX_ID_BYTES and "<" not in text \
            and ">" not in text and " " not in text and "@" in text[1:-1]:
        # Some mailers write a bare `id@host` without the angle brackets RFC 5322 asks for.
        found = [f"<{text}>"]
    return found


def _first_and_last(ids: list[str], limit: int) -> list[str]:
    """A thread's root and its latest messages, when References lists more than `limit`."""
    return ids if len(ids) <= limit else [ids[0], *ids[-(limit - 1):]]


# --- body ----------------------------------------------------------------------------------------
def _body_text(message: EmailMessage, defects: list[str],
               limits: EmailLimits) -> tuple[str, str]:
    """(full text, visible new text) of the body: text/plain preferred, else HTML as text."""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except Exception:  # get_body walks the tree; a malformed tree must not stop the contact
        defects.append("UnwalkableMimeTree")
        part = None
    if part is None:
        # No declared body, but a lone non-multipart text part (some bounces) is still text.
        if message.is_multipart() or message.get_content_maintype() != "text":
            return "", ""
        part = message
    text = decode_text(part, defects)
    if part.get_content_subtype() == "html":
        if len(text) > limits.max_html_chars:
            text = text[: limits.max_html_chars]
            defects.append("TruncatedHtml")
        full, visible = html_texts(without_controls(text), defects, limits.max_reply_chars)
        return full[: limits.max_text_chars], visible[: limits.max_text_chars]
    text = text.replace("\r\n", "\n").strip()
    if len(text) > limits.max_text_chars:
        text = text[: limits.max_text_chars]
        defects.append("TruncatedText")
    text = without_controls(text)
    return text, split_reply_bounded(text[: limits.max_reply_chars]).visible


def decode_text(part: Message, defects: list[str]) -> str:
    """A text part's content in its declared charset, with fallbacks for wrong declarations.

    The declared charset is tried strictly first, then UTF-8 and Windows-1252 (what most
    mislabelled mail really is); Latin-1 cannot fail and is the last resort.
    """
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return valid_unicode(str(part.get_payload() or ""))
    declared = str(part.get_content_charset() or "us-ascii")
    for charset in (declared, "utf-8", "cp1252"):
        try:
            return payload.decode(charset)
        except LookupError:
            defects.append("UnknownCharset")
        except UnicodeDecodeError:
            if charset == declared:
                defects.append("CharsetMismatch")
        except Exception:  # a codec that fails otherwise (some raise on odd input)
            defects.append("UnknownCharset")
    return payload.decode("latin-1")


def _attachments(message: EmailMessage) -> list[AttachmentMeta]:
    """Metadata of every attachment (never content), nested messages' attachments included."""
    found = []
    try:
        body = message.get_body(preferencelist=("plain", "html"))
    except Exception:  # recorded as a defect by _body_text
        body = None
    for part in message.walk():
        if part.is_multipart() or part is body or part is message:
            continue
        disposition = part.get_content_disposition()
        filename = _filename(part)
        if disposition != "attachment" and not filename:
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        found.append(AttachmentMeta(
            filename=filename, content_type=valid_unicode(part.get_content_type())[:255],
            size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        ))
    return found


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if not name:
        return None
    return one_line(str(name))[:512] or None
