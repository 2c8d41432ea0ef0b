"""shared/keys.py: keyed identifiers, rotation, local default keys, sealed dead letters."""

from __future__ import annotations

import os
import stat
from multiprocessing import get_context
from pathlib import Path

import pytest

from shared import keys
from shared.keys import KeyMissing, Keyring, Sealer, SealError
from shared.settings import Settings

OLD = "o" * 40
NEW = "n" * 40


def test_a_stored_identifier_keeps_its_kind_and_hides_the_rest() -> None:
    ring = Keyring.from_values(NEW)
    stored = ring.stored("email:<4111111111111111@mail.example>")
    assert stored.startswith("email~") and "4111" not in stored and len(stored) == 6 + 43
    assert keys.is_stored_form(stored)
    assert not keys.is_stored_form("email:<4111111111111111@mail.example>")
    assert ring.stored("email:<a@x>") == ring.stored("email:<a@x>")
    assert ring.stored("email:<a@x>") != ring.stored("email:<b@x>")
    assert ring.stored("chat:s-1") != ring.stored("call:s-1")
    assert ring.stored("a subject without a kind").startswith("key~")


def test_another_key_gives_other_forms_and_rotation_looks_up_both() -> None:
    old, new = Keyring.from_values(OLD), Keyring.from_values(NEW, previous=OLD)
    assert old.stored("chat:s-1") != new.stored("chat:s-1")
    assert new.forms("chat:s-1") == (new.stored("chat:s-1"), old.stored("chat:s-1"))
    assert new.forms_all(["chat:a", "chat:b"]) == [*new.forms("chat:a"), *new.forms("chat:b")]


def test_tokens_are_keyed_and_separate_from_identifiers() -> None:
    a, b = Keyring.from_values(OLD), Keyring.from_values(NEW)
    assert a.token("reference", "case-1") != b.token("reference", "case-1")
    assert a.token("reference", "case-1") == Keyring.from_values(OLD).token("reference", "case-1")


def test_short_keys_are_refused_and_never_printed() -> None:
    with pytest.raises(KeyMissing, match="shorter than 32"):
        Keyring.from_values("short")
    assert OLD not in repr(Keyring.from_values(OLD)) and NEW not in repr(Sealer.from_values(NEW))


def test_external_infrastructure_without_a_key_refuses(tmp_path: Path) -> None:
    settings = Settings(switchboard_infra="external", switchboard_key_hmac=None,
                        switchboard_key_dlq=None)
    with pytest.raises(KeyMissing, match="SWITCHBOARD_KEY_HMAC is not set"):
        keys.keyring_from(settings)
    assert keys.sealer_from(settings) is None


def test_configured_keys_win(tmp_path: Path) -> None:
    settings = Settings(switchboard_infra="external", switchboard_key_hmac=NEW,
                        switchboard_key_hmac_previous=OLD, switchboard_key_dlq=NEW)
    ring = keys.keyring_from(settings)
    assert ring == Keyring.from_values(NEW, OLD)
    assert keys.sealer_from(settings) == Sealer.from_values(NEW)


def _local(state_dir: str) -> dict[str, str]:
    return keys.local_keys(Path(state_dir))


def test_the_local_default_is_generated_once_private_and_shared(tmp_path: Path) -> None:
    with get_context("spawn").Pool(3) as pool:  # processes starting together agree on one key
        found = pool.map(_local, [str(tmp_path)] * 6)
    assert all(f == found[0] for f in found)
    assert len(found[0][keys.HMAC_VAR]) >= 32 and found[0][keys.HMAC_VAR] != found[0][keys.DLQ_VAR]
    mode = stat.S_IMODE(os.stat(tmp_path / keys.KEYS_FILE).st_mode)
    assert mode == 0o600
    assert keys.local_keys(tmp_path) == found[0]


def test_local_settings_use_the_generated_keys(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_STATE_DIR", str(tmp_path))
    settings = Settings(switchboard_infra="local", switchboard_key_hmac=None,
                        switchboard_key_dlq=None)
    generated = keys.local_keys(tmp_path)
    assert keys.keyring_from(settings) == Keyring.from_values(generated[keys.HMAC_VAR])
    assert keys.sealer_from(settings) == Sealer.from_values(generated[keys.DLQ_VAR])


def test_a_sealed_original_opens_only_with_its_key_and_its_position() -> None:
    sealer = Sealer.from_values(NEW)
    blob = sealer.seal(b"4111 1111 1111 1111", b"intake/topic/0/7")
    assert b"4111" not in blob
    assert sealer.open(blob, b"intake/topic/0/7") == b"4111 1111 1111 1111"
    with pytest.raises(SealError, match="moved"):
        sealer.open(blob, b"intake/topic/0/8")
    with pytest.raises(SealError, match="another key"):
        Sealer.from_values(OLD).open(blob, b"intake/topic/0/7")
    rotated = Sealer.from_values(OLD, previous=NEW)  # the old key still opens what it sealed
    assert rotated.open(blob, b"intake/topic/0/7") == b"4111 1111 1111 1111"
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealError):
        sealer.open(tampered, b"intake/topic/0/7")
