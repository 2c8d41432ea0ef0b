"""Text that is safe to keep, encode and match: valid Unicode, no control characters, bounded lines.

Every string intake takes from raw input passes through here before it reaches a model, a
regular expression that could backtrack, or the database:
- `valid_unicode`: the email parser keeps undecodable header bytes as lone surrogates
  (`surrogateescape`); pydantic refuses some of them and asyncpg can encode none. The bytes are
  decoded again as UTF-8 (RFC 6532 headers) or Windows-1252, so "café" stays "café".
- `without_controls`: C0 control characters carry no meaning in customer text, and canonical
  JSON writes each as six bytes (`\\u0001`), so 200 kB of them made a 1.2 MB event.
- `storable` (and `storable_tree` for a whole event body): what PostgreSQL refuses is gone.
  A `text` column takes no U+0000 and `jsonb` no `\\u0000`; neither takes a lone surrogate.
  Chat and voice front-ends send JSON strings that may hold both, and a UTF-16 body or header
  labelled us-ascii decodes into text full of U+0000: every event body and every value intake
  keeps or looks up is cleaned, so the contact is handled instead of dead-lettered.
- `one_line`: subjects and names are one line (a decoded `=0A` is an attack on whoever puts the
  subject into a header later).
- `split_reply_bounded`: `reply_text.split_reply` with lines that no quote header can be
  replaced, for the duration of the call, by short stand-ins; its patterns backtrack on long lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from services.intake.reply_text import ReplyParts, split_reply

_SURROGATES = re.compile("[\ud800-\udfff]")
# C0 controls but tab, line feed and carriage return.
_CONTROLS = dict.fromkeys([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
# Everything that ends a line somewhere (str.splitlines) or is a control, as a space.
_LINE_BREAKS = dict.fromkeys([*range(32), 127, 133, 8232, 8233], " ")


def valid_unicode(text: str) -> str:
    """`text` without lone surrogates: escaped bytes decoded again, anything else replaced.

    Escaped bytes are UTF-8 when they hold UTF-8 characters and at most twice as many invalid
    sequences (a header cut inside a character keeps its other characters), else a legacy
    8-bit charset, read as Windows-1252.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that are not escaped bytes (e.g. from "\\ud800")
        return _SURROGATES.sub("\ufffd", text)
    decoded = raw.decode("utf-8", "replace")
    replaced = decoded.count("\ufffd") - raw.count("\ufffd".encode())  # invalid sequences
    good = len(decoded) - len(decoded.encode("ascii", "ignore")) - replaced
    return decoded if good and 2 * good >= replaced else raw.decode("cp1252", "replace")


def storable(text: str) -> str:
    """`text` as PostgreSQL's text and jsonb take it: valid Unicode, no U+0000 (removed, so
    "4\x001\x001\x001…" from a mislabelled UTF-16 body reads, and is redacted, as digits)."""
    text = valid_unicode(text)
    return text.replace("\x00", "") if "\x00" in text else text


def storable_tree(value: Any, clean: Callable[[str], str] = storable) -> Any:
    """Every string of a JSON-like tree (keys too) `storable` (or `clean`)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(k) if isinstance(k, str) else k: storable_tree(v, clean)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_tree(v, clean) for v in value]
    return value


def without_surrogates(text: str) -> str:
    """Lone surrogates (JSON "\\ud83d" from half an emoji) as U+FFFD, nothing else changed."""
    return _SURROGATES.sub("\ufffd", text)


def without_controls(text: str) -> str:
    return text.translate(_CONTROLS)


def one_line(text: str) -> str:
    """Controls and line breaks as spaces, ends stripped (inner spacing is kept)."""
    return valid_unicode(text).translate(_LINE_BREAKS).strip()


# --- the reply splitter, bounded ---------------------------------------------------------------
# reply_text's header patterns look at a line, or up to three lines joined when they are at most
# 400 characters together: a longer line never starts or continues a quote header, and no address
# has three "@". Its date-and-address pattern is super-linear in the length of a line and in the
# number of "@" of one word: such lines are handed to it as stand-ins longer than 400 characters
# that keep the first characters without digits (a label like "To:" or a ">" quote mark, which the
# rules do look at) and are made of short words, so that every pattern fails on them at once.
# The stand-ins are replaced by the original lines afterwards. Lines of ordinary text below 400
# characters still cost that pattern up to ~200 steps per character (reply_text's to fix).
LONG_LINE = 400
_KEEP = 32
_PAD = " ".join(["\ue000"] * (LONG_LINE // 2 + 1))
_MARK = "\ue001"
_STANDIN = re.compile(f"{_PAD} {_MARK}([\U000f0000-\U000ffffd])$")
_RULE_LINE = re.compile(r"[\s_-]*")
_MAX_STANDINS = 0xFFFD
# Without digits the date-and-address pattern's look-ahead (a time or a year) fails at once.
_NO_DIGITS = str.maketrans("0123456789", "\ue002" * 10)


def _dangerous(line: str) -> bool:
    if len(line) > LONG_LINE:
        return not _RULE_LINE.fullmatch(line)  # a long rule line is cheap, and it ends quotes
    return line.count("@") >= 3 and any(word.count("@") >= 3 for word in line.split())


def split_reply_bounded(text: str) -> ReplyParts:
    lines = text.split("\n")
    originals: list[str] = []
    for index, line in enumerate(lines):
        if len(originals) < _MAX_STANDINS and _dangerous(line):
            keep = line[:_KEEP].translate(_NO_DIGITS)
            lines[index] = f"{keep} {_PAD} {_MARK}{chr(0xF0000 + len(originals))}"
            originals.append(line)
    if not originals:
        return split_reply(text)
    # A line of the text cannot pass for a stand-in: the padding alone is longer than LONG_LINE,
    # so any line holding it was replaced itself.
    parts = split_reply("\n".join(lines))

    def back(value: str) -> str:
        if _MARK not in value:
            return value
        restored = []
        for line in value.split("\n"):
            found = _STANDIN.search(line)
            restored.append(originals[ord(found.group(1)) - 0xF0000] if found else line)
        return "\n".join(restored).strip()

    return ReplyParts(back(parts.visible), back(parts.quoted), back(parts.signature))
