"""Policy files: JSON loaded into pydantic models, with errors that name the file, line and field.

Whoever edits a policy file by hand needs to see *where* it is wrong, not a pydantic dump: every
validation error becomes `file:line: field.path: message`. The line comes from a small JSON
walker that records the line of every key and array element by path. Used by every service's
policy files (router, SLA, escalation); a service may raise its own subclass of
`PolicyFileError`. `Strict` is the base of their models and `When` of their rules' conditions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)
_scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]


class PolicyFileError(ValueError):
    """A policy file that does not validate; the message names the file, line and field."""


class Strict(BaseModel):
    """A part of a policy file: immutable, and a key it does not know is an error (a misspelt
    key must not be ignored in silence)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class When(Strict):
    """The case facts a rule applies to: each field lists the values it allows, absent = any;
    a fact the case lacks (yet) matches nothing. A policy subclasses it with the facts it may
    name, each `list[str] | None = None`."""

    priority: list[str] | None = None
    channel: list[str] | None = None
    skill: list[str] | None = None
    customer_tier: list[str] | None = None

    def holds(self, facts: Mapping[str, str | None]) -> bool:
        return all(allowed is None or facts.get(name) in allowed for name, allowed in self)


def load_model(model: type[M], text: str, origin: str = "<policy>",
               error: type[PolicyFileError] = PolicyFileError,
               context: dict[str, Any] | None = None) -> M:
    """`text` validated as `model`; a problem raises `error` naming origin:line: field.

    `context` reaches the model's validators (pydantic's validation context): checks that need
    the world outside the file, such as an environment variable that must be set, raise there
    and are reported with the file and line like any other error.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{origin}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        raise error(describe(exc, text, origin)) from exc


def describe(exc: ValidationError, text: str, origin: str) -> str:
    lines = line_index(text)
    problems = []
    for err in exc.errors():
        path = tuple(err["loc"])
        where = ".".join(str(p) for p in path) or "<root>"
        problems.append(f"{origin}:{nearest_line(lines, path)}: {where}: {err['msg']}")
    return "\n".join(problems)


def line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Line number of every key and array element, by path."""
    lines: dict[tuple[str | int, ...], int] = {}
    decoder = json.JSONDecoder()

    def ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def line_of(i: int) -> int:
        return text.count("\n", 0, i) + 1

    def value(i: int, path: tuple[str | int, ...]) -> int:
        i = ws(i)
        lines.setdefault(path, line_of(i))
        if text[i] == "{":
            i = ws(i + 1)
            while text[i] != "}":
                key, j = _scanstring(text, i + 1)
                lines[(*path, key)] = line_of(i)
                i = ws(ws(j) + 1)  # past the colon
                i = ws(value(i, (*path, key)))
                if text[i] == ",":
                    i = ws(i + 1)
            return i + 1
        if text[i] == "[":
            i, n = ws(i + 1), 0
            while text[i] != "]":
                lines[(*path, n)] = line_of(i)
                i = ws(value(i, (*path, n)))
                n += 1
                if text[i] == ",":
                    i = ws(i + 1)
            return i + 1
        _, end = decoder.raw_decode(text, i)
        return int(end)

    value(0, ())
    return lines


def nearest_line(lines: dict[tuple[str | int, ...], int], path: tuple[Any, ...]) -> int:
    """The line of the deepest part of `path` found in the file.

    Parts the file does not have are skipped rather than ending the walk: pydantic puts a
    discriminated union's tag (`sinks.hook.webhook.url`) or a function validator's name in the
    path, and the key after it is still in the file; a missing key gets its parent's line.
    """
    found: tuple[Any, ...] = ()
    line = lines.get((), 1)
    for part in path:
        if (*found, part) in lines:
            found = (*found, part)
            line = lines[found]
    return line
