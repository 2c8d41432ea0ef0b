"""Intake's app: inbound topics → threading lookup → core → case log and outbox.

The handler runs inside the runtime's transaction: what it reads (threads, open cases, chat
sessions, the directory) and writes (new thread keys, case and session state) commits together
with the case events, so a redelivery sees exactly the state the first delivery left.

Every identifier is written as its keyed hash (`Keyring.stored`) and looked up under every key
still in use (`Keyring.forms`): no message id, session or call id, customer address or subject
is kept as written. A key found only under the previous key gets its current form as well, so
a rotation re-keys what is still in use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import ValidationError

from services.intake import core, suppression
from services.intake.email_parsing import EmailLimits
from services.intake.identity import DirectoryEntry
from services.intake.parse_pool import ParsePool, ParseTimeout, TaskFailed, WorkerCrashed, where
from services.intake.safe_text import storable_tree, without_surrogates
from shared.caselog import store as caselog
from shared.caselog.store import any_logged
from shared.channels import registry
from shared.contracts import inbound as ib
from shared.contracts.base import Contract, inbound_cause
from shared.contracts.envelope import Envelope
from shared.events import Decision
from shared.keys import Keyring, keyring_from
from shared.redaction import compile_patterns
from shared.runtime import BatchHooks, Rejected, Route, ServiceRuntime
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)


class IntakeHandler:
    def __init__(self, settings: Settings, pool: ParsePool | None = None,
                 ring: Keyring | None = None, started_at: datetime | None = None) -> None:
        self.settings = settings
        # Records older than this process may have been processed by an intake that derived
        # ids from `ce_id` alone; None: any record may (`_processed_before_upgrade`).
        self.started_at = started_at
        self.ring = ring or keyring_from(settings)  # KeyMissing: the service does not start
        self.config = core.IntakeConfig(
            email_limits=EmailLimits(
                max_bytes=settings.intake_max_email_bytes,
                max_headers=settings.intake_max_email_headers,
                max_attachments=settings.intake_max_attachments,
                max_parts=settings.intake_max_mime_parts,
                max_depth=settings.intake_max_mime_depth),
            phone_region=settings.intake_default_phone_region,
            redaction_patterns=compile_patterns(settings.intake_redaction_patterns),
            keys=self.ring,
            trusted_authserv_ids=tuple(settings.intake_trusted_authserv_ids),
        )
        self.thread_rules = core.ThreadRules(
            window=timedelta(hours=settings.intake_thread_window_hours),
            joins_open_case=settings.intake_chat_joins_open_case)
        if pool is None and settings.intake_parse_workers > 0:
            pool = ParsePool(settings.intake_parse_workers,
                             settings.intake_parse_deadline_seconds,
                             memory_mb=settings.intake_parse_worker_memory_mb,
                             passthrough=(core.Unprocessable,))
        self.pool = pool
        # Records this handler refused, by envelope: when a batch is retried one record at a
        # time, a record that timed out is refused again at once instead of after the deadline.
        self._refused: OrderedDict[int, tuple[Envelope, str]] = OrderedDict()
        # Cases reopened by earlier records of the transaction on this connection: their
        # `case.reopened` is appended with the batch's other events at its end (the runtime's
        # deferred appends), so the log cannot tell a later record of the batch yet.
        self._reopened: dict[int, set[str]] = {}

    def begin_transaction(self, conn: asyncpg.Connection) -> None:
        self._reopened[id(conn)] = set()

    async def start(self) -> None:
        if self.pool is not None:
            await self.pool.start()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    def worker_pids(self) -> list[int]:
        return self.pool.pids() if self.pool is not None else []

    async def __call__(self, conn: asyncpg.Connection, envelope: Envelope, payload: Any,
                       now: datetime) -> Decision:
        contact = await self.understand(envelope, payload, now)
        if contact is None:
            return Decision()
        released = await suppression.released(conn, contact.dedup_key, self.ring) \
            if contact.automated else None
        if released is not None:  # an operator said this "automated" mail is a person's
            contact = suppression.as_person(contact, released.suppression_id)
        thread = await self._thread(conn, contact, released)
        cause = inbound_cause(envelope.source, envelope.id)
        decision, case_id = await self.decide(contact, thread, cause, now)
        suppressed = case_id is None and contact.automated and not thread.duplicate
        if (decision.events or suppressed) and self._maybe_legacy(envelope) and \
                await _processed_before_upgrade(conn, envelope):
            return Decision()
        if suppressed:
            # No case to record it on: set aside with its reason, never dropped in silence.
            await suppression.store(conn, suppression.record(contact, cause, self.config))
        if case_id is not None and not thread.duplicate:
            await self._remember(conn, contact, thread, case_id, decision, released)
        if case_id is not None and any(e.type == "case.reopened" for e in decision.events):
            self._reopened.setdefault(id(conn), set()).add(case_id)
        return decision

    async def _solved(self, conn: asyncpg.Connection, case_id: str) -> bool:
        return not self._reopened_here(conn, case_id) and await _solved(conn, case_id)

    def _reopened_here(self, conn: asyncpg.Connection, case_id: str) -> bool:
        """Reopened by an earlier record of this transaction: its `case.reopened` is appended
        with the batch's other events at the end, so the log cannot say so yet."""
        return case_id in self._reopened.get(id(conn), ())

    def _maybe_legacy(self, envelope: Envelope) -> bool:
        """Whether the record may have been processed before ids derived from (source, id): a
        record sent after this process started cannot have been."""
        return self.settings.intake_legacy_ids and (
            self.started_at is None or envelope.time < self.started_at)

    # --- the pure work, bounded -----------------------------------------------------------
    async def understand(self, envelope: Envelope, payload: Any,
                         now: datetime) -> core.IncomingContact | None:
        """`core.understand`, off the event loop for emails and large records; raises Rejected
        (with a reason that quotes no customer text) for everything it cannot turn into one."""
        refused = self._refused.get(id(envelope))
        if refused is not None and refused[0] is envelope:
            raise Rejected(refused[1])
        offload = isinstance(payload, ib.EmailReceived) or (
            len(payload.model_dump_json()) > self.settings.intake_parse_inline_max_bytes)
        try:
            contact: core.IncomingContact | None = await self._run(
                offload, core.understand, envelope.type, payload, now, self.config)
        except Rejected as exc:
            self._remember_refusal(envelope, str(exc))
            raise
        return contact

    async def decide(self, contact: core.IncomingContact, thread: core.Thread,
                     cause: str, now: datetime) -> tuple[Decision, str | None]:
        """`core.decide` (redaction of every string), off the event loop for large contacts."""
        size = sum(len(t or "") for t in (contact.text, contact.full_text, contact.subject))
        result: tuple[Decision, str | None] = await self._run(
            size > self.settings.intake_parse_inline_max_bytes, core.decide, contact, thread,
            cause, now, self.config)
        return result

    async def _run(self, offload: bool, fn: Callable[..., Any], *args: Any) -> Any:
        step = fn.__name__
        try:
            if offload and self.pool is not None:
                try:
                    return await self.pool.run(fn, *args)
                except WorkerCrashed:  # the OOM killer or a crash: once more, on a new worker
                    log.warning("intake: parse worker died during %s; trying once more", step)
                    return await self.pool.run(fn, *args)
            return fn(*args)
        except core.Unprocessable as exc:
            raise Rejected(str(exc)) from None
        except ParseTimeout:
            raise Rejected(f"parse_timeout: {step} took longer than "
                           f"{self.settings.intake_parse_deadline_seconds:g} s") from None
        except WorkerCrashed:
            raise Rejected(f"parse_failed: the worker died twice during {step}") from None
        except TaskFailed as exc:
            log.error("intake: %s failed in a parse worker: %s", step, exc)
            reason = "parse_memory" if exc.kind == "MemoryError" else "parse_failed"
            raise Rejected(f"{reason}: {step} raised {exc.kind}") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the pure path must not crash; its type says enough
            # Not the traceback: a ValidationError's text quotes the customer's input.
            log.error("intake: %s failed inline: %s at %s", step, type(exc).__name__, where(exc))
            raise Rejected(f"parse_failed: {step} raised {type(exc).__name__}") from None

    def _remember_refusal(self, envelope: Envelope, reason: str) -> None:
        self._refused[id(envelope)] = (envelope, reason)
        while len(self._refused) > 1_024:
            self._refused.popitem(last=False)

    async def _thread(self, conn: asyncpg.Connection, contact: core.IncomingContact,
                      released: suppression.Released | None = None) -> core.Thread:
        """The case a contact joins (first rule that finds one it may join, see
        `core.may_join`), or none, with the case it named but may not join."""
        ring = self.ring
        extra = released.related_keys if released is not None else ()
        # The first lookup is always the contact's own thread keys: its rows come in the same
        # round trip as the directory entry and the message's dedup key (`_first_look`).
        lookups = core.thread_lookups(contact, self.thread_rules, True)
        first = lookups[0]
        dedup = (contact.dedup_key,) if contact.dedup_key else ()
        directory, filed = await _first_look(conn, ring, contact, (*dedup, *first.keys), extra)
        keys = core.customer_keys(contact)
        if directory is not None:
            keys = (f"customer:{directory.customer_id}", *keys)
        if dedup:
            seen = await _filed(conn, ring, filed, dedup)
            if seen:
                return core.Thread(case_id=seen[0], duplicate=True)
        sender = ring.forms_all(list(keys))
        related: str | None = None
        chosen: core.Candidate | None = None

        async def consider(step: core.Lookup, found: list[str]) -> bool:
            nonlocal related, chosen
            if not found:
                return False
            members = await _participants(conn, found, sender) if step.participants else set(found)
            for case_id in found:
                candidate = core.Candidate(case_id, step.how, case_id in members)
                if core.may_join(contact, candidate):
                    chosen = candidate
                    return True
                related = related or case_id
            return False

        for step in core.thread_lookups(contact, self.thread_rules, bool(keys)):
            if step.open_case:
                subjects = tuple(f for k in step.keys for f in ring.forms(k)) or None
                found = await _open_cases(conn, sender, subjects, step.since, self._solved)
            elif step == first:  # already read with the directory
                found = await _filed(conn, ring, filed, step.keys,
                                     extra if step.how == "thread" else ())
            else:
                found = await _cases(conn, ring, step.keys, extra if step.how == "thread" else ())
            if await consider(step, found):
                break
        if chosen is None:
            return core.Thread(directory=directory, related_case_id=related)
        case_id = chosen.case_id
        solved, burst = await _joined(conn, ring, contact, case_id,
                                      self.settings.intake_chat_burst_seconds)
        return core.Thread(case_id=case_id, how=chosen.how,
                           solved=solved and not self._reopened_here(conn, case_id),
                           burst_contact_id=burst, directory=directory)

    async def _remember(self, conn: asyncpg.Connection, contact: core.IncomingContact,
                        thread: core.Thread, case_id: str, decision: Decision,
                        released: suppression.Released | None) -> None:
        ring = self.ring
        keys = ring.stored_all([*contact.own_keys,
                                *([contact.dedup_key] if contact.dedup_key else [])])
        if released is not None and released.message_key:
            keys.append(released.message_key)  # the original message's key, already keyed
        opened = next((e.data for e in decision.events if e.type == "case.opened"), None)
        if opened is not None and opened.reference:  # type: ignore[attr-defined]
            keys.append(ring.stored(f"ref:{opened.reference}"))  # type: ignore[attr-defined]
        customer = [*core.customer_keys(contact)]
        if thread.directory is not None:
            customer.insert(0, f"customer:{thread.directory.customer_id}")
        received = next((e.data for e in decision.events if e.type == "contact.received"), None)
        session = _NO_SESSION  # the statement's chat session part, and its parameters
        chat: tuple[Any, ...] = ()
        if contact.may_join_burst:
            plain = contact.lookup_keys[0]
            if received is not None:  # a new contact of the session: it joins this one
                session = _SESSION_CONTACT
                chat = (ring.stored(plain), received.contact_id)  # type: ignore[attr-defined]
            else:
                session, chat = _SESSION_MESSAGE, (list(ring.forms(plain)),)
        # One round trip: the thread keys, the case's participants and the chat session. The
        # statements touch different tables, so seeing one snapshot changes nothing for them.
        # A person's contact that joined (core.may_join) is a participant from now on;
        # automated mail, which joins whoever sent it, never is.
        await conn.execute(
            "WITH thread AS (INSERT INTO intake_thread (thread_key, case_id)"
            " SELECT k, $1 FROM unnest($2::text[]) AS k ON CONFLICT (thread_key) DO NOTHING)"
            + session +
            " INSERT INTO intake_case (case_id, customer_keys, subject_key, channel, opened_at,"
            " last_contact_at) VALUES ($1, $3, $4, $5, $6, $6)"
            " ON CONFLICT (case_id) DO UPDATE SET last_contact_at ="
            " greatest(intake_case.last_contact_at, excluded.last_contact_at),"
            " customer_keys = CASE WHEN $7 THEN ARRAY(SELECT k FROM"
            " unnest(intake_case.customer_keys || excluded.customer_keys) WITH ORDINALITY"
            " AS t(k, n) GROUP BY k ORDER BY min(n) LIMIT 64) ELSE intake_case.customer_keys END",
            case_id, keys, ring.stored_all(customer),
            ring.stored(f"subject:{contact.subject_key}") if contact.subject_key else "",
            contact.channel, contact.at, not contact.automated, *chat)


# The chat session part of `_remember`'s statement ($8 and on): none, a new contact of the
# session (it becomes the session's contact), or another message of the session's contact.
_NO_SESSION = ""
_SESSION_CONTACT = (
    ", session AS (INSERT INTO intake_chat_session (session_id, case_id, contact_id,"
    " contact_started_at, last_message_at) VALUES ($8, $1, $9, $6, $6)"
    " ON CONFLICT (session_id) DO UPDATE SET contact_id = excluded.contact_id,"
    " contact_started_at = excluded.contact_started_at,"
    " last_message_at = excluded.last_message_at, case_id = excluded.case_id)")
_SESSION_MESSAGE = (
    ", session AS (UPDATE intake_chat_session SET last_message_at ="
    " greatest(last_message_at, $6) WHERE session_id = ANY($8::text[]))")


async def _processed_before_upgrade(conn: asyncpg.Connection, envelope: Envelope) -> bool:
    """Whether this record was processed when ids derived from `ce_id` alone (a redelivery or
    redrive of a record older than `inbound_cause`): its events, or its suppression record,
    carry the ids of that time. Nothing is decided again for it (docs/intake.md, "Derived ids")."""
    if await any_logged(conn, core.legacy_event_ids(envelope.id)):
        return True
    legacy = suppression.record_id(envelope.id)
    return await suppression.get(conn, legacy) is not None


async def _cases(conn: asyncpg.Connection, ring: Keyring, plain: tuple[str, ...],
                 stored: tuple[str, ...] = ()) -> list[str]:
    """The cases filed under these thread keys (and already keyed `stored` ones), in the keys'
    order, each once. A key found only under a previous key is filed under the current one too."""
    if not plain and not stored:
        return []
    rows = await conn.fetch(
        "SELECT thread_key, case_id FROM intake_thread WHERE thread_key = ANY($1::text[])",
        [*ring.forms_all(list(plain)), *stored])
    return await _filed(conn, ring, {r["thread_key"]: str(r["case_id"]) for r in rows}, plain,
                        stored)


async def _filed(conn: asyncpg.Connection, ring: Keyring, by_key: dict[str, str],
                 plain: tuple[str, ...], stored: tuple[str, ...] = ()) -> list[str]:
    """`_cases` from thread rows already read (`by_key`: keyed form → case; it may hold other
    keys' rows too): what they file these keys under, and the current form written for a key
    found only under a previous one."""
    forms = {f: (k, i) for k in plain for i, f in enumerate(ring.forms(k))}
    stale = [(ring.stored(forms[f][0]), c) for f, c in by_key.items()
             if f in forms and forms[f][1] > 0]
    if stale:
        await conn.executemany(
            "INSERT INTO intake_thread (thread_key, case_id) VALUES ($1, $2)"
            " ON CONFLICT (thread_key) DO NOTHING", stale)
    ordered = [by_key[f] for k in plain for f in ring.forms(k) if f in by_key]
    ordered += [by_key[f] for f in stored if f in by_key]
    return list(dict.fromkeys(ordered))


async def _first_look(conn: asyncpg.Connection, ring: Keyring, contact: core.IncomingContact,
                      plain: tuple[str, ...], stored: tuple[str, ...]
                      ) -> tuple[DirectoryEntry | None, dict[str, str]]:
    """In one round trip: the contact's directory entry (`_DIRECTORY`) and the thread rows of
    these keys (every keyed form) and of the already keyed `stored` ones, keyed form → case."""
    email, phone = contact.customer.email, contact.customer.phone
    row = await conn.fetchrow(
        "SELECT d.customer_id, d.names, d.emails, d.phones, d.tier, d.verified,"
        # Two index probes of the same keys, in the same order. One aggregate over a LATERAL
        # join of them instead was slower: 0.22 ms a call against 0.03 (--pg-statements).
        " ARRAY(SELECT t.thread_key FROM intake_thread t"
        " WHERE t.thread_key = ANY($3::text[]) ORDER BY t.thread_key) AS thread_keys,"
        " ARRAY(SELECT t.case_id FROM intake_thread t"
        " WHERE t.thread_key = ANY($3::text[]) ORDER BY t.thread_key) AS thread_cases"
        " FROM (SELECT 1) AS one LEFT JOIN LATERAL (" + _DIRECTORY + ") AS d ON true",
        email, phone, [*ring.forms_all(list(plain)), *stored])
    directory = None if row["customer_id"] is None else _entry(row)
    return directory, dict(zip(row["thread_keys"], map(str, row["thread_cases"]), strict=True))


async def _participants(conn: asyncpg.Connection, case_ids: list[str],
                        sender: list[str]) -> set[str]:
    """Those of the cases whose participants include the sender (any of its keyed keys)."""
    if not sender:
        return set()
    rows = await conn.fetch(
        "SELECT case_id FROM intake_case WHERE case_id = ANY($1::text[])"
        " AND customer_keys && $2::text[]", case_ids, sender)
    return {str(r["case_id"]) for r in rows}


_SOLVED_OR_REOPENED = ["case.solved", "case.reopened"]  # the last of them says if it is solved


async def _solved(conn: asyncpg.Connection, case_id: str) -> bool:
    return await caselog.latest_of(conn, case_id, _SOLVED_OR_REOPENED) == "case.solved"


async def _open_cases(conn: asyncpg.Connection, customer_keys: list[str],
                      subject_keys: tuple[str, ...] | None, since: datetime | None,
                      solved: Callable[[asyncpg.Connection, str], Awaitable[bool]]) -> list[str]:
    """The customer's most recent case that is not solved (same subject, recent, if given):
    none or one. Keys are keyed forms."""
    rows = await conn.fetch(
        "SELECT case_id FROM intake_case WHERE customer_keys && $1::text[]"
        " AND ($2::text[] IS NULL OR subject_key = ANY($2::text[])) AND ($3::timestamptz IS NULL"
        " OR last_contact_at >= $3) ORDER BY last_contact_at DESC LIMIT 5",
        customer_keys, list(subject_keys) if subject_keys is not None else None, since)
    for row in rows:
        if not await solved(conn, row["case_id"]):
            return [str(row["case_id"])]
    return []


# `_joined`'s one round trip: the case's log (through shared/caselog's SQL) and the session.
_JOINED = (
    f"SELECT {caselog.latest_of_sql('$1', '$3::text[]')} AS latest, s.contact_id,"
    " s.last_message_at, s.contact_id IS NOT NULL AND"
    f" {caselog.recorded_since_sql('$1', '$4::text', 's.contact_started_at')} AS replied"
    " FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT contact_id, contact_started_at,"
    " last_message_at FROM intake_chat_session WHERE session_id = ANY($2::text[])"
    " AND case_id = $1 ORDER BY last_message_at DESC LIMIT 1) AS s ON true")


async def _joined(conn: asyncpg.Connection, ring: Keyring, contact: core.IncomingContact,
                  case_id: str, burst_seconds: float) -> tuple[bool, str | None]:
    """In one round trip, of the case a contact joins: whether its log says it is solved (a
    `case.solved` after its last `case.reopened`), and for a chat message the session's contact
    it joins: close to the last one, no agent reply since (None otherwise)."""
    sessions = list(ring.forms(contact.lookup_keys[0])) if contact.may_join_burst else []
    row = await conn.fetchrow(_JOINED, case_id, sessions, _SOLVED_OR_REOPENED, "reply.sent")
    solved = row["latest"] == "case.solved"
    if row["contact_id"] is None or row["replied"] or \
            contact.at - row["last_message_at"] > timedelta(seconds=burst_seconds):
        return solved, None
    return solved, str(row["contact_id"])


# The customer's directory entry by e-mail address or phone number ($1, $2; none without).
_DIRECTORY = (
    "SELECT customer_id, names, emails, phones, tier, verified FROM intake_customer"
    # `@>` (not `= ANY`) so the GIN indexes on the arrays are used; a contact with neither
    # looks nothing up (a filter on the parameters alone, checked once)
    " WHERE ($1::text IS NOT NULL OR $2::text IS NOT NULL)"
    " AND (($1::text IS NOT NULL AND emails @> ARRAY[$1::text])"
    " OR ($2::text IS NOT NULL AND phones @> ARRAY[$2::text])) ORDER BY customer_id LIMIT 1")


def _entry(row: asyncpg.Record) -> DirectoryEntry:
    return DirectoryEntry(row["customer_id"], tuple(row["names"]), tuple(row["emails"]),
                          tuple(row["phones"]), row["tier"], row["verified"])


def _lenient(model: type[Contract]) -> type[Contract]:
    """`model`, whose JSON may hold escaped lone surrogates ("\\ud83d" from a front-end that
    cut an emoji in half): pydantic's parser refuses them, Python's reads them, and intake
    cleans them (safe_text.storable) instead of dead-lettering the contact."""

    def model_validate_json(cls: type[Contract], /, data: Any, **kwargs: Any) -> Contract:
        try:
            return model.model_validate_json(data, **kwargs)
        except ValidationError as exc:
            if not any("surrogate" in e["msg"] or "hex escape" in e["msg"]
                       for e in exc.errors() if e["type"] == "json_invalid"):
                raise
            try:
                tree = json.loads(data)
            except (ValueError, RecursionError):
                raise exc from None
            return model.model_validate(storable_tree(tree, without_surrogates), **kwargs)

    return type(model.__name__, (model,), {
        "__module__": model.__module__, "__doc__": model.__doc__,
        "model_validate_json": classmethod(model_validate_json)})


def inbound_models() -> dict[str, dict[str, type[Contract]]]:
    """Every registered channel's topic and its contracts, each read leniently."""
    return {topic: {t: _lenient(m) for t, m in models.items()}
            for topic, models in registry.inbound_topics().items()}


class _Transactions(BatchHooks):
    def __init__(self, handler: IntakeHandler) -> None:
        self.handler = handler

    async def begin(self, conn: asyncpg.Connection, items: list[tuple[Envelope, Any]]) -> None:
        self.handler.begin_transaction(conn)


def wire(runtime: ServiceRuntime) -> ServiceRuntime:
    handler = IntakeHandler(runtime.settings or get_settings(), started_at=runtime.clock.now())
    # A batch's events are appended once, after all its records: one lock round trip and one
    # COPY per batch instead of per record, and each case's lock held only from that append to
    # the commit rather than from its record to the end of the batch (the router, SLA and
    # escalation append to the same cases). What the handler reads back from the log is only
    # whether a case is solved, and the handler itself remembers what it reopened in the batch.
    runtime.defer_appends = True
    runtime.hooks = _Transactions(handler)

    async def start_workers(_: ServiceRuntime) -> None:
        await handler.start()

    async def stop_workers_on_shutdown(_: ServiceRuntime) -> None:
        try:
            await asyncio.Event().wait()  # background jobs are cancelled when the service stops
        finally:
            await handler.close()

    runtime.startup.append(start_workers)
    runtime.background.append(stop_workers_on_shutdown)
    for spec in registry.channels():
        models = {t: _lenient(m) for t, m in spec.contracts.items()}
        runtime.subscribe(Route(spec.topic, models, dict.fromkeys(models, handler),
                                max_records=spec.max_batch))
    return runtime
