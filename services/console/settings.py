"""The console's settings: `CONSOLE_*` environment variables (the database and Kafka addresses
are the services' own, from `shared.settings`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import default_state_dir, infra_env_file


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", env_file=str(infra_env_file()),
                                      env_file_encoding="utf-8", extra="ignore")

    host: str = "127.0.0.1"
    # 0: any free port (the ready line names it)
    port: int = Field(default=8080, ge=0, le=65535)
    # Users and their Argon2 password hashes (`python -m services.console user add`); empty:
    # <state dir>/console-users.json. CONSOLE_USERS (the same JSON) wins over the file.
    users_file: str = ""
    users: str = ""
    # Signs the session cookie. Empty: a random key per process (sessions end with a restart).
    secret_key: str = ""
    session_hours: float = Field(default=8.0, gt=0)
    # Send cookies only over HTTPS (set it behind a TLS-terminating proxy).
    secure_cookies: bool = False
    # Live pages re-render at least this often (seconds) and at most every `min_refresh_seconds`.
    refresh_seconds: float = Field(default=5.0, gt=0)
    min_refresh_seconds: float = Field(default=0.5, ge=0)
    page_size: int = Field(default=50, ge=5, le=500)
    # SLA risk: clocks due within this many minutes, and breaches of unsolved cases this recent.
    sla_horizon_minutes: float = Field(default=15.0, gt=0)
    breached_window_hours: float = Field(default=24.0, gt=0)
    # Expected wait: the rate cases left each queue over this window.
    throughput_window_minutes: float = Field(default=30.0, gt=0)
    database_pool_size: int = Field(default=5, ge=1)
    # Failed sign-ins per user name or client address within 15 minutes before a pause.
    max_failed_logins: int = Field(default=5, ge=1)
    # CloudEvents `source` of what the console publishes.
    event_source: str = "switchboard/console"

    def users_path(self) -> Path:
        return Path(self.users_file) if self.users_file else default_state_dir() / \
            "console-users.json"


@lru_cache(maxsize=1)
def get_console_settings() -> ConsoleSettings:
    return ConsoleSettings()
