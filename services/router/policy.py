"""Routing policy and intent taxonomy: data files, validated at start with errors naming the file,
line and field (shared/policy_files.py, as the SLA and escalation policies).

The models are the schema: `policies/*.schema.json` are generated from them (`write_schemas`) for
editors and front-end teams, and a unit test keeps them current.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from importlib import resources
from pathlib import Path

from pydantic import Field, model_validator

from shared.channels import registry
from shared.channels.registry import ChannelName
from shared.policy_files import PolicyFileError, Strict, load_model

POLICY_DIR = Path(__file__).resolve().parent / "policies"


class PolicyError(PolicyFileError):
    """A policy file is invalid; the message names the file, line and field."""



# --- routing policy --------------------------------------------------------------------------
class RelaxationStep(Strict):
    name: str = Field(min_length=1)
    after_seconds: float = Field(ge=0)
    # subtracted from the intent's minimum proficiency (never below 1 for a skilled queue)
    proficiency_reduction: int = Field(default=0, ge=0, le=5)
    drop_preferred_skills: bool = False


class Overflow(Strict):
    after_seconds: float = Field(gt=0, description="waiting time after which the contact "
                                 "leaves its queue for the fallback skill")
    skill: str = Field(min_length=1)
    # queue KPIs: past either, new and re-evaluated contacts of the queue overflow at once
    max_waiting: int = Field(ge=1)
    max_oldest_wait_seconds: float = Field(gt=0)


class QueueOverride(Strict):
    relaxation: tuple[RelaxationStep, ...] | None = None
    overflow: Overflow | None = None


class Capacity(Strict):
    default_units: int = Field(ge=1)
    # Capacity units a contact takes, per channel; a channel not named: its own default
    # (shared/channels/, `default_weight`).
    weights: dict[ChannelName, int] = Field(default_factory=dict)

    def weight(self, channel: str) -> int:
        found = self.weights.get(channel)
        return found if found is not None else registry.get(channel).default_weight


class AuthorityTier(Strict):
    tier: int = Field(ge=1, le=9)
    max_refund: float | None = Field(description="largest refund or credit this tier may grant; "
                                     "null: no limit")


class RoutingPolicy(Strict):
    version: int = Field(ge=1)
    default_language: str = Field(min_length=2)
    supported_languages: tuple[str, ...] = Field(min_length=1)
    language_min_confidence: float = Field(ge=0, le=1)
    confidence_threshold: float = Field(ge=0, le=1)
    triage_skill: str = Field(min_length=1)
    offer_ttl_seconds: float = Field(gt=0)
    max_missed_offers: int = Field(ge=1)
    previous_agent_hold_seconds: float = Field(ge=0)
    repeat_window_hours: float = Field(gt=0)
    aging_seconds_per_priority_level: float = Field(ge=0)
    capacity: Capacity
    authority_tiers: tuple[AuthorityTier, ...] = Field(min_length=1)
    relaxation: tuple[RelaxationStep, ...] = Field(min_length=1)
    overflow: Overflow
    queues: dict[str, QueueOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingPolicy:
        _check_steps("relaxation", self.relaxation, self.overflow)
        for key, override in self.queues.items():
            steps = override.relaxation or self.relaxation
            _check_steps(f"queues.{key}.relaxation", steps, override.overflow or self.overflow)
        tiers = [t.tier for t in self.authority_tiers]
        if tiers != sorted(set(tiers)):
            raise ValueError("authority_tiers: tiers must be unique and increasing")
        limits = [t.max_refund for t in self.authority_tiers]
        if limits[-1] is not None:
            raise ValueError("authority_tiers: the highest tier needs max_refund null (no limit)")
        if self.default_language not in self.supported_languages:
            raise ValueError("default_language: must be one of supported_languages")
        return self

    def steps_for(self, skill: str, channel: str) -> tuple[tuple[RelaxationStep, ...], Overflow]:
        """The relaxation steps and overflow of a queue: `skill-channel`, skill, then channel."""
        for key in (f"{skill}-{channel}", skill, channel):
            override = self.queues.get(key)
            if override is not None:
                return (override.relaxation or self.relaxation,
                        override.overflow or self.overflow)
        return self.relaxation, self.overflow

    def tier_for_refund(self, amount: float) -> int:
        for tier in self.authority_tiers:
            if tier.max_refund is None or amount <= tier.max_refund:
                return tier.tier
        return self.authority_tiers[-1].tier


def _check_steps(where: str, steps: tuple[RelaxationStep, ...], overflow: Overflow) -> None:
    if steps[0].after_seconds != 0:
        raise ValueError(f"{where}.0.after_seconds: the first step starts at 0")
    for i in range(1, len(steps)):
        if steps[i].after_seconds <= steps[i - 1].after_seconds:
            raise ValueError(f"{where}.{i}.after_seconds: steps must start later than the one "
                             "before")
    if overflow.after_seconds <= steps[-1].after_seconds:
        raise ValueError(f"{where}: overflow.after_seconds must come after the last step")


# --- taxonomy --------------------------------------------------------------------------------
class Intent(Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    skill: str = Field(min_length=1)
    min_proficiency: int = Field(default=1, ge=1, le=5)
    preferred_skills: tuple[str, ...] = ()
    # regular expressions, matched case-insensitively on word boundaries
    keywords: tuple[str, ...] = Field(min_length=1)
    examples: tuple[str, ...] = ()


class AccountAction(Strict):
    name: str = Field(min_length=1)
    min_tier: int = Field(ge=1, le=9)
    pattern: str = Field(min_length=1)


class Taxonomy(Strict):
    version: int = Field(ge=1)
    fallback_skill: str
    skills: tuple[str, ...] = Field(min_length=1)
    intents: tuple[Intent, ...] = Field(min_length=1)
    account_actions: tuple[AccountAction, ...] = ()
    supervisor_pattern: str
    urgent_pattern: str
    refund_pattern: str

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        if self.fallback_skill not in self.skills:
            raise ValueError("fallback_skill: must be one of skills")
        seen: set[str] = set()
        for i, intent in enumerate(self.intents):
            if intent.name in seen:
                raise ValueError(f"intents.{i}.name: duplicate intent {intent.name!r}")
            seen.add(intent.name)
            for skill in (intent.skill, *intent.preferred_skills):
                if skill not in self.skills:
                    raise ValueError(f"intents.{i}.skill: unknown skill {skill!r}")
            for j, keyword in enumerate(intent.keywords):
                _compiles(f"intents.{i}.keywords.{j}", keyword)
        for i, action in enumerate(self.account_actions):
            _compiles(f"account_actions.{i}.pattern", action.pattern)
        for name in ("supervisor_pattern", "urgent_pattern", "refund_pattern"):
            _compiles(name, getattr(self, name))
        return self

    @cached_property
    def by_name(self) -> dict[str, Intent]:
        return {i.name: i for i in self.intents}


def _compiles(where: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: not a regular expression ({exc})") from exc


# --- loading ---------------------------------------------------------------------------------
def load_policy(path: Path | None = None) -> RoutingPolicy:
    text = path.read_text("utf-8") if path else _packaged("routing.json")
    return load_model(RoutingPolicy, text, str(path or "routing.json"), PolicyError)


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    text = path.read_text("utf-8") if path else _packaged("taxonomy.json")
    return load_model(Taxonomy, text, str(path or "taxonomy.json"), PolicyError)


def _packaged(name: str) -> str:
    return (resources.files("services.router") / "policies" / name).read_text("utf-8")


def schemas() -> dict[str, str]:
    """The JSON Schema of each policy file, as written to `policies/<name>.schema.json`."""
    return {name: json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
            for name, model in (("routing", RoutingPolicy), ("taxonomy", Taxonomy))}


def write_schemas(folder: Path = POLICY_DIR) -> None:
    for name, text in schemas().items():
        (folder / f"{name}.schema.json").write_text(text, "utf-8")
