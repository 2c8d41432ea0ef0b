"""What the customer wrote in this email, apart from quoted history and the signature.

Agents and classification need the new text; the quoted thread is already on the case. The rules
follow what the common clients write (checked against talon's, GitHub's, Zapier's and Crisp's
reply fixtures and our own multilingual cases in tests/fixtures/intake/replies):

- a quote header ends the new text: "On … wrote:" and its forms in 20-odd languages ("Am …
  schrieb", "Le … a écrit :", "Den … skrev", "… написал:", "在 … 写道：" …), possibly wrapped over
  two or three lines, without its colon, inside dashes (`---- On … wrote ----`) or as a bare
  "<date> <name> <address>:" line; "Original Message" separators in many languages (with dashes
  or stars); an Outlook-style header block ("From:" with "Sent:"/"Date:"/"To:"/"Subject:", in
  many languages) and a rule line (`____`, `----`, `====`) just above it;
- a client's sign-off line ("Sent from my iPhone", "Envoyé depuis mon iPhone", "Sent with
  Airmail", "Get Outlook for iOS<https://…>" …) ends the new text too: what follows it is the
  client's quoted history;
- lines quoted with ">" are history wherever they are (interleaved answers stay visible);
- a signature starts at the "-- " delimiter (RFC 3676) near the end, or at a closing "Regards"
  line followed by a few short lines (name, title);
- a forwarded message ("---------- Forwarded message ---------", "Begin forwarded message:",
  "Weitergeleitete Nachricht" …) is the customer's contact: it is kept whole, its marker line
  included, and `forwarded` is set.

When nothing is left (a reply that only quotes) the visible text is the full text, so a contact
never loses its words.

Cost is linear in the text: lines longer than `_HEADER_LINE` characters are never taken for
headers, joined header candidates are bounded, and no pattern has adjacent quantifiers over the
same characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER_LINE = 400  # a longer line is text, never a header: bounds every pattern's work
_JOINED = 500
_SCAN_LINES = 2000  # quote headers are looked for in the first lines only: bounded work

_WROTE = (
    r"wrote|writes|schrieb|a écrit|a ecrit|escribió|escribio|ha scritto|scrisse|schreef"
    r"|het volgende geschreven|het geschreven|geschreven|escreveu|skrev|skrifaði|kirjoitti"
    r"|napisał|napisała|napisal|napsal\(a\)"
    r"|napsala|napsal|napísal|napisao|написал\(а\)|написала|написал|написав|написала|пише"
    r"|написа|pisze|şunu yazdı|yazdı|έγραψε|ezt írta|írta|a scris|rašė|rakstīja|kirjutas"
    r"|kirjoitti|写道|寫道|作成|wrote on")
_WROTE_RE = re.compile(rf"(?:{_WROTE})", re.I)
# What a quote header starts with: "On", its translations, a weekday or a date.
_OPENER = re.compile(
    r"^[-*\s]{0,12}(?:on|am|le|el|il giorno|il|in data|op|em|den|dne|w dniu|dana|päivänä|στις"
    r"|at|el día|в|у|на|在|20\d\d|19\d\d|\d{1,4}[./\-年]|(?:mon|tue|wed|thu|fri|sat|sun"
    r"|mo|di|mi|do|fr|sa|so|lun|mar|mer|jeu|ven|sam|dim|ma|ti|on|to|fr|lø|sø|пн|вт|ср|чт|пт"
    r"|сб|вс|pe|la|su|ke)\w{0,8}[.,]?\s)", re.I)
_HAS_DATE = re.compile(r"\d{1,2}[:.h]\d{2}|\b(?:19|20)\d{2}\b|\d{1,2}[./]\d{1,2}[./]\d{2,4}")
_ENDS_WROTE = re.compile(rf"(?:{_WROTE}|sent(?=\s*:))[\s:：]*(?:-{{2,}}[\s]*)?$", re.I)
_ENDS_ADDRESS = re.compile(r"[^\s<>()\"]+@[^\s<>()\"]+[>)\]\"]*[\s:：]*$|[>)]\s*[:：]\s*$")
_ENDS_COLON = re.compile(r"[:：]\s*$")
_ORIGINAL = re.compile(
    r"^[\s*_]{0,6}-{2,}[\s*]{0,3}(?:original message|original e-?mail|ursprüngliche nachricht"
    r"|ursprüngliche e-mail|antwort nachricht|message d'origine|message original|mensaje original"
    r"|messaggio originale|oorspronkelijk bericht|origineel bericht|oprindelig besked"
    r"|oprindelig meddelelse|opprinnelig melding|ursprungligt meddelande"
    r"|alkuperäinen viesti|wiadomość oryginalna|oryginalna wiadomość|původní zpráva"
    r"|pôvodná správa|исходное сообщение|оригинальное сообщение|mensagem original"
    r"|eredeti üzenet|orijinal mesaj|αρχικό μήνυμα|reply message|原始邮件|原始郵件)"
    r"[\s*]{0,3}-{2,}[\s*_]{0,6}$", re.I)
_FORWARD = re.compile(
    r"^[\s*_>]{0,6}(?:-{2,}[\s*]{0,3})?(?:forwarded message|begin forwarded message"
    r"|weitergeleitete nachricht|message transféré|mensaje reenviado|messaggio inoltrato"
    r"|doorgestuurd bericht|videresendt meddelelse|vidarebefordrat meddelande"
    r"|videresendt melding|välitetty viesti|przekazana wiadomość|přeposlaná zpráva"
    r"|пересылаемое сообщение|mensagem encaminhada|továbbított üzenet|iletilen mesaj"
    r"|forwarded e-?mail)[\s*]{0,3}:?(?:[\s*]{0,3}-{2,})?[\s*_]{0,6}$", re.I)
_FROM_WORDS = (r"from|von|de|da|van|från|fra|od|от|kimden|lähettäjä|feladó|remetente"
               r"|afzender|nadawca|αποστολέας|发件人|寄件者|差出人")
_META_WORDS = (
    r"sent|date|to|subject|cc|reply-to|gesendet|datum|an|betreff|envoyé|envoye|à|a|objet"
    r"|sujet|copie à|message du|enviado|enviada|fecha|para|asunto|inviato|data|oggetto"
    r"|verzonden|verstuurd|aan|onderwerp|skickat|till|ämne|sendt|til|emne|dato|wysłano"
    r"|wysłane|do|temat|odesláno|komu|předmět|отправлено|дата|кому|тема|gönderildi|tarih"
    r"|kime|konu|lähetetty|vastaanottaja|aihe|päivämäärä|elküldve|címzett|tárgy|dátum"
    r"|assunto|enviada em|στάλθηκε|προς|θέμα|发送时间|收件人|主题|日期|送信日時|宛先|件名")
_FROM = re.compile(rf"^[\s*]{{0,40}}(?:{_FROM_WORDS})[\s*]{{0,3}}[:：]", re.I)
_META = re.compile(rf"^[\s*]{{0,40}}(?:{_META_WORDS})[\s*]{{0,3}}[:：]", re.I)
_SENT_OR_DATE = re.compile(
    r"^[\s*]{0,40}(?:sent|date|gesendet|datum|envoyé|enviado|enviada|inviato|verzonden|skickat"
    r"|sendt|dato|wysłano|odesláno|отправлено|дата|lähetetty|elküldve|message du)[\s*]{0,3}[:：]",
    re.I)
_RULE = re.compile(r"^\s{0,40}(?:[_=]{4,}|-{4,}|\*{4,})\s{0,4}$")
_SIG_DELIMITER = re.compile(r"^(?:-- ?|—|__)$")
# A client's sign-off: the whole line, maybe with the client's link.
_SIGN_OFF = re.compile(
    r"^\s{0,4}(?:sent from (?:my )?(?:iphone|ipad|ipod|android|blackberry|mobile(?: device)?"
    r"|windows phone|samsung(?: mobile)?|galaxy[\w ]{0,20}|huawei[\w ]{0,20}|htc[\w ]{0,20}"
    r"|phone|smartphone|verizon wireless blackberry|outlook(?: mobile| for (?:ios|android))?"
    r"|yahoo mail(?: on (?:android|ios|iphone))?|mail for windows(?: 10| 11)?|aol mobile mail"
    r"|proton ?mail[\w ]{0,20}|gmail mobile|typeapp|blue mail|bluemail|spark|edison mail"
    r"|my (?:iphone|ipad|android|blackberry|mobile|phone|smartphone|samsung|galaxy|huawei"
    r"|pixel)[\w ]{0,30})"
    r"|sent from my [\w]{1,20}(?: [\w]{1,20}){0,4}"
    r"|sent with (?:airmail|sparrow|spark|blackberry|newton)[\w ]{0,20}|sent via [\w ]{1,30}"
    r"|get outlook for (?:ios|android)|download outlook for (?:ios|android)"
    r"|télécharger outlook pour (?:ios|android)|outlook für (?:ios|android) herunterladen"
    r"|gesendet von outlook für (?:ios|android)|gesendet von (?:meinem|mein) [\w ]{1,30}"
    r"|von meinem [\w ]{1,30} gesendet|gesendet mit [\w ]{1,30}"
    r"|envoyé (?:depuis|de) (?:mon|ma) [\w ]{1,30}|envoyé avec [\w ]{1,30}"
    r"|enviado desde (?:mi|mí) [\w ]{1,30}|enviado do meu [\w ]{1,30}|enviado de meu [\w ]{1,30}"
    r"|inviato da(?:l mio)? [\w ]{1,30}|verzonden (?:vanaf|met) (?:mijn )?[\w ]{1,30}"
    r"|skickat från min [\w ]{1,30}|sendt fra min [\w ]{1,30}|lähetetty [\w ]{1,30}"
    r"|wysłane z (?:mojego )?[\w ]{1,30}|отправлено с (?:моего )?[\w ]{1,30})"
    r"\s{0,3}(?:<(?:https?|mailto):[^\s>]{0,300}>)?[\s.]{0,3}$",
    re.I)
_VALEDICTION = re.compile(
    r"^\s{0,4}(?:(?:best|kind|warm|many|warmest|kindest)? ?regards|best wishes|sincerely"
    r"|yours (?:truly|sincerely|faithfully)|mit freundlichen grüßen|freundliche grüße"
    r"|viele grüße|beste grüße|liebe grüße|cordialement|bien cordialement|salutations"
    r"|un saludo|saludos(?: cordiales)?|atentamente|cordiali saluti|distinti saluti"
    r"|met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|med vänliga hälsningar"
    r"|med venlig hilsen|med vennlig hilsen|pozdrawiam|s pozdravem|atenciosamente"
    r"|с уважением|saygılarımla)[\s,.!]{0,3}$", re.I)


# "reply text On <date>, <name> wrote:" on one line: the header is split off first.
_SHARED_START = re.compile(r"(?<=\S)[\s-]{1,6}(?=(?:On|Am|Le|El|Op|Il) \S)")
_LINK_LINE = re.compile(r"^\s{0,8}[(<]?(?:https?|mailto):[^\s]{1,400}[)>]?\s{0,3}>?\s{0,3}$")


@dataclass(frozen=True)
class ReplyParts:
    visible: str
    quoted: str
    signature: str
    forwarded: bool = False


def split_reply(text: str) -> ReplyParts:
    lines = _split_shared(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    forwarded = _forward_start(lines)
    # A forwarded message is the customer's contact: only a quote header above it ends the text.
    cut = _quote_header(lines[:forwarded]) if forwarded is not None else _quote_header(lines)
    if forwarded is not None and cut == forwarded:
        cut = len(lines)
    head, rest = lines[:cut], lines[cut:]
    answers = _answers_below_quote(rest)
    # ">" lines are history; answers written between or below them are new text.
    kept = [line for line in head if not _quoted(line)]
    if answers:
        kept += ["", *answers]
    new = set(kept)
    history = [line for line in lines if _quoted(line) or line not in new]
    sig_at = _signature_start(kept) if forwarded is None else len(kept)
    body, signature = kept[:sig_at], kept[sig_at:]
    visible = "\n".join(body).strip() or text.strip()
    return ReplyParts(visible, "\n".join(history).strip(), "\n".join(signature).strip(),
                      forwarded is not None and forwarded < cut)


def _split_shared(lines: list[str]) -> list[str]:
    out = []
    for line in lines[:_SCAN_LINES]:
        if _short(line) and (" On " in line or "-On " in line) and _ends_wrote(line):
            for m in list(_SHARED_START.finditer(line))[:3]:
                header = line[m.end():]
                if re.search(r"\w", line[: m.start()]) and _HAS_DATE.search(header):
                    out += [line[: m.start()], header]
                    break
            else:
                out.append(line)
        else:
            out.append(line)
    return out + lines[_SCAN_LINES:]


def _ends_wrote(text: str) -> bool:
    return bool(_ENDS_WROTE.search(text[-60:]))


def _quoted(line: str) -> bool:
    return line.lstrip()[:1] == ">"


def _short(line: str) -> bool:
    return len(line) <= _HEADER_LINE


def _forward_start(lines: list[str]) -> int | None:
    return next((i for i, line in enumerate(lines[:_SCAN_LINES])
                 if _short(line) and not _quoted(line) and _FORWARD.match(line)), None)


def _answers_below_quote(rest: list[str]) -> list[str]:
    """Unquoted lines after "On … wrote:" and its ">" lines: inline or bottom-posted answers.

    Only when the header is directly followed by ">" lines; an Outlook header block quotes
    without ">", and what follows it is history.
    """
    first_quoted = next((i for i, line in enumerate(rest[:4]) if _quoted(line)), None)
    if first_quoted is None or not rest:
        return []
    after = rest[first_quoted:]
    end = _quote_header(after)  # a further header (skipping ">" lines) ends the answers
    answers = [line for line in after[:end] if not _quoted(line) and not _LINK_LINE.match(line)]
    sign_off = next((i for i, line in enumerate(answers)
                     if _short(line) and _SIGN_OFF.match(line)), None)
    if sign_off is not None:
        answers = answers[:sign_off]
    return answers if any(line.strip() for line in answers) else []


def _quote_header(lines: list[str]) -> int:
    """Index of the first line of quoted history, or len(lines)."""
    for index, line in enumerate(lines[:_SCAN_LINES]):
        stripped = line.strip()
        if not stripped or not _short(line) or stripped[0] == ">":
            continue
        if _SIGN_OFF.match(line) and index > 0:
            return index
        if _ORIGINAL.match(line):
            return _above_rule(lines, index)
        if _is_on_wrote(lines, index) or _is_date_address(lines, index):
            return index
        if _FROM.match(line) and _meta_follows(lines, index):
            return _above_rule(lines, index)
        if _META.match(line) and (_header_block(lines, index) or _date_block(lines, index)):
            return _above_rule(lines, index)
    return len(lines)


def _above_rule(lines: list[str], index: int) -> int:
    """A rule line (`____`, `----`, `====`) just above a header block belongs to the history."""
    i = index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    if i >= 0 and index - i <= 3 and _short(lines[i]) and _RULE.match(lines[i]):
        return i
    return index


def _chunks(lines: list[str], index: int) -> list[str]:
    """The line, then it joined with one and two following lines (headers wrap)."""
    out: list[str] = []
    parts: list[str] = []
    for line in lines[index : index + 3]:
        if not _short(line) or (parts and (not line.strip() or _quoted(line))):
            break
        parts.append(line.strip())
        joined = " ".join(parts)
        if len(joined) > _JOINED:
            break
        out.append(joined)
    return out


def _is_on_wrote(lines: list[str], index: int) -> bool:
    """"On <date>, <name> wrote:" and its forms: the chunk has a wrote-word and either ends in
    it (colon optional) or ends in an address and a colon; it starts like a header or holds a
    date, so a sentence that happens to end in "wrote:" stays text."""
    first = lines[index].strip()
    if not (_OPENER.match(first) or _HAS_DATE.search(first) or "@" in first):
        return False  # a wrapped header's first line already looks like one
    for chunk in _chunks(lines, index):
        wrote = _ends_wrote(chunk) or (
            _WROTE_RE.search(chunk) and _ENDS_ADDRESS.search(chunk)
            and _ENDS_COLON.search(chunk))
        if not wrote:
            continue
        return True
    return False


def _is_date_address(lines: list[str], index: int) -> bool:
    """A "<date> <name> <address>:" header (Gmail in some locales, mail.ru, Crisp …); without
    the colon when quoted lines follow."""
    if not _HAS_DATE.search(lines[index]):
        return False
    for span, chunk in enumerate(_chunks(lines, index), 1):
        if len(chunk) <= 300 and _HAS_DATE.search(chunk) and "@" in chunk \
                and _ENDS_ADDRESS.search(chunk):
            if _ENDS_COLON.search(chunk):
                return True
            following = next((line for line in lines[index + span : index + span + 3]
                              if line.strip()), "")
            if _quoted(following):
                return True
    return False


def _meta_follows(lines: list[str], index: int) -> bool:
    following = [line for line in lines[index + 1 : index + 7] if line.strip()][:5]
    following = [line for line in following if _short(line)]
    return sum(1 for line in following[:4] if _META.match(line)) >= 2 or (
        len(following) >= 1 and bool(_SENT_OR_DATE.match(following[0]))) or (
        len(following) >= 2 and "@" in following[0] and bool(_META.match(following[1])))


def _header_block(lines: list[str], index: int) -> bool:
    """Hotmail and others start the block with Date: or Subject:; it still holds a From:."""
    block = [line for line in lines[index : index + 7] if line.strip() and _short(line)][:6]
    fields = [line for line in block if _FROM.match(line) or _META.match(line)]
    return len(fields) >= 3 and any(_FROM.match(line) for line in fields)


def _date_block(lines: list[str], index: int) -> bool:
    """"Date: <a date>" followed by "To:" or "Subject:": a header block without its From."""
    following = next((line for line in lines[index + 1 : index + 3] if line.strip()), "")
    return bool(_SENT_OR_DATE.match(lines[index]) and _HAS_DATE.search(lines[index])
                and _short(following) and _META.match(following))


def _signature_start(lines: list[str]) -> int:
    """Index of the first signature line, or len(lines)."""
    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    # Look only near the end: a "--" line high up is more likely a divider in the text.
    for index in range(end - 1, max(0, end - 15) - 1, -1):
        if _short(lines[index]) and _SIG_DELIMITER.match(lines[index].rstrip()):
            return index
    for index in range(end - 1, max(0, end - 4) - 1, -1):
        if _short(lines[index]) and _SIGN_OFF.match(lines[index]):
            return index
    # A mailing list's footer under an underscore rule.
    for index in range(end - 1, max(0, end - 6) - 1, -1):
        if _short(lines[index]) and re.match(r"^\s{0,4}_{4,}\s*$", lines[index]) and index > 0:
            return index
    # "Regards," followed by at most four short lines (name, title, company).
    for index in range(end - 1, max(0, end - 6) - 1, -1):
        if _short(lines[index]) and _VALEDICTION.match(lines[index]) and index > 0:
            tail = [line for line in lines[index + 1 : end] if line.strip()]
            if len(tail) <= 4 and all(len(line.strip()) <= 60 for line in tail):
                return index
    return len(lines)
