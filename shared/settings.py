"""12-factor settings with working local defaults.

Every process reads the same variables. `switchboard infra up` writes the addresses of the local
broker and database to `<state dir>/infra.env`; settings read that file too (environment variables
win), so a service started after `infra up` finds the infrastructure without any export.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_state_dir() -> Path:
    """Where local infrastructure keeps data, logs and the env file (git-ignored).

    In a checkout: `<checkout>/.switchboard`; in an installed package: `./.switchboard`.
    """
    if "SWITCHBOARD_STATE_DIR" in os.environ:
        return Path(os.environ["SWITCHBOARD_STATE_DIR"])
    base = REPO_ROOT if (REPO_ROOT / "pyproject.toml").exists() else Path.cwd()
    return base / ".switchboard"


def infra_env_file() -> Path:
    return default_state_dir() / "infra.env"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=str(infra_env_file()), env_file_encoding="utf-8", extra="ignore"
    )

    # local: `switchboard infra up` starts Kafka and PostgreSQL; external: use the given addresses.
    switchboard_infra: Literal["local", "external"] = "local"
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # The services' role: INSERT and SELECT on the case log, nothing else.
    database_url: str = "postgresql://switchboard_app:switchboard_app@127.0.0.1:15432/switchboard"
    # The owner role, used only by migrations.
    database_admin_url: str = (
        "postgresql://switchboard_owner:switchboard_owner@127.0.0.1:15432/switchboard"
    )
    database_app_role: str = "switchboard_app"

    # console | otlp | none
    otel_exporter: Literal["console", "otlp", "none"] = "none"
    otel_service_name: str = "switchboard"

    # Kafka topic partitions when `switchboard topics create` provisions them.
    topic_partitions: int = 3
    # Largest inbound event accepted (bytes); larger ones are dead-lettered.
    max_inbound_event_bytes: int = 5_000_000

    # SLA: first-response targets per channel for the skeleton policy (seconds, calendar time).
    sla_first_response_seconds: dict[str, float] = {"email": 14_400, "chat": 120, "voice": 60}
    # How often the SLA and escalation services look for due timers (seconds).
    timer_tick_seconds: float = 1.0
    # Escalation: who receives first-response breaches.
    escalation_target: str = "supervisors-tier2"
    # Speeds up the services' clock in the demo (1.0 = real time).
    clock_speed: float = 1.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
