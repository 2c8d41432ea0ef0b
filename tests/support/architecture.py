"""The import rules of the house, read from the source with `ast` (nothing is imported or run).

- Layers run downward: the CLI may use everything; a service uses `shared` and itself, never
  another service; `shared` never uses a service.
- Only `shared/caselog` writes SQL against the case log: the rest go through its store.
- A domain core (the pure modules of a service: what decides, given the inputs and `now`) does
  no I/O and never reads the clock or the environment: no database, broker, socket, mail or
  subprocess library, no `datetime.now()`/`time.time()`, no `os.environ`. Its service's I/O
  modules and `shared`'s are off limits too, so it cannot reach them one import away.

`check(root)` returns the violations as readable lines; tests/unit/test_architecture.py holds
the tree to it and feeds it deliberate violations.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# The pure modules of each service. A module added to a service is not pure until it is listed;
# the list is the claim the docs make ("intake's core is pure") held to the code.
PURE: dict[str, frozenset[str]] = {
    "intake": frozenset({"core", "adapters", "authres", "automated", "email_parsing",
                         "html_text", "identity", "reply_text", "safe_text", "subjects"}),
    "router": frozenset({"core", "decide", "routing", "floor", "classify"}),
    "sla": frozenset({"core", "business_time", "replay"}),
    "escalation": frozenset({"core", "packet", "addresses"}),
}
# What a pure module may import from its own service besides the pure modules: what is loaded
# once at start-up and handed in (the policy; the router's intent model).
CONFIGURATION = frozenset({"policy", "model"})

# Libraries that talk to the outside world (top-level names; a submodule counts as its package).
IO_LIBRARIES = frozenset({
    "asyncpg", "aiokafka", "faststream", "httpx", "aiohttp", "requests", "urllib3", "socket",
    "smtplib", "ssl", "subprocess", "multiprocessing", "asyncio", "uvicorn", "starlette",
    "opentelemetry", "prometheus_client", "aiosmtpd",
})
IO_MODULES = frozenset({"urllib.request", "http.client", "email.mime.application"})
# shared's modules that do I/O or read settings from the environment.
SHARED_IO = frozenset({
    "shared.kafka", "shared.runtime", "shared.outbox", "shared.caselog.store",
    "shared.caselog.migrate", "shared.caselog.checkpoint", "shared.infra", "shared.telemetry",
    "shared.observe", "shared.topics_admin", "shared.dead_letters", "shared.settings",
    "shared.bootstrap", "shared.logs", "shared.clock",
})
# Calls that read the clock: `<receiver>.<name>()` with the receiver as written.
CLOCK_CALLS = frozenset({
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("time", "time"), ("time", "time_ns"), ("time", "monotonic"), ("time", "monotonic_ns"),
    ("time", "perf_counter"), ("time", "localtime"), ("time", "gmtime"),
    ("datetime.datetime", "now"), ("datetime.datetime", "utcnow"), ("datetime.date", "today"),
})
CLOCK_NAMES = frozenset({"time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns",
                         "time.perf_counter", "os.environ", "os.getenv", "os.environb",
                         "os.putenv"})

# Known exceptions to the layer rule, each with its reason. Keep this short: an entry is a debt.
ALLOWED: dict[tuple[str, str], str] = {
    # The console shows the router's queues with their KPIs and skills: it reads the routing
    # policy file through the router's own model of it rather than keeping a second one.
    ("services.console", "services.router.policy"):
        "the console renders the router's routing policy (queues, KPIs)",
    # The warm-transfer packet is shown as the escalation service wrote it to the notification.
    ("services.console", "services.escalation.packet"):
        "the console shows an escalation's packet in the escalation service's own Markdown",
}

# SQL that names the log's table; only its owner writes such SQL.
LOG_SQL = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+case_log\b", re.I)
LOG_OWNER = "shared.caselog"
# Modules that still query the log with SQL of their own, each with what it asks and why.
LOG_SQL_ALLOWED: dict[str, str] = {
    # On the hot path: one round trip joins the log (an event's seq, the authority tier the
    # case's classification needs) with the service's own escalation table; store calls would
    # make it three.
    "services.escalation.app": "an event's seq and the authority tier recorded for a case",
    # A debt: could be a store function (a case's events of some types, one key matching).
    "services.console.read": "a case's timeline (seq, type, time, data) for display",
}


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name ("services.router.policy")
    names: tuple[str, ...]  # names imported from it (`from m import a, b`), else ()
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(tree: ast.AST, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every import in the module, at any depth (an import inside a function counts too)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield Import(base, tuple(a.name for a in node.names), node.lineno)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def impure_reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Clock and environment reads: `datetime.now()`, `time.monotonic()`, `os.environ[...]`,
    and the same names imported bare (`from time import monotonic`, `from os import environ`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = _dotted(node.func.value)
            if receiver is not None and (receiver, node.func.attr) in CLOCK_CALLS:
                yield node.lineno, f"{receiver}.{node.func.attr}()"
        elif isinstance(node, ast.Attribute) and _dotted(node) in CLOCK_NAMES:
            yield node.lineno, str(_dotted(node))
        elif isinstance(node, ast.ImportFrom) and node.module in {"time", "os"}:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in CLOCK_NAMES:
                    yield node.lineno, f"from {node.module} import {alias.name}"


def _within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _targets(imp: Import) -> list[str]:
    """The modules an import may reach: `from services import router` names a module too."""
    return [imp.module, *(f"{imp.module}.{n}" for n in imp.names)]


def layer_violations(module: str, imp: Import) -> Iterator[str]:
    top, _, rest = module.partition(".")
    service = rest.partition(".")[0]
    for target in _targets(imp):
        if top == "shared" and _within(target, ["services"]):
            yield f"shared imports a service: {target}"
            return
        if top == "services" and service and _within(target, ["services"]):
            other = target.split(".")[1] if target.count(".") else ""
            if other and other != service:
                if any(_within(module, [a]) and _within(target, [b]) for a, b in ALLOWED):
                    return
                yield f"service {service!r} imports another service: {target}"
                return


def purity_violations(module: str, imp: Import) -> Iterator[str]:
    service = module.split(".")[1]
    for target in _targets(imp):
        root = target.partition(".")[0]
        if root in IO_LIBRARIES or _within(target, IO_MODULES):
            yield f"pure core imports I/O: {target}"
            return
        if _within(target, SHARED_IO):
            yield f"pure core imports shared I/O: {target}"
            return
        own = f"services.{service}"
        if target.startswith(own + ".") and target.count(".") == 2:
            name = target.split(".")[2]
            if name not in PURE[service] and name not in CONFIGURATION:
                yield f"pure core imports its service's I/O module: {target}"
                return


def is_pure(module: str) -> bool:
    parts = module.split(".")
    return (len(parts) == 3 and parts[0] == "services" and parts[1] in PURE
            and parts[2] in PURE[parts[1]])


def log_sql(module: str, tree: ast.AST) -> Iterator[str]:
    if module == LOG_OWNER or module.startswith(LOG_OWNER + ".") or module in LOG_SQL_ALLOWED:
        return
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and LOG_SQL.search(node.value)):
            yield f"{module}:{node.lineno}: SQL on case_log outside shared/caselog"


def check_source(module: str, source: str, is_package: bool = False) -> list[str]:
    """The violations of one module, given its dotted name and its text."""
    tree = ast.parse(source)
    found: list[str] = list(log_sql(module, tree))
    pure = is_pure(module)
    for imp in imports(tree, module, is_package):
        found += [f"{module}:{imp.line}: {v}" for v in layer_violations(module, imp)]
        if pure:
            found += [f"{module}:{imp.line}: {v}" for v in purity_violations(module, imp)]
    if pure:
        found += [f"{module}:{line}: pure core reads the clock or environment: {what}"
                  for line, what in impure_reads(tree)]
    return found


def check(root: Path, packages: Iterable[str] = ("shared", "services")) -> list[str]:
    found: list[str] = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(root, path)
            found += check_source(module, path.read_text("utf-8"), path.name == "__init__.py")
    return found


def missing_pure_modules(root: Path) -> list[str]:
    """Listed pure modules that no longer exist (renamed or moved): the list must follow."""
    return [f"services.{s}.{m}" for s, names in PURE.items() for m in sorted(names)
            if not (root / "services" / s / f"{m}.py").exists()]
