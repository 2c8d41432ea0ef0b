"""What a failure means for the record being handled: wait and retry, or dead-letter it.

- *transient*: the infrastructure, not the record — PostgreSQL restarting, failing over (read
  only), out of disk or memory, a statement cancelled, a lock or idle timeout, a serialisation
  failure or deadlock, a dropped connection, the broker away. The record is retried with
  backoff and its partition waits: dead-lettering valid contacts during an incident would lose
  them from the flow.
- *permanent*: anything else (data PostgreSQL refuses, a bug). Retried a few times, then
  dead-lettered.

Reasons never carry customer text: an exception's message may quote the input (a pydantic
`ValidationError`'s repr does, so do many SQL errors), so a reason names the exception's type,
its SQLSTATE and where it was raised, never its message.
"""

from __future__ import annotations

import traceback

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

# SQLSTATE classes that describe the server's condition, not the statement's data:
# 08 connection, 40 transaction rollback (serialisation, deadlock), 53 insufficient resources
# (disk full, out of memory, too many connections), 57 operator intervention (cancel, shutdown,
# cannot connect now), 58 system error (I/O), HV/XX are not included (internal errors are bugs).
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
_TRANSIENT_STATES = frozenset({
    "25006",  # read_only_sql_transaction: a fail-over made us talk to a standby
    "25P03",  # idle_in_transaction_session_timeout
    "55P03",  # lock_not_available (lock_timeout)
    "55006",  # object_in_use
    "55000",  # object_not_in_prerequisite_state (e.g. recovery in progress)
})
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    OSError, ConnectionError, TimeoutError,
    asyncpg.InterfaceError,  # the connection is closed or being reset
    asyncpg.exceptions.InternalClientError,  # protocol state lost when the server went away
    KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError,
)


def sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None)


def is_transient(exc: BaseException) -> bool:
    state = sqlstate(exc)
    if state is not None:
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    return isinstance(exc, _TRANSIENT_TYPES)


def safe_reason(exc: BaseException) -> str:
    """The exception's type, SQLSTATE and the place it was raised — never its message."""
    parts = [type(exc).__name__]
    state = sqlstate(exc)
    if state:
        parts.append(f"SQLSTATE {state}")
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        parts.append(f"at {_short(last.filename)}:{last.lineno} in {last.name}")
    return " ".join(parts)


def safe_traceback(exc: BaseException) -> str:
    """Frames only, for the service's log: where it went wrong, not what the customer wrote."""
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)[-8:]))
    return f"{safe_reason(exc)}\n{frames}"


def _short(path: str) -> str:
    for marker in ("/services/", "/shared/", "/site-packages/"):
        if marker in path:
            return path[path.index(marker) + 1:]
    return path.rsplit("/", 1)[-1]


def clean_text(text: str, limit: int = 1_500) -> str:
    """A reason fit for a header and a jsonb/text column: no control characters, bounded."""
    return "".join(c if c.isprintable() else " " for c in text)[:limit]
