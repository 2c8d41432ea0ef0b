"""Escalation policy files: triggers → ordered levels of targets, with acknowledgement timeouts.

JSON validated by the models below (their JSON Schema is `policies/policy.schema.json`); errors
name the file, line and field (shared/policy_files.py). Rules are first-match per trigger; a rule
with `digest: true` batches its triggers into a periodic digest instead of paging anyone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.escalation import addresses
from shared import policy_files
from shared.durations import parse_duration as parse_duration  # re-exported
from shared.durations import positive_duration
from shared.policy_files import Strict, load_model

Trigger = Literal["sla.warning", "sla.breached", "authority", "frustration", "repeat_contact",
                  "supervisor_request", "agent_request"]
_HOURS = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


Duration = Annotated[str, Field(description="90s, 15m, 4h, 1d12h")]
TIMEOUT_BOUNDS = (0.1, 60.0)
_TIMEOUT = re.compile(r"^(\d{1,6}(?:\.\d{1,3})?)(ms|s|m|h)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# An address as a mail header may carry it: no display name, no CR/LF, nothing to inject.
_MAILBOX = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}$")
_MAIL_HOST = re.compile(r"^(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?$|^[0-9a-fA-F:.]+$")


def parse_timeout(text: str) -> float:
    """"500ms", "5s", "2.5s", "1m" → seconds, within TIMEOUT_BOUNDS; else ValueError."""
    match = _TIMEOUT.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a timeout like 500ms, 5s or 1m")
    value = float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match[2]]
    low, high = TIMEOUT_BOUNDS
    if not low <= value <= high:
        raise ValueError(f"timeout {text!r} is outside {low:g}s to {high:g}s")
    return value


def _timeout(value: str) -> str:
    parse_timeout(value)
    return value


Timeout = Annotated[str, AfterValidator(_timeout),
                    Field(json_schema_extra={"pattern": r"^\d+(\.\d+)?(ms|s|m)$"},
                          description="how long one send may take: 500ms, 5s, 1m"
                                      " (from 0.1 s to 60 s)")]


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


class Shift(Strict):
    who: str = Field(min_length=1, description="who is on duty (a supervisor id or address)")
    days: list[Day] = Field(default_factory=lambda: list[Day](WEEKDAYS))
    hours: str = Field(default="00:00-24:00", description="local wall time, e.g. 08:00-16:00")

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        m = _HOURS.match(value)
        if not m or not (int(m[1]), int(m[2])) < (int(m[3]), int(m[4])) <= (24, 0):
            raise ValueError(f"{value!r} is not an interval like 08:00-16:00")
        return value


class TargetSpec(Strict):
    """Who an escalation level goes to."""

    kind: Literal["queue", "supervisor_group", "rota"]
    # queue: the router re-queues the case to this tier (and skill); the receiving agent's
    # acceptance acknowledges the escalation.
    min_authority_tier: int | None = Field(default=None, ge=1, le=9)
    skill: str | None = None
    # rota: the on-duty person, by local shift; the first matching shift wins.
    time_zone: str = "UTC"
    shifts: list[Shift] = Field(default_factory=list)
    sinks: list[str] = Field(default_factory=list,
                             description="names under `sinks`; Kafka always gets the notification")

    @model_validator(mode="after")
    def _shape(self) -> TargetSpec:
        if self.kind == "queue" and self.min_authority_tier is None:
            raise ValueError("a queue target needs min_authority_tier")
        if self.kind == "rota" and not self.shifts:
            raise ValueError("a rota target needs shifts")
        ZoneInfo(self.time_zone)
        return self


class WebhookSink(Strict):
    type: Literal["webhook"]
    # Checked before `url` (declared first): addresses this sink may reach although they are
    # loopback, link-local or private (ESCALATION_WEBHOOK_ALLOW_NETWORKS adds to it).
    allow_networks: list[str] = Field(
        default_factory=list, description="CIDR networks this sink may post to although they"
                                          " are private, loopback or link-local (SSRF guard)")
    url: str = Field(json_schema_extra={"pattern": r"^https?://"},
                     description="http(s)://host[:port]/path; no credentials, no fragment")
    secret_env: str = Field(description="environment variable holding the HMAC secret;"
                                        " it must be set when the policy is loaded")
    timeout: Timeout = "5s"
    max_attempts: int = Field(default=8, ge=1, le=50)

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        addresses.networks(value)
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        target = addresses.parse_url(value)
        allowed = addresses.networks([*info.data.get("allow_networks", ()),
                                      *_context(info).get("allow_networks", ())])
        why = addresses.host_refusal(target.host, allowed)
        if why:
            raise ValueError(f"{value} is refused: {why} (add it to allow_networks or"
                             " ESCALATION_WEBHOOK_ALLOW_NETWORKS to allow it)")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret(cls, value: str, info: ValidationInfo) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        environ = _context(info).get("environ")
        if environ is not None and not environ.get(value):
            raise ValueError(f"environment variable {value} (the webhook's secret) is not set")
        return value

    @property
    def target(self) -> addresses.Target:
        return addresses.parse_url(self.url)

    @property
    def timeout_seconds(self) -> float:
        return parse_timeout(self.timeout)


class EmailSink(Strict):
    type: Literal["email"]
    to: list[str] = Field(min_length=1, max_length=50)
    sender: str
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    timeout: Timeout = "10s"
    max_attempts: int = Field(default=8, ge=1, le=50)

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        for address in value:
            _mailbox(address)
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _mailbox(value)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not _MAIL_HOST.match(value):
            raise ValueError(f"{value!r} is not a host name or address")
        return value

    @property
    def timeout_seconds(self) -> float:
        return parse_timeout(self.timeout)


def _mailbox(value: str) -> str:
    if not _MAILBOX.match(value):
        raise ValueError(f"{value!r} is not a plain address like name@example.com")
    return value


Sink = Annotated[WebhookSink | EmailSink, Field(discriminator="type")]


class Level(Strict):
    targets: list[str] = Field(min_length=1)
    ack_timeout: Duration
    repeats: int = Field(default=0, ge=0, le=20,
                         description="notifications repeated at this level before the next")

    @field_validator("ack_timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        return positive_duration(value, "ack_timeout must be positive")


class When(policy_files.When):
    """Case attributes a rule applies to; absent = any. A fact the case lacks matches nothing."""

    metric: list[str] | None = None


class Rule(Strict):
    name: str
    trigger: Trigger
    when: When = Field(default_factory=When)
    digest: bool = Field(default=False, description="low priority: batch into the digest")
    levels: list[Level] = Field(default_factory=list)

    @model_validator(mode="after")
    def _levels(self) -> Rule:
        if not self.digest and not self.levels:
            raise ValueError("a rule that is not a digest needs at least one level")
        return self


class Thresholds(Strict):
    repeat_contact_count: int = Field(default=3, ge=1)
    # frustration "rising": sentiment fell by at least this much since the first contact
    frustration_drop: float = Field(default=0.4, gt=0, le=2)


class DigestSpec(Strict):
    every: Duration = "1h"
    targets: list[str] = Field(min_length=1)

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        return positive_duration(value, "digest.every must be positive")


class PolicyFile(Strict):
    version: str
    targets: dict[str, TargetSpec]
    sinks: dict[str, Sink] = Field(default_factory=dict)
    rules: list[Rule]
    thresholds: Thresholds = Field(default_factory=Thresholds)
    digest: DigestSpec | None = None

    @model_validator(mode="after")
    def _references(self) -> PolicyFile:
        for name, target in self.targets.items():
            for sink in target.sinks:
                if sink not in self.sinks:
                    raise ValueError(f"targets.{name}: unknown sink {sink!r}")
        for n, rule in enumerate(self.rules):
            for m, level in enumerate(rule.levels):
                for t in level.targets:
                    if t not in self.targets:
                        raise ValueError(f"rules.{n}.levels.{m}: unknown target {t!r}")
            if rule.digest and self.digest is None:
                raise ValueError(f"rules.{n}: a digest rule needs the `digest` section")
        for t in self.digest.targets if self.digest else []:
            if t not in self.targets:
                raise ValueError(f"digest: unknown target {t!r}")
        return self


@dataclass(frozen=True)
class Policy:
    spec: PolicyFile
    # Each webhook sink's secret, read from its environment variable when the policy loaded.
    secrets: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.spec.version

    def rule_for(self, trigger: str, facts: Mapping[str, str | None]) -> Rule | None:
        return next((r for r in self.spec.rules if r.trigger == trigger and r.when.holds(facts)),
                    None)

    def rule(self, name: str) -> Rule:
        return next(r for r in self.spec.rules if r.name == name)

    def on_duty(self, target: str, now: datetime) -> str | None:
        """The rota's person on duty at `now` (local shift), else None."""
        spec = self.spec.targets[target]
        local = now.astimezone(ZoneInfo(spec.time_zone))
        day, clock = WEEKDAYS[local.weekday()], local.time()
        for shift in spec.shifts:
            m = _HOURS.match(shift.hours)
            assert m is not None
            start = time(int(m[1]), int(m[2]))
            end = None if m[3] == "24" else time(int(m[3]), int(m[4]))
            if day in shift.days and start <= clock and (end is None or clock < end):
                return shift.who
        return None


def load_text(text: str, origin: str = "<escalation policy>", *,
              environ: Mapping[str, str] | None = None,
              allow_networks: Sequence[str] = ()) -> Policy:
    """The policy in `text`; every problem raises PolicyFileError naming origin:line: field.

    Checked here, not when a notification is due: durations and timeouts, webhook URLs (and
    their literal addresses against the SSRF guard, with `allow_networks` from the settings),
    and each webhook secret's environment variable (`environ`, default os.environ).
    """
    env = os.environ if environ is None else environ
    spec = load_model(PolicyFile, text, origin, context={
        "environ": env, "allow_networks": list(allow_networks)})
    secrets = {name: env[sink.secret_env].encode() for name, sink in spec.sinks.items()
               if isinstance(sink, WebhookSink)}
    return Policy(spec, secrets)


def load(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
         allow_networks: Sequence[str] = ()) -> Policy:
    if not path:
        text = (resources.files("services.escalation") / "policies" / "default.json").read_text(
            "utf-8")
        return load_text(text, "services/escalation/policies/default.json", environ=environ,
                         allow_networks=allow_networks)
    return load_text(Path(path).read_text("utf-8"), str(path), environ=environ,
                     allow_networks=allow_networks)


def single_level(target: str, ack_timeout: str = "1h") -> Policy:
    """The walking skeleton's behaviour: every SLA breach to one supervisor group, one level."""
    return load_text(json.dumps({
        "version": "skeleton", "targets": {target: {"kind": "supervisor_group"}},
        "rules": [{"name": "breach", "trigger": "sla.breached",
                   "levels": [{"targets": [target], "ack_timeout": ack_timeout}]}]}))


def json_schema() -> dict[str, Any]:
    schema = PolicyFile.model_json_schema()
    schema["$id"] = "https://switchboard.dev/schemas/escalation-policy.json"
    schema["title"] = "Switchboard escalation policy"
    return schema


def write_schema() -> None:
    path = Path(__file__).parent / "policies" / "policy.schema.json"
    path.write_text(json.dumps(json_schema(), indent=2) + "\n", "utf-8")
