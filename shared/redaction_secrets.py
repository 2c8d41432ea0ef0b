"""Secrets people type or paste: stated passwords and codes, keys and tokens, a CVV or expiry.

Three kinds:
- *Stated*: a label ("password", "Passwort", "contraseña", "PIN", "OTP", "TAN", "token",
  "API key" …), then `:`/`=`, a verb ("is", "ist", "lautet", "es" …) or just a space, then the
  value. With a verb or `:` the value is masked unless it is an ordinary word that says something
  about the secret ("is not working", "ist falsch"); a passphrase of plain words runs to the end
  of the clause ("is correct horse battery staple, thanks"). With only a space the value must look
  like one (a code with a digit; a password that is not a common word), so "pin the message" or
  "password reset" stay as written. Quoted values are masked whole.
- *Machine*: `pwd=…`, `api_key=…`, `"password": "…"`, `x-api-key: …`, `Authorization: Bearer …`
  and `Basic …`, credentials in URLs, private key blocks, and tokens whose shape names them:
  Stripe `sk_live_…`, GitHub, GitLab, Slack, AWS access key ids, Google API keys, OpenAI-style
  `sk-…`, SendGrid, npm, PyPI, and JWTs.
- *Card details*: a CVV/CVC or an expiry after its label, wherever it is written.

Every pattern starts at a literal or a token start and reads a bounded stretch (or consumes what it
reads), so the time is linear in the text.
"""

from __future__ import annotations

import re

from shared.redaction_patterns import WordStart, first_char_scan, word_branches
from shared.redaction_spans import CARD_DETAIL, SECRET, TOKEN, Span

_PASS = ["password", "pass word", "passwort", "kennwort", "passphrase", "pass phrase",
         "passcode", "pass code", "contraseña", "contrasena", "clave de acceso", "clave secreta",
         "mot de passe", "memorable word", "memorable information", "secret word",
         "secret answer", "security answer", "one time password", "einmalpasswort",
         "wifi password", "wi fi password", "wlan passwort", "app password"]
_PW = ["pwd", "pw", "passwd", "pass"]  # only with ":", "=" or a verb after them
_CODE = ["pin", "pin code", "pincode", "pin number", "pin nummer", "otp", "one time code",
         "one time passcode", "verification code", "security code", "auth code",
         "authentication code", "access code", "2fa code", "mfa code", "sms code", "login code",
         "sign in code", "recovery code", "backup code", "reset code", "geheimzahl",
         "geheimnummer", "bestätigungscode", "bestaetigungscode", "verifizierungscode",
         "einmalcode", "sicherheitscode", "zugangscode", "freischaltcode", "código", "codigo",
         "código pin", "código de verificación", "codigo de verificacion", "código de seguridad",
         "codigo de seguridad", "código de acceso", "codigo de acceso", "clave", "clave dinámica",
         "número secreto", "numero secreto"]
_CODE_EXACT_CASE = ["TAN", "mTAN", "smsTAN", "pushTAN", "PUK"]
_KEY = ["token", "access token", "auth token", "api token", "refresh token", "session token",
        "bearer token", "api key", "apikey", "secret", "secret key", "client secret",
        "private key", "access key", "secret access key", "clave api", "api schlüssel",
        "api schluessel"]


_FAMILY = {re.sub(r"[ \t\-]", "", w): family
           for family, words in (("pass", _PASS), ("pw", _PW), ("code", _CODE), ("key", _KEY))
           for w in words}
_EXACT_CASE = {w.lower(): w for w in _CODE_EXACT_CASE}
_FAMILY.update(dict.fromkeys(_EXACT_CASE, "code"))
_VIA = (r"[ \t]{1,3}(?i:for|to|of|on|für|fuer|zu|zum|zur|von|vom|para|de|del|du|pour)"
        r"(?:[ \t]{1,3}[^\s:=]{1,24}+){1,3}?")
_ASSIGN = r"[ \t]{0,3}(?:[:=：]|->|=>)[ \t]{0,3}"
_VERB = (r"[ \t]{1,3}(?i:is|was|ist|lautet|lautete|war|es|era|est|would[ \t]be|will[ \t]be"
         r"|is[ \t]now|is[ \t]still|changed[ \t]to|set[ \t]to)(?:[ \t]{0,2}[:=])?[ \t]{1,3}")
_WORD_START = r"[^\W_]"  # the character before a label is not a letter or digit
_LABEL = first_char_scan(word_branches(_PASS + _PW + _CODE + _KEY + _CODE_EXACT_CASE), _WORD_START,
                         name="label")
_STATED = WordStart(
    rf"{_LABEL}"
    r"(?![^\W_])"
    rf"(?:{_VIA}(?:(?P<via_assign>{_ASSIGN})|(?P<via_verb>{_VERB}))"
    rf"|(?P<assign>{_ASSIGN})|(?P<verb>{_VERB})|(?P<bare>[ \t]{{1,3}}))"
    r"(?P<value>[^\s]++)")
_NEXT_WORD = re.compile(r"[ \t]{1,3}([^\s]{1,64}+)")
_TRAILING = ".,;:?!)]}\"'»”’"
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“", "‚": "‘", "`": "`",
           "»": "«"}
_MASKS = ("[redacted]", "[card ", "[iban ", "[ssn ", "[ni ")

# Words that say something about a secret rather than being it, and words that end a passphrase.
STOP_WORDS = frozenset("""
a an the and or but so because if then than that this these those it its i me my mine you your
yours we our they their he she his her him them is are was were be been being am do does did done
have has had having will would shall should can could may might must not no nor yet still also
too very just only again already anymore any some all every each please pls thanks thank thx to
for of on in at by with from into onto about as via per up down out off over under since until
till after before when while where why how what which who whom whose there here now today
yesterday tomorrow ever never always sometimes reset changed change expired expires forgotten
forgot lost wrong incorrect invalid blocked locked required needed missing working work works
doesn't don't didn't isn't wasn't won't can't cannot couldn't field box link email mail sms text
number code manager policy requirements entry prompt screen page problem issue help same different
set sent new old ok okay fine accepted rejected saved
der die das den dem des ein eine einen einem einer eines und oder aber sondern denn weil wenn dann
als dass ich mich mir mein meine meinen meinem meiner du dich dir dein deine sie ihr ihre wir uns
unser ist sind waren wird werden wurde wurden hat habe haben hatte kann können könnte muss müssen
soll sollte nicht kein keine keinen noch schon auch nur bitte danke für fuer von vom zu zum zur
mit bei nach seit bis auf aus über unter vor gestern heute morgen jetzt hier dort da vergessen
zurücksetzen zurückgesetzt geändert ändern funktioniert geht falsch ungültig gesperrt abgelaufen
erneut wieder neu
el la los las un una unos unas y o pero porque si entonces que este esta esto ese esa eso yo me mi
mis tu su sus nosotros es son era fue está estaba ha he han ni ya también tambien solo otra vez
por para de del con en sin sobre desde hasta favor gracias olvidé olvide olvidada olvidado cambiar
cambiada restablecer incorrecta incorrecto inválida invalida bloqueada bloqueado caducada caducado
nueva
le les et ou mais pas ne
""".split())

_KV_COMPOUND = ["api key", "apikey", "access key", "secret key", "private key", "client secret",
                "auth token", "access token", "refresh token", "id token", "session token",
                "api token", "session id", "x api key", "x auth token"]
_KV_PLAIN = ["password", "passwd", "passphrase", "pwd", "pass", "pin", "secret", "token", "sig",
             "credential", "credentials"]
_KV_KEY = first_char_scan(word_branches(_KV_COMPOUND + _KV_PLAIN, space="[_-]?"), "[A-Za-z]",
                          name="key")
_KV = WordStart(
    rf"{_KV_KEY}"
    r"(?![A-Za-z])"
    r"(?:(?P<eq>[ \t]{0,2}=[ \t]{0,2})|(?P<json>\"[ \t]{0,2}:[ \t]{0,2})"
    r"|(?P<colon>[ \t]{0,2}:[ \t]{0,2}))"
    r"(?P<value>\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s&;,\"'<>]++)")
_KV_PLAIN_KEYS = frozenset(_KV_PLAIN)
_SHAPES = WordStart(first_char_scan({
    "s": r"k_(?:live|test)_[0-9A-Za-z]{10,}+|k-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}+",
    "r": r"k_(?:live|test)_[0-9A-Za-z]{10,}+",
    "w": r"hsec_[0-9A-Za-z]{16,}+",
    "g": r"h[pousr]_[A-Za-z0-9]{30,}+|ithub_pat_[A-Za-z0-9_]{30,}+|lpat-[A-Za-z0-9_\-]{20,}+",
    "x": r"ox[abposr]-[A-Za-z0-9\-]{10,}+",
    "A": r"(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])|Iza[0-9A-Za-z_\-]{35}(?![\w\-])",
    "S": r"G\.[\w\-]{16,}+\.[\w\-]{16,}+",
    "n": r"pm_[A-Za-z0-9]{30,}+",
    "p": r"ypi-[A-Za-z0-9_\-]{40,}+",
    "e": r"yJ[A-Za-z0-9_\-]{4,}+\.eyJ[A-Za-z0-9_\-]{4,}+(?:\.[A-Za-z0-9_\-]*+)?",
}, r"[\w\-]", name="token"))
_BEARER = WordStart(first_char_scan(word_branches(["bearer"]), _WORD_START)
                     + r"[ \t]{1,3}(?P<value>[A-Za-z0-9\-._~+/]{16,}+=*+)")
_BASIC = re.compile(first_char_scan(word_branches(["authorization"]))
                    + r"[ \t]{0,3}:[ \t]{0,3}(?i:basic)[ \t]{1,3}(?P<value>[A-Za-z0-9+/]{6,}+=*+)")
_URL_CREDENTIALS = re.compile(r"://[^\s/:@]{1,128}+:(?P<value>[^\s/@]{1,256}+)@")
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----[\sA-Za-z0-9+/=:,.]{0,20000}+"
    r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?")

_FILLER = (r"[ \t]{0,3}(?:(?i:is|was|ist|lautet|es|son|sind|are|:|=|#|number|no\.?|code|on|am|el)"
           r"[ \t:]{0,3}){0,2}")
_CVV_LABELS = ["cvv", "cvv2", "cvc", "cvc2", "cid", "csc", "card verification value",
               "card verification code", "card verification number", "security code",
               "kartenprüfnummer", "kartenpruefnummer", "prüfnummer", "pruefnummer", "prüfziffer",
               "sicherheitscode", "código de seguridad", "codigo de seguridad", "código cvv",
               "codigo cvv"]
_EXPIRY_LABELS = ["exp", "expiry", "expiry date", "expiration date", "exp date", "valid thru",
                  "valid through", "good thru", "gültig bis", "gueltig bis", "ablaufdatum",
                  "verfallsdatum", "vencimiento", "fecha de vencimiento", "caducidad",
                  "fecha de caducidad"]
_CVV = WordStart(
    first_char_scan(word_branches(_CVV_LABELS, space="[ \t]"), _WORD_START)
    + rf"(?![^\W_]){_FILLER}(?P<value>[0-9]{{3,4}})(?![0-9])")
_EXPIRY = WordStart(
    first_char_scan(word_branches(_EXPIRY_LABELS, space="[ \t]"), _WORD_START)
    + rf"\.?(?![^\W_]){_FILLER}"
    r"(?P<value>(?:0?[1-9]|1[0-2])[ \t]{0,2}[/.\-][ \t]{0,2}(?:20)?[0-9]{2}"
    r"|20[0-9]{2}[ \t]{0,2}[/.\-][ \t]{0,2}(?:0?[1-9]|1[0-2])|(?:0[1-9]|1[0-2])(?:20)?[0-9]{2})"
    r"(?![0-9])")


def secret_spans(view: str, digit_count: int) -> list[Span]:
    """Spans to mask; `digit_count` (decimal digits in `view`) skips what cannot match."""
    spans = [span for match in _STATED.finditer(view) for span in _stated(view, match)]
    if "=" in view or ":" in view:
        spans += _assignments(view)
    if len(view) >= 20:
        spans += [Span(m.start("token"), m.end(), "[redacted]", TOKEN)
                  for m in _SHAPES.finditer(view)]
        for pattern in (_BEARER, _BASIC):
            spans += [Span(m.start("value"), m.end("value"), "[redacted]", TOKEN)
                      for m in pattern.finditer(view)]
    if "-----BEGIN" in view:
        spans += [Span(m.start(), m.end(), "[redacted private key]", TOKEN)
                  for m in _PRIVATE_KEY.finditer(view)]
    if "://" in view:
        spans += [Span(m.start("value"), m.end("value"), "[redacted]", TOKEN)
                  for m in _URL_CREDENTIALS.finditer(view)]
    if digit_count >= 3:
        for pattern in (_CVV, _EXPIRY):
            spans += [Span(m.start("value"), m.end("value"), "[redacted]", CARD_DETAIL)
                      for m in pattern.finditer(view)]
    return spans


def _assignments(view: str) -> list[Span]:
    spans = []
    for match in _KV.finditer(view):
        value = match.group("value")
        plain = re.sub(r"[_-]", "", match.group("key").lower()) in _KV_PLAIN_KEYS
        if match.group("colon") and plain and value[0] not in "\"'":
            continue  # "password: …" in prose is a stated secret, judged by its words
        start, end = match.span("value")
        if value[0] in "\"'":
            start, end = start + 1, end - 1
        if end > start and not view.startswith(_MASKS, start):
            spans.append(Span(start, end, "[redacted]", SECRET))
    return spans


def _stated(view: str, match: re.Match[str]) -> list[Span]:
    label = match.group("label")
    compact = re.sub(r"[ \t\-]", "", label.lower())
    if compact in _EXACT_CASE and label != _EXACT_CASE[compact]:
        return []  # "tan leather", "puk": only TAN and PUK as written
    family = _FAMILY[compact]
    bare = match.group("bare") is not None
    start = match.start("value")
    if view.startswith(_MASKS, start):
        return []
    close = _QUOTES.get(view[start])
    if close is not None:
        end = view.find(close, start + 1, start + 202)
        if end > start + 1 and "\n" not in view[start + 1 : end]:
            return [Span(start + 1, end, "[redacted]", SECRET)]
        start += 1
    end = match.end("value")  # trailing punctuation is masked with the value, as it always was
    if match.group("assign") == "=" and "&" in view[start:end]:  # a query string: pwd=x&user=y
        end = view.index("&", start, end) or end
    value = view[start:end].rstrip(_TRAILING) or view[start]
    word = value.lower()
    if bare:
        if family == "pw" or word in STOP_WORDS:
            return []
        if family == "code" and not any(c.isdigit() for c in value):
            return []
        if family == "key" and (len(value) < 8 or not any(c.isdigit() for c in value)):
            return []
    else:
        if word in STOP_WORDS:
            return []
        if family == "key" and len(value) < 12 and not any(c.isdigit() for c in value):
            return []
        if family in ("pass", "pw") and value.isalpha() and view[end - 1].isalpha():
            end = _passphrase_end(view, end)
    return [Span(start, end, "[redacted]", SECRET)]


def _passphrase_end(view: str, end: int) -> int:
    """A passphrase of plain words runs on to the end of its clause (five more words at most)."""
    for _ in range(5):
        word = _NEXT_WORD.match(view, end)
        if word is None:
            break
        text = word.group(1)
        stripped = text.rstrip(_TRAILING)
        if not stripped or stripped.lower() in STOP_WORDS or view.startswith(_MASKS, word.start(1)):
            break
        end = word.end(1)
        if stripped != text:  # the clause ends with this word
            break
    return end
