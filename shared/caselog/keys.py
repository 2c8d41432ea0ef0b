"""The case log's keys: per-service row keys (HMAC) and the checkpoint signing key (Ed25519).

Neither is in the database, so its owner (or a superuser) can rewrite rows but cannot make a
rewritten or inserted row carry a valid MAC, nor sign a checkpoint.

Configuration (shared/settings.py):
- `CASELOG_ROW_KEYS`: JSON object, key id -> secret (>= 32 random bytes, base64url). A key id is
  `<source>` or `<source>#<label>` (`switchboard/intake#2026-01`): a row of source S must carry a
  key of S, so one service's key cannot write another's rows. A service signs with the last key
  listed for its source; every listed key verifies (rotation: append the new key, restart the
  writers, keep the old one for `log verify`). Give each service only its own key; give
  `log verify` all of them.
- `CASELOG_CHECKPOINT_SIGNING_KEY`: Ed25519 private key (32-byte seed, base64url), held only by
  the process that takes checkpoints. `CASELOG_CHECKPOINT_VERIFY_KEYS`: the public keys
  (base64url) `log verify` accepts; default: the signing key's.

Neither set: a development default, generated once into `<state dir>/caselog-keys.json` (mode
0600, like infra.env): a seed from which every source's row key is derived, and a checkpoint key.
`switchboard log keygen` prints production keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from shared.settings import Settings, default_state_dir, get_settings

LOCAL_KEYS_FILE = "caselog-keys.json"
LOCAL_LABEL = "local"
MIN_KEY_BYTES = 32


class KeyProblem(RuntimeError):
    """A key is missing or malformed."""


def b64decode(text: str) -> bytes:
    """base64url or standard base64, padded or not."""
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)


def b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def key_source(key_id: str) -> str:
    """The source a row key belongs to: the key id up to its `#label`."""
    return key_id.split("#", 1)[0]


@dataclass(frozen=True)
class RowKeyring:
    """Row keys by key id; `seed` (development only) derives a key for any source."""

    keys: dict[str, bytes] = field(default_factory=dict)
    seed: bytes | None = None

    def signing_key(self, source: str) -> tuple[str, bytes]:
        """The key id and key a writer of `source` signs with."""
        chosen = None
        for key_id in self.keys:
            if key_source(key_id) == source:
                chosen = key_id
        if chosen is not None:
            return chosen, self.keys[chosen]
        if self.seed is not None:
            return f"{source}#{LOCAL_LABEL}", _derive(self.seed, source)
        raise KeyProblem(
            f"no case log row key for source {source!r}: add one to CASELOG_ROW_KEYS "
            f"(key id {source!r} or {source + '#<label>'!r})"
        )

    def verifying_key(self, key_id: str) -> bytes | None:
        if key_id in self.keys:
            return self.keys[key_id]
        if self.seed is not None and key_id.endswith(f"#{LOCAL_LABEL}"):
            return _derive(self.seed, key_source(key_id))
        return None


def _derive(seed: bytes, source: str) -> bytes:
    return hmac.new(seed, b"switchboard/case_log/row-key\x00" + source.encode(), "sha256").digest()


@dataclass(frozen=True)
class CheckpointKeys:
    signing: Ed25519PrivateKey | None
    verifying: dict[str, Ed25519PublicKey]  # by key id

    def signing_key_id(self) -> str:
        if self.signing is None:
            raise KeyProblem("no checkpoint signing key: set CASELOG_CHECKPOINT_SIGNING_KEY")
        return public_key_id(self.signing.public_key())


def public_key_id(key: Ed25519PublicKey) -> str:
    """A short name for a checkpoint key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def _local_keys(state_dir: Path) -> dict[str, str]:
    """The development keys of a state dir, made on first use (0600, never overwritten: two
    processes starting at once agree on the file that was linked first)."""
    path = state_dir / LOCAL_KEYS_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = state_dir / f".{LOCAL_KEYS_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"row_seed": b64encode(secrets.token_bytes(32)),
                       "checkpoint_seed": b64encode(secrets.token_bytes(32)),
                       "note": "development keys of the case log (docs/architecture.md); "
                               "production sets CASELOG_ROW_KEYS and CASELOG_CHECKPOINT_*"}, f)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    loaded: dict[str, str] = json.loads(path.read_text("utf-8"))
    return loaded


def row_keyring_from(settings: Settings, state_dir: Path | None = None) -> RowKeyring:
    if settings.caselog_row_keys:
        keys = {}
        for key_id, secret in settings.caselog_row_keys.items():
            raw = b64decode(secret)
            if len(raw) < MIN_KEY_BYTES:
                raise KeyProblem(f"case log row key {key_id!r} has {len(raw)} bytes; "
                                f"at least {MIN_KEY_BYTES} are needed")
            keys[key_id] = raw
        return RowKeyring(keys=keys)
    local = _local_keys(state_dir or default_state_dir())
    return RowKeyring(seed=b64decode(local["row_seed"]))


def checkpoint_keys_from(settings: Settings, state_dir: Path | None = None) -> CheckpointKeys:
    signing = None
    if settings.caselog_checkpoint_signing_key:
        signing = Ed25519PrivateKey.from_private_bytes(
            b64decode(settings.caselog_checkpoint_signing_key))
    elif not settings.caselog_checkpoint_verify_keys:
        local = _local_keys(state_dir or default_state_dir())
        signing = Ed25519PrivateKey.from_private_bytes(b64decode(local["checkpoint_seed"]))
    publics = [Ed25519PublicKey.from_public_bytes(b64decode(k))
               for k in settings.caselog_checkpoint_verify_keys]
    if not publics and signing is not None:
        publics = [signing.public_key()]
    return CheckpointKeys(signing, {public_key_id(k): k for k in publics})


_row_keyring: RowKeyring | None = None


def row_keyring() -> RowKeyring:
    """The process's row keys (from the settings, loaded once)."""
    global _row_keyring
    if _row_keyring is None:
        _row_keyring = row_keyring_from(get_settings())
    return _row_keyring


def set_row_keyring(keyring: RowKeyring | None) -> None:
    """Replace the process's row keys (tests; None: load from the settings again)."""
    global _row_keyring
    _row_keyring = keyring


def generate() -> dict[str, str]:
    """Fresh production keys, for `switchboard log keygen`."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {
        "row_key": b64encode(secrets.token_bytes(32)),
        "checkpoint_signing_key": b64encode(seed),
        "checkpoint_verify_key": b64encode(
            private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)),
    }
