"""Customer identity: normalised addresses and numbers, and the customer directory's view.

Email addresses are compared lower-cased (RFC 5321 local parts may be case-sensitive, no mail
system we meet treats them so). Phone numbers become E.164 with Google's phonenumbers data;
a number written without a country code is read in the configured default region.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import phonenumbers

from services.intake.safe_text import storable
from shared.contracts.inbound import CustomerIdentity


@dataclass(frozen=True)
class DirectoryEntry:
    """A row of `intake_customer`: who the customer is, as the business knows them."""

    customer_id: str
    names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    tier: str | None = None
    verified: bool = False


MAX_EMAIL = 320  # CustomerIdentity.email


def normalise_email(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    local, _, domain = address.strip().strip("<>").rpartition("@")
    # A domain IDNA cannot encode is kept as written; it still compares equal to itself.
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    normalised = f"{local}@{domain}".lower()
    # Punycode can make an address longer than the contract allows: then it is kept as written.
    return normalised if len(normalised) <= MAX_EMAIL else None


# --- the sender of an email ----------------------------------------------------------------------
@dataclass(frozen=True)
class Mailbox:
    """The first mailbox of an address header: display name (decoded) and address."""

    name: str | None
    address: str | None
    defects: tuple[str, ...] = field(default=())


_ADDR_SPEC = re.compile(r'(?:[^\s@<>()\[\],;:"\\]+|"(?:[^"\\\r\n]|\\.)*")@[^\s@<>()\[\],;:"\\]+')
_LOOKS_LIKE_ADDRESS = re.compile(r"[^\s@<>]@[^\s@<>]+\.[^\s@<>]")


def first_mailbox(value: str, decode: Callable[[str], str] = str.strip) -> Mailbox:
    """The first mailbox of a From/Sender header value, parsed in one pass without recursion.

    RFC 5322 `name-addr` is `[display-name] <addr-spec>`: when angle brackets are present, the
    address is what they hold, whatever the display name says. The standard library's parsers
    do not hold to that on every Python version: on 3.11.7 both `email.utils.getaddresses` and
    the `policy.default` header parser read `bob@example.org <eve@attacker.example>` as bob
    (CVE-2023-27043), and the header parser recurses once per nested comment (RecursionError on
    thousands). Here the display name is never a source of the address, and a display name that
    is itself an address (quoted or not) is dropped with the defect `DisplayNameIsAnAddress`,
    because agents would read it as the sender. `decode` turns the display name into text
    (RFC 2047), before that check.
    """
    for element in _elements(value):
        mailbox = _mailbox(*element, decode)
        if mailbox.address is not None:
            return mailbox
    return Mailbox(None, None, ("NoSenderAddress",))


def _elements(value: str) -> list[tuple[str, str, str | None]]:
    """Top-level comma-separated elements: (phrase, first comment, angle address or None).

    Quoted strings keep their content in the phrase; comments (nested to any depth) are left
    out of it; a group's display name ("Undisclosed recipients:") is dropped.
    """
    found: list[tuple[str, str, str | None]] = []
    phrase: list[str] = []
    comment: list[str] = []
    first_comment: str | None = None
    angle: list[str] | None = None
    angle_done: str | None = None
    depth = 0
    quoted = escaped = False

    def close() -> None:
        nonlocal phrase, first_comment, angle, angle_done
        text = "".join(phrase).strip()
        if text or angle_done is not None:
            found.append((text, first_comment or "", angle_done))
        phrase, first_comment, angle, angle_done = [], None, None, None

    for char in value:
        if escaped:  # quoted strings keep their escapes for _unquote; comments lose them
            if depth:
                if depth == 1 and len(comment) < 1024:
                    comment.append(char)
            else:
                (angle if angle is not None else phrase).append(char)
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
            if quoted and not depth:
                (angle if angle is not None else phrase).append(char)
        elif quoted:
            (angle if angle is not None else phrase).append(char)
            if char == '"':
                quoted = False
        elif depth:
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0 and first_comment is None:
                    first_comment = "".join(comment).strip()
            elif depth == 1 and len(comment) < 1024:  # a nested comment's text is not a name
                comment.append(char)
        elif char == "(":
            depth, comment = 1, []
        elif char == '"':
            quoted = True
            (angle if angle is not None else phrase).append(char)
        elif angle is not None:
            if char == ">":
                angle_done = angle_done if angle_done is not None else "".join(angle).strip()
                angle = None
            else:
                angle.append(char)
        elif char == "<":
            angle = []
        elif char in ",;":
            close()
        elif char == ":" and angle_done is None and "@" not in "".join(phrase):
            phrase = []  # "group name:" (or an obsolete route) is not part of the mailbox
        else:
            phrase.append(char)
    if angle is not None and angle_done is None:
        angle_done = "".join(angle).strip()  # "<addr" never closed
    close()
    return found


def _mailbox(phrase: str, comment: str, angle: str | None,
             decode: Callable[[str], str]) -> Mailbox:
    defects: list[str] = []
    if angle is not None:
        spec = angle.rpartition(":")[2].strip()  # obsolete source route "@a,@b:x@y"
        address = spec if _ADDR_SPEC.fullmatch(spec) else None
        name = _unquote(phrase)
    else:
        words = phrase.split()
        candidates = [w for w in words if _ADDR_SPEC.fullmatch(w)]
        if _ADDR_SPEC.fullmatch(phrase.strip()):
            address = phrase.strip()  # also '"quoted local"@example.com'
        elif candidates:  # "Maya maya@example.com", or two addresses: the first
            address, defects = candidates[0], ["AddressWithoutAngleBrackets"]
        else:
            address = None
        name = comment  # legacy "maya@example.com (Maya Patel)"
    if address is None:
        return Mailbox(None, None, ("InvalidSenderAddress",))
    text = decode(name) if name else ""
    if "@" in text and _LOOKS_LIKE_ADDRESS.search(text):
        if normalise_email(text.strip("<> ")) != normalise_email(address):
            defects.append("DisplayNameIsAnAddress")
        text = ""
    return Mailbox(text or None, address, tuple(defects))


def _unquote(text: str) -> str:
    if '"' not in text:
        return text.strip()
    out: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char != '"':
            out.append(char)
    return "".join(out).strip()


def normalise_phone(number: str | None, region: str) -> str | None:
    """E.164, or None when the text is not a possible phone number (e.g. "anonymous")."""
    if not number:
        return None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise(customer: CustomerIdentity, region: str) -> CustomerIdentity:
    """Addresses and numbers in one form; every field fit for PostgreSQL (it is looked up in the
    directory and kept in events)."""
    email = storable(customer.email) if customer.email else customer.email
    phone = storable(customer.phone) if customer.phone else customer.phone
    return customer.model_copy(update={
        "email": normalise_email(email) or email,
        "phone": normalise_phone(phone, region) or phone,
        "name": storable(customer.name) if customer.name else customer.name,
        "external_id": storable(customer.external_id) if customer.external_id
        else customer.external_id,
        "tier": storable(customer.tier) if customer.tier else customer.tier,
    })


def customer_keys(customer: CustomerIdentity) -> tuple[str, ...]:
    """Keys that name this customer, most specific first."""
    keys = []
    if customer.external_id:
        keys.append(f"customer:{customer.external_id}")
    if customer.email:
        keys.append(f"email:{customer.email}")
    if customer.phone:
        keys.append(f"phone:{customer.phone}")
    return tuple(keys)


def with_directory(customer: CustomerIdentity, entry: DirectoryEntry | None) -> CustomerIdentity:
    """The customer as the directory knows them.

    `verified` stays what the contact itself proved (a front-end's signed-in user, or a DMARC
    pass recorded by a trusted MTA): a directory entry says who owns an address, not that this
    message comes from them, so an unauthenticated From header never becomes verified."""
    if entry is None:
        return customer
    return customer.model_copy(update={
        "external_id": entry.customer_id,
        "name": customer.name or (entry.names[0] if entry.names else None),
        "tier": entry.tier,
        "verified": customer.verified,
    })
