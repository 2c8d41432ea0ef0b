"""Customer identity: normalised addresses and numbers, and the customer directory's view.

Email addresses are compared lower-cased (RFC 5321 local parts may be case-sensitive, no mail
system we meet treats them so). Phone numbers become E.164 with Google's phonenumbers data;
a number written without a country code is read in the configured default region.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

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


def normalise_email(address: str | None) -> str | None:
    if not address or "@" not in address:
        return None
    local, _, domain = address.strip().strip("<>").rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # keep a domain IDNA cannot encode as written; it still compares equal to itself
    return f"{local}@{domain}".lower() or None


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
    return customer.model_copy(update={
        "email": normalise_email(customer.email) or customer.email,
        "phone": normalise_phone(customer.phone, region) or customer.phone,
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
    """The customer as the directory knows them; `verified` only from a verified entry."""
    if entry is None:
        return customer
    return customer.model_copy(update={
        "external_id": entry.customer_id,
        "name": customer.name or (entry.names[0] if entry.names else None),
        "tier": entry.tier,
        "verified": customer.verified or entry.verified,
    })
