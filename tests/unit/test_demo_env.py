"""`make run`'s services get what they need to start from the demo's environment.

The demo starts the infrastructure itself and hands it to the services as external (they must
start nothing), and external infrastructure means no local default key: without the checkout's
local keys in their environment, intake refused to start and `make run` failed at once.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from shared.keys import DLQ_VAR, HMAC_VAR, keyring_from, local_keys
from shared.settings import REPO_ROOT, Settings

DEMO = REPO_ROOT / "deploy" / "local" / "demo"


def _procs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_procs", DEMO / "procs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_procs"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def local_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWITCHBOARD_STATE_DIR", str(tmp_path))
    for name in ("SWITCHBOARD_INFRA", HMAC_VAR, DLQ_VAR):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_on_local_infrastructure_the_services_get_the_checkouts_keys(local_state: Path) -> None:
    env = _procs().service_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, {})
    assert env["SWITCHBOARD_INFRA"] == "external"
    keys = local_keys(local_state)
    assert env[HMAC_VAR] == keys[HMAC_VAR] and env[DLQ_VAR] == keys[DLQ_VAR]
    # what intake does first: build its keyring from its settings (KeyMissing without a key)
    settings = Settings(switchboard_infra="external", switchboard_key_hmac=env[HMAC_VAR])
    assert keyring_from(settings) is not None
    # the demo's own process (local infrastructure) hashes with the same key
    assert keyring_from(Settings()).stored("chat:s-1") == keyring_from(settings).stored("chat:s-1")


def test_keys_set_in_the_environment_win(local_state: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HMAC_VAR, "k" * 43)
    env = _procs().service_env({}, {})
    assert env[HMAC_VAR] == "k" * 43


def test_with_external_infrastructure_no_local_key_is_made(local_state: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_INFRA", "external")
    env = _procs().service_env({}, {})
    assert HMAC_VAR not in env and not (local_state / "keys.env").exists()
