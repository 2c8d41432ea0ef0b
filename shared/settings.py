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

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.channels import registry

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


def _first_response() -> dict[str, float]:
    return {spec.name: spec.first_response_seconds for spec in registry.channels()}


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
    # Connections per service process: consumers, the relay, timers and escalation deliveries.
    database_pool_size: int = 10

    # Kafka security (docs/operations.md). PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; SASL
    # uses SCRAM-SHA-512 unless KAFKA_SASL_MECHANISM says SCRAM-SHA-256 or PLAIN.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # The CA bundle that signed the brokers' certificates (PEM); empty: the system's CAs.
    # The broker's name is always checked against its certificate.
    kafka_ssl_cafile: str = ""
    # A client certificate and key (PEM), for brokers that require mutual TLS; optional.
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    kafka_ssl_key_password: SecretStr = SecretStr("")
    # PostgreSQL TLS needs no setting here: DATABASE_URL's `sslmode=verify-full&sslrootcert=…`
    # or the standard PGSSLMODE / PGSSLROOTCERT / PGSSLCERT / PGSSLKEY variables (asyncpg
    # reads both, as libpq does).

    # console | otlp | none
    otel_exporter: Literal["console", "otlp", "none"] = "none"

    # Kafka topic partitions when `switchboard topics create` provisions them: the most
    # instances of a service that can share a topic's work.
    topic_partitions: int = 6
    # Replicas per topic and `min.insync.replicas`; 0: from the cluster's size (3 and 2 on
    # three brokers or more, 1 and 1 on one), see shared/topics_admin.py.
    topic_replication_factor: int = 0
    topic_min_insync_replicas: int = 0
    # This process's name in its consumer group (static membership, KIP-345: a restarted
    # instance takes its partitions back at once). Unique per running process of a service:
    # a StatefulSet's pod name; default `<hostname>-<service>`, so two processes of one service
    # on one host must each set it. The router uses one fixed name: only its leader consumes.
    service_instance_id: str = ""
    # /metrics, /healthz, /readyz: 0 = the service's own default port (intake 9464, router
    # 9465, sla 9466, escalation 9467, console 9468), -1 = off.
    metrics_port: int = 0
    # Ready (for new traffic, rolling updates) only with fewer records than this behind.
    ready_max_lag: int = 10_000
    # Largest inbound event accepted (bytes); larger ones are dead-lettered.
    max_inbound_event_bytes: int = 5_000_000
    # A batch of fewer than CONSUMER_LINGER_BELOW records waits this long (milliseconds) for
    # the records arriving right behind it and takes them along: at moderate rates, one
    # transaction for a few records instead of one each. 0: no waiting.
    consumer_linger_ms: float = Field(default=25.0, ge=0, le=1_000)
    consumer_linger_below: int = Field(default=64, ge=1)

    # SLA: first-response targets per channel for the skeleton policy (seconds, calendar time);
    # default: each channel's own (shared/channels/, `first_response_seconds`).
    sla_first_response_seconds: dict[str, float] = Field(default_factory=_first_response)
    # SLA policy file (calendars, rules, contracts). Empty: the packaged default policy, or, when
    # SLA_FIRST_RESPONSE_SECONDS is set explicitly, the skeleton's first-response-only policy.
    # Both set: SLA_FIRST_RESPONSE_SECONDS overrides the file's first-response targets per channel.
    sla_policy_file: str = ""
    # The SLA timer sleeps until the next due instant; at most this long (other instances' clocks).
    sla_timer_max_idle_seconds: float = 30.0
    # How often the SLA and escalation services look for due timers (seconds).
    timer_tick_seconds: float = 1.0
    # Escalation policy file (triggers, levels, targets, sinks); empty: the packaged default.
    escalation_policy_file: str = ""
    # First retry of a failed webhook/e-mail delivery after this long, doubling each time.
    escalation_retry_base_seconds: float = 1.0
    # A receiver's Retry-After is honoured up to this long (seconds).
    escalation_retry_after_max_seconds: float = 600.0
    # Deliveries in flight at once, in total and per sink (a slow sink holds only its own).
    escalation_delivery_concurrency: int = 8
    escalation_delivery_per_sink: int = 4
    # A claimed delivery is the worker's for this long (seconds, more than any send's timeout);
    # a worker that died meanwhile leaves it to be claimed again after it.
    escalation_delivery_lease_seconds: float = 180.0
    # Networks webhooks may reach although loopback, link-local or private (CIDR), for every
    # sink; a sink's `allow_networks` adds its own. Default: none (public addresses only).
    escalation_webhook_allow_networks: list[str] = []
    # An HTTP proxy for webhooks (http://host:port, HTTP CONNECT). The *_proxy environment
    # variables are ignored; empty: direct connections.
    escalation_webhook_proxy: str = ""
    # Router: policy files (default: the packaged ones) and the intent model: `default` (the
    # model shipped in the package), a trained model file, or `rules` (the taxonomy's
    # keywords); see docs/router.md.
    router_policy_path: str | None = None
    router_taxonomy_path: str | None = None
    router_model_path: str | None = "default"
    # Case log tamper evidence (docs/architecture.md, "The case log"; shared/caselog/keys.py).
    # Row keys: {"<source>[#<label>]": "<>= 32 random bytes, base64url>"}; a service needs its
    # own, `log verify` all. Empty: development keys in <state dir>/caselog-keys.json.
    caselog_row_keys: dict[str, str] = {}
    # Ed25519 key (32-byte seed, base64url) of the process that takes checkpoints, and the
    # public keys `log verify` accepts (default: the signing key's).
    caselog_checkpoint_signing_key: str = ""
    caselog_checkpoint_verify_keys: list[str] = []
    # Append-only file of signed checkpoints; empty: <state dir>/caselog-checkpoints.jsonl.
    # Put it on storage the database's owner cannot rewrite (WORM, see docs/architecture.md).
    caselog_checkpoint_file: str = ""
    # How often the periodic checkpoint task takes one (seconds).
    caselog_checkpoint_interval_seconds: float = 300.0

    # Speeds up the services' clock in the demo (1.0 = real time).
    clock_speed: float = 1.0

    # Intake (docs/intake.md). Limits: larger or bigger emails are dead-lettered with the reason.
    intake_max_email_bytes: int = 3_500_000  # decoded RFC 5322 bytes (the event holds base64)
    intake_max_email_headers: int = 500
    intake_max_attachments: int = 50
    intake_max_mime_parts: int = 200
    # Same customer, same normalised subject, open case last heard from within this window.
    intake_thread_window_hours: float = 72.0
    # Chat messages closer together than this (and before an agent replied) are one contact.
    intake_chat_burst_seconds: float = 120.0
    # A new chat session of a customer with an open case joins that case instead of a new one.
    intake_chat_joins_open_case: bool = False
    # Recognise records processed before derived ids came from (ce_source, ce_id) when they are
    # redelivered or redriven (docs/intake.md, "Derived ids"); off once no inbound topic or dead
    # letter holds a record from before that upgrade.
    intake_legacy_ids: bool = True
    # Region for phone numbers written without a country code (ISO 3166 alpha-2).
    intake_default_phone_region: str = "US"
    # Extra regular expressions whose matches are masked, e.g. ["\\bACCT-\\d{8}\\b"].
    intake_redaction_patterns: list[str] = []
    # Parsing off the event loop (docs/intake.md, "Limits"): emails, and records whose JSON is
    # larger than INTAKE_PARSE_INLINE_MAX_BYTES, are parsed in worker processes with a deadline;
    # a record that misses it is dead-lettered as `parse_timeout`. 0 workers: parse inline.
    intake_parse_workers: int = 2
    intake_parse_deadline_seconds: float = 2.0
    intake_parse_inline_max_bytes: int = 16_384
    # Address space a worker may add to what it has after start-up (MB); 0: no limit.
    intake_parse_worker_memory_mb: int = 1_024
    # Nesting of MIME parts (multipart, message/rfc822) beyond which an email is refused.
    intake_max_mime_depth: int = 16
    # Authentication-Results (RFC 8601) are believed only from these authserv-ids: your own
    # MTAs, which remove such headers claiming their id from incoming mail. A DMARC pass (or a
    # DKIM pass of the From domain) recorded by one makes the sender verified; a DMARC fail
    # keeps the message from joining a case by thread, token or subject (docs/intake.md).
    intake_trusted_authserv_ids: list[str] = []

    # Keys (shared/keys.py, docs/intake.md "Keys"): at least 32 random characters each. Unset
    # with SWITCHBOARD_INFRA=local: generated once into <state dir>/keys.env (0600).
    # Identifiers kept in tables (message, session and call ids, customer keys, subjects) are
    # HMAC-SHA256 under this key; case tokens are derived with it.
    switchboard_key_hmac: SecretStr | None = None
    # The key before a rotation (comma-separated for several): looked up, never written.
    switchboard_key_hmac_previous: SecretStr | None = None
    # Dead letters' original bytes are kept AES-256-GCM encrypted under this key; unset (and
    # no local default): only their redacted copy is kept, and they cannot be redriven.
    switchboard_key_dlq: SecretStr | None = None
    switchboard_key_dlq_previous: SecretStr | None = None
    # Retention of the topics that hold what front-ends sent as they sent it (card numbers
    # included): the inbound topics and every dead-letter topic (`switchboard topics create`).
    topic_retention_inbound_hours: float = 168.0
    topic_retention_dlq_hours: float = 336.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
