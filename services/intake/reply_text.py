"""What the customer wrote in this email, apart from quoted history and the signature.

Agents and classification need the new text; the quoted thread is already on the case. The rules
follow what the common clients write (checked against talon's, GitHub's and Zapier's reply
fixtures in tests/fixtures/intake):

- a quote header ends the new text: "On … wrote:" (Gmail, Apple Mail, Thunderbird, in several
  languages, possibly wrapped over two or three lines), Outlook's "-----Original Message-----",
  an Outlook/Hotmail header block ("From:" followed by "Sent:"/"Date:" and "To:"/"Subject:"),
  an underscore rule followed by such a block;
- lines quoted with ">" are history wherever they are (interleaved answers stay visible);
- a signature starts at the "-- " delimiter (RFC 3676) or a mobile client's "Sent from my …" line
  near the end.

When nothing is left (a bare forward, a reply that only quotes) the visible text is the full text,
so a contact never loses its words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WROTE = (r"wrote|writes|schrieb|a écrit|escribió|ha scritto|schreef|escreveu|skrev|kirjoitti"
          r"|napisał|написал\(а\)|написал|написала|yazdı|έγραψε|het geschreven")
_ON = r"On|Am|Le|El|Il|Op|Em|På|Den|Dne|W dniu|Dana|Päivänä|\d[\d./-]*"
# "On <date>, <name> wrote:" (the date and name may span wrapped lines, hence DOTALL).
_ON_WROTE = re.compile(rf"^\s*(?:{_ON})\b.{{0,300}}?(?:{_WROTE})\s*:?\s*$", re.S | re.I)
# A "<date> <name> <address>:" header as written by some Gmail locales and mail.ru: a short
# line with a time or year that ends in an address and a colon.
_DATE_ADDR = re.compile(
    r"^(?=.*(?:\d{1,2}:\d{2}|\b(?:19|20)\d{2}\b)).{0,200}<?[^<>\s]+@[^<>\s]+>?\s*:\s*$")
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|mensaje original"
    r"|messaggio originale|oorspronkelijk bericht|original meddelelse|alkuperäinen viesti"
    r"|исходное сообщение|reply message)\s*-{2,}\s*$", re.I)
_FROM = re.compile(r"^\s*\**(?:from|von|de|da|van|från|fra|od|от|kimden)\s*\**\s*:", re.I)
_META = re.compile(
    r"^\s*\**(?:sent|date|to|subject|cc|gesendet|datum|an|betreff|envoyé|date|à|objet|enviado"
    r"|fecha|para|asunto|inviato|data|oggetto|verzonden|aan|onderwerp|skickat|ämne|skickat"
    r"|отправлено|тема|кому)\s*\**\s*:", re.I)
_RULE = re.compile(r"^\s*(?:_{10,}|-{10,})\s*$")
_SIG_DELIMITER = re.compile(r"^-- ?$|^—\s*$")
_MOBILE = re.compile(
    r"^\s*(?:sent from (?:my )?(?:iphone|ipad|android|blackberry|mobile|windows|samsung|galaxy"
    r"|huawei|htc|phone|smartphone|mobile device|outlook|yahoo mail|mail for windows)"
    r"|sent from my [\w ]{2,40}$|sent with sparrow|sent via blackberry"
    r"|get outlook for (?:ios|android)"
    r"|von meinem \S+ gesendet|envoyé de mon \S+|enviado desde mi \S+|inviato da(l mio)? \S+)",
    re.I)


@dataclass(frozen=True)
class ReplyParts:
    visible: str
    quoted: str
    signature: str


def split_reply(text: str) -> ReplyParts:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = _quote_header(lines)
    head, rest = lines[:cut], lines[cut:]
    answers = _answers_below_quote(rest)
    # ">" lines are history; answers written between or below them are new text.
    kept = [line for line in head if not _quoted(line)]
    if answers:
        kept += ["", *answers]
    new = set(kept)
    history = [line for line in lines if _quoted(line) or line not in new]
    sig_at = _signature_start(kept)
    body, signature = kept[:sig_at], kept[sig_at:]
    visible = "\n".join(body).strip() or text.strip()
    return ReplyParts(visible, "\n".join(history).strip(), "\n".join(signature).strip())


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _answers_below_quote(rest: list[str]) -> list[str]:
    """Unquoted lines after "On … wrote:" and its ">" lines: inline or bottom-posted answers.

    Only when the header is directly followed by ">" lines; an Outlook header block quotes
    without ">", and what follows it is history.
    """
    first_quoted = next((i for i, line in enumerate(rest) if _quoted(line)), None)
    if first_quoted is None or first_quoted > 3 or not rest:
        return []
    after = rest[first_quoted:]
    end = _quote_header(after)  # a further header (skipping ">" lines) ends the answers
    answers = [line for line in after[:end] if not _quoted(line)]
    return answers if any(line.strip() for line in answers) else []


def _quote_header(lines: list[str]) -> int:
    """Index of the first line of quoted history, or len(lines)."""
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(">"):
            continue
        if _ORIGINAL.match(line) or _DATE_ADDR.match(line):
            return index
        if _is_on_wrote(lines, index):
            return index
        if _FROM.match(line) and _meta_follows(lines, index):
            return index
        if _META.match(line) and _header_block(lines, index):
            return index
        if _RULE.match(line) and index + 1 < len(lines) and any(
                _FROM.match(nxt) for nxt in lines[index + 1 : index + 3]):
            return index
    return len(lines)


def _is_on_wrote(lines: list[str], index: int) -> bool:
    # Clients wrap the header; look at this line joined with up to two following ones, but
    # only when it starts like a header, so a sentence ending in "wrote:" mid-text still counts
    # only if it is the header's shape.
    for span in (1, 2, 3):
        chunk = " ".join(line.strip() for line in lines[index : index + span])
        if len(chunk) > 400:
            break
        if _ON_WROTE.match(chunk):
            return True
    return False


def _meta_follows(lines: list[str], index: int) -> bool:
    following = [line for line in lines[index + 1 : index + 6] if line.strip()]
    return sum(1 for line in following[:4] if _META.match(line)) >= 2 or (
        len(following) >= 1 and bool(re.match(r"^\s*\**(?:sent|date|gesendet|envoyé|enviado)"
                                              r"\s*\**\s*:", following[0], re.I)))


def _header_block(lines: list[str], index: int) -> bool:
    """Hotmail and others start the block with Date: or Subject:; it still holds a From:."""
    block = [line for line in lines[index : index + 6] if line.strip()][:5]
    fields = [line for line in block if _FROM.match(line) or _META.match(line)]
    return len(fields) >= 3 and any(_FROM.match(line) for line in fields)


def _signature_start(lines: list[str]) -> int:
    """Index of the first signature line, or len(lines)."""
    # Look only near the end: a "--" line high up is more likely a divider in the text.
    tail_from = max(0, len(lines) - 15)
    for index in range(len(lines) - 1, tail_from - 1, -1):
        if _SIG_DELIMITER.match(lines[index].rstrip("\n")):
            return index
    for index in range(len(lines) - 1, max(0, len(lines) - 4) - 1, -1):
        if _MOBILE.match(lines[index]):
            return index
    return len(lines)
