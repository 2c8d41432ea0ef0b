"""The router's durable copy of the floor: what `save` writes, `prefetch` reads back.

A router that restarted (or a standby that took over) knows a returning customer's recent
contacts only from `router_contact`: each key's contacts since the repeat window, in the order
they came, none of another customer's.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.router import core
from services.router.classify import PriorContact
from services.router.floor import AddContact, ContactSeen, Floor
from services.router.store import prefetch, save

pytestmark = pytest.mark.integration


async def test_a_new_floor_learns_each_customers_recent_contacts_in_order(
        app_db: asyncpg.Connection) -> None:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    since = now - timedelta(hours=24)
    seen = [  # (customer, minutes ago); the third is older than the window
        ("maya", 5), ("maya", 50), ("maya", 60 * 30), ("omar", 10), ("lena", 1)]
    changes = [AddContact(ContactSeen(f"{tag}-c{i}", f"{tag}-{who}", PriorContact(
        f"{tag}-case{i}", "refund", now - timedelta(minutes=ago))))
        for i, (who, ago) in enumerate(seen)]
    async with app_db.transaction():
        await save(app_db, changes, now)

    floor = Floor(core.load_config().policy)
    keys = [f"{tag}-maya", f"{tag}-omar", f"{tag}-nobody"]
    async with app_db.transaction():
        await prefetch(app_db, floor, [], keys, since)
    assert [cid for cid, _ in floor.history[f"{tag}-maya"]] == [f"{tag}-c1", f"{tag}-c0"]
    assert [p.case_id for _, p in floor.history[f"{tag}-omar"]] == [f"{tag}-case3"]
    assert floor.history[f"{tag}-nobody"] == []
    assert f"{tag}-lena" not in floor.history  # not asked for


async def test_save_returns_the_leadership_epoch_it_locked(app_db: asyncpg.Connection) -> None:
    """The router fences each commit on the epoch `save` reads in its own statement: it must be
    the table's, with the row held FOR SHARE (a successor's update waits for this commit)."""
    now = datetime.now(UTC)
    async with app_db.transaction():
        epoch = await save(app_db, [], now)
        assert epoch == await app_db.fetchval("SELECT epoch FROM router_leader WHERE id = 1")
        locked = await app_db.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE c.relname = 'router_leader' AND l.pid = pg_backend_pid()"
            " AND l.mode = 'RowShareLock'")
        assert locked == 1
