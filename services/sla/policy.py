"""SLA policy files: calendars, metric lifecycles, first-match rules and customer contracts.

A policy file is JSON validated by the pydantic models below (their JSON Schema is committed as
`policies/policy.schema.json` for editors). Validation errors name the field path and the line of
the file, so whoever edits a policy sees where it is wrong. Loading resolves holidays (explicit
dates plus the `holidays` package by country and subdivision) into pure `Calendar` values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import Field, field_validator, model_validator

from services.sla.business_time import DAY, Calendar
from shared.durations import parse_duration, positive_duration
from shared.policy_files import PolicyFileError, Strict, When, load_model

Metric = Literal["first_response", "next_response", "periodic_update", "resolution"]
METRICS: tuple[Metric, ...] = ("first_response", "next_response", "periodic_update", "resolution")
# What the SLA service derives from case events (core.on_contact, on_reply and on_status).
Signal = Literal["first_contact", "contact", "contact_after_reply", "agent_reply",
                 "pending_customer", "on_hold", "open", "solved", "reopened"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
# Years of holidays resolved at load time; clocks run for days, not decades.
HOLIDAY_YEARS = range(2024, 2036)


class HolidaySource(Strict):
    country: str | None = Field(default=None,
                                description="ISO 3166 code for the `holidays` package")
    subdivision: str | None = Field(default=None, description="state/region code, e.g. BE, CA, ENG")
    dates: list[date] = Field(default_factory=list, description="extra closed dates")

    @model_validator(mode="after")
    def _known_country(self) -> HolidaySource:
        if self.country:
            try:
                holidays_lib.country_holidays(self.country, subdiv=self.subdivision, years=2026)
            except NotImplementedError as exc:
                raise ValueError(f"unknown country/subdivision: {exc}") from exc
        elif self.subdivision:
            raise ValueError("subdivision needs a country")
        return self


class CalendarSpec(Strict):
    time_zone: str = Field(description="IANA zone, e.g. Europe/Berlin")
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[str]] = Field(
        description='local wall-time intervals per weekday, e.g. ["09:00-12:30", "13:30-18:00"]')
    holidays: HolidaySource = Field(default_factory=lambda: HolidaySource())

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("hours")
    @classmethod
    def _intervals(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for day, spans in value.items():
            last = 0
            for span in spans:
                start, end = _span(span)
                if start < last:
                    raise ValueError(f"{day}: {span} overlaps or is out of order")
                last = end
        if not any(value.values()):
            raise ValueError("a calendar needs at least one open interval a week")
        return value


def _span(text: str) -> tuple[int, int]:
    match = _INTERVAL.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an interval like 09:00-17:30")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if h1 > 23 or m1 > 59 or m2 > 59 or not start < end <= DAY:
        raise ValueError(f"{text!r}: start must be before end, end at most 24:00")
    return start, end


class MetricLifecycle(Strict):
    """When a metric's clock starts, stops (met), pauses, resumes and is cancelled."""

    start_on: list[Signal]
    stop_on: list[Signal]
    pause_on: list[Signal] = Field(default_factory=list)
    resume_on: list[Signal] = Field(default_factory=list)
    cancel_on: list[Signal] = Field(default_factory=list)
    repeats: bool = Field(default=False,
                          description="start a new cycle each time a start signal comes")
    on_restart: Literal["reset", "continue"] = Field(
        default="reset",
        description="a new cycle starts from zero, or from the last cycle's elapsed time")


Threshold = Annotated[str, Field(pattern=r"^(\d{1,2}%|(\d+d)?(\d+h)?(\d+m)?(\d+s)?)$")]


class Target(Strict):
    # "1d" is 24 hours also in business time: write business targets in hours ("16h" is two
    # eight-hour working days).
    target: str = Field(description="duration: 90s, 15m, 4h, 1d12h (1d = 24 h, also in business"
                                    " time)")
    time: Literal["business", "calendar"] = "business"
    warn: list[Threshold] = Field(
        default_factory=list,
        description='warnings: "75%" of the target elapsed and/or "10m" before the due instant')

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return positive_duration(value, "a target must be longer than zero")

    @cached_property
    def seconds(self) -> float:
        return parse_duration(self.target)

    def warnings(self) -> tuple[tuple[str, float], ...]:
        """(label, business seconds remaining when it fires), earliest first."""
        out = []
        for label in self.warn:
            remaining = (self.seconds * (1 - int(label[:-1]) / 100) if label.endswith("%")
                         else parse_duration(label))
            if 0 < remaining < self.seconds:
                out.append((label, remaining))
        return tuple(sorted(out, key=lambda w: -w[1]))


Targets = dict[Metric, Target]


class Conditions(When):
    """All given conditions must hold; a fact the case does not have yet matches nothing."""

    queue: list[str] | None = None
    intent: list[str] | None = None
    contract: list[str] | None = None


class Rule(Strict):
    name: str
    when: Conditions = Field(default_factory=Conditions)
    calendar: str
    targets: Targets


class CustomerMatch(Strict):
    email_domains: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    external_ids: list[str] = Field(default_factory=list)


class ContractSpec(Strict):
    """A customer's entitlement: overrides the matching rule's targets (and calendar)."""

    name: str
    tier: str
    customers: CustomerMatch
    calendar: str | None = None
    targets: Targets = Field(default_factory=dict)


class PolicyFile(Strict):
    version: str = Field(description="recorded on every clock started under this policy")
    calendars: dict[str, CalendarSpec]
    metrics: dict[Metric, MetricLifecycle]
    rules: list[Rule] = Field(min_length=1, description="ordered; the first match applies")
    contracts: list[ContractSpec] = Field(default_factory=list)
    schema_: str | None = Field(default=None, alias="$schema")

    @model_validator(mode="after")
    def _references(self) -> PolicyFile:
        names = set(self.calendars)
        for i, rule in enumerate(self.rules):
            if rule.calendar not in names:
                raise ValueError(f"rules[{i}] ({rule.name}): unknown calendar {rule.calendar!r}")
        for i, contract in enumerate(self.contracts):
            if contract.calendar and contract.calendar not in names:
                raise ValueError(f"contracts[{i}] ({contract.name}): unknown calendar "
                                 f"{contract.calendar!r}")
        if self.rules[-1].when.model_dump(exclude_none=True):
            raise ValueError(f"the last rule ({self.rules[-1].name}) must have no conditions, "
                             "so every case gets a policy")
        return self


class PolicyError(PolicyFileError):
    """A policy file that does not validate; the message names the file, line and field."""


@dataclass(frozen=True)
class Selection:
    """What applies to a case now: the rule, its calendar and the targets per metric."""

    rule: str
    calendar: Calendar
    targets: Mapping[str, Target]


@dataclass(frozen=True)
class Policy:
    """A loaded, validated policy: the file plus its resolved calendars.

    `first_response_by_channel` carries SLA_FIRST_RESPONSE_SECONDS when it is given together
    with a policy file: it overrides every rule's first-response target per channel (calendar
    time), so a deployment can shorten targets without editing the file.
    """

    spec: PolicyFile
    calendars: Mapping[str, Calendar]
    first_response_by_channel: Mapping[str, Target] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.spec.version

    def contract_for(self, customer: Mapping[str, str | None]) -> ContractSpec | None:
        email = (customer.get("email") or "").lower()
        domain = email.rsplit("@", 1)[-1] if "@" in email else None
        for contract in self.spec.contracts:
            match = contract.customers
            if (email and email in (e.lower() for e in match.emails)) or \
                    (domain and domain in (d.lower() for d in match.email_domains)) or \
                    (customer.get("external_id") in match.external_ids):
                return contract
        return None

    def select(self, facts: Mapping[str, str]) -> Selection:
        rule = next(r for r in self.spec.rules if r.when.holds(facts))
        targets: dict[str, Target] = dict(rule.targets.items())
        calendar = rule.calendar
        contract = next((c for c in self.spec.contracts if c.name == facts.get("contract")), None)
        if contract:
            targets.update((k, v) for k, v in contract.targets.items())
            calendar = contract.calendar or calendar
        override = self.first_response_by_channel.get(facts.get("channel", ""))
        if override:
            targets["first_response"] = override
        return Selection(rule.name if not contract else f"{rule.name}+{contract.name}",
                         self.calendars[calendar], targets)


def skeleton(seconds: Mapping[str, float]) -> Policy:
    """The walking skeleton's policy: first response only, per channel, in calendar time, with a
    warning at 75 %. Used when only SLA_FIRST_RESPONSE_SECONDS is configured."""
    week = {day: ["00:00-24:00"] for day in WEEKDAYS}

    def target(s: float) -> dict[str, Any]:
        return {"target": f"{round(s)}s", "time": "calendar", "warn": ["75%"]}
    spec = {
        "version": "skeleton-" + ",".join(f"{k}={round(v)}" for k, v in sorted(seconds.items())),
        "calendars": {"always-open": {"time_zone": "UTC", "hours": week}},
        "metrics": {"first_response": {"start_on": ["first_contact"], "stop_on": ["agent_reply"],
                                       "cancel_on": ["solved"]}},
        "rules": [*({"name": f"channel-{ch}", "when": {"channel": [ch]}, "calendar": "always-open",
                     "targets": {"first_response": target(s)}}
                    for ch, s in sorted(seconds.items()) if ch != "default"),
                  {"name": "default", "calendar": "always-open",
                   "targets": {"first_response": target(seconds.get("default", 3600.0))}}],
    }
    return load_text(json.dumps(spec), "<SLA_FIRST_RESPONSE_SECONDS>")


def with_channel_first_response(policy: Policy, seconds: Mapping[str, float]) -> Policy:
    targets = {ch: Target(target=f"{round(s)}s", time="calendar", warn=["75%"])
               for ch, s in seconds.items()}
    return Policy(policy.spec, policy.calendars, targets)


def load_text(text: str, origin: str = "<policy>") -> Policy:
    spec = load_model(PolicyFile, text, origin, error=PolicyError)
    return Policy(spec, {name: _calendar(name, c) for name, c in spec.calendars.items()})


def load(path: str | Path | None = None) -> Policy:
    """The policy at `path`, or the packaged default policy."""
    if path is None:
        text = (resources.files("services.sla") / "policies" / "default.json").read_text("utf-8")
        return load_text(text, "services/sla/policies/default.json")
    return load_text(Path(path).read_text("utf-8"), str(path))


def _calendar(name: str, spec: CalendarSpec) -> Calendar:
    weekly = tuple(tuple(_span(s) for s in spec.hours.get(day, [])) for day in WEEKDAYS)  # type: ignore[call-overload]
    closed = set(spec.holidays.dates)
    if spec.holidays.country:
        found = holidays_lib.country_holidays(spec.holidays.country,
                                              subdiv=spec.holidays.subdivision,
                                              years=HOLIDAY_YEARS)
        closed.update(found.keys())
    return Calendar(name, spec.time_zone, weekly, frozenset(closed))


def json_schema() -> dict[str, Any]:
    schema = PolicyFile.model_json_schema(by_alias=True)
    schema["$id"] = "https://switchboard.dev/schemas/sla-policy.json"
    schema["title"] = "Switchboard SLA policy"
    return schema

