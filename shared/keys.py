"""Keys from configuration: keyed hashes of identifiers, case tokens, sealed dead letters.

Identifiers that find a case or a customer (email message ids, chat session and call ids,
customer addresses and numbers, normalised subjects, case tokens) are stored only as keyed
hashes, never as written: a message id or a session id can hold a card number, and an unkeyed
hash of a card number is reversed by trying the 10^9 numbers of its BIN. `Keyring.stored` gives
the form to write (HMAC-SHA256 under the current key, base64url), `Keyring.forms` the forms to
look up (the current key first, then the previous one while a rotation is under way). The kind
before the first colon stays readable (`email:<m1@x>` → `email~<43 characters>`) for operators;
it names the sort of identifier, never a customer's.

Dead letters keep their original bytes only sealed (`Sealer`: AES-256-GCM, `cryptography`),
bound to the dead letter's source position, so an operator who holds `SWITCHBOARD_KEY_DLQ` can
read and redrive them and nobody else can.

Where keys come from (docs/intake.md, "Keys"):
- `SWITCHBOARD_KEY_HMAC` and `SWITCHBOARD_KEY_DLQ` (at least 32 characters each; `switchboard keys
  generate` prints one); `SWITCHBOARD_KEY_HMAC_PREVIOUS` and `SWITCHBOARD_KEY_DLQ_PREVIOUS` while
  rotating.
- With `SWITCHBOARD_INFRA=local` and no key set: a key generated once into `<state dir>/keys.env`
  (mode 0600, like `infra.env`), shared by every process of the checkout. With external
  infrastructure there is no default: services refuse to start without `SWITCHBOARD_KEY_HMAC`,
  and without `SWITCHBOARD_KEY_DLQ` dead letters keep only their redacted copy.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.settings import Settings

MIN_KEY_CHARS = 32
KEYS_FILE = "keys.env"
HMAC_VAR = "SWITCHBOARD_KEY_HMAC"
DLQ_VAR = "SWITCHBOARD_KEY_DLQ"
# A stored identifier: the kind, "~", 43 base64url characters (256 bits). A raw key always has
# a colon right after its kind, so the two forms can never be mistaken for one another.
SEPARATOR = "~"
_HASH_CHARS = 43


class KeyMissing(RuntimeError):
    """A key this process needs is not configured (or is unusable); the message says which."""


def _subkey(secret: bytes, purpose: str) -> bytes:
    """One secret serves several purposes; each gets its own key, so no output of one use
    (a case token printed in a subject) says anything about another (a stored identifier)."""
    return hmac.new(secret, f"switchboard/v1/{purpose}".encode(), hashlib.sha256).digest()


def _secret(value: str, variable: str) -> bytes:
    value = value.strip()
    if len(value) < MIN_KEY_CHARS:
        raise KeyMissing(f"{variable} is shorter than {MIN_KEY_CHARS} characters: use a random "
                         "value, e.g. the output of `switchboard keys generate`")
    return value.encode("utf-8")


@dataclass(frozen=True)
class Keyring:
    """Keyed hashes of identifiers under the current key, and the forms under older keys."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    _ids: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _tokens: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", tuple(
            _subkey(s, "identifier") for s in (self.current, *self.previous)))
        object.__setattr__(self, "_tokens", _subkey(self.current, "token"))

    def __repr__(self) -> str:  # never the keys themselves, in a log or a traceback
        return f"Keyring(previous={len(self.previous)})"

    @classmethod
    def from_values(cls, current: str, previous: str = "", *,
                    variable: str = HMAC_VAR) -> Keyring:
        older = tuple(_secret(p, f"{variable}_PREVIOUS") for p in previous.split(",")
                      if p.strip())
        return cls(_secret(current, variable), older)

    def stored(self, plain: str) -> str:
        """The form of an identifier kept in a table: its kind and its keyed hash."""
        return _hashed(self._ids[0], plain)

    def forms(self, plain: str) -> tuple[str, ...]:
        """Every form the identifier may be stored under: the current key's first."""
        return tuple(_hashed(k, plain) for k in self._ids)

    def stored_all(self, plains: Iterator[str] | tuple[str, ...] | list[str]) -> list[str]:
        return [self.stored(p) for p in plains]

    def forms_all(self, plains: tuple[str, ...] | list[str]) -> list[str]:
        return [f for p in plains for f in self.forms(p)]

    def token(self, purpose: str, value: str) -> bytes:
        """A keyed digest for tokens Switchboard hands out (case references): unguessable
        without the key, stable for a value."""
        return hmac.new(self._tokens, f"{purpose}\x00{value}".encode("utf-8", "surrogatepass"),
                        hashlib.sha256).digest()


def _hashed(key: bytes, plain: str) -> str:
    kind, colon, _ = plain.partition(":")
    prefix = kind if colon and kind.isascii() and kind.isalpha() and len(kind) <= 16 else "key"
    digest = hmac.new(key, plain.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return f"{prefix}{SEPARATOR}{base64.urlsafe_b64encode(digest).decode()[:_HASH_CHARS]}"


def is_stored_form(value: str) -> bool:
    """Already a keyed hash (written by `Keyring.stored`), not an identifier as written."""
    kind, sep, digest = value.partition(SEPARATOR)
    return bool(sep) and ":" not in kind and len(digest) == _HASH_CHARS and all(
        c.isascii() and (c.isalnum() or c in "-_") for c in digest)


# --- where the keys come from -------------------------------------------------------------------
def local_keys(state_dir: Path) -> dict[str, str]:
    """The local default keys of a checkout, generated at first use into `<state dir>/keys.env`
    (0600, created under a lock so that services starting together agree on one key)."""
    from shared.infra.proc import locked, write_private

    path = state_dir / KEYS_FILE
    found = _read_env(path)
    if found.get(HMAC_VAR) and found.get(DLQ_VAR):
        return found
    with locked(state_dir / ".keys.lock"):
        found = _read_env(path)
        if not (found.get(HMAC_VAR) and found.get(DLQ_VAR)):
            found = {HMAC_VAR: found.get(HMAC_VAR) or generate(),
                     DLQ_VAR: found.get(DLQ_VAR) or generate()}
            lines = ["# Local default keys, generated by Switchboard (mode 0600). Keep this file",
                     "# as long as the local data: without it stored identifiers no longer match",
                     "# and sealed dead letters cannot be opened. Production: set the variables",
                     "# from a secret store instead (docs/intake.md, \"Keys\")."]
            lines += [f"{k}={v}" for k, v in found.items()]
            write_private(path, "\n".join(lines) + "\n")
    return found


def _read_env(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            out[name.strip()] = value.strip()
    return out


def generate() -> str:
    """A new random key (256 bits, base64url)."""
    return secrets.token_urlsafe(32)


def _configured(settings: Settings, name: str) -> str:
    value = getattr(settings, name.lower())
    return value.get_secret_value() if value is not None else ""


def _local_default(settings: Settings, variable: str) -> str:
    if settings.switchboard_infra != "local":
        return ""
    from shared.settings import default_state_dir

    return local_keys(default_state_dir()).get(variable, "")


def keyring_from(settings: Settings) -> Keyring:
    """The identifier keyring the settings describe; KeyMissing when there is none."""
    current = _configured(settings, HMAC_VAR) or _local_default(settings, HMAC_VAR)
    if not current:
        raise KeyMissing(f"{HMAC_VAR} is not set: with external infrastructure, identifiers "
                         "are hashed with a key you configure (docs/intake.md, \"Keys\")")
    return Keyring.from_values(current, _configured(settings, f"{HMAC_VAR}_PREVIOUS"))


_DEFAULT: list[Keyring] = []


def keyring() -> Keyring:
    """This process's keyring, from its settings (cached)."""
    if not _DEFAULT:
        from shared.settings import get_settings

        _DEFAULT.append(keyring_from(get_settings()))
    return _DEFAULT[0]


@contextlib.contextmanager
def using(ring: Keyring) -> Iterator[Keyring]:
    """Tests: `keyring()` is `ring` inside the block."""
    saved = list(_DEFAULT)
    _DEFAULT[:] = [ring]
    try:
        yield ring
    finally:
        _DEFAULT[:] = saved


# --- sealed dead letters ------------------------------------------------------------------------
_MAGIC = b"SBS1"
_KEY_ID = 8
_NONCE = 12


class SealError(ValueError):
    """A sealed original cannot be opened: the key is not the one it was sealed with, or the
    blob was altered or moved to another dead letter."""


@dataclass(frozen=True)
class Sealer:
    """AES-256-GCM under a key derived from `SWITCHBOARD_KEY_DLQ`; older keys open only."""

    current: bytes
    previous: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"Sealer(previous={len(self.previous)})"

    @classmethod
    def from_values(cls, current: str, previous: str = "") -> Sealer:
        older = tuple(_secret(p, f"{DLQ_VAR}_PREVIOUS") for p in previous.split(",")
                      if p.strip())
        return cls(_secret(current, DLQ_VAR), older)

    @staticmethod
    def _aes_key(secret: bytes) -> bytes:
        return _subkey(secret, "dead-letter/aes-256-gcm")

    @staticmethod
    def key_id(secret: bytes) -> bytes:
        return _subkey(secret, "dead-letter/key-id")[:_KEY_ID]

    def seal(self, plain: bytes, bound_to: bytes) -> bytes:
        """`plain` encrypted; `bound_to` (the dead letter's source position) must be given
        again to open it, so a sealed blob copied onto another row does not open."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self._aes_key(self.current)).encrypt(nonce, plain, bound_to)
        return _MAGIC + self.key_id(self.current) + nonce + sealed

    def open(self, blob: bytes, bound_to: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + _KEY_ID + _NONCE + 16:
            raise SealError("not a sealed dead letter")
        kid = blob[len(_MAGIC):len(_MAGIC) + _KEY_ID]
        nonce = blob[len(_MAGIC) + _KEY_ID:len(_MAGIC) + _KEY_ID + _NONCE]
        body = blob[len(_MAGIC) + _KEY_ID + _NONCE:]
        for secret in (self.current, *self.previous):
            if hmac.compare_digest(self.key_id(secret), kid):
                try:
                    return AESGCM(self._aes_key(secret)).decrypt(nonce, body, bound_to)
                except InvalidTag:
                    raise SealError("the sealed original does not open: altered, or moved "
                                    "from another dead letter") from None
        raise SealError(f"sealed under another key (key id {kid.hex()}): set {DLQ_VAR} or "
                        f"{DLQ_VAR}_PREVIOUS to the key it was sealed with")


def sealer_from(settings: Settings) -> Sealer | None:
    """The dead-letter sealer the settings describe; None when no key is configured."""
    current = _configured(settings, DLQ_VAR) or _local_default(settings, DLQ_VAR)
    if not current:
        return None
    return Sealer.from_values(current, _configured(settings, f"{DLQ_VAR}_PREVIOUS"))
