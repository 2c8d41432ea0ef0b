"""What people actually type and say (issue 11's list), generated inside arbitrary text: no card
number, IBAN with a valid check or listed secret survives `redact`; and the ordinary numbers and
words of customer text are left alone."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from stdnum import numdb

from shared.redaction import redact
from shared.redaction_cards import luhn_valid
from shared.redaction_secrets import STOP_WORDS
from shared.redaction_spoken import WORDS
from tests.unit.test_redaction import label_ok, luhn_check_digit, pans, standalone

# --- card numbers as typed -------------------------------------------------------------------
SEPARATORS = [" ", "-", ".", "  ", "\t", "\u00a0", "\u2013", "/", "\u200b", "\n", "<br>",
              "<br />", "&nbsp;", "</td><td>", "</td>\n  <td>", "_", " - ", "\u2007", "\u202f",
              "\u00ad", "=\n", "|"]


def fours(pan: str, separator: str) -> str:
    return separator.join(pan[i : i + 4] for i in range(0, len(pan), 4))


@st.composite
def typed_forms(draw: st.DrawFn, pan: str) -> str:
    """The card number in fours, in Amex 4-6-5, one digit at a time, or split once anywhere
    (a line break, a table cell, a wrapped line), with any of the separators people and HTML use.
    """
    separator = draw(st.sampled_from(SEPARATORS))
    style = draw(st.sampled_from(["fours", "amex", "digits", "split", "plain"]))
    if style == "amex" and len(pan) == 15:
        return separator.join([pan[:4], pan[4:10], pan[10:]])
    if style == "digits":
        return separator.join(pan)
    if style == "split":
        cut = draw(st.integers(1, len(pan) - 1))
        return pan[:cut] + separator + pan[cut:]
    if style == "plain":
        return pan
    return fours(pan, separator)


def digits_in(text: str) -> str:
    """Every decimal digit of `text`, in order, whatever separates them."""
    return "".join(str(int(c)) for c in text if c.isdecimal())


NOISE = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), pan=pans(), prefix=NOISE, suffix=NOISE)
@example(data=None, pan="4111111111111111", prefix="card ", suffix=".")
def test_a_typed_card_number_never_survives(
        data: st.DataObject | None, pan: str, prefix: str, suffix: str) -> None:
    form = data.draw(typed_forms(pan)) if data else fours(pan, "\u2013")
    assume(standalone(prefix, suffix))
    out = redact(f"{prefix} {form} {suffix}")
    assert pan not in digits_in(out), out


@pytest.mark.parametrize("form", [
    "4111.1111.1111.1111", "4111  1111  1111  1111", "4111\t1111\t1111\t1111",
    "4111\u00a01111\u00a01111\u00a01111", "4111–1111–1111–1111", "4111/1111/1111/1111",
    "4111\u200b1111\u200b1111\u200b1111", "4111 1111\n1111 1111", "41111111\n11111111",
    "4111<br>1111<br/>1111<br />1111", "<td>4111</td><td>1111</td><td>1111</td><td>1111</td>",
    "<tr><td>4111 1111</td></tr>\n<tr><td>1111 1111</td></tr>", "411111  1111111111",
    "4111 1111 11111111", "card_4111_1111_1111_1111.pdf", "4111.1111.1111.1111.pdf",
    "scan-4111111111111111.jpg", "４１１１ １１１１ １１１１ １１１１",
    "4111&nbsp;1111&nbsp;1111&nbsp;1111",
    "4111&#8203;1111&#8203;1111&#8203;1111", "4111=\n1111 1111 1111",
    "4111111111111111@example.com", "4111.1111.1111.1111@example.com",
    "maya+4111111111111111@example.com", "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
    "4-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1", "41 11 11 11 11 11 11 11",
])
def test_each_written_form_from_the_issue_is_masked(form: str) -> None:
    out = redact(f"my card: {form} thanks")
    assert "4111111111111111" not in digits_in(out), out
    assert "[card ****1111]" in out


# --- card numbers as said ---------------------------------------------------------------------
UNITS = {
    "en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
    "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"],
    "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
}
EN_PAIRS = {"11": "eleven", "12": "twelve", "41": "forty-one", "37": "thirty seven",
            "55": "fifty five", "20": "twenty", "10": "ten", "00": "double oh"}


def spoken(pan: str, language: str, joiner: str) -> str:
    words = UNITS[language]
    return joiner.join(words[int(d)] for d in pan)


def spoken_digits(text: str) -> str:
    """Digits and number words of `text` read back as digits, in order."""
    tokens = re.findall(r"[0-9]+|[^\W\d_]+", text.lower())
    return "".join(t if t.isdigit() else WORDS.get(t, "") for t in tokens)


@settings(max_examples=200, deadline=None)
@given(pan=pans(), language=st.sampled_from(sorted(UNITS)),
       joiner=st.sampled_from([" ", ", ", " - ", ". ", " uh ", "... "]),
       prefix=st.sampled_from(["my card number is ", "mi tarjeta es ", "meine Kartennummer ist ",
                               "", "ok so "]),
       suffix=st.sampled_from(["", " thanks", ", gracias", " danke", " and the expiry"]))
def test_a_spoken_card_number_never_survives(
        pan: str, language: str, joiner: str, prefix: str, suffix: str) -> None:
    out = redact(prefix + spoken(pan, language, joiner) + suffix)
    assert pan not in spoken_digits(out), out
    assert "[card ****" in out


@pytest.mark.parametrize("said", [
    "four one one one one one one one one one one one one one one one",
    "four one one one, one one one one, one one one one, one one one one",
    "forty-one eleven eleven eleven eleven eleven eleven eleven",
    "four double one one one one one one one one one one one one one one",
    "cuatro uno uno uno uno uno uno uno uno uno uno uno uno uno uno uno",
    "cuarenta y uno once once once once once once once",
    "vier eins eins eins eins eins eins eins eins eins eins eins eins eins eins eins",
    "einundvierzig elf elf elf elf elf elf elf",
    "4 1 1 1 one one one one one one one one one one one one",
])
def test_spoken_digits_in_a_voicemail_are_masked(said: str) -> None:
    out = redact(f"hi this is Maya my card is {said} please call me back")
    assert out == "hi this is Maya my card is [card ****1111] please call me back"


# --- card details alone -----------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("the CVV is 123", "the CVV is [redacted]"),
    ("cvc: 4567", "cvc: [redacted]"),
    ("CVV2 123 thanks", "CVV2 [redacted] thanks"),
    ("security code 321", "security code [redacted]"),
    ("Prüfnummer 123", "Prüfnummer [redacted]"),
    ("código de seguridad es 123", "código de seguridad es [redacted]"),
    ("exp 12/27", "exp [redacted]"),
    ("expiry date: 09/2027", "expiry date: [redacted]"),
    ("valid thru 1227", "valid thru [redacted]"),
    ("gültig bis 03/28", "gültig bis [redacted]"),
    ("vencimiento 11/26", "vencimiento [redacted]"),
])
def test_a_cvv_or_expiry_on_its_own_is_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


# --- IBAN, SSN, NI number ---------------------------------------------------------------------
IBAN_COUNTRIES = {prefix: 4 + sum(int(n) for n in re.findall(r"([0-9]+)!", props["bban"]))
                  for _, prefix, _, props, _ in numdb.get("iban").prefixes
                  if len(prefix) == 2 and props.get("bban")}


def iban_check_digits(country: str, bban: str) -> str:
    """ISO 7064 mod 97-10, written independently of the code under test."""
    number = "".join(str(int(c, 36)) for c in bban + country) + "00"
    return f"{98 - int(number) % 97:02d}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(IBAN_COUNTRIES)))
    bban = draw(st.text("0123456789", min_size=IBAN_COUNTRIES[country] - 4,
                        max_size=IBAN_COUNTRIES[country] - 4))
    return country + iban_check_digits(country, bban) + bban


def compact(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text).upper()


@settings(max_examples=300, deadline=None)
@given(iban=ibans(), grouped=st.sampled_from(["", " ", "-", "\u00a0"]), lower=st.booleans(),
       prefix=st.sampled_from(["IBAN: ", "my account ", "Kontonummer ", "", "cuenta "]),
       suffix=st.sampled_from(["", ".", " thanks", ", bitte", "\n"]))
@example(iban="DE89370400440532013000", grouped=" ", lower=False, prefix="IBAN ", suffix="")
@example(iban="GB82WEST12345698765432", grouped="", lower=True, prefix="", suffix="")
def test_an_iban_with_a_valid_check_never_survives(
        iban: str, grouped: str, lower: bool, prefix: str, suffix: str) -> None:
    form = grouped.join(iban[i : i + 4] for i in range(0, len(iban), 4)) if grouped else iban
    form = form.lower() if lower else form
    out = redact(prefix + form + suffix)
    assert iban not in compact(out), out
    assert f"[iban {iban[:2]} ****{iban[-4:]}]" in out


def test_an_iban_with_a_wrong_check_is_kept() -> None:
    assert redact("DE88 3704 0044 0532 0130 00") == "DE88 3704 0044 0532 0130 00"


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    return f"{area:03d}{draw(st.integers(1, 99)):02d}{draw(st.integers(1, 9999)):04d}"


@settings(deadline=None)
@given(ssn=ssns(), form=st.sampled_from(["dashes", "spaces", "labelled"]))
def test_a_us_ssn_never_survives(ssn: str, form: str) -> None:
    assume(ssn not in ("078051120", "457555462", "219099999"))  # published, never issued
    written = {"dashes": f"{ssn[:3]}-{ssn[3:5]}-{ssn[5:]}",
               "spaces": f"{ssn[:3]} {ssn[3:5]} {ssn[5:]}",
               "labelled": f"SSN: {ssn}"}[form]
    out = redact(f"my {written} thanks")
    assert ssn not in digits_in(out), out
    assert f"[ssn ****{ssn[-4:]}]" in out


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


@settings(deadline=None)
@given(first=st.sampled_from(NINO_FIRST), second=st.sampled_from(NINO_SECOND),
       digits=st.text("0123456789", min_size=6, max_size=6), suffix=st.sampled_from("ABCD"),
       spaced=st.booleans())
def test_a_uk_national_insurance_number_never_survives(
        first: str, second: str, digits: str, suffix: str, spaced: bool) -> None:
    assume(first + second not in {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
    nino = first + second + digits + suffix
    written = (f"{nino[:2]} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}" if spaced
               else nino)
    out = redact(f"NI number {written}.")
    assert nino not in compact(out), out


# --- secrets ----------------------------------------------------------------------------------
def b64url(value: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """Tokens whose shape names them: Stripe, GitHub, Slack, AWS, Google, OpenAI-style, JWT."""
    def chars(n: int, alphabet: str = ALNUM) -> str:
        return draw(st.text(alphabet, min_size=n, max_size=n))

    kind = draw(st.sampled_from(["stripe", "github", "slack", "aws", "google", "sk", "jwt",
                                 "gitlab"]))
    if kind == "stripe":
        return f"sk_live_{chars(24)}"
    if kind == "github":
        return f"ghp_{chars(36)}"
    if kind == "slack":
        return f"xoxb-{chars(12, '0123456789')}-{chars(24)}"
    if kind == "aws":
        return "AKIA" + chars(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    if kind == "google":
        return "AIza" + chars(35)
    if kind == "sk":
        return f"sk-proj-{chars(40)}"
    if kind == "gitlab":
        return f"glpat-{chars(20)}"
    header = b64url({"alg": "HS256", "typ": "JWT"})
    payload = b64url({"sub": chars(8), "exp": draw(st.integers(0, 2**31))})
    return f"{header}.{payload}.{chars(43, ALNUM + '-_')}"


SECRET_FORMS = [
    "{token}", "Bearer {token}", "Authorization: Bearer {token}", "token={token}",
    "api_key={token}", "?pwd={token}&user=maya", "my token is {token}", "the API key: {token}",
    '{{"access_token": "{token}"}}', "x-api-key: {token}", "https://maya:{token}@shop.example/",
]


@settings(max_examples=300, deadline=None)
@given(token=tokens(), form=st.sampled_from(SECRET_FORMS), prefix=NOISE)
def test_a_listed_secret_never_survives(token: str, form: str, prefix: str) -> None:
    assume(not re.search(r"[\w\-+/.=~]$", prefix))  # the token starts a token of its own
    out = redact(f"{prefix} {form.format(token=token)} thanks")
    assert token not in out, out


PASSWORD_WORDS = ["correct", "horse", "battery", "staple", "sunshine", "Sommer", "Hund", "azul",
                  "perro", "Tr0ub4dor&3", "hunter2", "S3cr3t!", "blue42", "moon", "river"]


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.sampled_from(PASSWORD_WORDS), min_size=1, max_size=4),
       label=st.sampled_from(["password", "Password", "Passwort", "Kennwort", "contraseña",
                              "passphrase", "pwd", "pw", "memorable word"]),
       verb=st.sampled_from([" is ", ": ", " = ", "=", " ist ", " lautet ", " es ", " is: "]),
       end=st.sampled_from(["", ".", ", thanks", " and it does not work", " bitte", "\n"]))
def test_a_stated_password_never_survives(
        words: list[str], label: str, verb: str, end: str) -> None:
    """One word or a passphrase of plain words (multi-word only when every word is plain)."""
    if not all(w.isalpha() for w in words):
        words = words[:1]
    secret = " ".join(words)
    out = redact(f"Hi, my {label}{verb}{secret}{end}")
    for word in words:
        assert word not in out.split(label, 1)[1], out


@pytest.mark.parametrize(("text", "expected"), [
    ("pwd=hunter2&user=bob", "pwd=[redacted]&user=bob"),
    ("api_key=abcd1234efgh", "api_key=[redacted]"),
    ('{"password": "hunter 2"}', '{"password": "[redacted]"}'),
    ("Mein Passwort ist Sonnenschein2024", "Mein Passwort ist [redacted]"),
    ("mein Passwort lautet: Hund Katze Maus", "mein Passwort lautet: [redacted]"),
    ("mi contraseña es perro azul, gracias", "mi contraseña es [redacted] gracias"),
    ("my password is correct horse battery staple, thanks",
     "my password is [redacted] thanks"),
    ("my password for the portal is hunter2", "my password for the portal is [redacted]"),
    ("The token is 9f8e7d6c5b4a", "The token is [redacted]"),
    ("TAN 123456", "TAN [redacted]"),
    ("one-time code: 842913", "one-time code: [redacted]"),
    ("Authorization: Basic bWF5YTpodW50ZXIy", "Authorization: Basic [redacted]"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nthanks",
     "[redacted private key]\nthanks"),
    ("memorable word is giraffe", "memorable word is [redacted]"),
])
def test_each_secret_form_from_the_issue_is_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


# --- false positives --------------------------------------------------------------------------
def usps(body: str) -> str:
    total = sum(int(d) * (3 if k % 2 == 0 else 1) for k, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


USPS = usps("940011189922339788123")
# Luhn-valid numbers written as what they are not.
LUHN_PHONE = next(n for n in (f"+49151{k:08d}" for k in range(100)) if luhn_valid(n[1:]))
LUHN_ORDER = next(n for n in (f"30{k:012d}" for k in range(100)) if luhn_valid(n))
IMEI = "356938035643809"  # IMEIs carry a Luhn check digit
CUSTOMER_TEXT = [
    "Hi, my order 114-3941689-8772232 arrived damaged. I paid 900 EUR on 12/03/2024.",
    f"Please call me on {LUHN_PHONE} or +1 (415) 555-0123 after 5 pm.",
    "Meine Nummer ist 0151 23456789, erreichbar bis 18:00 Uhr.",
    f"USPS tracking {USPS[:4]} {USPS[4:8]} {USPS[8:12]} {USPS[12:16]} {USPS[16:20]} {USPS[20:]}",
    f"tracking number {USPS}",
    "UPS 1Z999AA10123456784 shows delivered",
    "Bestellung vom 01.02.2024 - 15.02.2024, Rechnung 2024-000123, Betrag 1.234,56 €",
    "Stay from 12/03/2024 - 14/03/2024 for 2 guests, total $1,249.00",
    "photo IMG_20240301_123456.jpg and PXL_20240301_123456789.jpg attached",
    "ISBN 978-3-16-148410-0, qty 2, 19.99 each",
    "server 192.168.100.200/24 answered with error 503",
    "I forgot my password yesterday and the reset link expired",
    "my password is not working since the update",
    "Mein Passwort ist falsch, bitte zurücksetzen",
    "pin the message to the top please",
    "I got a pin badge and a tan leather bag",
    "The token expired again",
    "The secret is out!",
    "my PIN doesn't work at the ATM",
    "Expected delivery 12/03, expires soon",
    "Room 123, floor 4, code of conduct applies",
    "Call me at 415.555.0123 or 415-555-0124 / 415 555 0125",
    "Invoice INV-2024-0042 for 3 x 299.00 = 897.00 EUR",
    "One of the two items was broken, the other three were fine",
    "uno de los dos paquetes llegó, el otro no",
    "Ich habe zwei Pakete bestellt, eins ist angekommen",
]


@pytest.mark.parametrize("text", CUSTOMER_TEXT)
def test_ordinary_customer_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_the_e164_number_intake_keeps_is_not_a_card() -> None:
    assert luhn_valid(LUHN_PHONE[1:])
    assert redact(LUHN_PHONE) == LUHN_PHONE


def test_a_label_does_not_spare_a_luhn_valid_number() -> None:
    """An order number or IMEI that passes the Luhn check reads as a card number: its digits
    cannot tell, and the guarantee is that no Luhn-valid number of card length is kept."""
    assert redact(f"Order number: {LUHN_ORDER}") == f"Order number: [card ****{LUHN_ORDER[-4:]}]"
    assert redact(f"My IMEI is {IMEI}") == "My IMEI is [card ****3809]"
    assert redact("order 4111 1111 1111 1111") == "order [card ****1111]"


def test_stop_words_are_words() -> None:
    assert "not" in STOP_WORDS and "nicht" in STOP_WORDS and "no" in STOP_WORDS


# --- the vectorised path agrees with the plain one --------------------------------------------
@st.composite
def runs(draw: st.DrawFn) -> object:
    from shared.redaction_cards import _Runs

    collected = _Runs()
    for _ in range(draw(st.integers(1, 4))):
        count = draw(st.integers(1, 14))
        digits = draw(st.lists(st.one_of(
            st.text("0123456789", min_size=1, max_size=4),
            st.sampled_from(["4111", "1111", "5500", "0004", "123", "41", "411111", "1111111111"]),
            st.text("0123456789", min_size=5, max_size=19)), min_size=count, max_size=count))
        starts = list(range(0, 3 * count, 3))
        collected.add((starts, [s + 1 for s in starts], digits), spoken=draw(st.booleans()))
    return collected


@settings(max_examples=300, deadline=None)
@given(collected=runs())
def test_the_numpy_window_search_finds_the_same_windows(collected: object) -> None:
    from shared.redaction_cards import _windows, _windows_numpy

    first, last = _windows_numpy(collected)  # type: ignore[arg-type]
    assert sorted(zip(first.tolist(), last.tolist(), strict=True)) == sorted(
        _windows(collected))  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(pan=pans(), count=st.integers(40, 80))
def test_text_with_very_many_digit_groups_still_masks_every_card(pan: str, count: int) -> None:
    """Past the plain path's limits every window is masked (crafted input); a card is still one."""
    text = " ".join(["7 1"] * count) + f" x {fours(pan, ' ')} y " + " ".join(["3"] * count)
    assert pan not in digits_in(redact(text))


def test_label_helper_is_shared() -> None:
    assert label_ok("[card ****1111]", "4111111111111111", "fours")
    assert luhn_check_digit("411111111111111") == "1"
