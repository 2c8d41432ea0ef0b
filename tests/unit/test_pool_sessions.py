"""Pool connections are released without a reset (`shared.runtime.keep_session`), so nothing may
leave session-scoped state on them: a session advisory lock, a `SET` without LOCAL, a
`set_config(…, false)`, a LISTEN, a cursor WITH HOLD. This reads every SQL string literal of
the services and `shared/` and allows session-scoped state only in the statements that run on a
connection of their own (the router's leadership lock, the migrations' lock)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The session-scoped statements that run on connections of their own (asyncpg.connect), never
# a pool's: exactly these literals in exactly these files, so a new one anywhere, these files
# included, is looked at.
OWN_CONNECTION = {
    ("shared/caselog/migrate.py", "SELECT pg_advisory_lock($1)"),  # one migrator at a time
    ("services/router/app.py", "SELECT pg_try_advisory_lock($1)"),  # leadership
    ("services/router/app.py", "SELECT pg_advisory_lock($1)"),  # a standby waits to lead
}
SESSION_STATE = re.compile(
    r"pg_(?:try_)?advisory_lock(?:_shared)?\s*\("  # not pg_advisory_xact_lock
    # a statement that begins with SET (not an UPDATE's SET clause), without LOCAL
    # (SQL's capitals: "Set DATABASE_ADMIN_URL to …" in a message is not one)
    r"|(?-i:(?:\A|;)\s*SET\s+(?!LOCAL\b)(?:SESSION\s+)?[a-z_.]+\s*(?:=|TO\b))"
    r"|set_config\s*\([^)]*,\s*false\s*\)"
    r"|(?-i:(?<!UN)\bLISTEN\b)"  # SQL's keyword, not a config file's "listen address"
    r"|\bWITH\s+HOLD\b",
    re.IGNORECASE,
)


def sql_literals(path: Path) -> list[tuple[int, str]]:
    """String literals (f-strings' text included), docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def sources() -> list[Path]:
    return sorted(p for d in ("shared", "services") for p in (ROOT / d).rglob("*.py"))


def test_no_session_state_is_left_on_pool_connections() -> None:
    found = []
    for path in sources():
        name = path.relative_to(ROOT).as_posix()
        for line, text in sql_literals(path):
            if SESSION_STATE.search(text) and (name, text) not in OWN_CONNECTION:
                found.append(f"{name}:{line}: {text.strip()[:80]}")
        if ".add_listener(" in path.read_text(encoding="utf-8"):
            found.append(f"{name}: asyncpg add_listener (LISTEN)")
    assert not found, "session-scoped state on what may be a pool connection:\n" + "\n".join(found)


def test_the_check_finds_what_it_looks_for() -> None:
    for sql in ("SELECT pg_advisory_lock($1)", "SELECT pg_try_advisory_lock(1)",
                "SET statement_timeout = 0", "SET search_path TO app",
                "SELECT set_config('x', 'y', false)", "LISTEN case_events",
                "DECLARE c CURSOR WITH HOLD FOR SELECT 1"):
        assert SESSION_STATE.search(sql), sql
    for sql in ("SELECT pg_advisory_xact_lock(1)", "SET LOCAL statement_timeout = 0",
                "UPDATE t SET a = 1", "UPDATE t\n   SET a = 1", "SELECT set_config('x', 'y', true)",
                "UNLISTEN *", "# listen address", "Set DATABASE_ADMIN_URL to the owner role"):
        assert not SESSION_STATE.search(sql), sql
