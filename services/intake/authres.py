"""What our own MTA found about an email's sender: `Authentication-Results` (RFC 8601).

A From header proves nothing; anyone can write any address into it. What can be believed is what
a trusted MTA recorded after checking DKIM signatures and the sender domain's DMARC policy.
Only header fields whose authserv-id is configured (`INTAKE_TRUSTED_AUTHSERV_IDS`) are read:
RFC 8601 §5 requires an MTA to remove, from incoming mail, fields that claim its own id, so
those can only be its own. Fields with any other id are the sender's and are ignored.

`sender_authentication` returns
- "pass": DMARC passed for the From domain, or a DKIM signature of the From domain itself
  (`header.d` equal to it, or `header.i` in it) verified;
- "fail": DMARC failed for the From domain (the address is not the sender's to use);
- None: nothing trusted said either way (no trusted MTA configured, no DMARC record …).
A "fail" wins over a "pass" recorded for the same message.

The parser reads each field once, character by character (no regular expressions, no
recursion); the email parser has already cut each field to 4,096 characters and at most
`MAX_FIELDS` fields are read.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_FIELDS = 20


def sender_authentication(fields: Iterable[str], trusted: Iterable[str],
                          from_address: str | None) -> str | None:
    trusted_ids = {t.strip().lower() for t in trusted if t.strip()}
    if not trusted_ids or not from_address or "@" not in from_address:
        return None
    domain = from_address.rpartition("@")[2].strip().strip(">").lower().rstrip(".")
    passed = failed = False
    for count, value in enumerate(fields):
        if count >= MAX_FIELDS:
            break
        items = _split(value)
        if not items:
            continue
        authserv = items[0].split()
        if not authserv or authserv[0].lower() not in trusted_ids:
            continue
        for item in items[1:]:
            verdict = _verdict(item, domain)
            passed |= verdict == "pass"
            failed |= verdict == "fail"
    return "fail" if failed else "pass" if passed else None


def _verdict(resinfo: str, domain: str) -> str | None:
    words = resinfo.split()
    if not words:
        return None
    method, _, result = words[0].partition("=")
    method = method.split("/")[0].lower()
    result = result.lower()
    props = {}
    for word in words[1:]:
        name, eq, value = word.partition("=")
        if eq:
            props[name.lower()] = value.strip('"').lower().rstrip(".")
    if method == "dmarc":
        about = props.get("header.from")
        if about is not None and about != domain:
            return None
        return "pass" if result == "pass" else "fail" if result == "fail" else None
    if method == "dkim" and result == "pass":
        signer = props.get("header.d")
        identity = props.get("header.i", "")
        if signer == domain or (identity and identity.rpartition("@")[2] == domain):
            return "pass"
    return None


def _split(value: str) -> list[str]:
    """The `;`-separated parts of a field, with comments removed and quoted strings kept."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
            if not depth:
                current.append(char)
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            current.append(char)
            if char == '"':
                quoted = False
        elif depth:
            depth += (char == "(") - (char == ")")
        elif char == "(":
            depth = 1
            current.append(" ")
        elif char == '"':
            quoted = True
            current.append(char)
        elif char == ";":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p] if parts and parts[0] else []
