"""Where a webhook may post: URL checks and the address policy against SSRF (pure, no I/O).

A policy file names a URL; the escalation service then posts customer data to it from inside the
network. Unless allow-listed, it must never reach loopback, link-local (the cloud metadata
service at 169.254.169.254), private, shared (CGNAT), multicast, reserved or unspecified
addresses, including IPv4 addresses wrapped in IPv6 (mapped, 6to4, Teredo, NAT64). The check
runs when the policy is loaded (a literal address or `localhost`) and again on every send
against the addresses the name resolves to then (DNS rebinding), and the connection goes to the
address that was checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


@dataclass(frozen=True)
class Target:
    """A checked webhook URL, split into what the client needs."""

    scheme: str  # http | https
    host: str  # a name or an address, without brackets
    port: int
    path: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """The URL split and checked, or ValueError saying what is wrong with it."""
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("the URL contains a space or a control character")
    if not url.isascii():
        raise ValueError("the URL must be ASCII (encode an international name as xn--...)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"the URL's scheme must be http or https, not {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not carry credentials (the request is signed instead)")
    if parts.fragment:
        raise ValueError("the URL must not have a fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"the URL's port is not a number from 1 to 65535 ({exc})") from exc
    host = parts.hostname or ""
    if not host:
        raise ValueError("the URL has no host")
    if port == 0:
        raise ValueError("the URL's port is not a number from 1 to 65535")
    if not _is_address(host) and not all(
            label and len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
            for label in host.rstrip(".").split(".")):
        raise ValueError(f"{host!r} is not a host name")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def networks(specs: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings ("10.1.0.0/16", "127.0.0.1") as networks; ValueError names a bad one."""
    out = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{spec!r} is not a network like 10.1.0.0/16 ({exc})") from exc
    return tuple(out)


def _embedded(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), else itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(address: str | IPAddress, allowed: Sequence[Network] = ()) -> str | None:
    """Why a webhook may not post to `address`, or None if it may."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if any(ip in net for net in allowed if net.version == ip.version):
        return None
    inner = _embedded(ip)
    if inner != ip and any(inner in net for net in allowed if net.version == inner.version):
        return None
    # A wrapped IPv4 address is judged by itself (the wrapping prefixes count as reserved).
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(inner, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not inner.is_global:
        return f"{ip} is not a public address"
    return None


def host_refusal(host: str, allowed: Sequence[Network] = ()) -> str | None:
    """What can be known without DNS: a literal address, or a name that is always loopback."""
    if _is_address(host):
        return refusal(host, allowed)
    name = host.lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        loopback = ipaddress.ip_address("127.0.0.1")
        if refusal(loopback, allowed) is None:
            return None
        return f"{host} is a loopback name"
    return None
